package app

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestOpenDBMigratesAndUsesWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.db")
	db, err := OpenDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.R.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var fk, sync int
	db.W.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	db.W.QueryRow("PRAGMA synchronous").Scan(&sync)
	if fk != 1 || sync != 2 {
		t.Fatalf("foreign_keys=%d synchronous=%d, want 1 and 2 (FULL)", fk, sync)
	}
	ms, _ := schemas()[0].migrations()
	var version int
	db.R.QueryRow("SELECT MAX(version) FROM schema_migrations").Scan(&version)
	if version != len(ms) {
		t.Fatalf("schema version %d, want %d", version, len(ms))
	}
	// Readers cannot write.
	if _, err := db.R.Exec("DELETE FROM files"); err == nil {
		t.Fatal("reader pool accepted a write")
	}
	db.Close()
	// Reopening applies nothing twice.
	db2, err := OpenDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	db2.R.QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n)
	db2.Close()
	if n != len(ms) {
		t.Fatalf("%d migration rows after reopen, want %d", n, len(ms))
	}
}

func TestOpenDBRefusesNewerDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portal.db")
	db, err := OpenDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = OpenDB(context.Background(), path)
	if !errors.Is(err, ErrDatabaseTooNew) {
		t.Fatalf("open newer database: %v, want ErrDatabaseTooNew", err)
	}
}
