package app

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimiter limits requests per client address.
type rateLimiter struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// newRateLimiter allows perMinute requests a minute per key, in bursts of
// as many; a negative perMinute disables the limit.
func newRateLimiter(perMinute int) *rateLimiter {
	if perMinute < 0 {
		return &rateLimiter{limit: rate.Inf}
	}
	return &rateLimiter{limit: rate.Every(time.Minute / time.Duration(perMinute)), burst: perMinute,
		m: map[string]*limiterEntry{}}
}

// allow reports whether key may make a request now, and if not, how long
// to wait.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 {
		for k, e := range l.m {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(l.m, k)
			}
		}
	}
	e := l.m[key]
	if e == nil {
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration(float64(time.Second) / float64(l.limit))
}

// clientAddr is the address rate limits apply to: the peer, or behind a
// trusted proxy the address the proxy appended to X-Forwarded-For.
func (a *App) clientAddr(r *http.Request) string {
	if a.cfg.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateLimited answers 429 and returns true when r's client is over the
// login/token limit.
func (a *App) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := a.auth.limiter.allow(a.clientAddr(r))
	if ok {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	a.writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Message: "too many attempts; try again later"})
	return true
}
