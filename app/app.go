// Package app wires the portal together: configuration, the database, the
// tus endpoint and its finalizer, the outbox, the HTTP API and the web UI.
package app

import (
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
	"github.com/prometheus/client_golang/prometheus"
	tushandler "github.com/tus/tusd/v2/pkg/handler"
)

// App is one running portal.
type App struct {
	cfg       Config
	log       *slog.Logger
	db        *DB
	outbox    *outbox.Outbox
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

// Open binds the listeners (a bad or busy address is an error here, not a
// log line, and comes before anything is written to disk), prepares the
// data directory, opens the database, finalizes uploads a previous run left
// unfinished, and starts serving in the background.
func (a *App) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.ln, err = listen("Listen", a.cfg.Listen); err != nil {
		return err
	}
	if a.cfg.MetricsListen != "" {
		if a.metricsLn, err = listen("MetricsListen", a.cfg.MetricsListen); err != nil {
			return err
		}
	}
	if err := makeDir("DataDir", a.cfg.DataDir, 0o750); err != nil {
		return err
	}
	if a.cfg.TempDir != "" {
		if err := makeDir("TempDir", a.cfg.TempDir, 0o700); err != nil {
			return err
		}
	}
	if a.db, err = OpenDB(ctx, dbPath(a.cfg.DataDir)); err != nil {
		return err
	}
	a.outbox = outbox.New(a.db.W, a.db.R, outbox.WithClock(a.cfg.Now))
	a.webhooks = a.newDispatcher()
	if err := a.ensureAdmin(ctx); err != nil {
		return err
	}
	if a.auth, err = a.newAuth(); err != nil {
		return err
	}

	a.publicURL = a.cfg.PublicURL
	if a.publicURL == "" {
		a.publicURL = "http://" + reachableAddr(a.ln.Addr().(*net.TCPAddr))
	}
	basePath := "/files/"
	if a.cfg.PublicURL != "" {
		basePath = a.cfg.PublicURL + "/files/"
	}
	a.tus, err = tus.New(tus.Config{
		Dir:                     a.UploadDir(),
		BasePath:                basePath,
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

	a.registry = a.newRegistry()
	if a.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metricsHandler())
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}

	// Finish what a previous run left: completed uploads without a row.
	a.sweep(ctx)

	reqCtx, cancelReqs := context.WithCancelCause(context.Background())
	a.cancelReqs = cancelReqs
	a.server = &http.Server{
		Handler:           a.routes(),
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
	if a.metricsSrv != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.metricsSrv.Serve(a.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics server", "err", err)
			}
		}()
	}
	a.wg.Add(3)
	a.webhooks.Starting()
	go func() {
		defer a.wg.Done()
		a.webhooks.Run(bg) // stopped with the other background work, before the database closes
	}()
	go func() {
		defer a.wg.Done()
		if err := a.server.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	}()
	go func() {
		defer a.wg.Done()
		a.runEvery(bg, a.cfg.SweepInterval, a.sweep)
	}()
	a.started = true
	a.log.Info("portal started", "listen", a.ln.Addr().String(), "url", a.publicURL, "data_dir", a.cfg.DataDir,
		"version", a.cfg.Version)
	return nil
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
