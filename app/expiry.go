package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doorito/portal/internal/keyset"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
)

// Expiry (PEP 0007 Q4, DESIGN.md): a stored file lives until its
// expires_at (stored_at + TTL). The notifier job emits file.expiring once
// per file whose expiry is within Config.ExpiryNotifyBefore; the cleanup
// job (cleanup.go) deletes expired files, emitting file.deleted, never
// before the file's file.expiring.

// ttlMetaKey is the tus metadata key an upload uses to ask for a TTL.
const ttlMetaKey = "ttl"

// jobBatch is how many files one job transaction handles; a run repeats
// batches until none is left.
const jobBatch = 100

// parseTTL reads a TTL: whole seconds ("3600") or a Go duration ("48h",
// "90m"). It must be positive. Seconds beyond what a Duration holds give
// the longest Duration (callers clamp to their cap).
func parseTTL(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	if strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, err
		}
		if n == 0 {
			return 0, errors.New("must be positive")
		}
		if errors.Is(err, strconv.ErrRange) || n > math.MaxInt64/uint64(time.Second) {
			return math.MaxInt64, nil
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not whole seconds or a duration like 48h")
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

// checkTTLMeta refuses an upload whose ttl metadata is not a positive TTL
// (an empty value means the default).
func checkTTLMeta(meta map[string]string) error {
	v := meta[ttlMetaKey]
	if v == "" {
		return nil
	}
	if _, err := parseTTL(v); err != nil {
		return errBadMetadata{fmt.Sprintf("metadata ttl %q: %v (use whole seconds or a duration like 48h)", truncate(v, 64), err)}
	}
	return nil
}

// fileTTL is the TTL of a file uploaded with meta: its ttl metadata clamped
// to Config.FileTTLMax, or Config.FileTTL. A bad value (refused at
// creation; possible only for uploads created before the check) means the
// default.
func (a *App) fileTTL(meta map[string]string) time.Duration {
	v := meta[ttlMetaKey]
	if v == "" {
		return a.cfg.FileTTL
	}
	d, err := parseTTL(v)
	if err != nil {
		return a.cfg.FileTTL
	}
	return min(d, a.cfg.FileTTLMax)
}

// jobCounters counts one background job's runs (exposed on /metrics).
type jobCounters struct {
	runs, failures, handled atomic.Int64
	lastSuccess             atomic.Int64 // Unix ms of the last run without error
	ended                   atomic.Int64 // runs ended
	lastDuration            atomic.Int64 // of the last run ended, in ns
}

// JobStats is a snapshot of a job's counters.
type JobStats struct {
	Runs     int64 // runs started
	Failures int64 // runs that ended with an error (the next run retries)
	Handled  int64 // files and uploads the runs acted on
	// LastSuccess is when the last run without error ended (zero: never).
	LastSuccess time.Time
	// Ended counts the runs that ended; LastDuration is the last one's
	// (measured by the job, on the real clock).
	Ended        int64
	LastDuration time.Duration
}

func (c *jobCounters) snapshot() JobStats {
	s := JobStats{Runs: c.runs.Load(), Failures: c.failures.Load(), Handled: c.handled.Load(),
		Ended: c.ended.Load(), LastDuration: time.Duration(c.lastDuration.Load())}
	if ms := c.lastSuccess.Load(); ms != 0 {
		s.LastSuccess = time.UnixMilli(ms).UTC()
	}
	return s
}

// jobs holds the expiry jobs' scheduler and counters.
type jobs struct {
	cron            *cron.Cron
	expiry, cleanup jobCounters
	// batch overrides jobBatch (tests); afterBatch, when set, is called
	// after each committed batch of either job (tests simulate a crash
	// between batches with it).
	batch      int
	afterBatch func(job string)
}

// Job names, as in logs and metrics.
const (
	jobExpiry  = "expiry"
	jobCleanup = "cleanup"
)

// JobStats returns the counters of the expiry notifier ("expiry") and the
// cleanup ("cleanup").
func (a *App) JobStats() map[string]JobStats {
	return map[string]JobStats{jobExpiry: a.jobs.expiry.snapshot(), jobCleanup: a.jobs.cleanup.snapshot()}
}

func (a *App) batchSize() int {
	if a.jobs.batch > 0 {
		return a.jobs.batch
	}
	return jobBatch
}

func (a *App) batchDone(job string) {
	if a.jobs.afterBatch != nil {
		a.jobs.afterBatch(job)
	}
}

// startJobs schedules the notifier and the cleanup on their cron specs
// (validated by Config.withDefaults). A run still going when its next tick
// comes is not started twice; ctx ends running jobs early (each batch is
// its own transaction, so stopping between or inside batches loses
// nothing).
func (a *App) startJobs(ctx context.Context) error {
	logger := cronLogger{a.log.With("component", "cron")}
	c := cron.New(cron.WithLocation(time.UTC), cron.WithLogger(logger),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	if _, err := c.AddFunc(a.cfg.ExpirySchedule, func() { a.expiryJob(ctx) }); err != nil {
		return fmt.Errorf("expiry schedule %q: %w", a.cfg.ExpirySchedule, err)
	}
	if _, err := c.AddFunc(a.cfg.CleanupSchedule, func() { a.cleanupJob(ctx) }); err != nil {
		return fmt.Errorf("cleanup schedule %q: %w", a.cfg.CleanupSchedule, err)
	}
	a.jobs.cron = c
	c.Start()
	return nil
}

// stopJobs stops scheduling and waits for running jobs to end (the caller
// has cancelled their context).
func (a *App) stopJobs() {
	if a.jobs.cron == nil {
		return
	}
	<-a.jobs.cron.Stop().Done()
}

// expiryJob is one scheduled run of the notifier: counted and logged.
func (a *App) expiryJob(ctx context.Context) {
	start := time.Now()
	a.jobs.expiry.runs.Add(1)
	defer countPanic(&a.jobs.expiry)
	n, err := a.runExpiry(ctx)
	a.endJob(ctx, jobExpiry, &a.jobs.expiry, start, n, err, "notices", n)
}

// countPanic counts a run that panicked as failed and lets the panic go
// on to cron's Recover, which logs it.
func countPanic(c *jobCounters) {
	if r := recover(); r != nil {
		c.failures.Add(1)
		panic(r)
	}
}

// endJob counts and logs the end of a job run that acted on n files or
// uploads: info when it did something, debug when idle, an error when it
// failed (the next run retries). A run cut short by shutdown is no failure.
func (a *App) endJob(ctx context.Context, job string, c *jobCounters, start time.Time, n int, err error, kv ...any) {
	took := time.Since(start)
	c.handled.Add(int64(n))
	c.lastDuration.Store(int64(took))
	defer c.ended.Add(1)
	args := append([]any{"job", job, "duration", took}, kv...)
	switch {
	case err != nil && ctx.Err() != nil:
		a.log.Info("job stopped by shutdown; the next run continues", args...)
	case err != nil:
		c.failures.Add(1)
		a.log.Error("job failed; the next run retries", append(args, "err", err)...)
	case n > 0:
		c.lastSuccess.Store(a.cfg.Now().UnixMilli())
		a.log.Info("job done", args...)
	default:
		c.lastSuccess.Store(a.cfg.Now().UnixMilli())
		a.log.Debug("job done", args...)
	}
}

// runExpiry emits file.expiring for every stored file that expires within
// Config.ExpiryNotifyBefore and has not been notified, and returns how many
// it emitted. Each batch claims its files (expiring_notified_at, guarded
// by IS NULL) and appends their events in one IMMEDIATE transaction:
// SQLite's single writer serializes overlapping runs, and a run stopped
// midway (a crash, a restart) leaves either a batch's claims and events or
// neither, so every file gets its notice exactly once.
func (a *App) runExpiry(ctx context.Context) (int, error) {
	total := 0
	for {
		n, more, err := a.notifyBatch(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

func (a *App) notifyBatch(ctx context.Context) (n int, more bool, err error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	limit := a.batchSize()
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("expiry: begin: %w", err)
	}
	defer tx.Rollback()
	// files_notify holds only the stored files not yet notified: a run
	// does not read those of the window it already announced.
	files, err := queryFiles(ctx, tx, `SELECT `+fileColumns+` FROM files INDEXED BY files_notify
		WHERE status = 'stored' AND expiring_notified_at IS NULL AND expires_at <= ?
		ORDER BY expires_at, id LIMIT ?`, now.Add(a.cfg.ExpiryNotifyBefore).UnixMilli(), limit)
	if err != nil {
		return 0, false, fmt.Errorf("expiry: %w", err)
	}
	for _, f := range files {
		sent, err := a.noticeTx(ctx, tx, f, now)
		if err != nil {
			return 0, false, fmt.Errorf("expiry: file %s: %w", f.ID, err)
		}
		if sent {
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("expiry: commit: %w", err)
	}
	if n > 0 {
		a.outbox.Committed()
	}
	a.batchDone(jobExpiry)
	return n, n == limit, nil
}

// noticeTx claims f's expiry notice and appends its file.expiring inside
// tx, unless the notice was already given (then it reports false).
func (a *App) noticeTx(ctx context.Context, tx *sql.Tx, f File, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE files SET expiring_notified_at = ?
		WHERE id = ? AND status = 'stored' AND expiring_notified_at IS NULL`, now.UnixMilli(), f.ID)
	if err != nil {
		return false, fmt.Errorf("claim notice: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	// The notice is about the uploader's file: its actor is the file's
	// actor (the user who uploaded it, null for anonymous uploads), so a
	// consumer can tell whom to warn. Cleanup's file.deleted is the
	// system's doing and has a null actor.
	if err := a.appendFileEvent(ctx, tx, EventFileExpiring, now, f, fileOwnerActor(f), ""); err != nil {
		return false, err
	}
	return true, nil
}

// queryFiles runs a files query (selecting fileColumns) and reads every row
// before returning, so the transaction can write next.
func queryFiles(ctx context.Context, q queryer, query string, args ...any) ([]File, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	return keyset.All(rows, err, scanFile)
}

// cronLogger adapts slog to cron's logger (its routine messages at debug).
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.log.Debug(msg, kv...) }

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error(msg, append(kv, "err", err)...)
}

// jobCollector exposes the jobs' counters on /metrics.
type jobCollector struct{ a *App }

var jobDesc = struct{ runs, failures, handled, lastSuccess *prometheus.Desc }{
	runs:     prometheus.NewDesc("portal_job_runs_total", "Runs of a background job (expiry notifier, cleanup).", []string{"job"}, nil),
	failures: prometheus.NewDesc("portal_job_failures_total", "Runs of a background job that failed (the next run retries).", []string{"job"}, nil),
	handled: prometheus.NewDesc("portal_job_handled_total",
		"Files and uploads a background job acted on: notices sent, files deleted, uploads removed.", []string{"job"}, nil),
	lastSuccess: prometheus.NewDesc("portal_job_last_success_timestamp_seconds",
		"When a background job last ran without error (0: never).", []string{"job"}, nil),
}

func (c jobCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobDesc.runs
	ch <- jobDesc.failures
	ch <- jobDesc.handled
	ch <- jobDesc.lastSuccess
}

func (c jobCollector) Collect(ch chan<- prometheus.Metric) {
	for job, s := range c.a.JobStats() {
		ch <- prometheus.MustNewConstMetric(jobDesc.runs, prometheus.CounterValue, float64(s.Runs), job)
		ch <- prometheus.MustNewConstMetric(jobDesc.failures, prometheus.CounterValue, float64(s.Failures), job)
		ch <- prometheus.MustNewConstMetric(jobDesc.handled, prometheus.CounterValue, float64(s.Handled), job)
		last := 0.0
		if !s.LastSuccess.IsZero() {
			last = float64(s.LastSuccess.UnixMilli()) / 1000
		}
		ch <- prometheus.MustNewConstMetric(jobDesc.lastSuccess, prometheus.GaugeValue, last, job)
	}
}
