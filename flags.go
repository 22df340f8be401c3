package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/doorito/portal/app"
	"github.com/doorito/portal/tus"
)

// The concerns the serve flags are grouped by in `portal serve --help`, in
// the order they are shown.
var flagGroups = []string{"Network", "Storage", "Lifecycle", "Webhooks", "Auth", "Logging"}

// A serveFlag is one flag of `portal serve`: the concern it belongs to, its
// name, the placeholder of its value in --help, what it means, and its value,
// which checks what it is given.
type serveFlag struct {
	group string
	name  string
	arg   string // "" for a boolean
	usage string
	value checkedValue
}

// A checkedValue is a flag.Value whose Set refuses what the portal cannot
// use; its error says what it wants ("want a duration like 48h").
type checkedValue interface {
	flag.Value
	want() string
}

// serveFlags holds the serve command's flags before they become a Config.
type serveFlags struct {
	cfg app.Config
	// storage is "local" or "s3"; s3 the bucket's settings, used with "s3".
	storage   string
	s3        tus.S3Config
	logLevel  string
	logFormat string
	defs      []serveFlag
	// from names where each flag's value came from: "--file-ttl" or
	// "PORTAL_FILE_TTL" (absent: the default).
	from map[string]string
}

// source names the setting of a flag as the user gave it: the flag, or its
// environment variable when that set it.
func (f *serveFlags) source(name string) string {
	if s, ok := f.from[name]; ok {
		return s
	}
	return "--" + name
}

