package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
)

// Backup writes a consistent copy of the database in dataDir to dest while
// the portal may be serving: SQLite's VACUUM INTO reads one snapshot (WAL
// readers never block the writer) and writes a compact, self-contained
// database file. dest must not exist yet. The uploads themselves are plain
// files under <dataDir>/uploads; see docs/operations.md.
func Backup(ctx context.Context, dataDir, dest string) error {
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("backup: %s already exists", dest)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup: %w", err)
	}
	src := dbPath(dataDir)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: no database at %s: %w", src, err)
	}
	return backupDB(ctx, src, dest)
}

// backupDB writes a consistent copy of the database file src to dest.
func backupDB(ctx context.Context, src, dest string) error {
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("backup: %s already exists", dest)
	}
	db, err := sql.Open("sqlite", dsn(src, false))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.Open(dest)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", dest, err)
	}
	return nil
}
