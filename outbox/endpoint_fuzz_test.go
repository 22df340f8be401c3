package outbox

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseEndpointURL: an endpoint URL from the API or the web UI.
// Properties: an accepted URL is an absolute http(s) URL with a host, a
// valid port, no credentials and no fragment, and the dispatcher can build
// its request from the saved string; under the default address policy an
// accepted IP literal is public and the name localhost is refused; with
// private endpoints allowed, the policy refuses nothing.
func FuzzParseEndpointURL(f *testing.F) {
	strict, allowLoopback, open := NetPolicy{}, NetPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		NetPolicy{AllowPrivate: true}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseEndpointURL(raw)
		if err != nil {
			if _, ok := err.(*ValidationError); !ok {
				t.Fatalf("ParseEndpointURL(%q): %T %v, want a ValidationError", raw, err, err)
			}
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.Fragment != "" ||
			strings.Contains(raw, "#") || len(raw) > MaxURLLength {
			t.Fatalf("ParseEndpointURL(%q) accepted %#v", raw, u)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				t.Fatalf("ParseEndpointURL(%q): port %q", raw, p)
			}
		}
		req, err := http.NewRequest(http.MethodPost, raw, nil)
		if err != nil || req.URL.Hostname() != u.Hostname() {
			t.Fatalf("ParseEndpointURL(%q) accepted a URL the dispatcher cannot request: %v", raw, err)
		}
		if open.CheckURL(u) != nil {
			t.Fatalf("CheckURL(%q) refused with private endpoints allowed", raw)
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		for _, pol := range []NetPolicy{strict, allowLoopback} {
			if err := pol.CheckURL(u); err != nil {
				if _, ok := err.(*ValidationError); !ok {
					t.Fatalf("CheckURL(%q): %T %v, want a ValidationError", raw, err, err)
				}
				continue
			}
			addr, err := netip.ParseAddr(host)
			if err != nil {
				if (host == "localhost" || strings.HasSuffix(host, ".localhost")) && len(pol.Allow) == 0 {
					t.Fatalf("CheckURL(%q) accepted a loopback name", raw)
				}
				continue
			}
			a := addr.Unmap()
			inAllow := len(pol.Allow) > 0 && pol.Allow[0].Contains(a)
			if !inAllow && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() ||
				a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast()) {
				t.Fatalf("CheckURL(%q) accepted the non-public address %s", raw, a)
			}
		}
	})
}

// FuzzEventTypes: an endpoint's event_types and the types it matches.
// Properties: accepted lists hold at most MaxEventTypes distinct, bounded
// entries, each an exact type or a "prefix.*"; MatchEventType agrees with
// its definition (an empty list matches all, an entry its exact type, an
// entry ending in ".*" every type starting with what precedes the "*").
func FuzzEventTypes(f *testing.F) {
	f.Fuzz(func(t *testing.T, list, typ string) {
		var types []string
		if list != "" {
			types = strings.Split(list, ",")
		}
		if err := CheckEventTypes(types); err == nil {
			seen := map[string]bool{}
			for _, p := range types {
				if !wellFormedPattern(p) || seen[p] || len(types) > MaxEventTypes {
					t.Fatalf("CheckEventTypes accepted %q", types)
				}
				seen[p] = true
			}
		} else if _, ok := err.(*ValidationError); !ok {
			t.Fatalf("CheckEventTypes(%q): %T %v, want a ValidationError", types, err, err)
		}
		want := len(types) == 0
		for _, p := range types {
			if len(p) >= 2 && p[len(p)-2:] == ".*" {
				prefix := p[:len(p)-1]
				want = want || len(typ) >= len(prefix) && typ[:len(prefix)] == prefix
			} else {
				want = want || p == typ
			}
		}
		if got := MatchEventType(types, typ); got != want {
			t.Fatalf("MatchEventType(%q, %q) = %v, want %v", types, typ, got, want)
		}
	})
}

// wellFormedPattern: dot-separated words of a-z, 0-9 and _, the last of
// which may be "*"; at most maxEventTypeLength bytes.
func wellFormedPattern(p string) bool {
	words := strings.Split(strings.TrimSuffix(p, ".*"), ".")
	for _, w := range words {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			return false
		}
	}
	return len(p) <= maxEventTypeLength
}

// FuzzParseRetryAfter: a Retry-After header of a webhook receiver (seconds
// or an HTTP date). Properties: the wait is never negative; unreadable or
// absent is 0 (the schedule decides); otherwise at least minRetryAfter, and
// whole seconds are taken as they are, up to a year; after the dispatcher's
// cap the wait is at most RetryAfterMax.
func FuzzParseRetryAfter(f *testing.F) {
	d := &Dispatcher{cfg: DispatcherConfig{RetryAfterMax: DefaultRetryAfterMax, Schedule: DefaultSchedule}}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix%(1<<40), 0).UTC()
		w := parseRetryAfter(v, now)
		if w < 0 || (w != 0 && w < minRetryAfter) {
			t.Fatalf("parseRetryAfter(%q) = %s", v, w)
		}
		if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			want := time.Duration(0)
			if secs >= 0 {
				want = max(time.Duration(min(secs, 365*24*3600))*time.Second, minRetryAfter)
			}
			if w != want {
				t.Fatalf("parseRetryAfter(%q) = %s, want %s", v, w, want)
			}
		}
		if w > 0 {
			if next := d.nextWait(1, result{retryAfter: w}); next < minRetryAfter || next > d.cfg.RetryAfterMax {
				t.Fatalf("Retry-After %q: next wait %s", v, next)
			}
		}
	})
}
