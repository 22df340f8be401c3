package app

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorito/portal/outbox"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// whReceiver is a webhook consumer on 127.0.0.1. It verifies every
// delivery's signature with the Go standardwebhooks library as it arrives,
// with each secret that must sign it (and checks that the wrong ones do
// not), and keeps the deliveries; when the test ends it verifies them all
// again with the npm standardwebhooks library and validates each payload
// against its event type's JSON Schema.
type whReceiver struct {
	tb  testing.TB
	srv *httptest.Server
	// now is the receiver's clock: the portal's, when a test fakes time
	// (then the timestamp is compared with it instead of the real clock).
	now     func() time.Time
	fakeNow bool

	mu      sync.Mutex
	secrets []string // must verify each delivery
	wrong   []string // must not verify any
	respond func(n int, r *http.Request) (status int, hdr http.Header, body string)
	got     []whDelivery
	ch      chan whDelivery
}

// whDelivery is one request the receiver got.
type whDelivery struct {
	Header  http.Header
	Body    []byte
	At      time.Time
	Secrets []string
	Wrong   []string
	Status  int // what the receiver answered
}

// payload decodes the delivery's body.
func (d whDelivery) payload(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.Body, &m); err != nil {
		tb.Fatalf("delivery body is not JSON: %v: %s", err, d.Body)
	}
	return m
}

func (d whDelivery) eventID() string  { return d.Header.Get("webhook-id") }
func (d whDelivery) delivery() string { return d.Header.Get("X-Webhook-Delivery") }

// newWhReceiver starts a receiver that answers 204 until told otherwise.
func newWhReceiver(tb testing.TB) *whReceiver {
	tb.Helper()
	rc := &whReceiver{tb: tb, now: time.Now, ch: make(chan whDelivery, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	tb.Cleanup(func() {
		rc.srv.Close()
		rc.verifyAll()
	})
	return rc
}

// URL is where the portal should deliver.
func (rc *whReceiver) URL() string { return rc.srv.URL + "/hook" }

// setSecrets sets the secrets that must verify the next deliveries, and
// those that must not.
func (rc *whReceiver) setSecrets(valid []string, wrong ...string) {
	rc.mu.Lock()
	rc.secrets, rc.wrong = valid, wrong
	rc.mu.Unlock()
}

// setRespond sets how the receiver answers its n-th request (1-based).
func (rc *whReceiver) setRespond(fn func(n int, r *http.Request) (int, http.Header, string)) {
	rc.mu.Lock()
	rc.respond = fn
	rc.mu.Unlock()
}

// answer makes the receiver answer every request with status.
func (rc *whReceiver) answer(status int) {
	rc.setRespond(func(int, *http.Request) (int, http.Header, string) { return status, nil, "" })
}

func (rc *whReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.tb.Errorf("receiver: read body: %v", err)
		return
	}
	rc.mu.Lock()
	d := whDelivery{Header: r.Header.Clone(), Body: body, At: rc.now(), Secrets: rc.secrets, Wrong: rc.wrong}
	rc.got = append(rc.got, d)
	n := len(rc.got)
	respond := rc.respond
	rc.mu.Unlock()
	rc.check(r, d)
	status, hdr, text := http.StatusNoContent, http.Header(nil), ""
	if respond != nil {
		status, hdr, text = respond(n, r)
	}
	rc.mu.Lock()
	rc.got[n-1].Status = status
	d.Status = status
	rc.mu.Unlock()
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	io.WriteString(w, text)
	rc.ch <- d
}

// check verifies one delivery as it arrives (from the server's goroutine,
// so it reports with Errorf).
func (rc *whReceiver) check(r *http.Request, d whDelivery) {
	tb := rc.tb
	h := d.Header
	if r.Method != http.MethodPost || r.URL.Path != "/hook" {
		tb.Errorf("receiver: %s %s, want POST /hook", r.Method, r.URL.Path)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("receiver: Content-Type %q", ct)
	}
	if ua := h.Get("User-Agent"); !strings.HasPrefix(ua, "doorito-portal/") {
		tb.Errorf("receiver: User-Agent %q", ua)
	}
	if h.Get("X-Webhook-Delivery") == "" {
		tb.Errorf("receiver: no X-Webhook-Delivery header")
	}
	if problem := checkWebhook(r, d.Body); problem != "" {
		tb.Errorf("receiver: OpenAPI contract: %s", problem)
	}
	var head struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(d.Body, &head); err != nil || head.EventID != h.Get("webhook-id") {
		tb.Errorf("receiver: webhook-id %q, payload event_id %q (%v)", h.Get("webhook-id"), head.EventID, err)
	}
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || d.At.Sub(time.Unix(ts, 0)).Abs() > time.Minute {
		tb.Errorf("receiver: webhook-timestamp %q is not the time of sending (%s)", h.Get("webhook-timestamp"), d.At)
	}
	if len(d.Secrets) == 0 {
		tb.Errorf("receiver: a delivery arrived before the test said which secret signs it")
	}
	for _, s := range d.Secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			tb.Errorf("receiver: secret: %v", err)
			continue
		}
		if rc.fakeNow {
			// The library compares the timestamp with the real clock; the
			// portal's clock is fake here (checked against it above).
			err = wh.VerifyIgnoringTimestamp(d.Body, h)
		} else {
			err = wh.Verify(d.Body, h)
		}
		if err != nil {
			tb.Errorf("receiver: Go standardwebhooks rejects delivery %s: %v\nwebhook-signature: %s",
				d.delivery(), err, h.Get("webhook-signature"))
		}
		if wh.VerifyIgnoringTimestamp(append(bytes.Clone(d.Body), ' ', 'x'), h) == nil {
			tb.Errorf("receiver: an altered body verifies")
		}
	}
	for _, s := range d.Wrong {
		wh, _ := standardwebhooks.NewWebhook(s)
		if wh.VerifyIgnoringTimestamp(d.Body, h) == nil {
			tb.Errorf("receiver: delivery %s verifies with a secret that must not sign it", d.delivery())
		}
	}
}

