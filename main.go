// Command portal is Doorito Portal: a resumable-upload server that records
// every finished file and tells other systems about it through signed
// webhooks.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
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
  portal user add [--data-dir D] --username U [--role uploader|admin]
                            create a user; the password comes from PORTAL_USER_PASSWORD or stdin
  portal token create [--data-dir D] --username U [--name N] [--expires 720h]
                            issue an API token for a user and print it (shown only once)
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
	case "user":
		return userCmd(args, os.Stdin, os.Getenv, stdout, stderr)
	case "token":
		return tokenCmd(args, stdout, stderr)
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
	// Storage limits, as sizes.
	userQuota, anonymousQuota, minFreeSpace string
	corsOrigins                             string
	logLevel                                string
	logFormat                               string
	// Webhook delivery flags parsed after the flag set.
	endpointAllowCIDRs string
	retrySchedule      string
}

func newServeFlags(out io.Writer) (*flag.FlagSet, *serveFlags) {
	fs := flag.NewFlagSet("portal serve", flag.ContinueOnError)
	fs.SetOutput(out)
	f := &serveFlags{}
	c := &f.cfg
	fs.StringVar(&c.Listen, "listen", app.DefaultListen, "`address` to listen on")
	fs.StringVar(&c.DataDir, "data-dir", app.DefaultDataDir, "`dir`ectory for the database and uploads")
	fs.StringVar(&c.PublicURL, "public-url", "", "public base `URL` of the portal (behind a proxy); default http://<listen>")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this `address` only, instead of on --listen")
	fs.BoolVar(&c.TrustProxy, "trust-proxy", false, "trust X-Forwarded-Host/-Proto and Forwarded headers from a reverse proxy")
	fs.StringVar(&f.corsOrigins, "cors-origins", "", "comma-separated browser `origins` allowed to upload (\"*\" for any)")
	fs.BoolVar(&c.IETFDraft, "ietf-draft", false, "also accept the IETF resumable-upload draft protocol")
	fs.StringVar(&f.maxUploadSize, "max-upload-size", "0", "largest upload, in bytes or with a unit (5GiB, 500MB); 0 for no limit")
	fs.StringVar(&f.userQuota, "user-quota", app.DefaultUserQuota, "an account's storage quota unless an admin sets its own (stored files + uploads in progress); 0 for no limit")
	fs.StringVar(&f.anonymousQuota, "anonymous-quota", app.DefaultAnonymousQuota, "the storage quota all anonymous uploads share; 0 for no limit")
	fs.StringVar(&f.minFreeSpace, "min-free-space", app.DefaultMinFreeSpace, "free space the data directory keeps: below it uploads get 507 and /readyz fails; 0 for none")
	fs.StringVar(&c.Bucket, "storage-bucket", app.DefaultBucket, "bucket `name` reported in events' storage pointers")
	fs.DurationVar(&c.FileTTL, "file-ttl", app.DefaultFileTTL, "how long a stored file lives by default")
	fs.DurationVar(&c.FileTTLMax, "file-ttl-max", app.DefaultFileTTLMax, "the longest TTL an upload may ask for")
	fs.DurationVar(&c.ExpiryNotifyBefore, "expiry-notify-before", app.DefaultExpiryNotifyBefore, "send file.expiring this long before a file expires")
	fs.StringVar(&c.ExpirySchedule, "expiry-schedule", app.DefaultExpirySchedule, "cron `spec` of the file.expiring notifier (5 fields or \"@every 1m\")")
	fs.StringVar(&c.CleanupSchedule, "cleanup-schedule", app.DefaultCleanupSchedule, "cron `spec` of the cleanup of expired files and abandoned uploads")
	fs.DurationVar(&c.IncompleteTTL, "incomplete-ttl", app.DefaultIncompleteTTL, "remove unfinished uploads untouched this long")
	fs.DurationVar(&c.HistoryRetention, "history-retention", app.DefaultHistoryRetention, "keep the events of deleted files, with their deliveries and attempts, this long (-1s: forever)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", app.DefaultSweepInterval, "how often to finalize completed uploads that have no file record")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "how long to wait for open requests on shutdown")
	fs.BoolVar(&c.AnonymousUploads, "anonymous-uploads", false, "let clients without credentials create uploads (recorded with a null actor)")
	fs.IntVar(&c.AuthRateLimit, "auth-rate-limit", app.DefaultAuthRateLimit, "login and token requests per `minute` per client address (-1: no limit)")
	fs.BoolVar(&c.AllowPrivateEndpoints, "allow-private-endpoints", false, "let webhook endpoints be on loopback, private and link-local addresses")
	fs.StringVar(&f.endpointAllowCIDRs, "endpoint-allow-cidrs", "", "comma-separated non-public `networks` webhook endpoints may be on (10.1.0.0/16,192.168.5.7)")
	fs.DurationVar(&c.DeliveryTimeout, "delivery-timeout", app.DefaultDeliveryTimeout, "timeout of one webhook request")
	fs.IntVar(&c.DeliveryWorkers, "delivery-workers", app.DefaultDeliveryWorkers, "webhook requests in flight at most")
	fs.IntVar(&c.DeliveryPerEndpoint, "delivery-per-endpoint", app.DefaultDeliveryPerEndpoint, "webhook requests in flight per endpoint at most")
	fs.StringVar(&f.retrySchedule, "delivery-retry-schedule", "5s,5m,30m,2h,5h,10h,10h", "comma-separated `waits` before each webhook retry (then the delivery is failed)")
	fs.DurationVar(&c.EndpointDisableAfter, "endpoint-disable-after", app.DefaultEndpointDisableAfter, "disable a webhook endpoint whose deliveries all failed for this long (-1s: never)")
	fs.DurationVar(&c.SecretRotationGrace, "secret-rotation-grace", app.DefaultSecretRotationGrace, "how long a rotated webhook secret keeps signing next to the new one")
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
		fmt.Fprintf(out, "\nOn first start the user admin is created with the password in PORTAL_ADMIN_PASSWORD\n"+
			"(or the file named by PORTAL_ADMIN_PASSWORD_FILE); without it a random password is printed once.\n")
	}
	return fs, f
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
	for _, s := range []struct {
		flag, value string
		dst         *int64
	}{{"max-upload-size", f.maxUploadSize, &f.cfg.MaxUploadSize}, {"user-quota", f.userQuota, &f.cfg.UserQuota},
		{"anonymous-quota", f.anonymousQuota, &f.cfg.AnonymousQuota}, {"min-free-space", f.minFreeSpace, &f.cfg.MinFreeSpace}} {
		n, err := app.ParseSize(s.value)
		if err != nil {
			return app.Config{}, nil, fmt.Errorf("--%s: %w", s.flag, err)
		}
		*s.dst = n
	}
	var err error
	if f.cfg.AdminPassword, err = secretEnv(getenv, "PORTAL_ADMIN_PASSWORD"); err != nil {
		return app.Config{}, nil, err
	}
	for _, o := range strings.Split(f.corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			f.cfg.CORSOrigins = append(f.cfg.CORSOrigins, o)
		}
	}
	for _, c := range strings.Split(f.endpointAllowCIDRs, ",") {
		if c = strings.TrimSpace(c); c != "" {
			f.cfg.EndpointAllowCIDRs = append(f.cfg.EndpointAllowCIDRs, c)
		}
	}
	if f.cfg.DeliverySchedule, err = parseDurations(f.retrySchedule); err != nil {
		return app.Config{}, nil, fmt.Errorf("--delivery-retry-schedule: %w", err)
	}
	return f.cfg, f, nil
}

