package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorito/portal/outbox"
)

const whWait = 10 * time.Second

// Fan-out happens at write time, per endpoint filter: exact types, the
// empty list (all), and a "file.*" prefix; a disabled endpoint gets
// nothing. Every delivery carries the Standard Webhooks headers, and its
// body is the stored payload, byte for byte.
func TestWebhookFanOutByEventTypes(t *testing.T) {
	a := MustOpen(t, whConfig())
	uploaded, _ := whReceiverEndpoint(t, a, "file.uploaded")
	deleted, _ := whReceiverEndpoint(t, a, "file.deleted")
	all, _ := whReceiverEndpoint(t, a)
	prefix, _ := whReceiverEndpoint(t, a, "file.*")
	off := newWhReceiver(t)
	offEp := whCall[createdEndpoint](t, a, "POST", "/api/v1/endpoints",
		map[string]any{"url": off.URL(), "enabled": false}, http.StatusCreated)
	off.setSecrets([]string{offEp.Secret})
	if offEp.Enabled || offEp.DisabledReason == nil {
		t.Fatalf("endpoint created disabled: %+v", offEp.Endpoint)
	}

	upID := whUpload(t, a)
	for _, rc := range []*whReceiver{uploaded, all, prefix} {
		if d := rc.next(whWait); d.eventID() != upID {
			t.Fatalf("got event %s, want %s", d.eventID(), upID)
		}
	}
	ev := whEvent(t, a, upID)
	if len(ev.Deliveries) != 3 {
		t.Fatalf("file.uploaded has %d deliveries, want 3 (exact, all, prefix): %+v", len(ev.Deliveries), ev.Deliveries)
	}

	// A file.deleted event, as the cleanup writes it.
	f := whFile(t, a, ev)
	delID := whAppendFileEvent(t, a, EventFileDeleted, f)
	for _, rc := range []*whReceiver{deleted, all, prefix} {
		if d := rc.next(whWait); d.eventID() != delID {
			t.Fatalf("got event %s, want %s", d.eventID(), delID)
		}
	}
	uploaded.none(300 * time.Millisecond)
	deleted.none(0)
	off.none(0)

	for _, id := range []string{upID, delID} {
		ev := whEvent(t, a, id)
		for _, d := range ev.Deliveries {
			d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
			if d.AttemptCount != 1 || len(d.Attempts) != 1 || *d.Attempts[0].StatusCode != http.StatusNoContent ||
				d.NextAttemptAt != nil || d.LastError != nil || d.EventType != ev.Type {
				t.Errorf("delivery %+v", d)
			}
		}
	}
	// Headers and body, checked against the API's record of the event.
	for _, rc := range []*whReceiver{uploaded, deleted, all, prefix} {
		for _, got := range rc.deliveries() {
			ev := whEvent(t, a, got.eventID())
			if !bytes.Equal(got.Body, ev.Payload) {
				t.Errorf("body differs from the stored payload:\n%s\n%s", got.Body, ev.Payload)
			}
			if ua := got.Header.Get("User-Agent"); ua != "doorito-portal/1.2.3-test" {
				t.Errorf("User-Agent %q", ua)
			}
			var ids []string
			for _, d := range ev.Deliveries {
				ids = append(ids, d.ID)
			}
			if !slices.Contains(ids, got.delivery()) {
				t.Errorf("X-Webhook-Delivery %s is none of the event's deliveries %v", got.delivery(), ids)
			}
		}
	}
}