func newServeFlags() *serveFlags {
	f := &serveFlags{logLevel: "info", logFormat: "text", from: map[string]string{}, storage: "local"}
	c := &f.cfg
	c.Listen, c.DataDir, c.Bucket = app.DefaultListen, app.DefaultDataDir, app.DefaultBucket
	c.FileTTL, c.FileTTLMax = app.DefaultFileTTL, app.DefaultFileTTLMax
	c.ExpiryNotifyBefore, c.IncompleteTTL = app.DefaultExpiryNotifyBefore, app.DefaultIncompleteTTL
	c.ExpirySchedule, c.CleanupSchedule = app.DefaultExpirySchedule, app.DefaultCleanupSchedule
	c.HistoryRetention, c.SweepInterval = app.DefaultHistoryRetention, app.DefaultSweepInterval
	c.ShutdownTimeout, c.AuthRateLimit = app.DefaultShutdownTimeout, app.DefaultAuthRateLimit
	c.DeliveryTimeout, c.DeliveryWorkers = app.DefaultDeliveryTimeout, app.DefaultDeliveryWorkers
	c.DeliveryPerEndpoint, c.EndpointDisableAfter = app.DefaultDeliveryPerEndpoint, app.DefaultEndpointDisableAfter
	c.SecretRotationGrace = app.DefaultSecretRotationGrace
	c.UserQuota, c.AnonymousQuota, c.MinFreeSpace = app.DefaultUserQuota, app.DefaultAnonymousQuota, app.DefaultMinFreeSpace
	c.DeliverySchedule = slices.Clone(app.DefaultDeliverySchedule)

	positive := func(d time.Duration) bool { return d > 0 }
	orNever := func(d time.Duration) bool { return d != 0 }
	atLeast1 := func(n int) bool { return n >= 1 }
	f.defs = []serveFlag{
		{"Network", "listen", "address", "address to listen on", &addrValue{p: &c.Listen}},
		{"Network", "public-url", "URL", "the URL clients reach the portal at (behind a proxy: its https URL); upload URLs and events' source and download_url are built from it; default http://<listen>", &urlValue{p: &c.PublicURL}},
		{"Network", "trust-proxy", "", "build upload URLs from a reverse proxy's X-Forwarded-Host/-Proto and Forwarded headers (set --public-url too: events are written by background jobs)", &boolValue{p: &c.TrustProxy}},
		{"Network", "cors-origins", "origins", "comma-separated browser origins allowed to upload (\"*\" for any)", &listValue{&c.CORSOrigins, isOrigin, "want comma-separated origins like https://app.example.org,http://localhost:3000, or *"}},
		{"Network", "metrics-listen", "address", "serve /metrics on this address only, instead of on --listen", &addrValue{p: &c.MetricsListen, optional: true}},
		{"Network", "ietf-draft", "", "also accept the IETF resumable-upload draft protocol", &boolValue{p: &c.IETFDraft}},

		{"Storage", "data-dir", "dir", "directory of the database and the uploads (created if missing)", &textValue{p: &c.DataDir, example: "a directory like ./data"}},
		{"Storage", "storage", "backend", "where uploads are stored: local (the data directory) or s3 (a bucket; docs/storage.md)", &choiceValue{p: &f.storage, choices: []string{"local", "s3"}}},
		{"Storage", "storage-bucket", "name", "bucket name reported in the storage pointers of files on local storage", &textValue{p: &c.Bucket, example: "a name like uploads"}},
		{"Storage", "s3-bucket", "name", "with --storage=s3: the bucket (it must exist; credentials only from the AWS SDK's chain: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, shared files, roles)", &textValue{p: &f.s3.Bucket, example: "a bucket name like portal-uploads"}},
		{"Storage", "s3-prefix", "prefix", "with --storage=s3: put before every key (one portal per prefix); default the bucket's root", &textValue{p: &f.s3.Prefix, example: "a key prefix like uploads/"}},
		{"Storage", "s3-endpoint", "URL", "with --storage=s3: the service's URL (MinIO, SeaweedFS, Ceph, R2, Versity); default AWS or AWS_ENDPOINT_URL_S3", &urlValue{p: &f.s3.Endpoint}},
		{"Storage", "s3-path-style", "", "with --storage=s3: address the bucket in the path (most self-hosted services need it)", &boolValue{p: &f.s3.PathStyle}},
		{"Storage", "s3-region", "region", "with --storage=s3: the bucket's region; default AWS_REGION or the profile's, else us-east-1", &textValue{p: &f.s3.Region, example: "a region like eu-central-1"}},
		{"Storage", "s3-sse", "kind", "with --storage=s3: server-side encryption of every object: sse-s3 (AES256) or sse-kms (aws:kms); default the bucket's own", &choiceValue{p: &f.s3.SSE, choices: []string{"sse-s3", "sse-kms", "aes256", "aws:kms"}}},
		{"Storage", "s3-sse-kms-key-id", "key", "with --s3-sse=sse-kms: the KMS key; default the account's key for S3", &textValue{p: &f.s3.SSEKMSKeyID, example: "a KMS key id or ARN"}},
		{"Storage", "max-upload-size", "size", "largest upload, in bytes or with a unit (5GiB, 500MB); 0 for no limit", &sizeValue{p: &c.MaxUploadSize}},
		{"Storage", "user-quota", "size", "an account's storage quota unless an admin sets its own (stored files + uploads in progress); 0 for no limit", &sizeValue{p: &c.UserQuota}},
		{"Storage", "anonymous-quota", "size", "the storage quota all anonymous uploads share; 0 for no limit", &sizeValue{p: &c.AnonymousQuota}},
		{"Storage", "min-free-space", "size", "free space the data directory keeps: below it uploads get 507 and /readyz fails; 0 for none", &sizeValue{p: &c.MinFreeSpace}},

		{"Lifecycle", "file-ttl", "duration", "how long a stored file lives by default", &durationValue{&c.FileTTL, positive, "want a positive duration like 48h"}},
		{"Lifecycle", "file-ttl-max", "duration", "the longest lifetime an upload may ask for", &durationValue{&c.FileTTLMax, positive, "want a positive duration like 720h"}},
		{"Lifecycle", "expiry-notify-before", "duration", "send file.expiring this long before a file expires", &durationValue{&c.ExpiryNotifyBefore, positive, "want a positive duration like 24h"}},
		{"Lifecycle", "expiry-schedule", "spec", "cron spec of the file.expiring notifier (5 fields, \"@every 1m\", \"CRON_TZ=Europe/Berlin 0 3 * * *\")", &scheduleValue{p: &c.ExpirySchedule}},
		{"Lifecycle", "cleanup-schedule", "spec", "cron spec of the cleanup of expired files and abandoned uploads", &scheduleValue{p: &c.CleanupSchedule}},
		{"Lifecycle", "incomplete-ttl", "duration", "remove unfinished uploads untouched this long", &durationValue{&c.IncompleteTTL, positive, "want a positive duration like 24h"}},
		{"Lifecycle", "history-retention", "duration", "keep the events of deleted files, with their deliveries and attempts, this long (-1s: forever)", &durationValue{&c.HistoryRetention, orNever, "want a duration like 2160h, or -1s to keep them forever"}},
		{"Lifecycle", "sweep-interval", "duration", "how often to finalize completed uploads that have no file record", &durationValue{&c.SweepInterval, positive, "want a positive duration like 5m"}},
		{"Lifecycle", "shutdown-timeout", "duration", "how long to wait for open requests on shutdown", &durationValue{&c.ShutdownTimeout, positive, "want a positive duration like 30s"}},

		{"Webhooks", "allow-private-endpoints", "", "let webhook endpoints be on loopback, private and link-local addresses (a receiver on this host needs it)", &boolValue{p: &c.AllowPrivateEndpoints}},
		{"Webhooks", "endpoint-allow-cidrs", "networks", "comma-separated non-public networks webhook endpoints may be on (10.1.0.0/16,192.168.5.7)", &listValue{&c.EndpointAllowCIDRs, isNetwork, "want comma-separated networks or addresses like 10.1.0.0/16,192.168.5.7"}},
		{"Webhooks", "delivery-timeout", "duration", "timeout of one webhook request", &durationValue{&c.DeliveryTimeout, positive, "want a positive duration like 15s"}},
		{"Webhooks", "delivery-workers", "n", "webhook requests in flight at most", &intValue{&c.DeliveryWorkers, atLeast1, "want a whole number of at least 1 like 16"}},
		{"Webhooks", "delivery-per-endpoint", "n", "webhook requests in flight per endpoint at most", &intValue{&c.DeliveryPerEndpoint, atLeast1, "want a whole number of at least 1 like 4"}},
		{"Webhooks", "delivery-retry-schedule", "waits", "comma-separated waits before each webhook retry (then the delivery is failed)", &scheduleListValue{p: &c.DeliverySchedule}},
		{"Webhooks", "endpoint-disable-after", "duration", "disable a webhook endpoint whose deliveries all failed for this long (-1s: never)", &durationValue{&c.EndpointDisableAfter, orNever, "want a duration like 120h, or -1s for never"}},
		{"Webhooks", "secret-rotation-grace", "duration", "how long a rotated webhook secret keeps signing next to the new one", &durationValue{&c.SecretRotationGrace, func(d time.Duration) bool { return d > 0 && d <= 168*time.Hour }, "want a duration from 1s to 168h like 24h"}},

		{"Auth", "anonymous-uploads", "", "let clients without credentials create uploads (recorded with a null actor)", &boolValue{p: &c.AnonymousUploads}},
		{"Auth", "auth-rate-limit", "n", "login and token requests per minute per client address (-1: no limit)", &intValue{&c.AuthRateLimit, func(n int) bool { return n >= 1 || n == -1 }, "want requests per minute like 10, or -1 for no limit"}},

		{"Logging", "log-level", "level", "log level: debug, info, warn or error", &choiceValue{p: &f.logLevel, choices: []string{"debug", "info", "warn", "error"}}},
		{"Logging", "log-format", "format", "log format: text or json", &choiceValue{p: &f.logFormat, choices: []string{"text", "json"}}},
	}
	return f
}

