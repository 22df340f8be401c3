package app

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/tus"
	"github.com/robfig/cron/v3"
)

// Config is everything the portal needs to run. main fills it from flags and
// the environment; tests fill it directly.
type Config struct {
	// Listen is the TCP address of the HTTP server ("127.0.0.1:8080").
	Listen string
	// DataDir holds the database and the uploads; Open creates it.
	DataDir string
	// TempDir, when set, is the process's temporary directory (TMPDIR, used
	// by SQLite and Go for temporary files); Open creates it when missing.
	// The Docker image points it into the data volume, so a read-only root
	// file system still has one.
	TempDir string
	// PublicURL is the URL clients reach the portal at; it is the events'
	// source and the base of the links the portal hands out. Empty means
	// http://<listen address>.
	PublicURL string
	// MetricsListen, when set, serves /metrics on this address only (for
	// example a private interface) instead of on Listen.
	MetricsListen string
	// TrustProxy makes tus honour X-Forwarded-Host/-Proto and Forwarded when
	// it builds upload URLs (set it behind a reverse proxy).
	TrustProxy bool
	// CORSOrigins are browser origins allowed to use the tus endpoint.
	CORSOrigins []string
	// IETFDraft switches on the IETF resumable-upload draft next to tus 1.0.
	IETFDraft bool
	// MaxUploadSize is the largest upload in bytes (0: no limit).
	MaxUploadSize int64
	// UserQuota is an account's storage quota in bytes unless an admin
	// set its own (0: no limit); AnonymousQuota is the one all anonymous
	// uploads share. Stored files and the declared lengths of uploads in
	// progress count.
	UserQuota      int64
	AnonymousQuota int64
	// MinFreeSpace is the free space the data directory keeps: below it new
	// uploads and PATCHes get 507 and /readyz says why (0: no reserve).
	MinFreeSpace int64
	// Bucket names the storage bucket in the storage pointers of files on
	// local storage (the file system has none).
	Bucket string
	// S3, when set, stores uploads in an S3-compatible bucket instead of
	// the data directory (credentials come only from the AWS SDK's default
	// chain; InstanceID is filled from the database).
	S3 *tus.S3Config
	// FileTTL is how long a stored file lives by default; FileTTLMax caps
	// what an upload may ask for.
	FileTTL    time.Duration
	FileTTLMax time.Duration
	// ExpiryNotifyBefore is how long before its expiry a file's
	// file.expiring notice is sent.
	ExpiryNotifyBefore time.Duration
	// ExpirySchedule and CleanupSchedule are the cron specs of the
	// notifier and the cleanup jobs (5 fields, or "@every 1m", "@hourly").
	ExpirySchedule  string
	CleanupSchedule string
	// IncompleteTTL is how long an unfinished upload (or a part of a
	// concatenation) may go untouched before the cleanup removes it.
	IncompleteTTL time.Duration
	// HistoryRetention is how long the cleanup keeps the events of deleted
	// files (and test events) with their deliveries and attempts, once
	// every delivery is finished; negative keeps them forever.
	HistoryRetention time.Duration
	// SweepInterval is how often completed uploads without a file row are
	// looked for (they are also looked for at start-up).
	SweepInterval time.Duration
	// ShutdownTimeout bounds how long Close waits for open requests.
	ShutdownTimeout time.Duration
	// Version is the build's version string.
	Version string
	// AnonymousUploads lets clients without credentials create uploads
	// (recorded with a null actor) and continue them.
	AnonymousUploads bool
	// AdminPassword is the password of the user "admin" created on first
	// start; empty means a random one, printed once to Console.
	AdminPassword string
	// Console receives one-time notices meant for the operator, not the
	// log (the generated admin password); nil means standard output.
	Console io.Writer
	// AuthRateLimit is how many login and token requests one client
	// address may make per minute; 0 means DefaultAuthRateLimit, a
	// negative number no limit.
	AuthRateLimit int
	// passwordCost is the bcrypt cost; 0 means DefaultPasswordCost (tests
	// lower it).
	passwordCost int
	// AllowPrivateEndpoints lets webhook endpoints be on loopback, private,
	// link-local and other non-public addresses (single-host setups).
	AllowPrivateEndpoints bool
	// EndpointAllowCIDRs are non-public networks webhook endpoints may be
	// on even without AllowPrivateEndpoints ("10.1.0.0/16", "127.0.0.1").
	EndpointAllowCIDRs []string
	// DeliveryTimeout bounds one webhook request.
	DeliveryTimeout time.Duration
	// DeliveryWorkers bounds the webhook requests in flight;
	// DeliveryPerEndpoint bounds them per endpoint.
	DeliveryWorkers     int
	DeliveryPerEndpoint int
	// DeliverySchedule is the wait before each retry of a failed webhook
	// delivery; after the last one the delivery is failed.
	DeliverySchedule []time.Duration
	// EndpointDisableAfter disables an endpoint whose deliveries have all
	// failed for this long (negative: never).
	EndpointDisableAfter time.Duration
	// SecretRotationGrace is how long an endpoint's previous secret keeps
	// signing after a rotation (unless the rotation asks otherwise).
	SecretRotationGrace time.Duration
	// endpointAllow is EndpointAllowCIDRs parsed; deliveryPoll and
	// deliveryJitter tune the dispatcher in tests (0: defaults).
	endpointAllow  []netip.Prefix
	deliveryPoll   time.Duration
	deliveryJitter float64
	// wrapHandler, when set, wraps the whole HTTP handler (tests check
	// every response with it: error bodies, the OpenAPI contract).
	wrapHandler func(http.Handler) http.Handler
	// sqlDriver, when set, names the database/sql driver the portal opens
	// its database with instead of "sqlite" (tests record the statements
	// the portal runs through a driver wrapping it).
	sqlDriver string
	// Logger receives the portal's logs; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
}

