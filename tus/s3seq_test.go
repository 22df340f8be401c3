package tus

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultProxy stands between the portal and the real S3 server: it passes
// requests on, records the parts and .part objects sent, and while fail
// says so answers 500 to them.
type faultProxy struct {
	*httptest.Server
	mu   sync.Mutex
	sent []string // "part 2", ".part"
	fail func(what string) bool
	// seen has every request's method, path, query and headers.
	seen []*http.Request
	// delay holds every part's request this long first.
	delay time.Duration
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host header the request was signed for
	p := &faultProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, &http.Request{Method: r.Method, URL: r.URL, Header: r.Header.Clone()})
		p.mu.Unlock()
		what := ""
		switch {
		case r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != "":
			what = "part " + r.URL.Query().Get("partNumber")
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".part"):
			what = ".part"
		}
		if what != "" {
			time.Sleep(p.delay)
			p.mu.Lock()
			p.sent = append(p.sent, what)
			fail := p.fail != nil && p.fail(what)
			p.mu.Unlock()
			if fail {
				// Slowly, so that in stock s3store the next part would be on its way.
				io.Copy(io.Discard, r.Body)
				time.Sleep(300 * time.Millisecond)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *faultProxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sent
	p.sent = nil
	return s
}

// When the bucket refuses a part, no later part of the request (nor its
// short tail, parked in a .part object) is sent: stock s3store sends up to
// ten parts at once, and a later part accepted after an earlier one failed
// leaves a gap that the upload's offset (the sum of its parts) hides. The
// client resumes from the parts the bucket holds; the digest, saved part
// by part, continues from them with nothing read back.
func TestS3PartsInOrder(t *testing.T) {
	e := newS3Env(t)
	proxy := newFaultProxy(t, e.srv.URL)
	cfg := e.config("portal-a")
	cfg.S3.Endpoint = proxy.URL
	p := e.start(t, cfg)
	data := random(t, 30*mib)
	url := p.create(int64(len(data)), "seq.bin")

	proxy.mu.Lock()
	proxy.fail = func(what string) bool { return what == "part 2" }
	proxy.mu.Unlock()
	resp, body := p.patch(url, 0, data[:17*mib], nil) // parts 1-3 and a 2 MiB tail
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("PATCH with part 2 refused: %d %s", resp.StatusCode, body)
	}
	sent := proxy.take()
	t.Logf("sent to the bucket: %v", sent)
	if slices.Contains(sent, "part 3") || slices.Contains(sent, ".part") || !slices.Contains(sent, "part 2") {
		t.Fatalf("sent %v; want parts 1 and 2 (retried) only", sent)
	}
	proxy.mu.Lock()
	proxy.fail = nil
	proxy.mu.Unlock()

	if off := p.offset(url); off != 5*mib {
		t.Fatalf("offset after the refused part: %d, want %d", off, 5*mib)
	}
	p.mustPatch(url, 5*mib, data[5*mib:])
	e.checkStored(t, idOf(url), data)
	noReadBack(t, p.s)
}
