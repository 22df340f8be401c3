package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testClock is an injected clock that moves only when told (expiry, cleanup
// and webhook tests). newTestClock starts it at the real time, because the
// cleanup compares it with real file times.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// openExpiry opens a portal on clock whose jobs do not tick during the
// test (tests run them with runExpiry/runCleanup), unless cfg says.
func openExpiry(tb testing.TB, clock *testClock, cfg Config) *App {
	tb.Helper()
	cfg.Now = clock.Now
	if cfg.ExpirySchedule == "" {
		cfg.ExpirySchedule = "@every 24h"
	}
	if cfg.CleanupSchedule == "" {
		cfg.CleanupSchedule = "@every 24h"
	}
	return MustOpen(tb, cfg)
}

// mustStore uploads data with meta (as the admin) and returns its file.
func mustStore(tb testing.TB, a *App, data []byte, meta map[string]string) File {
	tb.Helper()
	url := MustUpload(tb, a.URL(), data, len(data)+1, meta)
	f, ok := fileByUpload(tb, a, url)
	if !ok {
		tb.Fatalf("upload %s has no file", url)
	}
	return f
}

// mustStoreAs uploads data with the given bearer token and returns the file.
func mustStoreAs(tb testing.TB, a *App, token string, data []byte, meta map[string]string) File {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
	req.Header.Set("Upload-Metadata", encodeMeta(meta))
	resp := authDo(tb, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("create upload: %s", resp.Status)
	}
	url := resp.Header.Get("Location")
	st, _ := doAs(tb, token, http.MethodPatch, url, bytes.NewReader(data), map[string]string{
		"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
	if st != http.StatusNoContent {
		tb.Fatalf("PATCH: %d", st)
	}
	f, ok := fileByUpload(tb, a, url)
	if !ok {
		tb.Fatalf("upload %s has no file", url)
	}
	return f
}

// mustFile reads a file's row.
func mustFile(tb testing.TB, a *App, id string) File {
	tb.Helper()
	var f File
	if st := getJSON(tb, a.URL()+"/api/v1/files/"+id, &f); st != http.StatusOK {
		tb.Fatalf("GET file %s: %d", id, st)
	}
	return f
}

// checkedEvents returns a file's events, oldest first, each validated
// against its JSON Schema, with their payloads decoded.
func checkedEvents(tb testing.TB, a *App, fileID string) []EventPayload {
	tb.Helper()
	var out []EventPayload
	for _, ev := range eventsOf(tb, a, fileID) {
		MustValidatePayload(tb, ev.Payload)
		var p EventPayload
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			tb.Fatal(err)
		}
		if p.EventType != ev.Type || p.EventID != ev.ID || p.File.ID != fileID {
			tb.Fatalf("event %s/%s does not match its payload %s", ev.ID, ev.Type, ev.Payload)
		}
		out = append(out, p)
	}
	return out
}

func mustTypes(tb testing.TB, a *App, f File, want ...string) []EventPayload {
	tb.Helper()
	evs := checkedEvents(tb, a, f.ID)
	got := make([]string, len(evs))
	for i, p := range evs {
		got[i] = p.EventType
	}
	if !equalStrings(got, want) {
		tb.Fatalf("file %s: events %v, want %v", f.ID, got, want)
	}
	return evs
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// uploadFiles lists what the store holds of an upload (data, .info,
// .sha256) that exists.
func uploadFiles(a *App, uploadID string) []string {
	var out []string
	for _, name := range []string{uploadID, uploadID + ".info", uploadID + ".sha256"} {
		if _, err := os.Stat(filepath.Join(a.UploadDir(), name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

// ageUpload sets the modification times of an upload's files to t.
func ageUpload(tb testing.TB, a *App, uploadID string, t time.Time) {
	tb.Helper()
	for _, name := range []string{uploadID, uploadID + ".info", uploadID + ".sha256"} {
		err := os.Chtimes(filepath.Join(a.UploadDir(), name), t, t)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			tb.Fatal(err)
		}
	}
}

// sendJSON sends a request with a JSON body as the admin (or with token).
func sendJSON(tb testing.TB, token, method, url, body string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp := authDo(tb, req)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