// whFile returns the file an event is about.
func whFile(tb testing.TB, a *App, ev EventDetail) File {
	tb.Helper()
	f, err := a.getFile(context.Background(), ev.FileID)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// whAppendFileEvent writes an event about f the way the portal's jobs do
// (in a transaction, then Committed) and returns its id.
func whAppendFileEvent(tb testing.TB, a *App, typ string, f File) string {
	tb.Helper()
	ctx := context.Background()
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	reason := ""
	if typ == EventFileDeleted {
		reason = "expired"
	}
	if err := a.appendFileEvent(ctx, tx, typ, a.cfg.Now().UTC().Truncate(time.Millisecond), f, PayloadActor{}, reason); err != nil {
		tb.Fatal(err)
	}
	var id string
	if err := tx.QueryRowContext(ctx, "SELECT id FROM events ORDER BY seq DESC LIMIT 1").Scan(&id); err != nil {
		tb.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	a.outbox.Committed()
	return id
}

// A failing endpoint that recovers: each retry is recorded with its status
// and (capped) response body, under the same webhook-id and delivery id,
// freshly signed; the success clears the endpoint's failure record.
func TestWebhookFailingEndpointRecovers(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a)
	big := strings.Repeat("e", 10000)
	rc.setRespond(func(n int, _ *http.Request) (int, http.Header, string) {
		if n <= 2 {
			return http.StatusInternalServerError, nil, big
		}
		return http.StatusOK, nil, `{"ok":true}`
	})
	evID := whUpload(t, a)
	d := whSingleDelivery(t, a, evID)
	d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if got := statusCodes(d); got != "500,500,200" || d.AttemptCount != 3 {
		t.Fatalf("attempts %s (count %d), want 500,500,200", got, d.AttemptCount)
	}
	for i, at := range d.Attempts[:2] {
		if len(at.ResponseBody) != outbox.DefaultMaxResponseBody || at.Error != "HTTP 500" || at.URL != rc.URL() {
			t.Errorf("attempt %d: body %d bytes, error %q, url %q", i, len(at.ResponseBody), at.Error, at.URL)
		}
	}
	if d.Attempts[2].ResponseBody != `{"ok":true}` || d.Attempts[2].Error != "" {
		t.Errorf("last attempt %+v", d.Attempts[2])
	}
	// Retries wait per the schedule (50 ms, then 100 ms; no jitter here).
	if gap := d.Attempts[1].AttemptedAt.Sub(d.Attempts[0].AttemptedAt); gap < 50*time.Millisecond {
		t.Errorf("first retry after %s, want >= 50ms", gap)
	}
	if gap := d.Attempts[2].AttemptedAt.Sub(d.Attempts[1].AttemptedAt); gap < 100*time.Millisecond {
		t.Errorf("second retry after %s, want >= 100ms", gap)
	}
	got := rc.deliveries()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	for _, g := range got {
		if g.eventID() != evID || g.delivery() != d.ID {
			t.Errorf("attempt carries webhook-id %s, X-Webhook-Delivery %s; want %s, %s", g.eventID(), g.delivery(), evID, d.ID)
		}
	}
	e := whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
	if !e.Enabled || e.FailingSince != nil {
		t.Errorf("endpoint after recovery: %+v", e)
	}
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`portal_webhook_attempts_total{endpoint="` + ep.ID + `",outcome="http_error"}`,
		`portal_webhook_attempts_total{endpoint="` + ep.ID + `",outcome="success"}`,
		`portal_webhook_deliveries{status="pending"} 0`, `portal_webhook_endpoints{state="enabled"} 1`, "portal_webhook_attempt_duration_seconds_count"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// An endpoint that never recovers: the delivery ends failed after the last
// attempt of the schedule; replaying the endpoint's failed deliveries by
// hand sends it again. Replay since a time also creates the deliveries of
// events from while the endpoint was disabled.
func TestWebhookFailedThenReplayed(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a)
	rc.answer(http.StatusBadGateway)
	start := time.Now().UTC().Add(-time.Second)
	evID := whUpload(t, a)
	d := whSingleDelivery(t, a, evID)
	d = whWaitDelivery(t, a, d.ID, whWait, "failed", func(d outbox.Delivery) bool { return d.Status == outbox.StatusFailed })
	if d.AttemptCount != 4 || statusCodes(d) != "502,502,502,502" || d.NextAttemptAt != nil ||
		d.LastStatusCode == nil || *d.LastStatusCode != 502 {
		t.Fatalf("failed delivery %+v (%s)", d, statusCodes(d))
	}
	for len(rc.ch) > 0 {
		<-rc.ch
	}
	rc.none(300 * time.Millisecond) // the schedule is over: no more attempts
	e := whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
	if e.FailingSince == nil || !e.Enabled {
		t.Fatalf("endpoint while failing: %+v", e)
	}
	listed := whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/endpoints/"+ep.ID+"/deliveries?status=failed", nil, http.StatusOK)
	if len(listed.Items) != 1 || listed.Items[0].ID != d.ID {
		t.Fatalf("failed deliveries listed: %+v", listed)
	}

	// The receiver is fixed; replay the failed deliveries by hand.
	rc.answer(http.StatusOK)
	res := whCall[map[string]int](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/replay", map[string]string{"status": "failed"}, http.StatusAccepted)
	if res["queued"] != 1 {
		t.Fatalf("replay queued %d, want 1", res["queued"])
	}
	if g := rc.next(whWait); g.eventID() != evID || g.delivery() != d.ID {
		t.Fatalf("replayed delivery: webhook-id %s, delivery %s", g.eventID(), g.delivery())
	}
	d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if d.AttemptCount != 5 {
		t.Errorf("attempts after replay: %d, want 5", d.AttemptCount)
	}
	e = whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
	if e.FailingSince != nil {
		t.Errorf("failing_since after success: %v", e.FailingSince)
	}

	// Retry one delivery by hand: it is sent again at once.
	whCall[outbox.Delivery](t, a, "POST", "/api/v1/deliveries/"+d.ID+"/retry", nil, http.StatusAccepted)
	if g := rc.next(whWait); g.delivery() != d.ID {
		t.Fatalf("retried delivery %s", g.delivery())
	}
	whWaitDelivery(t, a, d.ID, whWait, "succeeded 6 times", func(d outbox.Delivery) bool {
		return d.Status == outbox.StatusSucceeded && d.AttemptCount == 6
	})

	// Disabled endpoints get no deliveries; replay since a time creates
	// them, and queues the existing ones again.
	whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": false}, http.StatusOK)
	ev2 := whUpload(t, a)
	if ds := whEvent(t, a, ev2).Deliveries; len(ds) != 0 {
		t.Fatalf("event while disabled has deliveries: %+v", ds)
	}
	// A test event to another endpoint is not replayed to this one.
	other := whEndpoint(t, a, "https://example.com/hook")
	whCall[map[string]string](t, a, "POST", "/api/v1/endpoints/"+other.ID+"/test", nil, http.StatusAccepted)
	whCall[outbox.Endpoint](t, a, "DELETE", "/api/v1/endpoints/"+other.ID, nil, http.StatusNoContent)
	e = whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": true}, http.StatusOK)
	if !e.Enabled || e.DisabledReason != nil {
		t.Fatalf("re-enabled endpoint %+v", e)
	}
	res = whCall[map[string]int](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/replay",
		map[string]string{"since": start.Format(time.RFC3339Nano)}, http.StatusAccepted)
	if res["queued"] != 2 {
		t.Fatalf("replay since queued %d, want 2 (the old event again, the missed one)", res["queued"])
	}
	seen := map[string]bool{}
	for range 2 {
		seen[rc.next(whWait).eventID()] = true
	}
	if !seen[evID] || !seen[ev2] {
		t.Fatalf("replay since delivered %v, want %s and %s", seen, evID, ev2)
	}
	d2 := whSingleDelivery(t, a, ev2)
	whWaitDelivery(t, a, d2.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	rc.none(200 * time.Millisecond)
}

// Rotation: the new secret signs at once, the previous one keeps signing
// for the grace period (both signatures verify, with both libraries);
// a rotation with no grace drops the old secrets at once.
func TestWebhookSecretRotation(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a)
	s1 := ep.Secret
	other, _ := outbox.NewSecret()
	rc.setSecrets([]string{s1}, other)
	test := func() whDelivery {
		t.Helper()
		res := whCall[map[string]string](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/test", nil, http.StatusAccepted)
		g := rc.next(whWait)
		if g.eventID() != res["event_id"] || g.delivery() != res["delivery_id"] {
			t.Fatalf("test delivery %s/%s, API said %v", g.eventID(), g.delivery(), res)
		}
		return g
	}
	if g := test(); strings.Count(g.Header.Get("webhook-signature"), "v1,") != 1 {
		t.Fatalf("one secret, signatures %q", g.Header.Get("webhook-signature"))
	}

	rot := whCall[map[string]any](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/rotate-secret", nil, http.StatusOK)
	s2, _ := rot["secret"].(string)
	if !strings.HasPrefix(s2, "whsec_") || s2 == s1 {
		t.Fatalf("rotated secret %q", s2)
	}
	until, _ := time.Parse(time.RFC3339, fmt.Sprint(rot["previous_secrets_valid_until"]))
	if d := time.Until(until); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("previous secret valid until %v, want in 24h", until)
	}
	rc.setSecrets([]string{s1, s2}, other)
	if g := test(); strings.Count(g.Header.Get("webhook-signature"), "v1,") != 2 {
		t.Fatalf("during rotation, signatures %q", g.Header.Get("webhook-signature"))
	}

	rot = whCall[map[string]any](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/rotate-secret",
		map[string]string{"grace_period": "0s"}, http.StatusOK)
	s3, _ := rot["secret"].(string)
	rc.setSecrets([]string{s3}, s1, s2, other)
	if g := test(); strings.Count(g.Header.Get("webhook-signature"), "v1,") != 1 {
		t.Fatalf("after rotation without grace, signatures %q", g.Header.Get("webhook-signature"))
	}
	// The secrets are never shown again.
	for _, path := range []string{"/api/v1/endpoints", "/api/v1/endpoints/" + ep.ID} {
		_, body := whDo(t, a, "GET", path, nil)
		for _, s := range []string{s1, s2, s3} {
			if bytes.Contains(body, []byte(strings.TrimPrefix(s, "whsec_"))) {
				t.Errorf("GET %s shows a secret", path)
			}
		}
	}
}

// 410 Gone disables the endpoint with a reason; it gets no new deliveries
// while disabled, and re-enabling resumes the waiting one.
func TestWebhookGoneDisablesEndpoint(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a)
	rc.answer(http.StatusGone)
	evID := whUpload(t, a)
	rc.next(whWait)
	d := whSingleDelivery(t, a, evID)
	var e outbox.Endpoint
	whEventually(t, "endpoint disabled", func() bool {
		e = whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
		return !e.Enabled
	})
	if e.DisabledReason == nil || !strings.Contains(*e.DisabledReason, "410") || e.DisabledAt == nil {
		t.Fatalf("disabled endpoint %+v", e)
	}
	d = whGetDelivery(t, a, d.ID)
	if d.Status != outbox.StatusPending || d.AttemptCount != 1 {
		t.Fatalf("delivery after 410: %+v", d)
	}
	ev2 := whUpload(t, a)
	if ds := whEvent(t, a, ev2).Deliveries; len(ds) != 0 {
		t.Fatalf("a disabled endpoint got a delivery: %+v", ds)
	}
	rc.none(300 * time.Millisecond)
	if status, _ := whDo(t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/test", nil); status != http.StatusConflict {
		t.Errorf("test event to a disabled endpoint: %d, want 409", status)
	}

	rc.answer(http.StatusOK)
	e = whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": true}, http.StatusOK)
	if !e.Enabled || e.DisabledReason != nil || e.DisabledAt != nil || e.FailingSince != nil {
		t.Fatalf("re-enabled endpoint %+v", e)
	}
	if g := rc.next(whWait); g.eventID() != evID {
		t.Fatalf("resumed delivery of %s, want %s", g.eventID(), evID)
	}
	whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
}

// whEventually polls cond until it holds.
func whEventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(whWait)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// 429 and 503 with Retry-After: the next attempt waits what the header
// says instead of the schedule, within bounds.
func TestWebhookRetryAfter(t *testing.T) {
	cfg := whConfig()
	cfg.DeliverySchedule = []time.Duration{time.Hour, time.Hour}
	a := MustOpen(t, cfg)
	rc, _ := whReceiverEndpoint(t, a)
	rc.setRespond(func(n int, _ *http.Request) (int, http.Header, string) {
		if n == 1 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, "slow down"
		}
		return http.StatusOK, nil, ""
	})
	evID := whUpload(t, a)
	first := rc.next(whWait)
	second := rc.next(whWait) // an hour early: Retry-After said 1 s
	if gap := second.At.Sub(first.At); gap < 900*time.Millisecond || gap > 5*time.Second {
		t.Errorf("retry after %s, want about 1s", gap)
	}
	d := whSingleDelivery(t, a, evID)
	d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if statusCodes(d) != "429,200" || d.Attempts[0].ResponseBody != "slow down" {
		t.Errorf("attempts %s %+v", statusCodes(d), d.Attempts)
	}

	// A Retry-After beyond the bound is capped (6 h), an HTTP date works.
	rc2, _ := whReceiverEndpoint(t, a)
	rc2.setRespond(func(n int, _ *http.Request) (int, http.Header, string) {
		return http.StatusServiceUnavailable, http.Header{"Retry-After": {"864000"}}, ""
	})
	rc3, _ := whReceiverEndpoint(t, a)
	rc3.setRespond(func(n int, _ *http.Request) (int, http.Header, string) {
		return http.StatusServiceUnavailable, http.Header{"Retry-After": {time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)}}, ""
	})
	ev2 := whUpload(t, a)
	rc2.next(whWait)
	rc3.next(whWait)
	for _, d := range whEvent(t, a, ev2).Deliveries {
		var want time.Duration
		switch d.EndpointURL {
		case rc2.URL():
			want = outbox.DefaultRetryAfterMax
		case rc3.URL():
			want = 2 * time.Hour
		default:
			continue // the first receiver answers 200
		}
		d = whWaitDelivery(t, a, d.ID, whWait, "attempted", func(d outbox.Delivery) bool { return d.AttemptCount == 1 && d.Status == outbox.StatusPending })
		if wait := d.NextAttemptAt.Sub(*d.LastAttemptAt); wait < want-5*time.Second || wait > want+5*time.Second {
			t.Errorf("%s: next attempt in %s, want %s", d.EndpointURL, wait, want)
		}
	}
}