func envName(flagName string) string {
	return "PORTAL_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usage writes `portal serve --help`: the flags grouped by concern, each
// with its environment variable and default.
func (f *serveFlags) usage(out io.Writer) {
	fmt.Fprint(out, `Usage: portal serve [flags]

Runs the portal until SIGINT or SIGTERM. Every flag can also be set with the
environment variable shown; the command line wins. Durations are like 90s, 15m,
48h; sizes like 500MB, 5GiB.
`)
	for _, g := range flagGroups {
		fmt.Fprintf(out, "\n%s:\n", g)
		for _, d := range f.defs {
			if d.group != g {
				continue
			}
			head := "  --" + d.name
			if d.arg != "" {
				head += " " + d.arg
			}
			env := envName(d.name)
			if def := d.value.String(); def != "" && def != "false" {
				env += ", default " + def
			}
			fmt.Fprintf(out, "%-34s %s\n", head, env)
			wrap(out, d.usage, "      ", 80)
		}
	}
	fmt.Fprint(out, `
Only from the environment (secrets are never flags, which ps shows):
  PORTAL_ADMIN_PASSWORD (or PORTAL_ADMIN_PASSWORD_FILE, a file holding it)
      the password of the user admin, created on the first start; without it a
      random password is printed once
  SSL_CERT_FILE, SSL_CERT_DIR
      more CA certificates to trust for https webhook endpoints, added to the
      host's and the Mozilla roots built into the binary
`)
}

// wrap writes text in lines of at most width columns, each after indent.
func wrap(out io.Writer, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			fmt.Fprintln(out, line)
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(out, line)
}

// parseServe applies PORTAL_* environment variables, then the command line
// (which wins), checks every value, and builds the Config. Errors name the
// flag or variable and say what it wants, one per line. --help writes the
// usage to out and returns flag.ErrHelp.
func parseServe(args []string, getenv func(string) string, out io.Writer) (app.Config, *serveFlags, error) {
	f := newServeFlags()
	fs := flag.NewFlagSet("portal serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // every error is reported once, by the caller
	fs.Usage = func() {}
	var failed error // the value a flag's Set refused, with its flag named
	for _, d := range f.defs {
		fs.Var(capture{d.value, "--" + d.name, &failed}, d.name, d.usage)
	}
	var errs []error
	for _, d := range f.defs {
		name := envName(d.name)
		if v := getenv(name); v != "" {
			if err := d.value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			f.from[d.name] = name
		}
	}
	if err := fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			newServeFlags().usage(out) // the defaults, not what the environment set
			return app.Config{}, nil, flag.ErrHelp
		case failed != nil:
			err = failed
		default:
			err = f.explain(err)
		}
		return app.Config{}, nil, errors.Join(append(errs, err)...)
	}
	fs.Visit(func(fl *flag.Flag) { f.from[fl.Name] = "--" + fl.Name })
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q: portal serve takes only flags (see portal serve --help)", fs.Arg(0)))
	}
	c := &f.cfg
	if c.FileTTL > c.FileTTLMax {
		errs = append(errs, fmt.Errorf("%s %s is longer than %s %s: want a default lifetime no longer than the maximum",
			f.source("file-ttl"), shortDuration(c.FileTTL), f.source("file-ttl-max"), shortDuration(c.FileTTLMax)))
	}
	var err error
	if c.AdminPassword, err = secretEnv(getenv, "PORTAL_ADMIN_PASSWORD"); err != nil {
		errs = append(errs, err)
	}
	if err := checkCertEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	c.TempDir = getenv("TMPDIR")
	switch {
	case f.storage == "s3" && f.s3.Bucket == "":
		errs = append(errs, fmt.Errorf("%s s3 needs %s: want the name of an existing bucket", f.source("storage"), f.source("s3-bucket")))
	case f.storage == "s3":
		s3 := f.s3
		c.S3 = &s3
	case f.s3 != (tus.S3Config{}):
		errs = append(errs, fmt.Errorf("the --s3-* flags need %s s3 (it is %s)", f.source("storage"), f.storage))
	}
	if len(errs) > 0 {
		return app.Config{}, nil, errors.Join(errs...)
	}
	return f.cfg, f, nil
}