// Defaults for the zero values of Config.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./data"
	DefaultBucket          = "uploads"
	DefaultFileTTL         = 7 * 24 * time.Hour
	DefaultFileTTLMax      = 30 * 24 * time.Hour
	DefaultSweepInterval   = 5 * time.Minute
	DefaultShutdownTimeout = 30 * time.Second
)

// Defaults of the storage limits (as `portal serve` flags take them).
const (
	DefaultUserQuota      = 50 << 30
	DefaultAnonymousQuota = 5 << 30
	DefaultMinFreeSpace   = 1 << 30
)

// Defaults of the expiry jobs (expiry.go, cleanup.go).
const (
	DefaultExpiryNotifyBefore = 24 * time.Hour
	DefaultExpirySchedule     = "@every 1m"
	DefaultCleanupSchedule    = "@every 5m"
	DefaultIncompleteTTL      = 24 * time.Hour
	DefaultHistoryRetention   = 90 * 24 * time.Hour
)

// Defaults of webhook delivery.
const (
	DefaultDeliveryTimeout      = outbox.DefaultTimeout
	DefaultDeliveryWorkers      = outbox.DefaultWorkers
	DefaultDeliveryPerEndpoint  = outbox.DefaultPerEndpoint
	DefaultEndpointDisableAfter = outbox.DefaultDisableAfter
	DefaultSecretRotationGrace  = 24 * time.Hour
	// maxSecretRotationGrace bounds the grace period of a rotation.
	maxSecretRotationGrace = 7 * 24 * time.Hour
)

