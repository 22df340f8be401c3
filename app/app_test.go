package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// MustOpen starts a portal on 127.0.0.1:0 with its data in a temporary
// directory (or cfg.DataDir) and closes it when the test ends.
func MustOpen(tb testing.TB, cfg Config) *App {
	tb.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = tb.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.Console == nil {
		cfg.Console = io.Discard // the generated admin password
	}
	if cfg.passwordCost == 0 {
		cfg.passwordCost = bcrypt.MinCost
	}
	// Every error body is scanned for the data directory, and every API
	// exchange is checked against the OpenAPI document.
	// Inside a fuzz target a finding cannot go to the *testing.F: it is
	// kept for the target to report on its own *testing.T (fuzzFindingsOf).
	rtb := tb
	if f, ok := tb.(*testing.F); ok {
		rtb = fuzzFindingsOf(f)
	}
	wrap, contract, scan := cfg.wrapHandler, checkContract(rtb), scanErrorBodies(rtb, cfg.DataDir)
	cfg.wrapHandler = func(h http.Handler) http.Handler {
		if wrap != nil {
			h = wrap(h)
		}
		return scan(contract(h))
	}
	a, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	registerTestPortal(tb, a) // the helpers below act as its admin
	return a
}

// testWriter sends log lines to the test's log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// randomBytes returns n random bytes.
func randomBytes(tb testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// encodeMeta builds a tus Upload-Metadata header, keys in sorted order.
func encodeMeta(meta map[string]string) string {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(meta[k])))
	}
	return strings.Join(parts, ",")
}

// tusCreate creates an upload of the given length and returns its URL.
func tusCreate(tb testing.TB, base string, length int, meta map[string]string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(length))
	if meta != nil {
		req.Header.Set("Upload-Metadata", encodeMeta(meta))
	}
	resp := authDo(tb, req)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(resp.Body)
		tb.Fatalf("create upload: %s: %s", resp.Status, body)
	}
	return resp.Header.Get("Location")
}

// tusPatch sends one PATCH and returns the response status and new offset.
func tusPatch(tb testing.TB, url string, offset int, chunk []byte) (int, int) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPatch, url, bytes.NewReader(chunk))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", strconv.Itoa(offset))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp := authDo(tb, req)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	off, _ := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	return resp.StatusCode, off
}

// MustUpload uploads data in PATCHes of chunk bytes and returns the upload
// URL; the last PATCH must answer 204.
func MustUpload(tb testing.TB, base string, data []byte, chunk int, meta map[string]string) string {
	tb.Helper()
	url := tusCreate(tb, base, len(data), meta)
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		status, newOff := tusPatch(tb, url, off, data[off:end])
		if status != http.StatusNoContent || newOff != end {
			tb.Fatalf("PATCH at %d: status %d, offset %d", off, status, newOff)
		}
	}
	return url
}

// getJSON GETs url (as the admin) and decodes the JSON body into v; it
// returns the status.
func getJSON(tb testing.TB, url string, v any) int {
	tb.Helper()
	resp := authGet(tb, url)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			tb.Fatalf("GET %s: %s: not JSON: %v: %s", url, resp.Status, err, body)
		}
	}
	return resp.StatusCode
}

func uploadID(url string) string { return url[strings.LastIndex(url, "/")+1:] }

// fileByUpload finds the file row of an upload through the API.
func fileByUpload(tb testing.TB, a *App, uploadURL string) (File, bool) {
	tb.Helper()
	var page FilePage
	if st := getJSON(tb, a.URL()+"/api/v1/files?limit=500", &page); st != 200 {
		tb.Fatalf("list files: %d", st)
	}
	for _, f := range page.Items {
		if f.UploadID == uploadID(uploadURL) {
			return f, true
		}
	}
	return File{}, false
}

type apiEvent struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	FileID  string          `json:"file_id"`
	Payload json.RawMessage `json:"payload"`
}

