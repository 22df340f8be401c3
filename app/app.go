// Package app wires the portal together: configuration, the database, the
// tus endpoint and its finalizer, the outbox, the HTTP API and the web UI.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/tus"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	tushandler "github.com/tus/tusd/v2/pkg/handler"
)

// App is one running portal.
type App struct {
	cfg       Config
	log       *slog.Logger
	db        *DB
	dirLock   *os.File // flock held while serving the data directory
	outbox    *outbox.Outbox
	ops       *Ops
	tus       *tus.Server
	publicURL string
	registry  *prometheus.Registry
	webhooks  *outbox.Dispatcher
	auth      *authState
	jobs      jobs

	ln         net.Listener
	server     *http.Server
	metricsLn  net.Listener // with Config.MetricsListen
	metricsSrv *http.Server
	cancelReqs context.CancelCauseFunc
	stop       context.CancelFunc
	wg         sync.WaitGroup
	started    bool // Open succeeded
}

// New checks the configuration; Open starts the portal.
func New(cfg Config) (*App, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &App{cfg: cfg, log: cfg.Logger}, nil
}

// MetricsAddr returns the address of the separate metrics listener, if any.
func (a *App) MetricsAddr() string {
	if a.metricsLn == nil {
		return ""
	}
	return a.metricsLn.Addr().String()
}

// Addr returns the address the HTTP server listens on (after Open).
func (a *App) Addr() string { return a.ln.Addr().String() }

// URL returns the portal's public base URL (after Open).
func (a *App) URL() string { return a.publicURL }

// UploadDir is where tus keeps uploads.
func (a *App) UploadDir() string { return filepath.Join(a.cfg.DataDir, "uploads") }

// Open starts the portal: it binds the listeners first (a busy or bad
// address is an error here, before anything is created on disk), then
// opens the data directory and the database, builds the parts, finalizes
// uploads a previous run left unfinished, and serves in the background.
func (a *App) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := a.bindListeners(); err != nil {
		return err
	}
	if err := a.openStore(ctx); err != nil {
		return err
	}
	if err := a.build(ctx); err != nil {
		return err
	}
	// Finish what a previous run left: completed uploads without a row.
	a.sweep(ctx)
	if err := a.serve(); err != nil {
		return err
	}
	a.started = true
	a.log.Info("portal started", "listen", a.ln.Addr().String(), "url", a.publicURL, "data_dir", a.cfg.DataDir,
		"version", a.cfg.Version)
	return nil
}

// bindListeners binds the HTTP listener (and the metrics one, if separate) and
// settles the public URL.
func (a *App) bindListeners() (err error) {
	if a.ln, err = listen("Listen", a.cfg.Listen); err != nil {
		return err
	}
	if a.cfg.MetricsListen != "" {
		if a.metricsLn, err = listen("MetricsListen", a.cfg.MetricsListen); err != nil {
			return err
		}
	}
	a.publicURL = a.cfg.PublicURL
	if a.publicURL == "" {
		a.publicURL = "http://" + reachableAddr(a.ln.Addr().(*net.TCPAddr))
	}
	return nil
}

// openStore creates the data directory, takes its lock and opens (and
// migrates) the database.
func (a *App) openStore(ctx context.Context) (err error) {
	if err := makeDir("DataDir", a.cfg.DataDir, 0o750); err != nil {
		return err
	}
	if a.cfg.TempDir != "" {
		if err := makeDir("TempDir", a.cfg.TempDir, 0o700); err != nil {
			return err
		}
	}
	if a.dirLock, err = lockDataDir(a.cfg.DataDir); err != nil {
		return err
	}
	a.db, err = openDB(ctx, cmp.Or(a.cfg.sqlDriver, "sqlite"), dbPath(a.cfg.DataDir))
	return err
}

// build makes the portal's parts: the outbox and its dispatcher, the
// operations, the first admin, authentication, the tus endpoint and the
// metrics registry.
func (a *App) build(ctx context.Context) (err error) {
	a.outbox = outbox.New(a.db.W, a.db.R, outbox.WithClock(a.cfg.Now))
	a.webhooks = a.newDispatcher()
	a.ops = newOps(a)
	if err := a.ensureAdmin(ctx); err != nil {
		return err
	}
	if a.auth, err = a.newAuth(); err != nil {
		return err
	}
	var s3cfg *tus.S3Config
	if a.cfg.S3 != nil {
		c := *a.cfg.S3
		if c.InstanceID, err = a.instanceID(ctx); err != nil {
			return err
		}
		s3cfg = &c
	}
	a.tus, err = tus.New(tus.Config{
		Dir:                     a.UploadDir(),
		S3:                      s3cfg,
		BasePath:                a.tusBasePath(),
		MaxSize:                 a.cfg.MaxUploadSize,
		CORSOrigins:             a.cfg.CORSOrigins,
		RespectForwardedHeaders: a.cfg.TrustProxy,
		EnableIETFDraft:         a.cfg.IETFDraft,
		Logger:                  a.log.With("component", "tus"),
		Finalize:                a.finalize,
		PreCreate:               a.preCreate,
		PreTerminate:            a.preTerminate,
	})
	if err != nil {
		return err
	}
	if err := a.checkStorage(ctx); err != nil {
		return err
	}
	a.registry = a.newRegistry()
	return nil
}

