package main

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/doorito/portal/app"
)

// FuzzParseSize: --max-upload-size (PORTAL_MAX_UPLOAD_SIZE). Properties:
// an accepted size is not negative, reads back the same as plain bytes,
// and is the number times its unit exactly (no overflow).
func FuzzParseSize(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := app.ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("app.ParseSize(%q) = %d", s, n)
		}
		if back, err := app.ParseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("app.ParseSize(%q) = %d, which reads back as %d (%v)", s, n, back, err)
		}
		num := strings.TrimSpace(s)
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
			{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
			if d, ok := strings.CutSuffix(num, u.suffix); ok {
				k, err := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
				if err != nil || n/u.mult != k || n%u.mult != 0 {
					t.Fatalf("app.ParseSize(%q) = %d, not %q x %d", s, n, d, u.mult)
				}
				return
			}
		}
	})
}

// FuzzParseDurations: --delivery-retry-schedule. Properties: an accepted
// schedule has one positive wait per comma-separated part.
func FuzzParseDurations(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := parseDurations(s)
		if err != nil {
			return
		}
		if len(ds) != strings.Count(s, ",")+1 {
			t.Fatalf("parseDurations(%q) = %v", s, ds)
		}
		for _, d := range ds {
			if d <= 0 {
				t.Fatalf("parseDurations(%q) = %v", s, ds)
			}
		}
	})
}

// FuzzServeFlags: `portal serve` flags (one per line of args) and PORTAL_*
// environment variables (NAME=value lines of env), as main parses them
// and app.New checks them. Properties: no panic; what parses and passes
// the checks has a non-negative size limit and positive retry waits, and
// its log settings build a logger. (*_FILE variables, which name a file
// to read, are left out.)
func FuzzServeFlags(f *testing.F) {
	f.Fuzz(func(t *testing.T, args, env string) {
		vars := map[string]string{}
		for _, line := range strings.Split(env, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasSuffix(k, "_FILE") {
				vars[k] = v
			}
		}
		var argv []string
		for _, a := range strings.Split(args, "\n") {
			if a != "" {
				argv = append(argv, a)
			}
		}
		cfg, fl, err := parseServe(argv, func(k string) string { return vars[k] }, io.Discard)
		if err != nil {
			return
		}
		if newLogger(io.Discard, fl.logLevel, fl.logFormat) == nil {
			t.Fatalf("no logger for level %q, format %q", fl.logLevel, fl.logFormat)
		}
		if _, err := app.New(cfg); err != nil {
			return
		}
		if cfg.MaxUploadSize < 0 {
			t.Fatalf("max upload size %d", cfg.MaxUploadSize)
		}
		for _, d := range cfg.DeliverySchedule {
			if d <= 0 {
				t.Fatalf("retry schedule %v", cfg.DeliverySchedule)
			}
		}
	})
}