// next waits for the next delivery.
func (rc *whReceiver) next(timeout time.Duration) whDelivery {
	rc.tb.Helper()
	select {
	case d := <-rc.ch:
		return d
	case <-time.After(timeout):
		rc.tb.Fatalf("receiver %s: no delivery within %s", rc.URL(), timeout)
		return whDelivery{}
	}
}

// none checks that no delivery arrives within d.
func (rc *whReceiver) none(d time.Duration) {
	rc.tb.Helper()
	select {
	case got := <-rc.ch:
		rc.tb.Fatalf("receiver %s: unexpected delivery of %s: %s", rc.URL(), got.eventID(), got.Body)
	case <-time.After(d):
	}
}

// deliveries returns what the receiver got so far.
func (rc *whReceiver) deliveries() []whDelivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]whDelivery(nil), rc.got...)
}

// verifyAll validates the payloads against their schemas and verifies
// every delivery with the npm standardwebhooks library.
func (rc *whReceiver) verifyAll() {
	tb := rc.tb
	got := rc.deliveries()
	for _, d := range got {
		var head struct {
			EventType string `json:"event_type"`
		}
		json.Unmarshal(d.Body, &head)
		if EventSchema(head.EventType) != nil {
			if err := validatePayload(tb, head.EventType, d.Body); err != nil {
				tb.Errorf("payload invalid against the %s schema: %v\n%s", head.EventType, err, d.Body)
			}
		}
	}
	whVerifyNPM(tb, got)
}

// whVerifyNPM runs testdata/webhooks/verify.mjs (npm standardwebhooks) over
// deliveries. Without Node or `npm ci` in testdata/webhooks it skips, unless
// PORTAL_REQUIRE_TOOLS is set (make test sets it and runs npm ci).
func whVerifyNPM(tb testing.TB, got []whDelivery) {
	tb.Helper()
	if len(got) == 0 {
		return
	}
	dir, _ := filepath.Abs(filepath.Join("..", "testdata", "webhooks"))
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks"))
	}
	if err != nil {
		if os.Getenv("PORTAL_REQUIRE_TOOLS") != "" {
			tb.Errorf("npm standardwebhooks is not available (%v); run make testdata/webhooks/node_modules", err)
		} else {
			tb.Logf("npm verification skipped: %v (make test runs it)", err)
		}
		return
	}
	type rec struct {
		Headers      map[string]string `json:"headers"`
		BodyBase64   string            `json:"body_base64"`
		ReceivedAtMS int64             `json:"received_at_ms"`
		Secrets      []string          `json:"secrets"`
		WrongSecrets []string          `json:"wrong_secrets"`
	}
	var recs []rec
	for _, d := range got {
		h := map[string]string{}
		for k := range d.Header {
			h[strings.ToLower(k)] = d.Header.Get(k)
		}
		recs = append(recs, rec{Headers: h, BodyBase64: base64.StdEncoding.EncodeToString(d.Body),
			ReceivedAtMS: d.At.UnixMilli(), Secrets: d.Secrets, WrongSecrets: d.Wrong})
	}
	b, _ := json.Marshal(recs)
	file := filepath.Join(tb.TempDir(), "deliveries.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(node, "verify.mjs", file)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Errorf("npm standardwebhooks rejects deliveries: %v\n%s", err, out)
		return
	}
	var sum struct{ Deliveries, Verified, Rejected int }
	if err := json.Unmarshal(bytes.TrimSpace(out), &sum); err != nil || sum.Deliveries != len(got) {
		tb.Errorf("verify.mjs: unexpected output %q (%v)", out, err)
	}
	tb.Logf("npm standardwebhooks verified %d deliveries (%d signatures, %d wrong secrets rejected)",
		sum.Deliveries, sum.Verified, sum.Rejected)
}