// DefaultDeliverySchedule is the default wait before each webhook retry.
var DefaultDeliverySchedule = outbox.DefaultSchedule

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.DataDir = cmp.Or(c.DataDir, DefaultDataDir)
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	c.FileTTL = cmp.Or(c.FileTTL, DefaultFileTTL)
	c.FileTTLMax = cmp.Or(c.FileTTLMax, DefaultFileTTLMax)
	c.ExpiryNotifyBefore = cmp.Or(c.ExpiryNotifyBefore, DefaultExpiryNotifyBefore)
	c.ExpirySchedule = cmp.Or(c.ExpirySchedule, DefaultExpirySchedule)
	c.CleanupSchedule = cmp.Or(c.CleanupSchedule, DefaultCleanupSchedule)
	c.IncompleteTTL = cmp.Or(c.IncompleteTTL, DefaultIncompleteTTL)
	c.HistoryRetention = cmp.Or(c.HistoryRetention, DefaultHistoryRetention)
	c.SweepInterval = cmp.Or(c.SweepInterval, DefaultSweepInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.Version = cmp.Or(c.Version, "dev")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	var errs []error
	if c.FileTTL < 0 || c.FileTTLMax < 0 {
		errs = append(errs, errors.New("file TTLs must be positive"))
	}
	if c.FileTTL > c.FileTTLMax {
		errs = append(errs, fmt.Errorf("file TTL %s is longer than the maximum %s", c.FileTTL, c.FileTTLMax))
	}
	if c.ExpiryNotifyBefore < 0 || c.IncompleteTTL < 0 {
		errs = append(errs, errors.New("expiry notice window and incomplete-upload TTL must be positive"))
	}
	for _, sc := range [][2]string{{"expiry", c.ExpirySchedule}, {"cleanup", c.CleanupSchedule}} {
		if _, err := ParseSchedule(sc[1]); err != nil {
			errs = append(errs, fmt.Errorf("%s schedule %q: %w", sc[0], sc[1], err))
		}
	}
	if c.MaxUploadSize < 0 || c.UserQuota < 0 || c.AnonymousQuota < 0 || c.MinFreeSpace < 0 {
		errs = append(errs, errors.New("upload size limit, quotas and free-space reserve must not be negative"))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public URL %q must be an absolute http(s) URL", c.PublicURL))
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	errs = append(errs, c.deliveryDefaults()...)
	return c, errors.Join(errs...)
}

// deliveryDefaults fills and checks the webhook delivery settings.
func (c *Config) deliveryDefaults() []error {
	c.DeliveryTimeout = cmp.Or(c.DeliveryTimeout, DefaultDeliveryTimeout)
	c.DeliveryWorkers = cmp.Or(c.DeliveryWorkers, DefaultDeliveryWorkers)
	c.DeliveryPerEndpoint = cmp.Or(c.DeliveryPerEndpoint, DefaultDeliveryPerEndpoint)
	if c.DeliverySchedule == nil {
		c.DeliverySchedule = outbox.DefaultSchedule
	}
	c.EndpointDisableAfter = cmp.Or(c.EndpointDisableAfter, DefaultEndpointDisableAfter)
	c.SecretRotationGrace = cmp.Or(c.SecretRotationGrace, DefaultSecretRotationGrace)
	var errs []error
	if c.DeliveryTimeout < 0 || c.DeliveryWorkers < 0 || c.DeliveryPerEndpoint < 0 || c.SecretRotationGrace < 0 {
		errs = append(errs, errors.New("delivery timeout, workers, per-endpoint limit and secret grace must be positive"))
	}
	if c.SecretRotationGrace > maxSecretRotationGrace {
		errs = append(errs, fmt.Errorf("secret rotation grace may be at most %s", maxSecretRotationGrace))
	}
	if len(c.DeliverySchedule) == 0 || len(c.DeliverySchedule) > 30 {
		errs = append(errs, errors.New("the delivery retry schedule needs 1 to 30 waits"))
	}
	for _, d := range c.DeliverySchedule {
		if d <= 0 || d > 7*24*time.Hour {
			errs = append(errs, fmt.Errorf("delivery retry wait %s must be positive and at most 168h", d))
			break
		}
	}
	c.endpointAllow = nil
	for _, s := range c.EndpointAllowCIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.endpointAllow = append(c.endpointAllow, p)
	}
	return errs
}

// ParseSchedule is cron.ParseStandard without its panic on a time zone
// with nothing after it ("TZ=UTC": robfig/cron v3.0.1 slices up to the
// first space, which is not there).
func ParseSchedule(spec string) (cron.Schedule, error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		return nil, errors.New("a time zone needs a schedule after it (TZ=Europe/Berlin 0 3 * * *)")
	}
	return cron.ParseStandard(spec)
}

// parsePrefix reads a CIDR prefix or a single IP address.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("endpoint allow-list entry %q is not a CIDR prefix or an IP address", s)
}
