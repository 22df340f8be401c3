package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Config is everything the portal needs to run. main fills it from flags and
// the environment; tests fill it directly.
type Config struct {
	// Listen is the TCP address of the HTTP server ("127.0.0.1:8080").
	Listen string
	// DataDir holds the database and the uploads.
	DataDir string
	// PublicURL is the URL clients reach the portal at; it is the events'
	// source and the base of the links the portal hands out. Empty means
	// http://<listen address>.
	PublicURL string
	// TrustProxy makes tus honour X-Forwarded-Host/-Proto and Forwarded when
	// it builds upload URLs (set it behind a reverse proxy).
	TrustProxy bool
	// CORSOrigins are browser origins allowed to use the tus endpoint.
	CORSOrigins []string
	// IETFDraft switches on the IETF resumable-upload draft next to tus 1.0.
	IETFDraft bool
	// MaxUploadSize is the largest upload in bytes (0: no limit).
	MaxUploadSize int64
	// Bucket names the storage bucket in event storage pointers.
	Bucket string
	// FileTTL is how long a stored file lives by default; FileTTLMax caps
	// what an upload may ask for.
	FileTTL    time.Duration
	FileTTLMax time.Duration
	// SweepInterval is how often completed uploads without a file row are
	// looked for (they are also looked for at start-up).
	SweepInterval time.Duration
	// ShutdownTimeout bounds how long Close waits for open requests.
	ShutdownTimeout time.Duration
	// Version is the build's version string.
	Version string
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

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.FileTTL == 0 {
		c.FileTTL = DefaultFileTTL
	}
	if c.FileTTLMax == 0 {
		c.FileTTLMax = DefaultFileTTLMax
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
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
	if c.MaxUploadSize < 0 {
		errs = append(errs, errors.New("max upload size must not be negative"))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public URL %q must be an absolute http(s) URL", c.PublicURL))
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	return c, errors.Join(errs...)
}
