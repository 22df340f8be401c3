package app

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorito/portal/tus"
)

// SQLite's "database or disk is full" becomes tus's 507; other errors stay
// as they are. (A page-count limit makes SQLite report a full disk.)
func TestStorageFull(t *testing.T) {
	ctx := context.Background()
	db, err := OpenDB(ctx, filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.W.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE big (b BLOB)"); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, "INSERT INTO big VALUES (?)", strings.Repeat("x", 1<<20))
	if err == nil {
		t.Fatal("insert past max_page_count succeeded")
	}
	if got := storageFull(err); !errors.Is(got, tus.ErrStorageFull) || !strings.Contains(got.Error(), err.Error()) {
		t.Errorf("storageFull(%v) = %v, want tus.ErrStorageFull with the cause", err, got)
	}
	other := errors.New("constraint failed")
	if got := storageFull(other); got != other {
		t.Errorf("storageFull(%v) = %v, want it unchanged", other, got)
	}
}