// A slow endpoint hits the request timeout: the attempt is recorded
// without a status, and the retry succeeds.
func TestWebhookTimeout(t *testing.T) {
	cfg := whConfig()
	cfg.DeliveryTimeout = 300 * time.Millisecond
	a := MustOpen(t, cfg)
	rc, _ := whReceiverEndpoint(t, a)
	rc.setRespond(func(n int, r *http.Request) (int, http.Header, string) {
		if n == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusOK, nil, ""
	})
	evID := whUpload(t, a)
	d := whSingleDelivery(t, a, evID)
	d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if len(d.Attempts) != 2 {
		t.Fatalf("attempts %+v", d.Attempts)
	}
	at := d.Attempts[0]
	if at.StatusCode != nil || !strings.Contains(at.Error, "timeout") || at.DurationMS < 300 || at.DurationMS > 3000 {
		t.Errorf("timed-out attempt %+v", at)
	}
}

// Deleting an endpoint while a request to it is in flight: the request's
// outcome is recorded, nothing is retried, the worker keeps delivering to
// the other endpoints, and the deleted endpoint is gone from the API.
func TestWebhookEndpointDeletedMidFlight(t *testing.T) {
	a := MustOpen(t, whConfig())
	entered, release := make(chan struct{}, 1), make(chan struct{})
	doomed, ep := whReceiverEndpoint(t, a)
	doomed.setRespond(func(n int, r *http.Request) (int, http.Header, string) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-time.After(whWait):
		}
		return http.StatusInternalServerError, nil, ""
	})
	keeper, _ := whReceiverEndpoint(t, a)
	evID := whUpload(t, a)
	<-entered
	keeper.next(whWait)
	whCall[any](t, a, "DELETE", "/api/v1/endpoints/"+ep.ID, nil, http.StatusNoContent)
	close(release)
	doomed.next(whWait)
	var d outbox.Delivery
	for _, x := range whEvent(t, a, evID).Deliveries {
		if x.EndpointID == ep.ID {
			d = x
		}
	}
	d = whWaitDelivery(t, a, d.ID, whWait, "recorded", func(d outbox.Delivery) bool { return d.AttemptCount == 1 })
	if d.Status != outbox.StatusCancelled || d.NextAttemptAt != nil || statusCodes(d) != "500" {
		t.Fatalf("delivery to the deleted endpoint: %+v", d)
	}
	whCall[any](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusNotFound)
	whCall[any](t, a, "DELETE", "/api/v1/endpoints/"+ep.ID, nil, http.StatusNotFound)
	if status, _ := whDo(t, a, "POST", "/api/v1/deliveries/"+d.ID+"/retry", nil); status != http.StatusConflict {
		t.Errorf("retry to a deleted endpoint: %d, want 409", status)
	}
	list := whCall[map[string][]outbox.Endpoint](t, a, "GET", "/api/v1/endpoints", nil, http.StatusOK)
	if len(list["items"]) != 1 {
		t.Errorf("endpoints after delete: %+v", list)
	}
	ev2 := whUpload(t, a)
	if g := keeper.next(whWait); g.eventID() != ev2 {
		t.Fatalf("after the delete the other endpoint got %s", g.eventID())
	}
	doomed.none(300 * time.Millisecond)
	if got := len(doomed.deliveries()); got != 1 {
		t.Errorf("deleted endpoint got %d requests, want 1", got)
	}
}