// parseDurations reads a comma-separated list of durations ("5s,5m,2h").
func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration", strings.TrimSpace(part))
		}
		out = append(out, d)
	}
	return out, nil
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
	cfg.Console = stdout

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
		listen = app.DefaultListen
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

// secretEnv reads a secret from the environment variable name, or from the
// file named by name_FILE (trailing newline removed). Secrets never come
// from flags, which other users can see in ps.
func secretEnv(getenv func(string) string, name string) (string, error) {
	if v := getenv(name); v != "" {
		return v, nil
	}
	file := getenv(name + "_FILE")
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// dataDirFlag adds --data-dir, defaulting to PORTAL_DATA_DIR or ./data.
func dataDirFlag(fs *flag.FlagSet) *string {
	dir := os.Getenv("PORTAL_DATA_DIR")
	if dir == "" {
		dir = app.DefaultDataDir
	}
	return fs.String("data-dir", dir, "the portal's data `dir`ectory (env PORTAL_DATA_DIR)")
}

// userCmd runs `portal user add`: it creates a user in the data dir. The
// password comes from PORTAL_USER_PASSWORD or the first line of stdin.
func userCmd(args []string, stdin io.Reader, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, "Usage: portal user add [--data-dir D] --username U [--role uploader|admin]")
		return 2
	}
	fs := flag.NewFlagSet("portal user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := dataDirFlag(fs)
	username := fs.String("username", "", "the new user's `name`")
	role := fs.String("role", app.RoleUploader, "`role`: uploader or admin")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: portal user add [--data-dir D] --username U [--role uploader|admin]")
		fmt.Fprintln(stderr, "The password is read from PORTAL_USER_PASSWORD, or else from the first line of stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *username == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	pw := getenv("PORTAL_USER_PASSWORD")
	if pw == "" {
		fmt.Fprintf(stderr, "Password for %s (one line on stdin): ", *username)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		fmt.Fprintln(stderr)
		if err != nil && (!errors.Is(err, io.EOF) || line == "") {
			fmt.Fprintln(stderr, "portal: no password on stdin")
			return 2
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	u, err := app.AddUser(context.Background(), *dataDir, *username, *role, pw)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	fmt.Fprintf(stdout, "created user %s (role %s, id %s)\n", u.Username, u.Role, u.ID)
	return 0
}

// tokenCmd runs `portal token create`: it issues an API token for a user
// in the data dir and prints it, the only time it is shown.
func tokenCmd(args []string, stdout, stderr io.Writer) int {
	usage := "Usage: portal token create [--data-dir D] --username U [--name N] [--expires 720h] [--scopes files:read,events:read]"
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("portal token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := dataDirFlag(fs)
	username := fs.String("username", "", "the `user` the token acts as")
	name := fs.String("name", "cli", "a `name` to recognise the token by")
	expires := fs.Duration("expires", 0, "lifetime (e.g. 720h); 0 for a token that does not expire")
	scopes := fs.String("scopes", "", "comma-separated `scopes` the token is narrowed to (docs/auth.md); none: all the user's rights")
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *username == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var scopeList []string
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scopeList = append(scopeList, s)
		}
	}
	t, secret, err := app.CreateToken(context.Background(), *dataDir, *username, *name, *expires, scopeList)
	if err != nil {
		fmt.Fprintln(stderr, "portal:", err)
		return 1
	}
	exp := "never"
	if t.ExpiresAt != nil {
		exp = t.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(stderr, "token %s (%q) for %s, expires %s; it is shown only this once:\n", t.ID, t.Name, t.Username, exp)
	fmt.Fprintln(stdout, secret)
	return 0
}
