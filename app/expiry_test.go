package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustRunExpiry(tb testing.TB, a *App) int {
	tb.Helper()
	n, err := a.runExpiry(context.Background())
	if err != nil {
		tb.Fatalf("runExpiry: %v", err)
	}
	return n
}

func mustRunCleanup(tb testing.TB, a *App) cleanupResult {
	tb.Helper()
	r, err := a.runCleanup(context.Background())
	if err != nil {
		tb.Fatalf("runCleanup: %v", err)
	}
	return r
}

func TestExpiryNoticeBeforeDeletion(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{FileTTL: 48 * time.Hour, ExpiryNotifyBefore: 24 * time.Hour})
	data := randomBytes(t, 3000)
	f := mustStore(t, a, data, map[string]string{"filename": "a.bin", "project": "apollo"})
	if want := f.StoredAt.Add(48 * time.Hour); !f.ExpiresAt.Equal(want) {
		t.Fatalf("expires_at %s, want %s", f.ExpiresAt, want)
	}

	clock.Advance(23 * time.Hour) // expires in 25h: outside the window
	if n := mustRunExpiry(t, a); n != 0 {
		t.Fatalf("%d notices 25h before expiry", n)
	}
	clock.Advance(2 * time.Hour) // expires in 23h
	if n := mustRunExpiry(t, a); n != 1 {
		t.Fatalf("%d notices 23h before expiry, want 1", n)
	}
	if n := mustRunExpiry(t, a); n != 0 {
		t.Fatalf("second run sent %d notices", n)
	}
	if r := mustRunCleanup(t, a); r != (cleanupResult{}) {
		t.Fatalf("cleanup before expiry did %+v", r)
	}
	if resp := authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content"); resp.StatusCode != 200 {
		t.Fatalf("content before expiry: %s", resp.Status)
	}

	clock.Advance(24 * time.Hour) // 1h past expiry
	if r := mustRunCleanup(t, a); r != (cleanupResult{Expired: 1}) {
		t.Fatalf("cleanup after expiry did %+v, want 1 expired and no late notice", r)
	}
	evs := mustTypes(t, a, f, EventFileUploaded, EventFileExpiring, EventFileDeleted)
	exp, del := evs[1], evs[2]
	// The notice names the uploader (the tests upload as admin); the
	// cleanup's deletion names no one.
	if exp.File.ExpiresAt != rfc3339(f.ExpiresAt) || exp.Actor.Username == nil || *exp.Actor.Username != "admin" ||
		exp.Actor.UserID == nil || f.OwnerID == nil || *exp.Actor.UserID != *f.OwnerID || exp.Reason != "" {
		t.Fatalf("file.expiring payload: %+v", exp)
	}
	if exp.File.Metadata["project"] != "apollo" || exp.File.SHA256 != sha256Hex(data) {
		t.Fatalf("file.expiring lacks the file's fields: %+v", exp.File)
	}
	if del.Reason != ReasonExpired || del.Actor.UserID != nil || del.OccurredAt != rfc3339(clock.Now()) {
		t.Fatalf("file.deleted payload: %+v", del)
	}
	if !(exp.OccurredAt < del.OccurredAt) {
		t.Fatalf("notice at %s, deletion at %s", exp.OccurredAt, del.OccurredAt)
	}
	g := mustFile(t, a, f.ID)
	if g.Status != StatusDeleted || g.DeleteReason != ReasonExpired || g.DeletedAt == nil ||
		!g.DeletedAt.Equal(clock.Now().UTC().Truncate(time.Millisecond)) {
		t.Fatalf("file after cleanup: %+v", g)
	}
	if left := uploadFiles(a, f.UploadID); len(left) != 0 {
		t.Fatalf("bytes left after cleanup: %v", left)
	}
	if resp := authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content"); resp.StatusCode != http.StatusGone {
		t.Fatalf("content after expiry: %s", resp.Status)
	}
	if r := mustRunCleanup(t, a); r != (cleanupResult{}) {
		t.Fatalf("second cleanup did %+v", r)
	}
	if n := mustRunExpiry(t, a); n != 0 {
		t.Fatalf("notice for a deleted file")
	}
	mustTypes(t, a, f, EventFileUploaded, EventFileExpiring, EventFileDeleted)
	checkCounters(t, a)
}