// A portal restart loses nothing: a request in flight at shutdown, a
// delivery waiting for its retry, and one a crash left "delivering" are
// all sent by the next portal on the same data dir.
func TestWebhookRestartDeliversPending(t *testing.T) {
	dir := t.TempDir()
	cfg := whConfig()
	cfg.DataDir = dir
	// Short waits, several of them: however slow the machine, a delivery
	// that failed before the shutdown is still waiting for a prompt retry.
	cfg.DeliverySchedule = []time.Duration{500 * time.Millisecond, time.Second, time.Second, time.Second, time.Second, time.Hour}
	rc := newWhReceiver(t)
	inFlight := make(chan struct{}, 1)
	rc.setRespond(func(n int, r *http.Request) (int, http.Header, string) {
		if n == 1 { // the first request hangs until the portal shuts down
			inFlight <- struct{}{}
			<-r.Context().Done()
		}
		return http.StatusServiceUnavailable, nil, ""
	})

	a1 := whOpen(t, cfg)
	ep := whEndpoint(t, a1, rc.URL())
	rc.setSecrets([]string{ep.Secret})
	ev1 := whUpload(t, a1)
	<-inFlight
	ev2 := whUpload(t, a1)
	ev3 := whUpload(t, a1)
	// ev2 and ev3: attempted once, failed, waiting for the retry.
	for _, id := range []string{ev2, ev3} {
		d := whSingleDelivery(t, a1, id)
		whWaitDelivery(t, a1, d.ID, whWait, "attempted", func(d outbox.Delivery) bool { return d.AttemptCount >= 1 })
	}
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	d1 := whDeliveryInDB(t, dir, ev1)
	if d1.status != outbox.StatusPending || d1.attempts != 0 {
		t.Fatalf("in-flight delivery after shutdown: %+v (want pending, not counted as an attempt)", d1)
	}
	// ev3 as a crash would leave it: claimed, its request under way.
	whSetStatus(t, dir, ev3, outbox.StatusDelivering)

	rc.answer(http.StatusOK)
	for len(rc.ch) > 0 {
		<-rc.ch
	}
	a2 := whOpen(t, cfg)
	seen := map[string]bool{}
	deadline := time.After(whWait)
	for len(seen) < 3 {
		select {
		case g := <-rc.ch:
			if g.Status == http.StatusOK {
				seen[g.eventID()] = true
			}
		case <-deadline:
			t.Fatalf("after restart, delivered %v; want %s, %s, %s", seen, ev1, ev2, ev3)
		}
	}
	for _, id := range []string{ev1, ev2, ev3} {
		d := whSingleDelivery(t, a2, id)
		whWaitDelivery(t, a2, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	}
}

// whOpen opens a portal that the test closes itself (and Cleanup again,
// harmlessly, if the test fails first).
func whOpen(tb testing.TB, cfg Config) *App {
	tb.Helper()
	return MustOpen(tb, cfg)
}

type whRow struct {
	status   string
	attempts int
}

// whDeliveryInDB reads an event's delivery from a closed portal's database.
func whDeliveryInDB(tb testing.TB, dir, eventID string) whRow {
	tb.Helper()
	db, err := OpenDB(context.Background(), dbPath(dir))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	var r whRow
	if err := db.R.QueryRow("SELECT status, attempts FROM deliveries WHERE event_id = ?", eventID).Scan(&r.status, &r.attempts); err != nil {
		tb.Fatal(err)
	}
	return r
}

func whSetStatus(tb testing.TB, dir, eventID, status string) {
	tb.Helper()
	db, err := OpenDB(context.Background(), dbPath(dir))
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.W.Exec("UPDATE deliveries SET status = ?, next_attempt_at = ? WHERE event_id = ?",
		status, time.Now().UnixMilli(), eventID); err != nil {
		tb.Fatal(err)
	}
}

// An endpoint whose every attempt fails for longer than
// EndpointDisableAfter is disabled with the reason; re-enabling it resumes
// its deliveries. Time is a fake clock: the test does not wait hours.
func TestWebhookAutoDisableAfterContinuousFailure(t *testing.T) {
	clk := &testClock{now: time.Now().UTC()}
	cfg := whConfig()
	cfg.Now = clk.Now
	cfg.DeliverySchedule = []time.Duration{time.Hour, time.Hour, time.Hour, time.Hour}
	cfg.EndpointDisableAfter = 90 * time.Minute
	cfg.deliveryPoll = 10 * time.Millisecond
	a := MustOpen(t, cfg)
	rc, ep := whReceiverEndpoint(t, a)
	rc.now, rc.fakeNow = clk.Now, true
	rc.answer(http.StatusInternalServerError)

	t0 := clk.Now()
	evID := whUpload(t, a)
	rc.next(whWait)
	d := whSingleDelivery(t, a, evID)
	whWaitDelivery(t, a, d.ID, whWait, "attempted", func(d outbox.Delivery) bool { return d.AttemptCount == 1 })
	rc.none(100 * time.Millisecond) // the retry is an hour away
	e := whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
	if e.FailingSince == nil || e.FailingSince.Sub(t0).Abs() > time.Second || !e.Enabled {
		t.Fatalf("endpoint after the first failure: %+v", e)
	}

	clk.Advance(time.Hour + time.Second) // second attempt: failing for 1 h
	rc.next(whWait)
	whWaitDelivery(t, a, d.ID, whWait, "attempted twice", func(d outbox.Delivery) bool { return d.AttemptCount == 2 })
	if e := whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK); !e.Enabled {
		t.Fatalf("disabled after %s of failures: %+v", time.Hour, e)
	}

	clk.Advance(time.Hour + time.Second) // third attempt: failing for 2 h > 90 min
	rc.next(whWait)
	whEventually(t, "endpoint disabled", func() bool {
		e = whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
		return !e.Enabled
	})
	if e.DisabledReason == nil || !strings.Contains(*e.DisabledReason, "every attempt failed since") {
		t.Fatalf("disabled endpoint %+v", e)
	}
	clk.Advance(2 * time.Hour)
	rc.none(200 * time.Millisecond) // disabled: its delivery waits

	rc.answer(http.StatusOK)
	whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": true}, http.StatusOK)
	if g := rc.next(whWait); g.eventID() != evID {
		t.Fatalf("resumed %s", g.eventID())
	}
	d = whWaitDelivery(t, a, d.ID, whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	if d.AttemptCount != 4 {
		t.Errorf("attempts %d, want 4", d.AttemptCount)
	}
	// The attempts' webhook-timestamps follow the portal's clock.
	got := rc.deliveries()
	for i := 1; i < len(got); i++ {
		if got[i].Header.Get("webhook-timestamp") <= got[i-1].Header.Get("webhook-timestamp") {
			t.Errorf("timestamps do not advance: %s then %s", got[i-1].Header.Get("webhook-timestamp"), got[i].Header.Get("webhook-timestamp"))
		}
	}
}

// Endpoint URLs on loopback, private or link-local addresses are refused
// when saved (IP literals, localhost) and when connecting (names that
// resolve to such addresses), unless the allow-list permits them.
func TestWebhookSSRFGuard(t *testing.T) {
	a := MustOpen(t, Config{})
	rc := newWhReceiver(t)
	for _, u := range []string{rc.URL(), "http://localhost:8080/", "http://[::1]/x", "http://10.1.2.3/x",
		"http://169.254.169.254/latest/meta-data", "http://192.168.0.10:9000/", "http://[fe80::1]/", "http://0.0.0.0/",
		"http://100.64.0.1/", "http://[::ffff:127.0.0.1]/"} {
		status, body := whDo(t, a, "POST", "/api/v1/endpoints", map[string]any{"url": u})
		if status != http.StatusBadRequest || !bytes.Contains(body, []byte("allow-private-endpoints")) {
			t.Errorf("POST endpoint %s: %d %s, want 400", u, status, body)
		}
	}
	whEndpoint(t, a, "https://hooks.example.com/portal") // public: accepted (checked again when connecting)

	// A name that resolves to loopback passes the save-time check (as
	// after DNS rebinding); the dial-time check refuses the connection.
	ep, secret, err := a.outbox.CreateEndpoint(context.Background(),
		outbox.EndpointParams{URL: strings.Replace(rc.URL(), "127.0.0.1", "localhost", 1)})
	if err != nil {
		t.Fatal(err)
	}
	rc.setSecrets([]string{secret})
	res := whCall[map[string]string](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/test", nil, http.StatusAccepted)
	d := whWaitDelivery(t, a, res["delivery_id"], whWait, "attempted", func(d outbox.Delivery) bool { return d.AttemptCount == 1 })
	if at := d.Attempts[0]; at.StatusCode != nil || !strings.Contains(at.Error, "refused by the address policy") {
		t.Fatalf("attempt to loopback: %+v", at)
	}
	rc.none(100 * time.Millisecond)

	// With the allow-list, 127.0.0.1 is permitted.
	b := MustOpen(t, Config{EndpointAllowCIDRs: []string{"127.0.0.1/32"}})
	ep2 := whEndpoint(t, b, rc.URL())
	rc.setSecrets([]string{ep2.Secret})
	res = whCall[map[string]string](t, b, "POST", "/api/v1/endpoints/"+ep2.ID+"/test", nil, http.StatusAccepted)
	if g := rc.next(whWait); g.eventID() != res["event_id"] {
		t.Fatalf("allowed delivery %s", g.eventID())
	}
	if status, _ := whDo(t, b, "POST", "/api/v1/endpoints", map[string]any{"url": "http://127.0.0.2/"}); status != http.StatusBadRequest {
		t.Errorf("127.0.0.2 outside the allow-list: %d, want 400", status)
	}
	if _, err := New(Config{EndpointAllowCIDRs: []string{"not-a-cidr"}}); err == nil {
		t.Error("a bad allow-list entry is accepted")
	}
}

// The endpoint API: validation answers 4xx JSON errors, PATCH changes
// what it is given, the test event goes to its endpoint only.
func TestWebhookEndpointAPI(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a, "file.uploaded")
	bystander, _ := whReceiverEndpoint(t, a) // all events

	bad := []struct {
		method, path string
		body         any
		status       int
	}{
		{"POST", "/api/v1/endpoints", `{"url":`, 400},
		{"POST", "/api/v1/endpoints", ``, 400},
		{"POST", "/api/v1/endpoints", map[string]any{}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "ftp://example.com/"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "example.com/hook"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://user:pw@example.com/"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/#x"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com:99999/"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "event_types": []string{"file.upload"}}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "event_types": []string{"*"}}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "event_types": []string{"user.*"}}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "event_types": []string{"file.uploaded", "file.uploaded"}}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "event_types": "file.uploaded"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "secret": "whsec_x"}, 400},
		{"POST", "/api/v1/endpoints", map[string]any{"url": "https://example.com/", "description": strings.Repeat("d", 1001)}, 400},
		{"GET", "/api/v1/endpoints/not-a-uuid", nil, 400},
		{"GET", "/api/v1/endpoints/0190a4f3-0000-7000-8000-000000000000", nil, 404},
		{"PATCH", "/api/v1/endpoints/0190a4f3-0000-7000-8000-000000000000", map[string]any{"enabled": true}, 404},
		{"PATCH", "/api/v1/endpoints/" + ep.ID, map[string]any{"url": "gopher://x"}, 400},
		{"PATCH", "/api/v1/endpoints/" + ep.ID, map[string]any{"enabled": "yes"}, 400},
		{"DELETE", "/api/v1/endpoints/nope", nil, 400},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/rotate-secret", map[string]any{"grace_period": "forever"}, 400},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/rotate-secret", map[string]any{"grace_period": "-1h"}, 400},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/rotate-secret", map[string]any{"grace_period": "1000h"}, 400},
		{"POST", "/api/v1/endpoints/0190a4f3-0000-7000-8000-000000000000/rotate-secret", nil, 404},
		{"POST", "/api/v1/endpoints/0190a4f3-0000-7000-8000-000000000000/test", nil, 404},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/replay", map[string]any{}, 400},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/replay", map[string]any{"status": "succeeded"}, 400},
		{"POST", "/api/v1/endpoints/" + ep.ID + "/replay", map[string]any{"since": "yesterday"}, 400},
		{"POST", "/api/v1/endpoints/0190a4f3-0000-7000-8000-000000000000/replay", map[string]any{"status": "failed"}, 404},
		{"GET", "/api/v1/endpoints/" + ep.ID + "/deliveries?status=odd", nil, 400},
		{"GET", "/api/v1/endpoints/" + ep.ID + "/deliveries?cursor=zzz", nil, 400},
		{"GET", "/api/v1/endpoints/" + ep.ID + "/deliveries?limit=0", nil, 400},
		{"GET", "/api/v1/deliveries/xyz", nil, 400},
		{"GET", "/api/v1/deliveries?endpoint_id=xyz", nil, 400},
		{"GET", "/api/v1/deliveries?status=done", nil, 400},
		{"GET", "/api/v1/deliveries/0190a4f3-0000-7000-8000-000000000000", nil, 404},
		{"POST", "/api/v1/deliveries/0190a4f3-0000-7000-8000-000000000000/retry", nil, 404},
	}
	for _, c := range bad {
		status, body := whDo(t, a, c.method, c.path, c.body)
		var e struct {
			Error struct{ Code, Message string }
		}
		if status != c.status || json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s %s %v: %d %s, want %d with a JSON error", c.method, c.path, c.body, status, body, c.status)
		}
	}

	// PATCH changes only what it is given.
	e := whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID,
		map[string]any{"description": "runner", "event_types": []string{"file.*"}}, http.StatusOK)
	if e.Description != "runner" || !slices.Equal(e.EventTypes, []string{"file.*"}) || e.URL != rc.URL() || !e.Enabled {
		t.Fatalf("patched endpoint %+v", e)
	}
	e = whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": false}, http.StatusOK)
	if e.Enabled || e.DisabledReason == nil || *e.DisabledReason != "disabled by admin" {
		t.Fatalf("disabled endpoint %+v", e)
	}
	e = whCall[outbox.Endpoint](t, a, "PATCH", "/api/v1/endpoints/"+ep.ID, map[string]any{"enabled": true}, http.StatusOK)
	if !e.Enabled || e.DisabledReason != nil || e.Description != "runner" {
		t.Fatalf("re-enabled endpoint %+v", e)
	}
	got := whCall[outbox.Endpoint](t, a, "GET", "/api/v1/endpoints/"+ep.ID, nil, http.StatusOK)
	if got.Description != "runner" || got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("endpoint %+v", got)
	}

	// The test event reaches this endpoint only, whatever its filter.
	res := whCall[map[string]string](t, a, "POST", "/api/v1/endpoints/"+ep.ID+"/test", nil, http.StatusAccepted)
	g := rc.next(whWait)
	p := g.payload(t)
	if p["event_type"] != EventPortalTest || p["endpoint_id"] != ep.ID || g.eventID() != res["event_id"] {
		t.Fatalf("test event %s", g.Body)
	}
	MustValidatePayload(t, g.Body)
	bystander.none(300 * time.Millisecond)
	d := whWaitDelivery(t, a, res["delivery_id"], whWait, "succeeded", func(d outbox.Delivery) bool { return d.Status == outbox.StatusSucceeded })
	page := whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/endpoints/"+ep.ID+"/deliveries?status=succeeded&limit=1", nil, http.StatusOK)
	if len(page.Items) != 1 || page.Items[0].ID != d.ID || page.Items[0].EventType != EventPortalTest {
		t.Fatalf("deliveries page %+v", page)
	}
	page = whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/deliveries?endpoint_id="+ep.ID+"&limit=1", nil, http.StatusOK)
	if len(page.Items) != 1 || page.Items[0].ID != d.ID {
		t.Fatalf("deliveries of the endpoint: %+v", page)
	}
	page = whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/deliveries?limit=1&cursor="+d.ID, nil, http.StatusOK)
	if len(page.Items) != 0 {
		t.Fatalf("deliveries before the first: %+v", page)
	}
	page = whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/deliveries?event_type=portal.test", nil, http.StatusOK)
	if len(page.Items) != 1 || page.Items[0].ID != d.ID {
		t.Fatalf("deliveries of portal.test events: %+v", page)
	}
	page = whCall[outbox.DeliveryPage](t, a, "GET", "/api/v1/deliveries?event_type=file.uploaded", nil, http.StatusOK)
	if len(page.Items) != 0 {
		t.Fatalf("deliveries of file.uploaded events (there are none): %+v", page)
	}
	whCall[map[string]any](t, a, "GET", "/api/v1/deliveries?event_type="+strings.Repeat("x", 101), nil, http.StatusBadRequest)
}

// Every delivery row is created in the event's own transaction: when the
// transaction rolls back, neither the event nor its deliveries exist.
func TestWebhookFanOutInEventTransaction(t *testing.T) {
	a := MustOpen(t, whConfig())
	_, ep := whReceiverEndpoint(t, a)
	ctx := context.Background()
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := outbox.Event{ID: "0190a4f3-0000-7000-8000-00000000abcd", Type: EventFileUploaded, Payload: []byte(`{}`), CreatedAt: time.Now()}
	if err := a.outbox.Append(ctx, tx, ev); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM deliveries WHERE event_id = ? AND endpoint_id = ?", ev.ID, ep.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("deliveries in the transaction: %d, %v", n, err)
	}
	tx.Rollback()
	err = a.db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM deliveries WHERE event_id = ?", ev.ID).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("deliveries after rollback: %d, %v", n, err)
	}
	if _, err := a.outbox.Get(ctx, ev.ID); err != outbox.ErrNotFound {
		t.Fatalf("event after rollback: %v", err)
	}
}
