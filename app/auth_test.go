package app

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tusHdr returns tus request headers plus extra.
func tusHdr(extra map[string]string) map[string]string {
	h := map[string]string{"Tus-Resumable": "1.0.0"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// createAs creates a tus upload of length bytes with the given token ("":
// anonymous) and returns its URL.
func createAs(tb testing.TB, a *App, token string, length int, extra map[string]string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	for k, v := range tusHdr(extra) {
		req.Header.Set(k, v)
	}
	req.Header.Set("Upload-Length", strconv.Itoa(length))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("create upload: %s", resp.Status)
	}
	return resp.Header.Get("Location")
}

// fillAs sends data as the whole upload in one PATCH; it must answer 204.
func fillAs(tb testing.TB, token, url string, data []byte) {
	tb.Helper()
	st, body := doAs(tb, token, http.MethodPatch, url, bytes.NewReader(data), tusHdr(map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
	if st != http.StatusNoContent {
		tb.Fatalf("PATCH %s: %d %s", url, st, body)
	}
}

// fileOfUpload returns the file row of an upload straight from the store.
func fileOfUpload(tb testing.TB, a *App, uploadURL string) File {
	tb.Helper()
	f, err := scanFile(a.db.R.QueryRow("SELECT "+fileColumns+" FROM files WHERE upload_id = ?", uploadID(uploadURL)))
	if err != nil {
		tb.Fatalf("file of upload %s: %v", uploadURL, err)
	}
	return f
}

// uploadedEvent returns the file.uploaded payload of a file.
func uploadedEvent(tb testing.TB, a *App, fileID string) EventPayload {
	tb.Helper()
	var raw []byte
	if err := a.db.R.QueryRow("SELECT payload FROM events WHERE file_id = ? AND type = ?", fileID, EventFileUploaded).
		Scan(&raw); err != nil {
		tb.Fatalf("file.uploaded of %s: %v", fileID, err)
	}
	MustValidatePayload(tb, raw)
	var p EventPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		tb.Fatal(err)
	}
	return p
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// The identities every route is tried with.
var identities = []string{"anonymous", "bad token", "expired token", "other uploader", "uploader", "admin"}

// want is the status each identity must get.
type want map[string]int

// private: no credentials, bad and expired tokens get 401.
func private(uploader, other, admin int) want {
	return want{"anonymous": 401, "bad token": 401, "expired token": 401,
		"uploader": uploader, "other uploader": other, "admin": admin}
}

// public: every identity gets st (credentials are ignored).
func public(st int) want {
	return want{"anonymous": st, "bad token": st, "expired token": st, "uploader": st, "other uploader": st, "admin": st}
}

// request is one request of the matrix; its path is relative to the portal.
type request struct {
	method, path, body string
	hdr                map[string]string
}

// matrixRow tries one route with every identity. req runs once per
// identity, so rows that change state get a fresh target each time.
type matrixRow struct {
	route string // the pattern routes() registered that this row exercises
	name  string
	req   func(t *testing.T) request
	want  want
}

// matrixFixture is the world the matrix runs in.
type matrixFixture struct {
	a                 *App
	up, other         User
	tokens            map[string]string // identity -> bearer token
	fileID, eventID   string            // a stored file of the uploader, and its event
	doneURL, openURL  string            // the uploader's completed and incomplete uploads
	anonDone, anonURL string            // anonymous completed and incomplete uploads (anonymous uploads on)
}

func newMatrixFixture(t *testing.T, cfg Config) *matrixFixture {
	cfg.AuthRateLimit = -1 // the matrix logs in many times
	a := MustOpen(t, cfg)
	f := &matrixFixture{a: a}
	f.up = mustUser(t, a, "uma", RoleUploader)
	f.other = mustUser(t, a, "otto", RoleUploader)
	past := time.Now().Add(-time.Hour)
	f.tokens = map[string]string{
		"anonymous":      "",
		"bad token":      randomToken(),
		"expired token":  mustToken(t, a, f.up, &past),
		"other uploader": mustToken(t, a, f.other, nil),
		"uploader":       mustToken(t, a, f.up, nil),
		"admin":          mustAdminToken(t, a),
	}
	tok := f.tokens["uploader"]
	f.doneURL = createAs(t, a, tok, 3, nil)
	fillAs(t, tok, f.doneURL, []byte("abc"))
	f.openURL = createAs(t, a, tok, 10, nil)
	file := fileOfUpload(t, a, f.doneURL)
	f.fileID = file.ID
	if err := a.db.R.QueryRow("SELECT id FROM events WHERE file_id = ?", f.fileID).Scan(&f.eventID); err != nil {
		t.Fatal(err)
	}
	if cfg.AnonymousUploads {
		f.anonDone = createAs(t, a, "", 2, nil)
		fillAs(t, "", f.anonDone, []byte("hi"))
		f.anonURL = createAs(t, a, "", 10, nil)
	}
	return f
}

// path returns the path of a URL on the portal.
func (f *matrixFixture) path(url string) string { return strings.TrimPrefix(url, f.a.URL()) }

// freshUpload creates an incomplete upload as the given identity.
func (f *matrixFixture) freshUpload(t *testing.T, identity string, extra map[string]string) string {
	return f.path(createAs(t, f.a, f.tokens[identity], 2, extra))
}

// freshFile stores a one-byte file as the uploader and returns its id.
func (f *matrixFixture) freshFile(t *testing.T) string {
	url := createAs(t, f.a, f.tokens["uploader"], 1, nil)
	fillAs(t, f.tokens["uploader"], url, []byte("x"))
	return fileOfUpload(t, f.a, url).ID
}

var patchHdr = tusHdr(map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})

func (f *matrixFixture) rows() []matrixRow {
	static := func(method, path string) func(*testing.T) request {
		return func(*testing.T) request { return request{method: method, path: path} }
	}
	tus := func(method, path string) func(*testing.T) request {
		return func(*testing.T) request { return request{method: method, path: path, hdr: tusHdr(nil)} }
	}
	n := 0
	unique := func(prefix string) string { n++; return fmt.Sprintf("%s%d", prefix, n) }
	return []matrixRow{
		{"GET /healthz", "health", static("GET", "/healthz"), public(200)},
		{"GET /readyz", "readiness", static("GET", "/readyz"), public(200)},
		{"GET /metrics", "metrics", static("GET", "/metrics"), public(200)},
		{"GET /schemas/{name}", "schema", static("GET", "/schemas/file.uploaded.json"), public(200)},
		{"/", "web UI", static("GET", "/"), public(200)},
		{"GET /login", "login form", static("GET", "/login"), public(200)},
		{"POST /login", "login with wrong password", func(*testing.T) request {
			return request{method: "POST", path: "/login", body: `{"username":"uma","password":"wrong-password"}`,
				hdr: map[string]string{"Content-Type": "application/json"}}
		}, public(401)},
		{"POST /logout", "logout", func(*testing.T) request {
			return request{method: "POST", path: "/logout", hdr: map[string]string{"Accept": "application/json"}}
		}, public(204)},

		{"GET /api/v1/openapi.json", "OpenAPI document", static("GET", "/api/v1/openapi.json"), public(200)},
		{"GET /api/v1/me", "who am I", static("GET", "/api/v1/me"), private(200, 200, 200)},
		// Tokens are minted with a password (or a web session), never with
		// another token.
		{"POST /api/v1/tokens", "token from a token", static("POST", "/api/v1/tokens"), private(401, 401, 401)},
		{"GET /api/v1/tokens", "list tokens", static("GET", "/api/v1/tokens"), private(200, 200, 200)},
		{"DELETE /api/v1/tokens/{id}", "revoke the uploader's token", func(t *testing.T) request {
			tok, _, err := insertToken(t.Context(), f.a.db.W, f.up, "victim", time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return request{method: "DELETE", path: "/api/v1/tokens/" + tok.ID}
		}, private(204, 404, 204)},

		{"GET /api/v1/users", "list users", static("GET", "/api/v1/users"), private(403, 403, 200)},
		{"POST /api/v1/users", "create user", func(*testing.T) request {
			return request{method: "POST", path: "/api/v1/users",
				body: `{"username":"` + unique("new") + `","role":"uploader","password":"long-enough-pw"}`}
		}, private(403, 403, 201)},
		{"PATCH /api/v1/users/{id}", "disable user", func(t *testing.T) request {
			u := mustUser(t, f.a, unique("patchme"), RoleUploader)
			return request{method: "PATCH", path: "/api/v1/users/" + u.ID, body: `{"disabled":true}`}
		}, private(403, 403, 200)},
		{"DELETE /api/v1/users/{id}", "delete user", func(t *testing.T) request {
			u := mustUser(t, f.a, unique("deleteme"), RoleUploader)
			return request{method: "DELETE", path: "/api/v1/users/" + u.ID}
		}, private(403, 403, 204)},

		{"GET /api/v1/files", "list files", static("GET", "/api/v1/files"), private(200, 200, 200)},
		// Someone else's file answers 404, as if it did not exist.
		{"GET /api/v1/files/{id}", "get the uploader's file", static("GET", "/api/v1/files/"+f.fileID), private(200, 404, 200)},
		{"GET /api/v1/files/{id}/content", "download the uploader's file", static("GET", "/api/v1/files/"+f.fileID+"/content"),
			private(200, 404, 200)},
		{"DELETE /api/v1/files/{id}", "delete the uploader's file", func(t *testing.T) request {
			return request{method: "DELETE", path: "/api/v1/files/" + f.freshFile(t)}
		}, private(204, 404, 204)},
		// Changing a file's expiry is for admins, even on one's own file.
		{"PATCH /api/v1/files/{id}", "change the expiry of the uploader's file", func(t *testing.T) request {
			return request{method: "PATCH", path: "/api/v1/files/" + f.freshFile(t), body: `{"ttl":"1h"}`}
		}, private(403, 404, 200)},
		{"GET /api/v1/events", "list events", static("GET", "/api/v1/events"), private(403, 403, 200)},
		{"GET /api/v1/events/{id}", "get event", static("GET", "/api/v1/events/"+f.eventID), private(403, 403, 200)},
		{"/api/", "unknown API route", static("GET", "/api/v1/nothing"), private(403, 403, 404)},

		{"/files/", "create upload", tus("POST", "/files/"), private(201, 201, 201)},
		{"/files", "create upload without slash", tus("POST", "/files"), private(201, 201, 201)},
		{"/files/", "preflight", static("OPTIONS", "/files/"), public(200)},
		{"/files/", "HEAD the uploader's upload", tus("HEAD", f.path(f.openURL)), private(200, 404, 200)},
		{"/files/", "PATCH the uploader's upload", func(t *testing.T) request {
			return request{method: "PATCH", path: f.freshUpload(t, "uploader", nil), body: "x", hdr: patchHdr}
		}, private(204, 404, 204)},
		{"/files/", "DELETE the uploader's upload", func(t *testing.T) request {
			return request{method: "DELETE", path: f.freshUpload(t, "uploader", nil), hdr: tusHdr(nil)}
		}, private(204, 404, 204)},
		{"/files/", "DELETE through X-HTTP-Method-Override", func(t *testing.T) request {
			return request{method: "POST", path: f.freshUpload(t, "uploader", nil),
				hdr: tusHdr(map[string]string{"X-HTTP-Method-Override": "DELETE"})}
		}, private(204, 404, 204)},
		{"/files/", "GET (download) the uploader's upload", tus("GET", f.path(f.doneURL)), private(200, 404, 200)},
		{"/files/", "concatenate the uploader's partial upload", func(t *testing.T) request {
			part := createAs(t, f.a, f.tokens["uploader"], 2, map[string]string{"Upload-Concat": "partial"})
			fillAs(t, f.tokens["uploader"], part, []byte("ab"))
			return request{method: "POST", path: "/files/",
				hdr: tusHdr(map[string]string{"Upload-Concat": "final;" + f.path(part)})}
		}, private(201, 404, 201)},
	}
}

// anonymousRows are the tus rows that change with --anonymous-uploads.
func (f *matrixFixture) anonymousRows() []matrixRow {
	anon := func(anon, up, other, admin int) want {
		return want{"anonymous": anon, "bad token": 401, "expired token": 401, "uploader": up, "other uploader": other, "admin": admin}
	}
	return []matrixRow{
		{"/files/", "create upload", func(*testing.T) request {
			return request{method: "POST", path: "/files/", hdr: tusHdr(map[string]string{"Upload-Length": "1"})}
		}, anon(201, 201, 201, 201)},
		{"/files/", "HEAD an anonymous upload", func(*testing.T) request {
			return request{method: "HEAD", path: f.path(f.anonURL), hdr: tusHdr(nil)}
		}, anon(200, 404, 404, 200)},
		{"/files/", "PATCH an anonymous upload", func(t *testing.T) request {
			return request{method: "PATCH", path: f.freshUpload(t, "anonymous", nil), body: "x", hdr: patchHdr}
		}, anon(204, 404, 404, 204)},
		{"/files/", "DELETE an anonymous upload", func(t *testing.T) request {
			return request{method: "DELETE", path: f.freshUpload(t, "anonymous", nil), hdr: tusHdr(nil)}
		}, anon(204, 404, 404, 204)},
		// Anonymous clients continue uploads; they do not download them.
		{"/files/", "GET (download) an anonymous upload", func(*testing.T) request {
			return request{method: "GET", path: f.path(f.anonDone), hdr: tusHdr(nil)}
		}, anon(401, 404, 404, 200)},
		{"/files/", "HEAD the uploader's upload", func(*testing.T) request {
			return request{method: "HEAD", path: f.path(f.openURL), hdr: tusHdr(nil)}
		}, anon(401, 200, 404, 200)},
		{"/files/", "anonymous concatenation of the uploader's part", func(t *testing.T) request {
			part := createAs(t, f.a, f.tokens["uploader"], 2, map[string]string{"Upload-Concat": "partial"})
			fillAs(t, f.tokens["uploader"], part, []byte("ab"))
			return request{method: "POST", path: "/files/",
				hdr: tusHdr(map[string]string{"Upload-Concat": "final;" + f.path(part)})}
		}, anon(401, 201, 404, 201)},
		{"GET /api/v1/files", "list files", func(*testing.T) request {
			return request{method: "GET", path: "/api/v1/files"}
		}, private(200, 200, 200)},
	}
}

// run sends the row's request as every identity and checks the status.
func (f *matrixFixture) run(t *testing.T, row matrixRow) {
	t.Helper()
	for _, id := range identities {
		r := row.req(t)
		hdr := map[string]string{}
		for k, v := range r.hdr {
			hdr[k] = v
		}
		if strings.HasPrefix(r.path, "/files") && r.method == "POST" && hdr["Upload-Length"] == "" && hdr["Upload-Concat"] == "" &&
			hdr["X-HTTP-Method-Override"] == "" {
			hdr["Upload-Length"] = "1"
		}
		var body *strings.Reader
		if r.body != "" {
			body = strings.NewReader(r.body)
		} else {
			body = strings.NewReader("")
		}
		st, resp := doAs(t, f.tokens[id], r.method, f.a.URL()+r.path, body, hdr)
		if st != row.want[id] {
			t.Errorf("%s %s as %s: %d, want %d (%s)", r.method, r.path, id, st, row.want[id], truncate(string(resp), 200))
		}
		// API refusals are JSON errors.
		if (st == 401 || st == 403) && r.method != "HEAD" && !json.Valid(resp) {
			t.Errorf("%s %s as %s: refusal is not JSON: %q", r.method, r.path, id, resp)
		}
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	f := newMatrixFixture(t, Config{})
	covered := map[string]bool{}
	for _, row := range f.rows() {
		if !slices.Contains(f.a.auth.routePatterns, row.route) {
			t.Errorf("row %q names route %q, which routes() does not register", row.name, row.route)
		}
		covered[row.route] = true
		t.Run(row.route+" "+row.name, func(t *testing.T) { f.run(t, row) })
	}
	// Routes added without a row (other features' API routes) get the
	// default policy checked: admin-only, or owner-only below
	// /api/v1/files/. A non-API route without a row is a gap in the table.
	for _, pattern := range f.a.auth.routePatterns {
		if covered[pattern] {
			continue
		}
		t.Run(pattern+" (default policy)", func(t *testing.T) { f.checkDefaultPolicy(t, pattern) })
	}
}

var patternVar = regexp.MustCompile(`\{[^}]*\}`)

// checkDefaultPolicy checks a route the table does not list.
func (f *matrixFixture) checkDefaultPolicy(t *testing.T, pattern string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || !strings.HasPrefix(path, "/api/") {
		t.Fatalf("route %q has no row in the authorization matrix", pattern)
	}
	if strings.HasPrefix(path, "/api/v1/files/") {
		// Someone else's file is hidden from uploaders; the owner and the
		// admin pass the authorization (the handler decides the rest).
		path = patternVar.ReplaceAllString(path, f.fileID)
		for _, id := range []string{"anonymous", "bad token", "expired token", "other uploader"} {
			st, body := doAs(t, f.tokens[id], method, f.a.URL()+path, strings.NewReader("{}"), nil)
			wantSt := map[bool]int{true: 401, false: 404}[id != "other uploader"]
			if st != wantSt {
				t.Errorf("%s %s as %s: %d, want %d (%s)", method, path, id, st, wantSt, body)
			}
		}
		return
	}
	path = patternVar.ReplaceAllString(path, "01a207ca-0673-7e8a-93d4-b765bcb0528a")
	for _, id := range identities {
		st, body := doAs(t, f.tokens[id], method, f.a.URL()+path, strings.NewReader("{}"), nil)
		switch id {
		case "anonymous", "bad token", "expired token":
			if st != 401 {
				t.Errorf("%s %s as %s: %d, want 401", method, path, id, st)
			}
		case "uploader", "other uploader":
			if st != 403 {
				t.Errorf("%s %s as %s: %d, want 403 (admin-only by default)", method, path, id, st)
			}
		case "admin":
			if st == 401 || st == 403 || st >= 500 {
				t.Errorf("%s %s as admin: %d (%s)", method, path, st, body)
			}
		}
	}
}

func TestAuthorizationMatrixAnonymousUploads(t *testing.T) {
	f := newMatrixFixture(t, Config{AnonymousUploads: true})
	for _, row := range f.anonymousRows() {
		t.Run(row.route+" "+row.name, func(t *testing.T) { f.run(t, row) })
	}
}

// Uploaders list only their own files; admins list all.
func TestUploaderListsOwnFiles(t *testing.T) {
	f := newMatrixFixture(t, Config{})
	otherURL := createAs(t, f.a, f.tokens["other uploader"], 1, nil)
	fillAs(t, f.tokens["other uploader"], otherURL, []byte("o"))
	otherFile := fileOfUpload(t, f.a, otherURL)
	ids := func(identity string) []string {
		st, body := doAs(t, f.tokens[identity], "GET", f.a.URL()+"/api/v1/files", nil, nil)
		var page FilePage
		if st != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("list as %s: %d %s", identity, st, body)
		}
		var out []string
		for _, file := range page.Items {
			out = append(out, file.ID)
		}
		slices.Sort(out)
		return out
	}
	both := []string{f.fileID, otherFile.ID}
	slices.Sort(both)
	if got := ids("uploader"); !slices.Equal(got, []string{f.fileID}) {
		t.Errorf("uploader lists %v, want only %s", got, f.fileID)
	}
	if got := ids("other uploader"); !slices.Equal(got, []string{otherFile.ID}) {
		t.Errorf("other uploader lists %v, want only %s", got, otherFile.ID)
	}
	if got := ids("admin"); !slices.Equal(got, both) {
		t.Errorf("admin lists %v, want %v", got, both)
	}
}