func TestExpiryNoticeExactlyOnce(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{ExpiryNotifyBefore: 24 * time.Hour})
	a.jobs.batch = 2 // several batches per run
	var files []File
	for i := range 7 {
		files = append(files, mustStore(t, a, randomBytes(t, 100+i), map[string]string{"ttl": "1h"}))
	}
	// Overlapping runs: every run claims in its own transactions.
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Go(func() { counts[i], errs[i] = a.runExpiry(context.Background()) })
	}
	wg.Wait()
	total := 0
	for i := range counts {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	total += mustRunExpiry(t, a) + mustRunExpiry(t, a)
	if total != len(files) {
		t.Fatalf("runs report %d notices (%v), want %d", total, counts, len(files))
	}
	for _, f := range files {
		mustTypes(t, a, f, EventFileUploaded, EventFileExpiring)
	}
}

// A run stopped between batches (a crash or a restart) leaves whole
// batches; the next run, in a new process, sends the rest, each once.
func TestExpiryNoticeExactlyOnceAcrossRestart(t *testing.T) {
	clock := newTestClock()
	dir := t.TempDir()
	a := openExpiry(t, clock, Config{DataDir: dir})
	var files []File
	for i := range 5 {
		files = append(files, mustStore(t, a, randomBytes(t, 50+i), map[string]string{"ttl": "2h"}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.jobs.batch = 2
	a.jobs.afterBatch = func(string) { cancel() } // dies after the first batch
	n, err := a.runExpiry(ctx)
	if n != 2 || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %d notices, err %v; want 2 and canceled", n, err)
	}
	a.Close()

	b := openExpiry(t, clock, Config{DataDir: dir})
	if n := mustRunExpiry(t, b); n != 3 {
		t.Fatalf("run after restart sent %d notices, want 3", n)
	}
	if n := mustRunExpiry(t, b); n != 0 {
		t.Fatalf("another run sent %d", n)
	}
	for _, f := range files {
		mustTypes(t, b, f, EventFileUploaded, EventFileExpiring)
	}
}

func TestTTLShorterThanNotifyWindow(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{ExpiryNotifyBefore: 24 * time.Hour})

	// The notifier runs first: the notice goes out at once.
	f := mustStore(t, a, randomBytes(t, 100), map[string]string{"ttl": "1h"})
	if n := mustRunExpiry(t, a); n != 1 {
		t.Fatalf("%d notices for a 1h TTL with a 24h window", n)
	}
	clock.Advance(2 * time.Hour)
	if r := mustRunCleanup(t, a); r != (cleanupResult{Expired: 1}) {
		t.Fatalf("cleanup did %+v", r)
	}
	mustTypes(t, a, f, EventFileUploaded, EventFileExpiring, EventFileDeleted)

	// The cleanup comes first: it commits the notice itself, before the
	// deletion, in the same transaction.
	g := mustStore(t, a, randomBytes(t, 100), map[string]string{"ttl": "30m"})
	clock.Advance(time.Hour)
	if r := mustRunCleanup(t, a); r != (cleanupResult{Expired: 1, Notices: 1}) {
		t.Fatalf("cleanup did %+v, want the late notice and the deletion", r)
	}
	evs := mustTypes(t, a, g, EventFileUploaded, EventFileExpiring, EventFileDeleted)
	if evs[1].OccurredAt != evs[2].OccurredAt || evs[1].File.ExpiresAt != rfc3339(g.ExpiresAt) {
		t.Fatalf("late notice %+v, deletion %+v", evs[1], evs[2])
	}
	if n := mustRunExpiry(t, a); n != 0 {
		t.Fatalf("notifier sent %d more", n)
	}
}

// Across downtime past the expiry, the restarted portal's scheduled jobs
// send the notice, then the deletion.
func TestExpiryAcrossDowntime(t *testing.T) {
	clock := newTestClock()
	dir := t.TempDir()
	a := openExpiry(t, clock, Config{DataDir: dir, FileTTL: 2 * time.Hour, ExpiryNotifyBefore: time.Hour})
	f := mustStore(t, a, randomBytes(t, 500), nil)
	a.Close()

	clock.Advance(3 * time.Hour) // down across the notice window and the expiry
	b := openExpiry(t, clock, Config{DataDir: dir, FileTTL: 2 * time.Hour, ExpiryNotifyBefore: time.Hour,
		ExpirySchedule: "@every 1s", CleanupSchedule: "@every 1s"})
	deadline := time.Now().Add(10 * time.Second)
	for mustFile(t, b, f.ID).Status != StatusDeleted {
		if time.Now().After(deadline) {
			t.Fatal("the scheduled jobs did not delete the expired file")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustTypes(t, b, f, EventFileUploaded, EventFileExpiring, EventFileDeleted)
	// The bytes go right after the deletion commits, in the same run.
	for left := uploadFiles(b, f.UploadID); len(left) != 0; left = uploadFiles(b, f.UploadID) {
		if time.Now().After(deadline) {
			t.Fatalf("bytes left: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := b.JobStats()
	if st[jobCleanup].Runs == 0 || st[jobExpiry].Runs == 0 || st[jobCleanup].Failures != 0 || st[jobExpiry].Failures != 0 {
		t.Fatalf("job stats %+v", st)
	}
}

func TestUploadTTLMetadata(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{FileTTL: 24 * time.Hour, FileTTLMax: 48 * time.Hour})
	for _, tc := range []struct {
		ttl  string
		want time.Duration
	}{
		{"", 24 * time.Hour},
		{"2h", 2 * time.Hour},
		{"7200", 2 * time.Hour},
		{" 90m ", 90 * time.Minute},
		{"100h", 48 * time.Hour},                 // clamped to the maximum
		{"99999999999999999999", 48 * time.Hour}, // too many seconds: clamped too
	} {
		t.Run(tc.ttl, func(t *testing.T) {
			meta := map[string]string{"filename": "t.txt", "keep": "me"}
			if tc.ttl != "" {
				meta["ttl"] = tc.ttl
			}
			f := mustStore(t, a, randomBytes(t, 10), meta)
			if got := f.ExpiresAt.Sub(f.StoredAt); got != tc.want {
				t.Fatalf("TTL %s, want %s", got, tc.want)
			}
			if _, ok := f.Metadata["ttl"]; ok || f.Metadata["keep"] != "me" {
				t.Fatalf("metadata %v: ttl must be interpreted, not copied", f.Metadata)
			}
			p := mustTypes(t, a, f, EventFileUploaded)[0]
			if _, ok := p.File.Metadata["ttl"]; ok || p.File.ExpiresAt != rfc3339(f.ExpiresAt) {
				t.Fatalf("payload file %+v", p.File)
			}
		})
	}
	for _, bad := range []string{"0", "0s", "-1h", "-5", "abc", "1.5", "7d", "1h-", strings.Repeat("x", 2000)} {
		t.Run("bad "+bad[:min(len(bad), 10)], func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
			req.Header.Set("Tus-Resumable", "1.0.0")
			req.Header.Set("Upload-Length", "10")
			req.Header.Set("Upload-Metadata", encodeMeta(map[string]string{"ttl": bad}))
			resp := authDo(t, req)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "ttl") {
				t.Fatalf("ttl %q: %s %s", bad, resp.Status, body)
			}
		})
	}
}

func TestPatchFileExpiry(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{ExpiryNotifyBefore: 24 * time.Hour})
	f := mustStore(t, a, randomBytes(t, 100), nil) // default TTL: 7 days
	url := a.URL() + "/api/v1/files/" + f.ID
	patch := func(body string) (int, File) {
		t.Helper()
		st, b := sendJSON(t, "", http.MethodPatch, url, body)
		var g File
		if st == http.StatusOK {
			if err := json.Unmarshal(b, &g); err != nil {
				t.Fatal(err)
			}
		}
		return st, g
	}

	st, g := patch(`{"ttl":"2h"}`)
	if st != 200 || !g.ExpiresAt.Equal(f.StoredAt.Add(2*time.Hour)) {
		t.Fatalf("ttl 2h: %d %+v", st, g)
	}
	if n := mustRunExpiry(t, a); n != 1 {
		t.Fatalf("%d notices after shortening to 2h", n)
	}
	// Extending re-arms the notice: it comes again, with the new expiry.
	later := f.StoredAt.Add(72 * time.Hour)
	st, g = patch(fmt.Sprintf(`{"expires_at":%q}`, later.Format(time.RFC3339Nano)))
	if st != 200 || !g.ExpiresAt.Equal(later) {
		t.Fatalf("expires_at: %d %+v", st, g)
	}
	if n := mustRunExpiry(t, a); n != 0 {
		t.Fatalf("notice 72h ahead of expiry")
	}
	clock.Advance(49 * time.Hour)
	if n := mustRunExpiry(t, a); n != 1 {
		t.Fatalf("%d notices for the re-armed expiry", n)
	}
	evs := mustTypes(t, a, f, EventFileUploaded, EventFileExpiring, EventFileExpiring)
	if evs[1].File.ExpiresAt != rfc3339(f.StoredAt.Add(2*time.Hour)) || evs[2].File.ExpiresAt != rfc3339(later) {
		t.Fatalf("notices carry %s and %s", evs[1].File.ExpiresAt, evs[2].File.ExpiresAt)
	}
	if st, g = patch(`{"ttl":259200}`); st != 200 || !g.ExpiresAt.Equal(f.StoredAt.Add(72*time.Hour)) {
		t.Fatalf("ttl in seconds: %d %+v", st, g)
	}

	for _, body := range []string{``, `{}`, `not json`, `{"ttl":"2h","expires_at":"2030-01-01T00:00:00Z"}`,
		`{"ttl":"-1h"}`, `{"ttl":0}`, `{"ttl":"soon"}`, `{"ttl":1.5}`, `{"ttl":true}`, `{"expires_at":"tomorrow"}`,
		`{"expires_at":"2000-01-01T00:00:00Z"}`, `{"owner":"x"}`, `{"ttl":"2h"} {}`, `{"ttl":null}`, `null`, `[]`} {
		if st, b := sendJSON(t, "", http.MethodPatch, url, body); st != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
			t.Errorf("PATCH %s: %d %s", body, st, b)
		}
	}

	// Uploaders may not change expiry, not even of their own files.
	bob := mustUser(t, a, "bob", RoleUploader)
	bobTok := mustToken(t, a, bob, nil)
	bf := mustStoreAs(t, a, bobTok, randomBytes(t, 10), nil)
	if st, b := sendJSON(t, bobTok, http.MethodPatch, a.URL()+"/api/v1/files/"+bf.ID, `{"ttl":"1h"}`); st != http.StatusForbidden {
		t.Fatalf("uploader PATCH of own file: %d %s", st, b)
	}
	if st, _ := sendJSON(t, bobTok, http.MethodPatch, url, `{"ttl":"1h"}`); st != http.StatusForbidden {
		t.Fatalf("uploader PATCH of another's file: %d, want 403 like their own", st)
	}
	if st, _ := sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a", `{"ttl":"1h"}`); st != http.StatusNotFound {
		t.Fatalf("PATCH of unknown file: %d", st)
	}

	if st, _ := sendJSON(t, "", http.MethodDelete, url, ""); st != http.StatusNoContent {
		t.Fatalf("DELETE: %d", st)
	}
	if st, b := sendJSON(t, "", http.MethodPatch, url, `{"ttl":"2h"}`); st != http.StatusConflict {
		t.Fatalf("PATCH of a deleted file: %d %s", st, b)
	}
}

