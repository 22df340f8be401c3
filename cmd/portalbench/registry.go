package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/app"
	"github.com/doorito/portal/internal/rowfill"
)

// registry is scenario 6: the portal over a registry of millions of files
// (rows only, written by internal/rowfill into a database the portal's
// own migrations made: three endpoints, about three deliveries per file,
// events and attempts, four weeks of history). Two registries, of Rows
// and of 4×Rows files, are measured in turn with the real portal serving
// on 127.0.0.1: a /metrics scrape, the admin dashboard, the first page of
// the file list and of the delivery list with each filter (API and UI),
// and one run of the expiry notifier and of the cleanup with nothing due.
// Each figure at 4×Rows is reported beside the one at Rows (the
// baseline), with their ratio: flat cost means a ratio near 1.
func (b *bench) registry(ctx context.Context) error {
	small, large := b.sz.Rows, 4*b.sz.Rows
	var at [2]map[string]*Sample
	var order []string
	var info [2]registryInfo
	for i, n := range []int{small, large} {
		dir, err := b.registryDir(n)
		if err != nil {
			return err
		}
		info[i], err = b.registryFill(ctx, dir, n)
		if err != nil {
			return err
		}
		at[i], order, err = b.registryMeasure(ctx, dir, n)
		if err != nil {
			return err
		}
		// Measured after the portal opened it (and migrated a kept one).
		if err := b.registrySize(ctx, dir, &info[i]); err != nil {
			return err
		}
		if b.o.registryDir == "" {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}
	for _, name := range order {
		s1, s4 := at[0][name], at[1][name]
		if s1 == nil || s4 == nil {
			continue
		}
		limit := 50.0
		if strings.Contains(name, "dashboard") {
			limit = 100
		}
		ratio := pairRatios(s4.Values, s1.Values)
		// Below 2 ms the ratio is mostly noise: flat enough.
		pass := *atMost(s4.Median, limit) && *atMost(s1.Median, limit) && (s4.Median <= 2 || s4.Median/s1.Median <= 1.5)
		b.add(Result{Scenario: 6, Case: name, Unit: "ms", Portal: s4, Baseline: s1, Ratio: ratio,
			Target: fmt.Sprintf("<= %g ms at %s and %s, %s/%s <= 1.5 (or <= 2 ms)", limit, rowsName(small), rowsName(large),
				rowsName(large), rowsName(small)), Pass: &pass,
			Notes: map[string]any{"portal": rowsName(large), "baseline": rowsName(small)}})
	}
	for i, n := range []int{small, large} {
		perM := float64(info[i].bytes) / (float64(n) / 1e6)
		b.add(Result{Scenario: 6, Case: fmt.Sprintf("database size per million files, %s files", rowsName(n)), Unit: "MiB",
			Portal: newSample([]float64{perM / miB}), Notes: map[string]any{
				"bytes": info[i].bytes, "files": n, "events": info[i].stats.Events,
				"deliveries": info[i].stats.Deliveries, "attempts": info[i].stats.Attempts, "tables": info[i].tables}})
		if info[i].filled {
			b.add(Result{Scenario: 6, Case: fmt.Sprintf("fill, %s files", rowsName(n)), Unit: "s",
				Portal: newSample([]float64{info[i].stats.Took.Seconds()})})
		}
	}
	return nil
}

// rowsName is 1M for a million, 10k for ten thousand.
func rowsName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// pairRatios is a/b for each pair of repetitions, in sorted order (the
// repetitions of two registries are not paired in time).
func pairRatios(a, b []float64) *Sample {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return newSample(r)
}

// registryDir is where the registry of n files lives: under -registry-dir
// (kept there, and used again by later runs) or in the run's scratch dir.
func (b *bench) registryDir(n int) (string, error) {
	if b.o.registryDir != "" {
		d := filepath.Join(b.o.registryDir, rowsName(n))
		return d, os.MkdirAll(d, 0o750)
	}
	return b.scratch("s6-registry-" + rowsName(n))
}

type registryInfo struct {
	stats  rowfill.Stats
	bytes  int64
	tables map[string]float64 // MiB per table and index
	filled bool
}

// registryFill fills dir's database with n files, unless a kept registry
// is there already (its database is migrated when the portal opens it).
func (b *bench) registryFill(ctx context.Context, dir string, n int) (registryInfo, error) {
	var info registryInfo
	path := filepath.Join(dir, "portal.db")
	done := filepath.Join(dir, "filled")
	if _, err := os.Stat(done); err == nil {
		b.logf("  %s files: using the registry kept in %s", rowsName(n), dir)
	} else {
		if err := os.RemoveAll(dir); err != nil {
			return info, err
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return info, err
		}
		db, err := app.OpenDB(ctx, path)
		if err != nil {
			return info, err
		}
		if err := db.Close(); err != nil {
			return info, err
		}
		b.logf("  filling a registry of %s files", rowsName(n))
		info.stats, err = rowfill.Fill(ctx, path, n, b.logf)
		if err != nil {
			return info, err
		}
		info.filled = true
		b.logf("  %s files: %d events, %d deliveries, %d attempts in %s", rowsName(n), info.stats.Events,
			info.stats.Deliveries, info.stats.Attempts, info.stats.Took.Round(time.Second))
		if err := os.WriteFile(done, nil, 0o640); err != nil {
			return info, err
		}
	}
	return info, nil
}

// registrySize records the size of dir's database, and (in full runs)
// the MiB each table and index takes.
func (b *bench) registrySize(ctx context.Context, dir string, info *registryInfo) error {
	path := filepath.Join(dir, "portal.db")
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	info.bytes = fi.Size()
	if b.o.short {
		return nil
	}
	sizes, err := rowfill.TableSizes(ctx, path)
	if err != nil {
		return err
	}
	info.tables = map[string]float64{}
	for k, v := range sizes {
		info.tables[k] = float64(v*10/miB) / 10
	}
	return nil
}

// registryMeasure opens the portal on dir's registry of n files and times
// each request and job run; it returns the samples by case name, and the
// names in the order measured.
func (b *bench) registryMeasure(ctx context.Context, dir string, n int) (map[string]*Sample, []string, error) {
	out := map[string]*Sample{}
	var order []string
	add := func(name string, s *Sample) {
		out[name] = s
		order = append(order, name)
	}
	cfg := portalConfig(dir)
	cfg.ExpirySchedule, cfg.CleanupSchedule = "@every 1000h", "@every 1000h"
	t0 := time.Now()
	p, err := openPortal(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	b.logf("  %s files: the portal opened in %s", rowsName(n), time.Since(t0).Round(time.Millisecond))
	err = func() error {
		defer p.Close()
		token, err := adminToken(ctx, p.URL())
		if err != nil {
			return err
		}
		var endpoint string
		if err := queryOne(ctx, filepath.Join(dir, "portal.db"), "SELECT id FROM endpoints WHERE description = 'portalbench all'",
			&endpoint); err != nil {
			return fmt.Errorf("the registry's endpoint: %w", err)
		}
		hc := newHTTPClient()
		reqs := []struct{ name, path string }{
			{"GET /metrics", "/metrics"},
			{"GET /ui/dashboard", "/ui/dashboard"},
			{"API files", "/api/v1/files?limit=50"},
			{"API files status=stored", "/api/v1/files?limit=50&status=stored"},
			{"API files status=deleted", "/api/v1/files?limit=50&status=deleted"},
			{"API files owner=heavy (30%)", "/api/v1/files?limit=50&owner=" + rowfill.HeavyUser},
			{"API files owner=user042 (0.5%)", "/api/v1/files?limit=50&owner=user042"},
			{"API files expiring", "/api/v1/files?limit=50&expiring=true"},
			{"UI files", "/ui/files"},
			{"UI files status=deleted", "/ui/files?status=deleted"},
			{"UI files owner=user042", "/ui/files?owner=user042"},
			{"UI files expiring", "/ui/files?expiring=1"},
			{"API deliveries", "/api/v1/deliveries?limit=50"},
			{"API deliveries status=failed", "/api/v1/deliveries?limit=50&status=failed"},
			{"API deliveries status=pending", "/api/v1/deliveries?limit=50&status=pending"},
			{"API deliveries status=cancelled (none)", "/api/v1/deliveries?limit=50&status=cancelled"},
			{"API deliveries event_type=file.deleted", "/api/v1/deliveries?limit=50&event_type=file.deleted"},
			{"API deliveries event_type=portal.test (rare)", "/api/v1/deliveries?limit=50&event_type=portal.test"},
			{"API deliveries endpoint", "/api/v1/deliveries?limit=50&endpoint_id=" + endpoint},
			{"API deliveries endpoint+status=failed", "/api/v1/deliveries?limit=50&status=failed&endpoint_id=" + endpoint},
			{"API deliveries endpoint+event_type", "/api/v1/deliveries?limit=50&event_type=file.expiring&endpoint_id=" + endpoint},
			{"UI events", "/ui/events"},
			{"UI events type=file.deleted", "/ui/events?type=file.deleted"},
			{"UI deliveries status=failed", "/ui/events?status=failed"},
			{"UI deliveries endpoint", "/ui/events?endpoint=" + endpoint},
			{"UI deliveries status+type", "/ui/events?status=failed&type=file.uploaded"},
		}
		for _, r := range reqs {
			s, err := timeRequests(ctx, hc, p.URL()+r.path, token, b.sz.ListReps)
			if err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			add(r.name, s)
			b.logf("  %s files: %-45s %s ms", rowsName(n), r.name, fmtSample(s))
		}
		return nil
	}()
	if err != nil {
		return nil, nil, err
	}
	for _, job := range []string{"expiry", "cleanup"} {
		s, err := b.idleRuns(ctx, dir, job)
		if err != nil {
			return nil, nil, err
		}
		name := map[string]string{"expiry": "expiry notifier run, nothing due", "cleanup": "cleanup run, nothing due"}[job]
		add(name, s)
		b.logf("  %s files: %-45s %s ms", rowsName(n), name, fmtSample(s))
	}
	return out, order, nil
}

// timeRequests GETs u once to warm up, then reps times (at least 3, and
// no more once 5 s are spent), and returns the latencies in ms.
func timeRequests(ctx context.Context, hc *http.Client, u, token string, reps int) (*Sample, error) {
	get := func() (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", (&url.URL{Path: req.URL.Path, RawQuery: req.URL.RawQuery}).String(), resp.Status)
		}
		return d, err
	}
	// A request slower than 2 s (before a fix, at millions of rows) is
	// measured once: its warm-up is its figure.
	if d, err := get(); err != nil || d > 2*time.Second {
		return newSample([]float64{ms(d)}), err
	}
	var lat []float64
	start := time.Now()
	for i := 0; i < max(reps, 3) && (i < 3 || time.Since(start) < 5*time.Second); i++ {
		d, err := get()
		if err != nil {
			return nil, err
		}
		lat = append(lat, ms(d))
	}
	return newSample(lat), nil
}

// idleRuns opens the portal with job ("expiry" or "cleanup") scheduled
// every second and the other never, and takes the duration of 3 runs
// (after a first one not counted) as the job measures it. The registry
// has nothing due, so each run must handle no file.
func (b *bench) idleRuns(ctx context.Context, dir, job string) (*Sample, error) {
	cfg := portalConfig(dir)
	cfg.ExpirySchedule, cfg.CleanupSchedule = "@every 1000h", "@every 1000h"
	if job == "expiry" {
		cfg.ExpirySchedule = "@every 1s"
	} else {
		cfg.CleanupSchedule = "@every 1s"
	}
	p, err := openPortal(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var lat []float64
	for i := range 4 {
		d, h, err := timeJobRun(ctx, p.app, job, int64(i+1))
		if err != nil {
			return nil, fmt.Errorf("%s run: %w", job, err)
		}
		if h != 0 {
			return nil, fmt.Errorf("%s run %d handled %d files; the registry should have none due", job, i+1, h)
		}
		if i > 0 {
			lat = append(lat, ms(d))
		}
	}
	return newSample(lat), nil
}

// timeJobRun waits (at most 2 minutes) for run number n of job to end
// and returns how long it took (as the job measured itself) and how many
// files it handled.
func timeJobRun(ctx context.Context, a *app.App, job string, n int64) (time.Duration, int64, error) {
	before := a.JobStats()[job]
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		st := a.JobStats()[job]
		if st.Failures > 0 {
			return 0, 0, fmt.Errorf("run %d failed", st.Runs)
		}
		if st.Ended >= n {
			return st.LastDuration, st.Handled - before.Handled, nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, 0, fmt.Errorf("run %d did not end within 2 minutes", n)
}

// queryOne reads one row of the database at path, read-only.
func queryOne(ctx context.Context, path, q string, dest ...any) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRowContext(ctx, q).Scan(dest...)
}