// whConfig is a portal that may deliver to 127.0.0.1, with a short retry
// schedule without jitter.
func whConfig() Config {
	return Config{
		AllowPrivateEndpoints: true,
		DeliverySchedule:      []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond},
		DeliveryTimeout:       5 * time.Second,
		deliveryJitter:        -1,
		Version:               "1.2.3-test",
	}
}

// whDo calls the portal's API as its admin; body is JSON-encoded unless it
// is a string.
func whDo(tb testing.TB, a *App, method, path string, body any) (int, []byte) {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.URL()+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp := authDo(tb, req)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// whCall calls the API, checks the status and decodes the JSON answer.
func whCall[T any](tb testing.TB, a *App, method, path string, body any, want int) T {
	tb.Helper()
	status, out := whDo(tb, a, method, path, body)
	if status != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	var v T
	if len(out) > 0 {
		if err := json.Unmarshal(out, &v); err != nil {
			tb.Fatalf("%s %s: not JSON: %v: %s", method, path, err, out)
		}
	}
	return v
}

// whEndpoint creates an endpoint and returns it with its secret.
func whEndpoint(tb testing.TB, a *App, url string, types ...string) createdEndpoint {
	tb.Helper()
	if types == nil {
		types = []string{}
	}
	ep := whCall[createdEndpoint](tb, a, "POST", "/api/v1/endpoints",
		map[string]any{"url": url, "event_types": types, "description": "test receiver"}, http.StatusCreated)
	if !strings.HasPrefix(ep.Secret, "whsec_") {
		tb.Fatalf("new endpoint's secret %q", ep.Secret)
	}
	return ep
}

// whReceiverEndpoint starts a receiver and registers it as an endpoint.
func whReceiverEndpoint(tb testing.TB, a *App, types ...string) (*whReceiver, createdEndpoint) {
	tb.Helper()
	rc := newWhReceiver(tb)
	ep := whEndpoint(tb, a, rc.URL(), types...)
	rc.setSecrets([]string{ep.Secret})
	return rc, ep
}

// whEvent returns an event with its deliveries and attempts.
func whEvent(tb testing.TB, a *App, id string) EventDetail {
	tb.Helper()
	return whCall[EventDetail](tb, a, "GET", "/api/v1/events/"+id, nil, http.StatusOK)
}

// whDelivery returns one delivery with its attempts.
func whGetDelivery(tb testing.TB, a *App, id string) outbox.Delivery {
	tb.Helper()
	return whCall[outbox.Delivery](tb, a, "GET", "/api/v1/deliveries/"+id, nil, http.StatusOK)
}

// whWaitDelivery waits until a delivery satisfies cond.
func whWaitDelivery(tb testing.TB, a *App, id string, timeout time.Duration, what string, cond func(outbox.Delivery) bool) outbox.Delivery {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := whGetDelivery(tb, a, id)
		if cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			tb.Fatalf("delivery %s: not %s within %s: %+v", id, what, timeout, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// whUpload uploads a small file and returns its file.uploaded event id.
func whUpload(tb testing.TB, a *App) string {
	tb.Helper()
	MustUpload(tb, a.URL(), randomBytes(tb, 64), 64, map[string]string{"filename": "hook.bin"})
	page := whCall[outbox.EventPage](tb, a, "GET", "/api/v1/events?type=file.uploaded&limit=1", nil, http.StatusOK)
	if len(page.Items) != 1 {
		tb.Fatalf("no file.uploaded event after the upload")
	}
	return page.Items[0].ID
}

// whSingleDelivery returns the only delivery of an event.
func whSingleDelivery(tb testing.TB, a *App, eventID string) outbox.Delivery {
	tb.Helper()
	ds := whEvent(tb, a, eventID).Deliveries
	if len(ds) != 1 {
		tb.Fatalf("event %s has %d deliveries, want 1", eventID, len(ds))
	}
	return ds[0]
}

func statusCodes(d outbox.Delivery) string {
	var s []string
	for _, at := range d.Attempts {
		if at.StatusCode == nil {
			s = append(s, "none")
		} else {
			s = append(s, fmt.Sprint(*at.StatusCode))
		}
	}
	return strings.Join(s, ",")
}