// A failing run is counted, logged and retried by the next run.
func TestJobFailureCountedAndRetried(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{})
	f := mustStore(t, a, randomBytes(t, 10), map[string]string{"ttl": "1h"})
	restore := failEvents(t, a)
	a.expiryJob(context.Background())
	if s := a.JobStats()[jobExpiry]; s.Runs != 1 || s.Failures != 1 || s.Handled != 0 || !s.LastSuccess.IsZero() {
		t.Fatalf("after a failed run: %+v", s)
	}
	mustTypes(t, a, f, EventFileUploaded) // the claim rolled back with the event
	restore()
	a.expiryJob(context.Background())
	if s := a.JobStats()[jobExpiry]; s.Runs != 2 || s.Failures != 1 || s.Handled != 1 || s.LastSuccess.IsZero() {
		t.Fatalf("after the retry: %+v", s)
	}
	mustTypes(t, a, f, EventFileUploaded, EventFileExpiring)

	clock.Advance(2 * time.Hour)
	a.cleanupJob(context.Background())
	if s := a.JobStats()[jobCleanup]; s.Runs != 1 || s.Failures != 0 || s.Handled != 1 {
		t.Fatalf("cleanup stats: %+v", s)
	}
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`portal_job_runs_total{job="expiry"} 2`, `portal_job_failures_total{job="expiry"} 1`,
		`portal_job_handled_total{job="cleanup"} 1`, `portal_job_last_success_timestamp_seconds{job="cleanup"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestExpiryConfig(t *testing.T) {
	for _, ok := range []Config{{}, {ExpirySchedule: "*/5 * * * *", CleanupSchedule: "@hourly"},
		{ExpirySchedule: "@every 30s", ExpiryNotifyBefore: time.Minute, IncompleteTTL: time.Hour}} {
		c, err := New(ok)
		if err != nil {
			t.Errorf("%+v: %v", ok, err)
			continue
		}
		if c.cfg.ExpirySchedule == "" || c.cfg.CleanupSchedule == "" || c.cfg.ExpiryNotifyBefore <= 0 || c.cfg.IncompleteTTL <= 0 {
			t.Errorf("defaults not applied: %+v", c.cfg)
		}
	}
	for _, bad := range []Config{{ExpirySchedule: "every minute"}, {CleanupSchedule: "* * *"},
		{ExpiryNotifyBefore: -time.Hour}, {IncompleteTTL: -1}} {
		if _, err := New(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestExpirySchemasServedAndStrict(t *testing.T) {
	a := MustOpen(t, Config{})
	for _, typ := range []string{EventFileExpiring, EventFileDeleted} {
		resp, err := http.Get(a.URL() + "/schemas/" + typ + ".json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("schema %s: %s", typ, resp.Status)
		}
	}
	base := `{"event_type":"%s","event_id":"01a207ca-0674-7570-b834-55c3919fb17b",
	"occurred_at":"2026-11-23T09:43:30.163Z","file":{"id":"01a207ca-0673-7e8a-93d4-b765bcb0528a",
	"filename":"a.txt","content_type":"text/plain","size_bytes":1,
	"sha256":"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
	"storage":{"backend":"local","bucket":"uploads","key":"k"},"metadata":{},
	"download_url":"http://127.0.0.1:8080/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a/content"%s},
	"actor":{"user_id":null,"username":null},"source":"http://127.0.0.1:8080"%s}`
	exp := `,"expires_at":"2026-11-24T09:43:30.163Z"`
	cases := []struct {
		typ, payload string
		ok           bool
	}{
		{EventFileExpiring, fmt.Sprintf(base, EventFileExpiring, exp, ""), true},
		{EventFileExpiring, fmt.Sprintf(base, EventFileExpiring, "", ""), false}, // no expires_at
		{EventFileExpiring, fmt.Sprintf(base, EventFileUploaded, exp, ""), false},
		{EventFileDeleted, fmt.Sprintf(base, EventFileDeleted, exp, `,"reason":"expired"`), true},
		{EventFileDeleted, fmt.Sprintf(base, EventFileDeleted, exp, `,"reason":"deleted_by_admin"`), true},
		{EventFileDeleted, fmt.Sprintf(base, EventFileDeleted, exp, ""), false}, // no reason
		{EventFileDeleted, fmt.Sprintf(base, EventFileDeleted, exp, `,"reason":"gone"`), false},
		{EventFileDeleted, fmt.Sprintf(base, EventFileExpiring, exp, `,"reason":"expired"`), false},
	}
	for i, c := range cases {
		err := validatePayload(t, c.typ, []byte(c.payload))
		if (err == nil) != c.ok {
			t.Errorf("case %d (%s): valid=%v, want %v: %v", i, c.typ, err == nil, c.ok, err)
		}
	}
}