// explain rewrites the flag package's parse errors into the portal's form.
func (f *serveFlags) explain(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag --%s (portal serve --help lists the flags)", strings.TrimLeft(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		name = strings.TrimLeft(name, "-")
		for _, d := range f.defs {
			if d.name == name {
				return fmt.Errorf("--%s needs a value: %s", name, d.value.want())
			}
		}
	}
	return errors.New(msg)
}

// capture passes a flag's value to its checkedValue and keeps the refusal,
// naming the flag, for parseServe to report instead of the flag package's
// wording.
type capture struct {
	checkedValue
	name   string
	failed *error
}

func (c capture) Set(s string) error {
	err := c.checkedValue.Set(s)
	if err != nil && *c.failed == nil {
		*c.failed = fmt.Errorf("%s %q: %w", c.name, s, err)
	}
	return err
}

// IsBoolFlag lets boolean flags stand alone (--trust-proxy).
func (c capture) IsBoolFlag() bool {
	_, ok := c.checkedValue.(*boolValue)
	return ok
}

type durationValue struct {
	p    *time.Duration
	ok   func(time.Duration) bool
	text string
}

func (v *durationValue) want() string   { return v.text }
func (v *durationValue) String() string { return shortDuration(*v.p) }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || !v.ok(d) {
		return errors.New(v.text)
	}
	*v.p = d
	return nil
}

// shortDuration formats d without zero minutes and seconds: 168h, not 168h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

type boolValue struct{ p *bool }

func (v *boolValue) want() string   { return "want true or false" }
func (v *boolValue) String() string { return strconv.FormatBool(*v.p) }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return errors.New(v.want())
	}
	*v.p = b
	return nil
}

