package app

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/doorito/portal/outbox"
	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go)
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ErrDatabaseTooNew is returned when the database was migrated by a newer
// portal than this binary.
var ErrDatabaseTooNew = errors.New("database is newer than this portal")

// DB is the portal's SQLite database: one writer connection (SQLite has one
// writer at a time; a pool of one turns contention into queueing in Go
// rather than SQLITE_BUSY) and a pool of readers.
type DB struct {
	Path string
	W    *sql.DB // writes; transactions start IMMEDIATE
	R    *sql.DB // reads
	// commits runs the transactions of Tx in groups (groupcommit.go).
	commits *committer
}

// Tx runs fn in a write transaction, possibly committed together with
// other callers' (one sync of the log for all), and returns once fn's
// changes are durable or undone. fn must use only tx and the ctx it gets.
func (db *DB) Tx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return db.commits.do(ctx, fn)
}

func dsn(path string, readOnly bool) string {
	q := url.Values{}
	// busy_timeout first, so the pragmas after it wait for locks too.
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// FULL: a commit is on disk before it returns; the durability promise
	// (an acknowledged upload's row and event survive a crash) needs it.
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// OpenDB opens (creating if needed) the database at path, checks that WAL
// mode took effect and applies the embedded migrations.
func OpenDB(ctx context.Context, path string) (*DB, error) {
	return openDB(ctx, "sqlite", path)
}

// openDB is OpenDB through the named database/sql driver (which must be
// modernc's "sqlite" or wrap it).
func openDB(ctx context.Context, driver, path string) (*DB, error) {
	w, err := sql.Open(driver, dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	db := &DB{Path: path, W: w}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("open database %s: journal mode is %q, want wal", path, mode)
	}
	if err := migrate(ctx, w, preMigrationBackup(path)); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open(driver, dsn(path, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	r.SetMaxOpenConns(8)
	db.R = r
	db.commits = newCommitter(w)
	return db, nil
}

// Close finishes the queued transactions and closes both pools.
func (db *DB) Close() error {
	db.commits.stop()
	return errors.Join(db.R.Close(), db.W.Close())
}

// A schema is one component's migrations: numbered SQL files
// (NNNN_name.sql, from 0001 without gaps) applied in order, each once, in
// its own transaction, with its version recorded in the component's table.
// The app's own tables and the outbox's (which the outbox package embeds)
// are two schemas of one database.
type schema struct {
	component string
	files     fs.FS
}

// schemas are the database's components, in the order they migrate.
func schemas() []schema {
	app, _ := fs.Sub(migrationFS, "migrations")
	return []schema{{"app", app}, {"outbox", outbox.Schema()}}
}

// versionTable is where a component records its applied migrations. The
// app's keeps its historic name, so an older portal that opens a migrated
// database reads its version and refuses it clearly.
func (s schema) versionTable() string {
	if s.component == "app" {
		return "schema_migrations"
	}
	return "schema_migrations_" + s.component
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations reads and checks the schema's files.
func (s schema) migrations() ([]migration, error) {
	entries, err := fs.ReadDir(s.files, ".")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s/%s: name must be NNNN_name.sql", s.component, name)
		}
		b, err := fs.ReadFile(s.files, name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s/%s: want version %d", s.component, m.name, i+1)
		}
	}
	return out, nil
}

// pending is the migrations of s that db lacks; it refuses a database a
// newer binary migrated.
func (s schema) pending(ctx context.Context, db *sql.DB) (applied int, todo []migration, err error) {
	ms, err := s.migrations()
	if err != nil {
		return 0, nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.versionTable()+` (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return 0, nil, fmt.Errorf("migrate %s: %w", s.component, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+s.versionTable()).Scan(&applied); err != nil {
		return 0, nil, fmt.Errorf("migrate %s: %w", s.component, err)
	}
	if applied > len(ms) {
		return 0, nil, fmt.Errorf("%w: its %s schema is at version %d, this portal knows up to %d; use a newer portal or restore a backup",
			ErrDatabaseTooNew, s.component, applied, len(ms))
	}
	return applied, ms[applied:], nil
}

// migrate brings every schema of db up to date. Before it changes a
// database that already holds data, it calls backup (when not nil), so
// going back to the previous release is restoring that copy.
func migrate(ctx context.Context, db *sql.DB, backup func(ctx context.Context) error) error {
	type step struct {
		s  schema
		ms []migration
	}
	var steps []step
	existing := false
	for _, s := range schemas() {
		applied, todo, err := s.pending(ctx, db)
		if err != nil {
			return err
		}
		existing = existing || applied > 0
		if len(todo) > 0 {
			steps = append(steps, step{s, todo})
		}
	}
	if len(steps) > 0 && existing && backup != nil {
		if err := backup(ctx); err != nil {
			return fmt.Errorf("migrate: keep a copy first: %w", err)
		}
	}
	for _, st := range steps {
		for _, m := range st.ms {
			if err := applyMigration(ctx, db, st.s, m); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, s schema, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s/%s: %w", s.component, m.name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migrate %s/%s: %w", s.component, m.name, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.versionTable()+" (version, name, applied_at) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("migrate %s/%s: %w", s.component, m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s/%s: %w", s.component, m.name, err)
	}
	return nil
}

// dbPath is where the database lives inside the data dir.
func dbPath(dataDir string) string { return filepath.Join(dataDir, "portal.db") }

// preMigrationBackup returns the backup migrate takes before it changes a
// database with data: a consistent copy (VACUUM INTO, as `portal backup`
// makes) at backups/portal-<UTC time>-pre-upgrade.db beside it. Going back
// to the previous release is stopping the portal and putting that copy in
// place of portal.db (docs/operations.md).
func preMigrationBackup(dbFile string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		dir := filepath.Join(filepath.Dir(dbFile), "backups")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
		dest := filepath.Join(dir, "portal-"+time.Now().UTC().Format("20060102T150405Z")+"-pre-upgrade.db")
		return backupDB(ctx, dbFile, dest)
	}
}
