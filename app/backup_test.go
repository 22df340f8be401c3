package app

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// tableCounts returns the row count of every table in the database.
func tableCounts(tb testing.TB, a *App) map[string]int {
	tb.Helper()
	rows, err := a.db.R.Query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	out := map[string]int{}
	for _, n := range names {
		out[n] = countRows(tb, a, n)
	}
	return out
}

func copyDir(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestBackupWhileServingAndRestore(t *testing.T) {
	a := MustOpen(t, Config{})
	var urls []string
	for i := 0; i < 3; i++ {
		urls = append(urls, MustUpload(t, a.URL(), randomBytes(t, 1000+i), 500, nil))
	}
	dest := filepath.Join(t.TempDir(), "backup.db")
	if err := Backup(context.Background(), a.cfg.DataDir, dest); err != nil {
		t.Fatal(err)
	}
	if err := Backup(context.Background(), a.cfg.DataDir, dest); err == nil {
		t.Fatal("backup overwrote an existing file")
	}
	want := tableCounts(t, a)
	a.Close()

	// Restore: the backup becomes portal.db of a new data dir next to a copy
	// of the uploads.
	restored := t.TempDir()
	copyDir(t, filepath.Join(a.cfg.DataDir, "uploads"), filepath.Join(restored, "uploads"))
	if err := os.Rename(dest, filepath.Join(restored, "portal.db")); err != nil {
		t.Fatal(err)
	}
	b := MustOpen(t, Config{DataDir: restored})
	got := tableCounts(t, b)
	for table, n := range want {
		if got[table] != n {
			t.Errorf("table %s: %d rows after restore, want %d", table, got[table], n)
		}
	}
	if want["files"] != 3 || want["events"] != 3 {
		t.Fatalf("before backup: %v", want)
	}
	for _, u := range urls {
		f, ok := fileByUpload(t, b, u)
		if !ok {
			t.Fatalf("upload %s missing after restore", u)
		}
		if len(eventsOf(t, b, f.ID)) != 1 {
			t.Fatalf("file %s: events missing after restore", f.ID)
		}
	}
}
