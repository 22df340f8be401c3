package app

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseTTL: a TTL from upload metadata or the API (whole seconds or a
// Go duration). Properties: an accepted TTL is positive and reads back the
// same from its own String(); whole seconds mean that many seconds (capped
// at the longest Duration); checkTTLMeta refuses exactly what parseTTL
// refuses; fileTTL is always within (0, FileTTLMax].
func FuzzParseTTL(f *testing.F) {
	a := &App{cfg: Config{FileTTL: DefaultFileTTL, FileTTLMax: DefaultFileTTLMax}}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTTL(s)
		metaErr := checkTTLMeta(map[string]string{ttlMetaKey: s})
		if (err != nil) != (metaErr != nil) && s != "" {
			t.Fatalf("parseTTL(%q): %v, but checkTTLMeta: %v", s, err, metaErr)
		}
		ttl := a.fileTTL(map[string]string{ttlMetaKey: s})
		if ttl <= 0 || ttl > a.cfg.FileTTLMax {
			t.Fatalf("fileTTL(%q) = %s", s, ttl)
		}
		if err != nil {
			if ttl != a.cfg.FileTTL {
				t.Fatalf("fileTTL of the refused %q = %s, want the default", s, ttl)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("parseTTL(%q) = %s", s, d)
		}
		if ttl != min(d, a.cfg.FileTTLMax) {
			t.Fatalf("fileTTL(%q) = %s, want %s", s, ttl, min(d, a.cfg.FileTTLMax))
		}
		if back, err := parseTTL(d.String()); err != nil || back != d {
			t.Fatalf("parseTTL(%q) = %s, which reads back as %s (%v)", s, d, back, err)
		}
		digits := strings.TrimSpace(s)
		if strings.Trim(digits, "0123456789") == "" {
			n, err := strconv.ParseUint(digits, 10, 64)
			want := time.Duration(math.MaxInt64)
			if err == nil && n <= math.MaxInt64/uint64(time.Second) {
				want = time.Duration(n) * time.Second
			}
			if d != want {
				t.Fatalf("parseTTL(%q) = %s, want %s", s, d, want)
			}
		}
	})
}
