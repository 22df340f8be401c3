package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	"github.com/doorito/portal/app"
	"github.com/google/uuid"
)

// fillFiles inserts n stored file rows straight into the database of a
// data dir (in batches of one transaction each). The expiry of the first
// due rows lies within the hour (the notifier's business), of the next due
// an hour ago (the cleanup's); the rest expire in a year.
func fillFiles(ctx context.Context, dataDir string, n, due int) error {
	db, err := app.OpenDB(ctx, filepath.Join(dataDir, "portal.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	now := time.Now().UTC()
	stored := now.Add(-time.Hour).UnixMilli()
	expiresAt := func(i int) int64 {
		switch {
		case i < due:
			return now.Add(time.Hour).UnixMilli()
		case i < 2*due:
			return now.Add(-time.Hour).UnixMilli()
		}
		return now.Add(365 * 24 * time.Hour).UnixMilli()
	}
	const insert = `INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256,
		storage_backend, storage_bucket, storage_key, metadata, status, stored_at, expires_at)
		VALUES (?, ?, ?, 'application/octet-stream', ?, ?, 'local', 'uploads', ?, '{}', 'stored', ?, ?)`
	return inBatches(ctx, db.W, n, 20_000, func(tx *sql.Tx, i int) error {
		id := uuid.Must(uuid.NewV7()).String()
		up := fmt.Sprintf("%032x", i)
		if _, err := tx.ExecContext(ctx, insert, id, up, fmt.Sprintf("file-%d.bin", i), int64(i%100_000)+1,
			fmt.Sprintf("%064x", i), up, stored, expiresAt(i)); err != nil {
			return fmt.Errorf("insert file row %d: %w", i, err)
		}
		return nil
	})
}

// registry is scenario 6: a registry of many file rows, the first page of
// the file list through the API as an admin sees it, and the expiry jobs'
// sweeps over it: the first with work to do, then idle ones.
func (b *bench) registry(ctx context.Context) error {
	dir, err := b.scratch("s6-registry")
	if err != nil {
		return err
	}
	t0 := time.Now()
	due := min(1000, b.sz.Rows/10)
	if err := fillFiles(ctx, dir, b.sz.Rows, due); err != nil {
		return err
	}
	b.logf("  inserted %d file rows in %s", b.sz.Rows, time.Since(t0).Round(time.Millisecond))
	if err := b.listPage(ctx, dir); err != nil {
		return err
	}
	for _, job := range []string{"expiry", "cleanup"} {
		if err := b.sweeps(ctx, dir, job, due); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) listPage(ctx context.Context, dir string) error {
	p, err := startPortal(ctx, dir)
	if err != nil {
		return err
	}
	defer p.Close()
	token, err := adminToken(ctx, p.URL())
	if err != nil {
		return err
	}
	hc := newHTTPClient()
	if _, err := listFiles(ctx, hc, p.URL(), token, 50); err != nil { // warm-up
		return err
	}
	var lat []float64
	for range b.sz.ListReps {
		start := time.Now()
		fl, err := listFiles(ctx, hc, p.URL(), token, 50)
		d := time.Since(start)
		if err != nil {
			return err
		}
		if len(fl.Items) != min(50, b.sz.Rows) {
			return fmt.Errorf("list page has %d files, want %d", len(fl.Items), min(50, b.sz.Rows))
		}
		lat = append(lat, ms(d))
	}
	s := newSample(lat)
	b.add(Result{Scenario: 6, Case: fmt.Sprintf("GET /api/v1/files?limit=50, %d rows", b.sz.Rows), Unit: "ms",
		Portal: s, Target: "<= 50", Pass: atMost(s.Median, 50)})
	return nil
}

// sweeps opens the portal with job ("expiry" or "cleanup") scheduled every
// second and the other hourly, and times its runs from the outside: a run
// starts when the job's run counter moves and ends when its last-success
// time does (polled every 0.2 ms). The first run has due files to
// handle; the next ones find nothing.
func (b *bench) sweeps(ctx context.Context, dir, job string, due int) error {
	cfg := portalConfig(dir)
	cfg.ExpirySchedule, cfg.CleanupSchedule = "@every 1h", "@every 1h"
	if job == "expiry" {
		cfg.ExpirySchedule = "@every 1s"
	} else {
		cfg.CleanupSchedule = "@every 1s"
	}
	p, err := openPortal(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	var first, idle []float64
	var handled int64
	runs := 1 + min(b.o.reps, 3)
	if b.o.short {
		runs = 2
	}
	for i := range runs {
		d, h, err := timeJobRun(ctx, p.app, job, int64(i+1))
		if err != nil {
			return fmt.Errorf("%s sweep: %w", job, err)
		}
		if i == 0 {
			first, handled = append(first, ms(d)), h
		} else {
			idle = append(idle, ms(d))
		}
	}
	// The notifier's first run notices both the due and the expired rows;
	// the cleanup's deletes the expired ones (their notices came first).
	want := int64(due)
	if job == "expiry" {
		want = int64(2 * due)
	}
	if handled != want {
		return fmt.Errorf("%s sweep handled %d files, want %d", job, handled, want)
	}
	fs := newSample(first)
	b.add(Result{Scenario: 6, Case: fmt.Sprintf("%s sweep, %d rows, %d due", job, b.sz.Rows, want), Unit: "ms",
		Portal: fs, Target: "<= 1000", Pass: atMost(fs.Median, 1000)})
	is := newSample(idle)
	b.add(Result{Scenario: 6, Case: fmt.Sprintf("%s sweep, %d rows, none due", job, b.sz.Rows), Unit: "ms",
		Portal: is, Target: "<= 1000", Pass: atMost(is.Median, 1000)})
	return nil
}

// timeJobRun waits (at most 30 s) for run number n of job and returns how
// long it took and how many files it handled.
func timeJobRun(ctx context.Context, a *app.App, job string, n int64) (time.Duration, int64, error) {
	before := a.JobStats()[job]
	deadline := time.Now().Add(30 * time.Second)
	var start time.Time
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		st := a.JobStats()[job]
		if st.Failures > 0 {
			return 0, 0, fmt.Errorf("run %d failed", st.Runs)
		}
		if start.IsZero() && st.Runs >= n {
			start = time.Now()
		}
		if !start.IsZero() && st.LastSuccess != before.LastSuccess && !st.LastSuccess.IsZero() {
			return time.Since(start), st.Handled - before.Handled, nil
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, 0, fmt.Errorf("run %d did not end within 30s", n)
}