// checkStorage checks the upload store at start: a misconfigured one (a
// wrong bucket, endpoint or credentials) stops the portal with one line
// saying what is wrong; an unreachable one leaves it serving, /readyz
// failing and uploads answered 503, until it answers.
func (a *App) checkStorage(ctx context.Context) error {
	err := a.tus.Check(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tus.ErrStorageMisconfigured):
		return &SettingError{Field: "S3", Value: a.cfg.S3.Bucket, Err: err}
	default:
		a.log.Warn("storage unreachable at start; serving, with /readyz failing and uploads answered 503 until it answers",
			"err", err)
		return nil
	}
}

// instanceID is this portal's id (made on first use and kept in the
// database): what it claims an S3 prefix with.
func (a *App) instanceID(ctx context.Context) (string, error) {
	id := uuid.Must(uuid.NewV7()).String()
	if _, err := a.db.W.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ('instance_id', ?)
		ON CONFLICT (name) DO NOTHING`, id); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	err := a.db.W.QueryRowContext(ctx, "SELECT value FROM settings WHERE name = 'instance_id'").Scan(&id)
	return id, err
}

// serve starts the HTTP servers, the cron jobs, the webhook dispatcher and
// the periodic finalizing sweep, each on a goroutine that Close waits for.
func (a *App) serve() error {
	reqCtx, cancelReqs := context.WithCancelCause(context.Background())
	a.cancelReqs = cancelReqs
	handler := a.routes()
	if a.cfg.wrapHandler != nil {
		handler = a.cfg.wrapHandler(handler)
	}
	a.server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	// On shutdown, cancel request contexts with tusd's ErrServerShutdown so
	// open PATCHes stop reading, keep what they wrote and answer 503.
	a.server.RegisterOnShutdown(func() { cancelReqs(tushandler.ErrServerShutdown) })
	bg, stop := context.WithCancel(context.Background())
	a.stop = stop
	// The expiry notifier and the cleanup, on their cron schedules.
	if err := a.startJobs(bg); err != nil {
		return err
	}
	a.webhooks.Starting()
	a.goBackground("http server", func() error { return a.server.Serve(a.ln) })
	if a.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metricsHandler())
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		a.goBackground("metrics server", func() error { return a.metricsSrv.Serve(a.metricsLn) })
	}
	// The dispatcher stops with the other background work, before the
	// database closes.
	a.goBackground("webhook dispatcher", func() error { a.webhooks.Run(bg); return nil })
	a.goBackground("sweep", func() error { a.runEvery(bg, a.cfg.SweepInterval, a.sweep); return nil })
	return nil
}

// goBackground runs fn on a goroutine Close waits for, logging its
// failure (a server's ErrServerClosed is its normal end).
func (a *App) goBackground(what string, fn func() error) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(what, "err", err)
		}
	}()
}

// runEvery calls fn every interval until ctx ends.
func (a *App) runEvery(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// Close stops the portal: HTTP first (open uploads save what they got),
// then background work, then the database.
func (a *App) Close() error {
	var errs []error
	if a.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
		err := a.server.Shutdown(ctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("shutdown http: %w", err))
			a.server.Close()
		}
	} else if a.ln != nil {
		a.ln.Close()
	}
	if a.cancelReqs != nil {
		a.cancelReqs(tushandler.ErrServerShutdown)
	}
	if a.metricsSrv != nil {
		a.metricsSrv.Close()
	} else if a.metricsLn != nil {
		a.metricsLn.Close()
	}
	if a.stop != nil {
		a.stop()
	}
	a.stopJobs() // waits for running jobs, which use the database
	a.wg.Wait()
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	if a.dirLock != nil {
		a.dirLock.Close() // releases the flock
	}
	if a.started { // an Open that failed has said why; nothing was running
		a.log.Info("portal stopped")
	}
	return errors.Join(errs...)
}

// A SettingError is a start-up failure caused by one setting of Config
// (Field names it: "Listen", "MetricsListen", "DataDir", "TempDir"), so that
// the caller can name the flag or variable that set it.
type SettingError struct {
	Field string
	Value string
	Err   error
}

func (e *SettingError) Error() string { return fmt.Sprintf("%s %q: %v", e.Field, e.Value, e.Err) }
func (e *SettingError) Unwrap() error { return e.Err }

// listen binds a TCP listener for the setting field.
func listen(field, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err // "bind: address already in use", without the repeated address
		}
		return nil, &SettingError{field, addr, fmt.Errorf("cannot listen: %w", err)}
	}
	return ln, nil
}

// makeDir creates the directory of the setting field when missing and
// checks that this process can write in it, so that an unusable directory
// is one clear error instead of SQLite's "unable to open database file".
func makeDir(field, dir string, perm os.FileMode) error {
	bad := func(what string, err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &SettingError{field, dir, fmt.Errorf("%s: %w (uid %d)", what, err, os.Getuid())}
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return bad("cannot create the directory", err)
	}
	f, err := os.CreateTemp(dir, ".portal-write-check-*")
	if err != nil {
		return bad("cannot write in the directory", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// reachableAddr is host:port of a listener as a client on this host
// reaches it: an unspecified address (0.0.0.0, ::) becomes localhost.
func reachableAddr(a *net.TCPAddr) string {
	if a.IP == nil || a.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", strconv.Itoa(a.Port))
	}
	return a.String()
}
