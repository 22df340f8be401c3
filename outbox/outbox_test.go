package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	_ "modernc.org/sqlite"
)

// mustOutbox opens a database in a temporary directory with the portal's
// schema (Schema, applied in order) and returns an Outbox on
// it, with a clock the test sets.
func mustOutbox(tb testing.TB) (*Outbox, *time.Time) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "portal.db")
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(ON)"
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		tb.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close(); w.Close() })
	// The outbox's own schema, applied in order as the portal's migrator
	// does.
	names, err := fs.Glob(Schema(), "*.sql")
	if err != nil || len(names) == 0 {
		tb.Fatalf("schema: %v", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(Schema(), n)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := w.Exec(string(b)); err != nil {
			tb.Fatalf("%s: %v", n, err)
		}
	}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	return New(w, r, WithClock(func() time.Time { return now })), &now
}

// appendEvent appends and commits an event of type typ.
func appendEvent(tb testing.TB, o *Outbox, typ string) string {
	tb.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	err := o.inTx(context.Background(), func(tx *sql.Tx) error {
		return o.Append(context.Background(), tx, Event{ID: id, Type: typ, Payload: []byte(`{"n":1}`), CreatedAt: o.clock()})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustEndpoint(tb testing.TB, o *Outbox, types ...string) Endpoint {
	tb.Helper()
	ep, _, err := o.CreateEndpoint(context.Background(), EndpointParams{URL: "https://example.com/hook", EventTypes: types})
	if err != nil {
		tb.Fatal(err)
	}
	return ep
}

func TestMatchEventType(t *testing.T) {
	cases := []struct {
		patterns []string
		typ      string
		want     bool
	}{
		{nil, "file.uploaded", true},
		{[]string{}, "anything", true},
		{[]string{"file.uploaded"}, "file.uploaded", true},
		{[]string{"file.uploaded"}, "file.deleted", false},
		{[]string{"file.*"}, "file.deleted", true},
		{[]string{"file.*"}, "file", false},
		{[]string{"file.*"}, "filex.deleted", false},
		{[]string{"file.*"}, "portal.test", false},
		{[]string{"file.deleted", "portal.*"}, "portal.test", true},
		{[]string{"file.uploaded"}, "file.uploaded.v2", false},
	}
	for _, c := range cases {
		if got := MatchEventType(c.patterns, c.typ); got != c.want {
			t.Errorf("MatchEventType(%q, %q) = %v", c.patterns, c.typ, got)
		}
	}
}

func TestCheckEventTypes(t *testing.T) {
	for _, ok := range [][]string{nil, {"file.uploaded"}, {"file.*", "portal.test"}, {"a_b.c1"}} {
		if err := CheckEventTypes(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range [][]string{{""}, {"*"}, {"file.*.x"}, {"File.Uploaded"}, {"file."}, {"file*"}, {"x", "x"},
		{"file.up loaded"}, {strings.Repeat("a", 101)}} {
		var ve *ValidationError
		if err := CheckEventTypes(bad); !errors.As(err, &ve) {
			t.Errorf("%q accepted (%v)", bad, err)
		}
	}
}

func TestParseEndpointURL(t *testing.T) {
	for _, ok := range []string{"https://example.com/hook", "http://example.com:8080/a?b=c", "https://[2001:db8::1]/x"} {
		if _, err := ParseEndpointURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "example.com", "ftp://example.com/", "https:///path", "https://u:p@example.com/",
		"https://example.com/#frag", "https://example.com:0/", "https://example.com:70000/", "javascript:alert(1)",
		"https://example.com/" + strings.Repeat("a", MaxURLLength)} {
		if _, err := ParseEndpointURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The signature matches the Standard Webhooks test vector and the Go
// reference library, and every secret of a rotation signs.
func TestSign(t *testing.T) {
	// Test vector of the Standard Webhooks reference libraries.
	got, err := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
		[]byte(`{"test": 2432232314}`))
	if err != nil || got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("Sign = %q, %v", got, err)
	}
	s1, _ := NewSecret()
	s2, _ := NewSecret()
	if len(s1) != len("whsec_")+44 || s1 == s2 {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	body := []byte(`{"event_type":"file.uploaded"}`)
	now := time.Now()
	hdr, err := SignatureHeader([]string{s2, s1}, "evt", now.Unix(), body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "evt")
	h.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	h.Set("webhook-signature", hdr)
	for _, s := range []string{s1, s2} {
		wh, _ := standardwebhooks.NewWebhook(s)
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("reference library rejects: %v", err)
		}
	}
	s3, _ := NewSecret()
	if wh, _ := standardwebhooks.NewWebhook(s3); wh.Verify(body, h) == nil {
		t.Error("another secret verifies")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]time.Duration{
		"":               0,
		"junk":           0,
		"-5":             0,
		"0":              time.Second,
		"120":            2 * time.Minute,
		" 7 ":            7 * time.Second,
		"99999999999999": 365 * 24 * time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       time.Second,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

// The retry waits follow the schedule within the jitter, and Retry-After
// replaces them within bounds.
func TestNextWait(t *testing.T) {
	o, _ := mustOutbox(t)
	d := NewDispatcher(o, DispatcherConfig{})
	for i, step := range DefaultSchedule {
		for range 20 {
			w := d.nextWait(i+1, result{})
			if w < time.Duration(float64(step)*0.9) || w > time.Duration(float64(step)*1.1) {
				t.Fatalf("wait %d: %s, want %s ± 10%%", i+1, w, step)
			}
		}
	}
	if w := d.nextWait(1, result{retryAfter: 3 * time.Hour}); w != 3*time.Hour {
		t.Errorf("Retry-After 3h: %s", w)
	}
	if w := d.nextWait(1, result{retryAfter: 100 * time.Hour}); w != DefaultRetryAfterMax {
		t.Errorf("Retry-After 100h: %s, want the cap", w)
	}
	var total time.Duration
	for _, s := range DefaultSchedule {
		total += s
	}
	if total < 24*time.Hour || total > 30*time.Hour {
		t.Errorf("the schedule spans %s, want about a day", total)
	}
}

func TestNetPolicyCheckURL(t *testing.T) {
	strict := NetPolicy{}
	allow := NetPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}}
	open := NetPolicy{AllowPrivate: true}
	cases := []struct {
		url                 string
		strict, allow, open bool
	}{
		{"https://example.com/", true, true, true},
		{"https://93.184.215.14/", true, true, true},
		{"https://[2606:4700::1111]/", true, true, true},
		{"http://127.0.0.1:8080/", false, false, true},
		{"http://localhost/", false, false, true},
		{"http://api.localhost./", false, false, true},
		{"http://10.1.2.3/", false, true, true},
		{"http://10.2.0.1/", false, false, true},
		{"http://[fd00::5]/", false, true, true},
		{"http://[::1]/", false, false, true},
		{"http://[::ffff:10.1.2.3]/", false, true, true},
		{"http://169.254.169.254/", false, false, true},
		{"http://0.0.0.0/", false, false, true},
	}
	for _, c := range cases {
		u, _ := url.Parse(c.url)
		for _, p := range []struct {
			name   string
			policy NetPolicy
			want   bool
		}{{"strict", strict, c.strict}, {"allow", allow, c.allow}, {"open", open, c.open}} {
			if err := p.policy.CheckURL(u); (err == nil) != p.want {
				t.Errorf("%s policy, %s: %v", p.name, c.url, err)
			}
		}
	}
}

// The dial-time check refuses loopback after DNS resolution, unless the
// policy permits it.
func TestNetPolicyDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := NetPolicy{}.dialer()(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err == nil || !strings.Contains(err.Error(), "prohibited") {
			t.Errorf("dial %s: %v, want refused", host, err)
		}
	}
	for _, p := range []NetPolicy{{AllowPrivate: true}, {Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}} {
		c, err := p.dialer()(context.Background(), "tcp4", net.JoinHostPort("localhost", port))
		if err != nil {
			t.Errorf("%+v: %v", p, err)
			continue
		}
		c.Close()
	}
}

// Fan-out follows each endpoint's event types and skips disabled and
// deleted endpoints.
func TestAppendFansOut(t *testing.T) {
	o, _ := mustOutbox(t)
	ctx := context.Background()
	all := mustEndpoint(t, o)
	up := mustEndpoint(t, o, "file.uploaded")
	files := mustEndpoint(t, o, "file.*")
	off := mustEndpoint(t, o)
	off0 := false
	if _, err := o.UpdateEndpoint(ctx, off.ID, EndpointPatch{Enabled: &off0}); err != nil {
		t.Fatal(err)
	}
	gone := mustEndpoint(t, o)
	if err := o.DeleteEndpoint(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	targets := func(eventID string) []string {
		ds, err := o.EventDeliveries(ctx, eventID)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.EndpointID)
		}
		sort.Strings(ids)
		return ids
	}
	sorted := func(ids ...string) string { sort.Strings(ids); return strings.Join(ids, ",") }
	if got := targets(appendEvent(t, o, "file.uploaded")); strings.Join(got, ",") != sorted(all.ID, up.ID, files.ID) {
		t.Errorf("file.uploaded went to %v", got)
	}
	if got := targets(appendEvent(t, o, "file.deleted")); strings.Join(got, ",") != sorted(all.ID, files.ID) {
		t.Errorf("file.deleted went to %v", got)
	}
	if got := targets(appendEvent(t, o, "other.thing")); strings.Join(got, ",") != sorted(all.ID) {
		t.Errorf("other.thing went to %v", got)
	}
}

// A backlog of due retries does not starve fresh events: each endpoint's
// claim room is shared between the lanes; the per-endpoint and global
// claim limits hold.
func TestClaimIsFair(t *testing.T) {
	o, now := mustOutbox(t)
	ctx := context.Background()
	ep := mustEndpoint(t, o)
	const perEndpoint = 4
	room := claimAhead * perEndpoint
	for range room + 8 {
		appendEvent(t, o, "file.uploaded")
	}
	// Those failed before: they are retries now, all due, more than fit.
	if _, err := o.w.Exec("UPDATE deliveries SET lane = 1, tries = 1, attempts = 1"); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(time.Minute)
	fresh := map[string]bool{}
	for range 3 {
		ds, _ := o.EventDeliveries(ctx, appendEvent(t, o, "file.uploaded"))
		fresh[ds[0].ID] = true
	}
	d := NewDispatcher(o, DispatcherConfig{Workers: 16, PerEndpoint: perEndpoint})
	jobs, _, err := d.claim(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	nFresh := 0
	for _, j := range jobs {
		if fresh[j.id] {
			nFresh++
		}
		if j.ep == nil || j.ep.url == "" || len(j.ep.secrets) != 1 || len(j.payload) == 0 || j.eventID == "" {
			t.Fatalf("job %s not loaded: %+v", j.id, j)
		}
	}
	if len(jobs) != room || nFresh != 3 {
		t.Fatalf("claimed %d (%d fresh), want %d with all 3 fresh", len(jobs), nFresh, room)
	}
	// What the dispatcher holds is not claimed again.
	for _, j := range jobs {
		d.hold(j)
	}
	more, _, err := d.claim(ctx, true)
	if err != nil || len(more) != 8+3 {
		t.Fatalf("second claim: %d jobs, %v; want the %d not held", len(more), err, 8+3)
	}
	for _, j := range more {
		if _, held := d.held[j.id]; held {
			t.Fatalf("claimed %s twice", j.id)
		}
	}
	// The endpoint is full: nothing more is claimed.
	for _, j := range jobs {
		d.total++
		d.inflight[j.endpointID]++
	}
	if more, _, _ := d.claim(ctx, true); len(more) != 0 {
		t.Errorf("claimed %d beyond the per-endpoint limit", len(more))
	}
	// The global limit holds across endpoints.
	ep2 := mustEndpoint(t, o)
	appendEvent(t, o, "file.uploaded") // due for both endpoints
	appendEvent(t, o, "file.uploaded")
	d2 := NewDispatcher(o, DispatcherConfig{Workers: 5, PerEndpoint: perEndpoint})
	d2.total = claimAhead*5 - 1
	d2.inflight[ep.ID] = room
	if more, _, _ := d2.claim(ctx, true); len(more) != 1 || more[0].endpointID != ep2.ID {
		t.Errorf("claimed %+v, want one delivery to %s", more, ep2.ID)
	}
}

// Claiming skips deliveries that are not due and those of disabled
// endpoints, and reports when the next one falls due.
func TestClaimNextDue(t *testing.T) {
	o, now := mustOutbox(t)
	ctx := context.Background()
	ep := mustEndpoint(t, o)
	appendEvent(t, o, "file.uploaded")
	due := now.Add(10 * time.Minute)
	if _, err := o.w.Exec("UPDATE deliveries SET next_attempt_at = ?", due.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(o, DispatcherConfig{})
	jobs, next, err := d.claim(ctx, true)
	if err != nil || len(jobs) != 0 || !next.Equal(due) {
		t.Fatalf("claim = %v, %s, %v; want nothing, next %s", jobs, next, err, due)
	}
	*now = due
	f := false
	o.UpdateEndpoint(ctx, ep.ID, EndpointPatch{Enabled: &f})
	if jobs, next, _ := d.claim(ctx, true); len(jobs) != 0 || !next.IsZero() {
		t.Fatalf("disabled endpoint: claimed %v, next %s", jobs, next)
	}
	tr := true
	o.UpdateEndpoint(ctx, ep.ID, EndpointPatch{Enabled: &tr})
	jobs, _, _ = d.claim(ctx, true)
	if len(jobs) != 1 {
		t.Fatalf("re-enabled endpoint: claimed %v", jobs)
	}
	// A delivery in hand is still pending, but nothing else falls due.
	d.hold(jobs[0])
	if jobs, next, _ := d.claim(ctx, true); len(jobs) != 0 || !next.IsZero() {
		t.Fatalf("with the only delivery in hand: claimed %v, next %s; want nothing, no next", jobs, next)
	}
}

// Deliveries a crash left "delivering" are pending again on start.
func TestRecoverDelivering(t *testing.T) {
	o, _ := mustOutbox(t)
	mustEndpoint(t, o)
	appendEvent(t, o, "file.uploaded")
	appendEvent(t, o, "file.uploaded")
	o.w.Exec("UPDATE deliveries SET status = 'delivering'")
	d := NewDispatcher(o, DispatcherConfig{})
	if n, err := d.recover(context.Background()); n != 2 || err != nil {
		t.Fatalf("recover = %d, %v", n, err)
	}
	var pending int
	o.r.QueryRow("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").Scan(&pending)
	if pending != 2 {
		t.Errorf("%d pending after recover", pending)
	}
}

// Rotation keeps a bounded number of secrets signing; grace 0 drops the
// old ones; expired secrets stop signing.
func TestRotateSecret(t *testing.T) {
	o, now := mustOutbox(t)
	ctx := context.Background()
	ep, first, _ := o.CreateEndpoint(ctx, EndpointParams{URL: "https://example.com/"})
	active := func() []string {
		s, err := o.activeSecrets(ctx, ep.ID, *now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s2, _, err := o.RotateSecret(ctx, ep.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := active(); len(got) != 2 || got[0] != s2 || got[1] != first {
		t.Fatalf("after rotation: %v", got)
	}
	*now = now.Add(time.Hour)
	if got := active(); len(got) != 1 || got[0] != s2 {
		t.Fatalf("after the grace period: %v", got)
	}
	for range 10 {
		if _, _, err := o.RotateSecret(ctx, ep.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if got := active(); len(got) != maxSecrets {
		t.Fatalf("after many rotations %d secrets sign, want %d", len(got), maxSecrets)
	}
	s3, _, _ := o.RotateSecret(ctx, ep.ID, 0)
	if got := active(); len(got) != 1 || got[0] != s3 {
		t.Fatalf("after rotation without grace: %v", got)
	}
	if _, _, err := o.RotateSecret(ctx, uuid.NewString(), 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotate unknown: %v", err)
	}
	if err := o.DeleteEndpoint(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	var n int
	o.r.QueryRow("SELECT COUNT(*) FROM endpoint_secrets").Scan(&n)
	if n != 0 {
		t.Errorf("%d secrets left after delete", n)
	}
}

// A delivery claimed before its endpoint changed is not sent with what the
// claim read: it goes back to pending and is sent with the new URL.
func TestClaimedJobSeesEndpointChange(t *testing.T) {
	o, _ := mustOutbox(t)
	ctx := context.Background()
	got := make(chan string, 10)
	hook := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- name + " " + r.Header.Get("X-Webhook-Delivery")
		}))
		t.Cleanup(s.Close)
		return s
	}
	oldSrv, newSrv := hook("old"), hook("new")
	ep, _, err := o.CreateEndpoint(ctx, EndpointParams{URL: oldSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	appendEvent(t, o, "file.uploaded")
	d := NewDispatcher(o, DispatcherConfig{Policy: NetPolicy{AllowPrivate: true}})
	jobs, _, err := d.claim(ctx, true)
	if err != nil || len(jobs) != 1 || jobs[0].ep.url != oldSrv.URL {
		t.Fatalf("claim = %+v, %v", jobs, err)
	}
	u := newSrv.URL
	if _, err := o.UpdateEndpoint(ctx, ep.ID, EndpointPatch{URL: &u}); err != nil {
		t.Fatal(err)
	}
	d.work(ctx, jobs[0])
	if f := <-d.done; f.attempted || len(d.records.items) != 0 {
		t.Fatalf("the claimed job was sent after its endpoint changed: %+v", f)
	}
	if ds, _ := o.EventDeliveries(ctx, jobs[0].eventID); len(ds) != 1 || ds[0].Status != StatusPending || ds[0].AttemptCount != 0 {
		t.Fatalf("after release: %+v", ds)
	}
	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() { d.Run(runCtx); close(finished) }()
	defer func() { stop(); <-finished }()
	select {
	case g := <-got:
		if g != "new "+jobs[0].id {
			t.Fatalf("received %q, want the delivery at the new URL", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery never reached the new URL")
	}
}

// Attempts finished together are recorded in one transaction, each with
// its own outcome; the delivery counts and attempt rows match.
func TestRecordBatch(t *testing.T) {
	o, _ := mustOutbox(t)
	ctx := context.Background()
	mustEndpoint(t, o)
	for range 5 {
		appendEvent(t, o, "file.uploaded")
	}
	d := NewDispatcher(o, DispatcherConfig{})
	jobs, _, err := d.claim(ctx, true)
	if err != nil || len(jobs) != 5 {
		t.Fatalf("claim = %d jobs, %v", len(jobs), err)
	}
	at := d.now()
	batch := []recItem{
		{j: jobs[0], res: result{at: at, code: 204}},
		{j: jobs[1], res: result{at: at, code: 500, err: "HTTP 500"}},
		{j: jobs[2], res: result{at: at, err: "connection refused"}},
		{j: jobs[4], res: result{at: at, code: 200}},
	}
	d.recordBatch(batch)
	want := []struct {
		status   string
		attempts int
	}{{StatusSucceeded, 1}, {StatusPending, 1}, {StatusPending, 1}, {StatusPending, 0}, {StatusSucceeded, 1}} // 3: not sent
	for i, j := range jobs {
		dl, err := o.GetDelivery(ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := o.r.QueryRow("SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = ?", j.id).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if dl.Status != want[i].status || dl.AttemptCount != want[i].attempts || rows != want[i].attempts {
			t.Errorf("delivery %d: %s with %d attempts (%d rows), want %s with %d", i, dl.Status, dl.AttemptCount,
				rows, want[i].status, want[i].attempts)
		}
	}
}

// A clean stop puts back the claimed deliveries that were queued behind the
// per-endpoint limit, unsent: none is left "delivering", none got an
// attempt, and the ones sent are recorded.
func TestStopReleasesQueuedDeliveries(t *testing.T) {
	o, _ := mustOutbox(t)
	ctx := context.Background()
	release := make(chan struct{})
	var mu sync.Mutex
	received := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received++
		mu.Unlock()
		<-release // hold the request slot until the test lets go
	}))
	t.Cleanup(srv.Close)
	if _, _, err := o.CreateEndpoint(ctx, EndpointParams{URL: srv.URL}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for range n {
		appendEvent(t, o, "file.uploaded")
	}
	d := NewDispatcher(o, DispatcherConfig{PerEndpoint: 1, Policy: NetPolicy{AllowPrivate: true}})
	runCtx, stop := context.WithCancel(ctx)
	finished := make(chan struct{})
	go func() { d.Run(runCtx); close(finished) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		r := received
		mu.Unlock()
		if r == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first request never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if held := o.delivering.Load(); held != n {
		t.Fatalf("%d deliveries claimed, want all %d (one sending, the rest queued)", held, n)
	}
	var delivering int
	stop()
	close(release)
	<-finished
	var pending, attempts int
	o.r.QueryRow("SELECT COUNT(*) FROM deliveries WHERE status = 'delivering'").Scan(&delivering)
	o.r.QueryRow("SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 0").Scan(&pending)
	o.r.QueryRow("SELECT COUNT(*) FROM delivery_attempts").Scan(&attempts)
	if delivering != 0 || pending+attempts != n || pending < n-1 {
		t.Fatalf("after stop: %d delivering, %d pending unsent, %d attempts; want 0, and the other %d pending",
			delivering, pending, attempts, n-attempts)
	}
}