// addrValue is a host:port to listen on; optional allows "" (off).
type addrValue struct {
	p        *string
	optional bool
}

func (v *addrValue) want() string {
	return "want host:port like 127.0.0.1:8080 (0.0.0.0:8080 for every interface)"
}
func (v *addrValue) String() string { return *v.p }
func (v *addrValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if s == "" && v.optional {
		*v.p = ""
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return errors.New(v.want())
	}
	*v.p = s
	return nil
}

type urlValue struct{ p *string }

func (v *urlValue) want() string {
	return "want an absolute http(s) URL like https://uploads.example.org"
}
func (v *urlValue) String() string { return *v.p }
func (v *urlValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if s != "" {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			return errors.New(v.want())
		}
	}
	*v.p = s
	return nil
}

// textValue is any non-empty string.
type textValue struct {
	p       *string
	example string
}

func (v *textValue) want() string   { return "want " + v.example }
func (v *textValue) String() string { return *v.p }
func (v *textValue) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New(v.want())
	}
	*v.p = s
	return nil
}

type choiceValue struct {
	p       *string
	choices []string
}

func (v *choiceValue) want() string {
	n := len(v.choices)
	return "want " + strings.Join(v.choices[:n-1], ", ") + " or " + v.choices[n-1]
}
func (v *choiceValue) String() string { return *v.p }
func (v *choiceValue) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return errors.New(v.want())
}

type sizeValue struct{ p *int64 }

func (v *sizeValue) want() string { return "want a size like 5GiB, 500MB or 1048576 (0: no limit)" }
func (v *sizeValue) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if *v.p != 0 && *v.p%u.n == 0 {
			return strconv.FormatInt(*v.p/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(*v.p, 10)
}
func (v *sizeValue) Set(s string) error {
	n, err := app.ParseSize(s)
	if err != nil {
		return errors.New(v.want())
	}
	*v.p = n
	return nil
}

// intValue is a whole number that ok accepts.
type intValue struct {
	p    *int
	ok   func(int) bool
	text string
}

func (v *intValue) want() string   { return v.text }
func (v *intValue) String() string { return strconv.Itoa(*v.p) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || !v.ok(n) {
		return errors.New(v.text)
	}
	*v.p = n
	return nil
}

type scheduleValue struct{ p *string }

func (v *scheduleValue) want() string {
	return `want a cron spec like "0 3 * * *", "@every 5m" or "CRON_TZ=Europe/Berlin 0 3 * * *"`
}
func (v *scheduleValue) String() string { return *v.p }
func (v *scheduleValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if _, err := app.ParseSchedule(s); err != nil {
		return fmt.Errorf("%v; %s", err, v.want())
	}
	*v.p = s
	return nil
}

// scheduleListValue is the webhook retry schedule: 1 to 30 waits.
type scheduleListValue struct{ p *[]time.Duration }

func (v *scheduleListValue) want() string {
	return "want 1 to 30 comma-separated waits like 5s,5m,30m, each at most 168h"
}
func (v *scheduleListValue) String() string {
	parts := make([]string, len(*v.p))
	for i, d := range *v.p {
		parts[i] = shortDuration(d)
	}
	return strings.Join(parts, ",")
}
func (v *scheduleListValue) Set(s string) error {
	waits, err := parseDurations(s)
	if err != nil || len(waits) > 30 {
		return errors.New(v.want())
	}
	for _, d := range waits {
		if d > 168*time.Hour {
			return errors.New(v.want())
		}
	}
	*v.p = waits
	return nil
}

// parseDurations reads a comma-separated list of positive durations ("5s,5m,2h").
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

// listValue is a comma-separated list whose every item ok accepts.
type listValue struct {
	p    *[]string
	ok   func(string) bool
	text string
}

func (v *listValue) want() string   { return v.text }
func (v *listValue) String() string { return strings.Join(*v.p, ",") }
func (v *listValue) Set(s string) error {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		if !v.ok(item) {
			return errors.New(v.text)
		}
		out = append(out, item)
	}
	*v.p = out
	return nil
}

// isOrigin accepts a browser origin (https://app.example.org) or "*".
func isOrigin(o string) bool {
	if o == "*" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		(u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil
}

// isNetwork accepts a CIDR prefix or an IP address.
func isNetwork(n string) bool {
	if _, err := netip.ParsePrefix(n); err == nil {
		return true
	}
	_, err := netip.ParseAddr(n)
	return err == nil
}
