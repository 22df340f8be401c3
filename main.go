// Command portal is Doorito Portal: a resumable-upload server that records
// every finished file and tells other systems about it through signed
// webhooks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/doorito/portal/app"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Doorito Portal: resumable uploads in, signed webhooks out.

Usage:
  portal serve [flags]      run the portal (flags below; each has a PORTAL_* environment variable)
  portal healthcheck        exit 0 when the local portal is ready (for Docker's HEALTHCHECK)
  portal backup [--data-dir D] FILE
                            write a consistent copy of the database to FILE (safe while serving)
  portal version            print the version
  portal help               print this help

Run 'portal serve --help' for the serve flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "doorito-portal", version)
		return 0
	case "healthcheck":
		return healthcheck(args, stderr)
	case "backup":
		return backup(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "portal: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// serveFlags holds the serve command's flags before they become a Config.
type serveFlags struct {
	cfg           app.Config
	maxUploadSize string
	corsOrigins   string
	logLevel      string
	logFormat     string
}

func newServeFlags(out io.Writer) (*flag.FlagSet, *serveFlags) {
	fs := flag.NewFlagSet("portal serve", flag.ContinueOnError)
	fs.SetOutput(out)
	f := &serveFlags{}
	c := &f.cfg
	fs.StringVar(&c.Listen, "listen", defaultListen(), "`address` to listen on")
	fs.StringVar(&c.DataDir, "data-dir", app.DefaultDataDir, "`dir`ectory for the database and uploads")
	fs.StringVar(&c.PublicURL, "public-url", "", "public base `URL` of the portal (behind a proxy); default http://<listen>")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", false, "trust X-Forwarded-Host/-Proto and Forwarded headers from a reverse proxy")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated browser `origins` allowed to upload (\"*\" for any)")
	fs.BoolVar(&c.IETFDraft, "ietf-draft", false, "also accept the IETF resumable-upload draft protocol")
	fs.StringVar(&f.maxUploadSize, "max-upload-size", "0", "largest upload, in bytes or with a unit (5GiB, 500MB); 0 for no limit")
	fs.StringVar(&c.Bucket, "storage-bucket", app.DefaultBucket, "bucket `name` reported in events' storage pointers")
	fs.DurationVar(&c.FileTTL, "file-ttl", app.DefaultFileTTL, "how long a stored file lives by default")
	fs.DurationVar(&c.FileTTLMax, "file-ttl-max", app.DefaultFileTTLMax, "the longest TTL an upload may ask for")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", app.DefaultSweepInterval, "how often to finalize completed uploads that have no file record")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "how long to wait for open requests on shutdown")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: portal serve [flags]\n\nEvery flag can also be set with the environment variable shown.\n\n")
		fs.VisitAll(func(fl *flag.Flag) {
			name, u := flag.UnquoteUsage(fl)
			fmt.Fprintf(out, "  --%s %s\n    \t%s (env %s", fl.Name, name, u, envName(fl.Name))
			if fl.DefValue != "" && fl.DefValue != "false" {
				fmt.Fprintf(out, ", default %s", fl.DefValue)
			}
			fmt.Fprintln(out, ")")
		})
	}
	return fs, f
}

// defaultListen is 127.0.0.1:8080, or 0.0.0.0:8080 inside a container.
func defaultListen() string {
	if _, err := os.Stat("/.dockerenv"); err == nil {
		return "0.0.0.0:8080"
	}
	return app.DefaultListen
}

func envName(flagName string) string {
	return "PORTAL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseServe applies PORTAL_* environment variables, then the command line
// (which wins), and builds the Config.
func parseServe(args []string, getenv func(string) string, out io.Writer) (app.Config, *serveFlags, error) {
	fs, f := newServeFlags(out)
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		if v := getenv(envName(fl.Name)); v != "" {
			if err := fs.Set(fl.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s: %w", envName(fl.Name), err))
			}
		}
	})
	if envErr != nil {
		return app.Config{}, nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return app.Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return app.Config{}, nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	size, err := parseSize(f.maxUploadSize)
	if err != nil {
		return app.Config{}, nil, fmt.Errorf("--max-upload-size: %w", err)
	}
	f.cfg.MaxUploadSize = size
	for _, o := range strings.Split(f.corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			f.cfg.CORSOrigins = append(f.cfg.CORSOrigins, o)
		}
	}
	return f.cfg, f, nil
}

// parseSize reads a byte count: a whole number, optionally with a unit
// (KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
	}
}

func serve(args []string, stdout, stderr io.Writer) int {
	cfg, f, err := parseServe(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 2
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 2
	}
	cfg.Logger = logger
	cfg.Version = version

	a, err := app.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Open(ctx); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintf(stdout, "Doorito Portal %s listening on %s\n", version, a.URL())
	<-ctx.Done()
	stop() // a second signal kills the process the default way
	logger.Info("shutting down")
	if err := a.Close(); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	return 0
}

// healthcheck asks the portal at --url (default from PORTAL_LISTEN) whether
// it is ready.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("portal healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := os.Getenv("PORTAL_LISTEN")
	if listen == "" {
		listen = defaultListen()
	}
	host := strings.Replace(listen, "0.0.0.0:", "127.0.0.1:", 1)
	url := fs.String("url", "http://"+host+"/readyz", "readiness `URL` to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "portal healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "portal healthcheck: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	return 0
}

// backup writes an online copy of the database (see docs/operations.md).
func backup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("portal backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := os.Getenv("PORTAL_DATA_DIR")
	if dataDir == "" {
		dataDir = app.DefaultDataDir
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "the portal's data `dir`ectory (env PORTAL_DATA_DIR)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: portal backup [--data-dir D] FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if err := app.Backup(context.Background(), dataDir, fs.Arg(0)); err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintln(stdout, "database backed up to", fs.Arg(0))
	return 0
}