// eventsOf lists a file's events through the API, oldest first.
func eventsOf(tb testing.TB, a *App, fileID string) []apiEvent {
	tb.Helper()
	var page struct{ Items []apiEvent }
	if st := getJSON(tb, a.URL()+"/api/v1/events?limit=500&file_id="+fileID, &page); st != 200 {
		tb.Fatalf("list events: %d", st)
	}
	for i, j := 0, len(page.Items)-1; i < j; i, j = i+1, j-1 {
		page.Items[i], page.Items[j] = page.Items[j], page.Items[i]
	}
	return page.Items
}

func countRows(tb testing.TB, a *App, table string) int {
	tb.Helper()
	var n int
	if err := a.db.R.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestUploadStoresFileAndEvent(t *testing.T) {
	a := MustOpen(t, Config{Bucket: "test-bucket"})
	data := randomBytes(t, 3<<20+17)
	url := MustUpload(t, a.URL(), data, 1<<20, map[string]string{
		"filename": "../../etc/report.pdf", "filetype": "application/pdf", "project": "apollo",
	})
	f, ok := fileByUpload(t, a, url)
	if !ok {
		t.Fatal("no file row after the final 204")
	}
	want := File{Filename: "report.pdf", ContentType: "application/pdf", SizeBytes: int64(len(data)),
		SHA256: sha256Hex(data), Status: StatusStored,
		Storage: Storage{Backend: "local", Bucket: "test-bucket", Key: uploadID(url)}}
	if f.Filename != want.Filename || f.ContentType != want.ContentType || f.SizeBytes != want.SizeBytes ||
		f.SHA256 != want.SHA256 || f.Status != want.Status || f.Storage != want.Storage {
		t.Fatalf("file = %+v\nwant %+v", f, want)
	}
	if f.Metadata["project"] != "apollo" || len(f.Metadata) != 1 {
		t.Errorf("metadata = %v, want only project=apollo", f.Metadata)
	}
	if got := f.ExpiresAt.Sub(f.StoredAt); got != DefaultFileTTL {
		t.Errorf("expires_at - stored_at = %s, want %s", got, DefaultFileTTL)
	}
	// The bytes were hashed as they arrived: finalize read none back.
	if n := a.tus.Store().BytesRehashed(); n != 0 {
		t.Errorf("finalize re-read %d bytes, want 0", n)
	}

	evs := eventsOf(t, a, f.ID)
	if len(evs) != 1 || evs[0].Type != EventFileUploaded {
		t.Fatalf("events = %+v, want one file.uploaded", evs)
	}
	MustValidatePayload(t, evs[0].Payload)
	var p EventPayload
	json.Unmarshal(evs[0].Payload, &p)
	// The helpers upload as the admin, so the admin is the actor.
	if p.EventID != evs[0].ID || p.File.ID != f.ID || p.File.SHA256 != want.SHA256 || p.Source != a.URL() ||
		p.Actor.Username == nil || *p.Actor.Username != "admin" || p.Actor.UserID == nil || f.OwnerID == nil ||
		*p.Actor.UserID != *f.OwnerID || p.File.DownloadURL != a.URL()+"/api/v1/files/"+f.ID+"/content" {
		t.Errorf("payload = %+v", p)
	}

	// The download URL serves the same bytes.
	resp := authGet(t, p.File.DownloadURL)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("download: %d bytes, equal=%v", len(got), bytes.Equal(got, data))
	}
}

func TestEmptyAndDefaultMetadata(t *testing.T) {
	a := MustOpen(t, Config{})
	url := tusCreate(t, a.URL(), 0, nil) // a 0-byte upload completes at creation
	f, ok := fileByUpload(t, a, url)
	if !ok {
		t.Fatal("empty upload not finalized")
	}
	if f.Filename != "upload" || f.ContentType != "application/octet-stream" || f.SHA256 != sha256Hex(nil) {
		t.Errorf("file = %+v", f)
	}
	MustValidatePayload(t, eventsOf(t, a, f.ID)[0].Payload)
}

