package app

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// FuzzConfig: the values an operator passes as flags or environment that
// the portal parses itself: cron specs of the expiry jobs, the public URL,
// the endpoint allow-list. Properties: no panic; a refusal is an error from
// withDefaults (portal serve prints it and exits 2); an accepted schedule
// is one the job scheduler takes at start-up and that the dashboard can
// show the next run of; an accepted public URL is an absolute http(s) URL
// without a trailing slash; accepted allow-list entries are prefixes.
func FuzzConfig(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, schedule, publicURL, cidr string) {
		var cidrs []string
		if cidr != "" {
			cidrs = []string{cidr}
		}
		c, err := Config{ExpirySchedule: schedule, CleanupSchedule: schedule, PublicURL: publicURL,
			EndpointAllowCIDRs: cidrs}.withDefaults()
		if err != nil {
			return
		}
		if _, err := cron.New(cron.WithLocation(time.UTC)).AddFunc(c.ExpirySchedule, func() {}); err != nil {
			t.Fatalf("schedule %q accepted by the config, refused at start-up: %v", c.ExpirySchedule, err)
		}
		sched, err := cron.ParseStandard(c.CleanupSchedule)
		if err != nil {
			t.Fatalf("schedule %q: %v", c.CleanupSchedule, err)
		}
		if next := sched.Next(now); !next.IsZero() && !next.After(now) {
			t.Fatalf("schedule %q: next run %s is not after %s", c.CleanupSchedule, next, now)
		}
		if c.PublicURL != "" {
			u, err := url.Parse(c.PublicURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(c.PublicURL, "/") {
				t.Fatalf("public URL %q accepted as %q (%v)", publicURL, c.PublicURL, err)
			}
		}
		for _, p := range c.endpointAllow {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("allow-list entry %q became %s", cidr, p)
			}
		}
	})
}