// failEvents makes every insert into events fail until the returned
// function is called.
func failEvents(tb testing.TB, a *App) (restore func()) {
	tb.Helper()
	if _, err := a.db.W.Exec(`CREATE TRIGGER fail_events BEFORE INSERT ON events
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		tb.Fatal(err)
	}
	return func() {
		if _, err := a.db.W.Exec("DROP TRIGGER fail_events"); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestFinalizeIsOneTransaction(t *testing.T) {
	a := MustOpen(t, Config{SweepInterval: time.Hour})
	restore := failEvents(t, a)
	data := randomBytes(t, 1000)
	url := tusCreate(t, a.URL(), len(data), map[string]string{"filename": "a.bin"})
	status, _ := tusPatch(t, url, 0, data)
	if status < 500 {
		t.Fatalf("PATCH with a failing finalize answered %d, want 5xx", status)
	}
	// The event insert failed, so the file row rolled back with it.
	if n := countRows(t, a, "files"); n != 0 {
		t.Fatalf("%d file rows after a failed finalize, want 0", n)
	}
	restore()
	// tusd never calls the hook again; the sweep finishes the upload.
	a.sweep(context.Background())
	f, ok := fileByUpload(t, a, url)
	if !ok || f.SHA256 != sha256Hex(data) {
		t.Fatalf("sweep did not finalize the upload: %+v", f)
	}
	if n := len(eventsOf(t, a, f.ID)); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestFinalizeIdempotent(t *testing.T) {
	a := MustOpen(t, Config{})
	data := randomBytes(t, 5000)
	url := MustUpload(t, a.URL(), data, 5000, nil)
	c, err := a.tus.Completed(context.Background(), uploadID(url))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := a.finalize(c); err != nil {
			t.Fatal(err)
		}
	}
	a.sweep(context.Background())
	if f, e := countRows(t, a, "files"), countRows(t, a, "events"); f != 1 || e != 1 {
		t.Fatalf("files=%d events=%d after repeated finalize, want 1 and 1", f, e)
	}
	// Concurrent finalizes of the same upload still add one row.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); a.finalize(c) }()
	}
	wg.Wait()
	if f, e := countRows(t, a, "files"), countRows(t, a, "events"); f != 1 || e != 1 {
		t.Fatalf("files=%d events=%d after concurrent finalize, want 1 and 1", f, e)
	}
}

func TestSweepAtStartup(t *testing.T) {
	dir := t.TempDir()
	a := MustOpen(t, Config{DataDir: dir, SweepInterval: time.Hour})
	failEvents(t, a)
	var urls []string
	var datas [][]byte
	for i := 0; i < 3; i++ {
		d := randomBytes(t, 2000+i)
		u := tusCreate(t, a.URL(), len(d), map[string]string{"filename": fmt.Sprintf("f%d", i)})
		tusPatch(t, u, 0, d)
		urls, datas = append(urls, u), append(datas, d)
	}
	// An incomplete upload must not be finalized by the sweep.
	partial := tusCreate(t, a.URL(), 100, nil)
	tusPatch(t, partial, 0, make([]byte, 40))
	if _, err := a.db.W.Exec("DROP TRIGGER fail_events"); err != nil {
		t.Fatal(err)
	}
	a.Close()

	b := MustOpen(t, Config{DataDir: dir, SweepInterval: time.Hour})
	for i, u := range urls {
		f, ok := fileByUpload(t, b, u)
		if !ok || f.SHA256 != sha256Hex(datas[i]) {
			t.Fatalf("upload %d not finalized at start-up: %+v", i, f)
		}
		if n := len(eventsOf(t, b, f.ID)); n != 1 {
			t.Fatalf("upload %d: %d events, want 1", i, n)
		}
	}
	if _, ok := fileByUpload(t, b, partial); ok {
		t.Fatal("incomplete upload was finalized")
	}
}

func TestBadInputGetsJSON4xx(t *testing.T) {
	a := MustOpen(t, Config{})
	cases := []struct {
		path   string
		status int
	}{
		{"/api/v1/files?limit=0", 400},
		{"/api/v1/files?limit=abc", 400},
		{"/api/v1/files?status=bogus", 400},
		{"/api/v1/files?cursor=not-a-uuid", 400},
		{"/api/v1/files/not-a-uuid", 400},
		{"/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a", 404},
		{"/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a/content", 404},
		{"/api/v1/events?cursor=-5", 400},
		{"/api/v1/events?file_id=x", 400},
		{"/api/v1/events/nope", 400},
		{"/api/v1/events/01a207ca-0673-7e8a-93d4-b765bcb0528a", 404},
		{"/api/v1/nothing", 404},
		{"/schemas/file.nothing.json", 404},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			var body struct {
				Error struct{ Code, Message string }
			}
			if st := getJSON(t, a.URL()+c.path, &body); st != c.status || body.Error.Code == "" || body.Error.Message == "" {
				t.Fatalf("status %d body %+v, want %d with an error code and message", st, body, c.status)
			}
		})
	}
	// Bad tus metadata is refused at creation, before any byte is sent.
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "10")
	req.Header.Set("Upload-Metadata", encodeMeta(map[string]string{"filetype": "not a type"}))
	resp := authDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad filetype: %d, want 400", resp.StatusCode)
	}
}

func TestPaginationCursor(t *testing.T) {
	a := MustOpen(t, Config{})
	for i := 0; i < 5; i++ {
		MustUpload(t, a.URL(), randomBytes(t, 10), 10, nil)
	}
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		var page FilePage
		getJSON(t, a.URL()+"/api/v1/files?limit=2&cursor="+cursor, &page)
		pages++
		for _, f := range page.Items {
			if seen[f.ID] {
				t.Fatalf("file %s on two pages", f.ID)
			}
			seen[f.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != 5 || pages != 3 {
		t.Fatalf("saw %d files on %d pages, want 5 on 3", len(seen), pages)
	}
	var evs struct {
		Items      []apiEvent
		NextCursor string `json:"next_cursor"`
	}
	getJSON(t, a.URL()+"/api/v1/events?limit=4", &evs)
	var rest struct{ Items []apiEvent }
	getJSON(t, a.URL()+"/api/v1/events?limit=4&cursor="+evs.NextCursor, &rest)
	if len(evs.Items) != 4 || len(rest.Items) != 1 {
		t.Fatalf("event pages %d + %d, want 4 + 1", len(evs.Items), len(rest.Items))
	}
}

func TestMaxUploadSize(t *testing.T) {
	a := MustOpen(t, Config{MaxUploadSize: 1000})
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "1001")
	resp := authDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

func TestHealth(t *testing.T) {
	a := MustOpen(t, Config{})
	var h struct{ Status string }
	if st := getJSON(t, a.URL()+"/healthz", &h); st != 200 || h.Status != "ok" {
		t.Fatalf("healthz %d %+v", st, h)
	}
	var r struct {
		Status string
		Checks map[string]string
	}
	if st := getJSON(t, a.URL()+"/readyz", &r); st != 200 || r.Checks["database"] != "ok" || r.Checks["storage"] != "ok" ||
		r.Checks["dispatcher"] != "ok" {
		t.Fatalf("readyz %d %+v", st, r)
	}
	resp, err := http.Get(a.URL() + "/schemas/file.uploaded.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, EventSchema(EventFileUploaded)) {
		t.Fatalf("schema: %d", resp.StatusCode)
	}
}

func TestReadyzReportsBrokenStorage(t *testing.T) {
	a := MustOpen(t, Config{})
	// Replace the upload dir by a plain file: nothing can be written there
	// (permissions would not stop root).
	if err := os.RemoveAll(a.UploadDir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.UploadDir(), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Status string
		Checks map[string]string
	}
	if st := getJSON(t, a.URL()+"/readyz", &r); st != http.StatusServiceUnavailable || r.Status != "unavailable" ||
		r.Checks["storage"] == "ok" || r.Checks["database"] != "ok" {
		t.Fatalf("readyz with a broken upload dir: %d %+v", st, r)
	}
}
