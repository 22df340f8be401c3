package app

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doorito/portal/app/access"
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

// The identities every route is tried with: anonymous, bad credentials,
// two uploaders, an admin, and scoped tokens: a runner's (an admin's token
// narrowed to reading files and events, docs/auth.md) and an uploader's
// narrowed to reading files.
var identities = []string{"anonymous", "bad token", "expired token", "other uploader", "uploader", "admin",
	"runner", "uploader files:read"}

// want is the status each identity must get.
type want map[string]int

// public: every identity gets st (credentials are ignored).
func public(st int) want {
	w := want{}
	for _, id := range identities {
		w[id] = st
	}
	return w
}

// request is one request of the matrix; its path is relative to the portal.
type request struct {
	method, path, body string
	hdr                map[string]string
}

// matrixRow tries one route with every identity. req runs once per
// identity, so rows that change state get a fresh target each time.
// Rows of protected routes name the operation (op) and whether the
// target belongs to "uploader" (owned; with anonymous uploads on, the
// anonymous rows' targets are anonymous): what each identity gets follows
// from the access policy (expect). Public rows give want directly.
type matrixRow struct {
	route string // the pattern routes() registered that this row exercises
	name  string
	req   func(t *testing.T) request
	op    access.Op
	owned bool
	ok    int  // the status of an identity the policy lets through
	want  want // public rows (and special cases): the statuses themselves
}

// matrixFixture is the world the matrix runs in.
type matrixFixture struct {
	a                 *App
	policy            access.Policy
	up, other, admin  User
	idents            map[string]access.Identity
	tokens            map[string]string // identity -> bearer token
	fileID, eventID   string            // a stored file of the uploader, and its event
	doneURL, openURL  string            // the uploader's completed and incomplete uploads
	anonDone, anonURL string            // anonymous completed and incomplete uploads (anonymous uploads on)
}

func newMatrixFixture(t *testing.T, cfg Config) *matrixFixture {
	cfg.AuthRateLimit = -1 // the matrix logs in many times
	a := MustOpen(t, cfg)
	f := &matrixFixture{a: a, policy: access.Policy{AnonymousUploads: cfg.AnonymousUploads}}
	f.up = mustUser(t, a, "uma", RoleUploader)
	f.other = mustUser(t, a, "otto", RoleUploader)
	admin, _, err := userByName(t.Context(), a.db.R, "admin")
	if err != nil {
		t.Fatal(err)
	}
	f.admin = admin
	past := time.Now().Add(-time.Hour)
	scoped := func(u User, scopes ...access.Scope) string {
		_, secret, err := insertToken(t.Context(), a.db.W, u, "scoped", scopes, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	f.tokens = map[string]string{
		"anonymous":           "",
		"bad token":           randomToken(),
		"expired token":       mustToken(t, a, f.up, &past),
		"other uploader":      mustToken(t, a, f.other, nil),
		"uploader":            mustToken(t, a, f.up, nil),
		"admin":               mustAdminToken(t, a),
		"runner":              scoped(admin, access.ScopeFilesRead, access.ScopeEventsRead),
		"uploader files:read": scoped(f.up, access.ScopeFilesRead),
	}
	ident := func(u User, scopes ...access.Scope) access.Identity {
		return access.Identity{UserID: u.ID, Username: u.Username, Role: u.Role, Scopes: scopes, Via: "token"}
	}
	f.idents = map[string]access.Identity{
		"anonymous":           {},
		"other uploader":      ident(f.other),
		"uploader":            ident(f.up),
		"admin":               ident(admin),
		"runner":              ident(admin, access.ScopeFilesRead, access.ScopeEventsRead),
		"uploader files:read": ident(f.up, access.ScopeFilesRead),
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

// expect is what every identity gets for a protected row, by the access
// policy: 401 without (valid) credentials, 403 without the right, 404 for
// a target of someone else within Own reach, else the row's ok.
func (f *matrixFixture) expect(row matrixRow) want {
	if row.want != nil {
		return row.want
	}
	w := want{"bad token": 401, "expired token": 401}
	owner := f.up.ID
	if f.policy.AnonymousUploads && strings.Contains(row.name, "anonymous upload") {
		owner = ""
	}
	for name, id := range f.idents {
		reach, err := f.policy.Check(id, row.op)
		switch {
		case errors.Is(err, access.ErrUnauthenticated):
			w[name] = 401
		case err != nil:
			w[name] = 403
		case row.owned && reach == access.Own && id.UserID != owner:
			w[name] = 404
		default:
			w[name] = row.ok
		}
	}
	return w
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

func static(method, path string) func(*testing.T) request {
	return func(*testing.T) request { return request{method: method, path: path} }
}

func tusReq(method, path string) func(*testing.T) request {
	return func(*testing.T) request { return request{method: method, path: path, hdr: tusHdr(nil)} }
}

func (f *matrixFixture) rows() []matrixRow {
	n := 0
	unique := func(prefix string) string { n++; return fmt.Sprintf("%s%d", prefix, n) }
	tokenMinted := public(401)
	return []matrixRow{
		{route: "GET /healthz", name: "health", req: static("GET", "/healthz"), want: public(200)},
		{route: "GET /readyz", name: "readiness", req: static("GET", "/readyz"), want: public(200)},
		{route: "GET /metrics", name: "metrics", req: static("GET", "/metrics"), want: public(200)},
		{route: "GET /schemas/{name}", name: "schema", req: static("GET", "/schemas/file.uploaded.json"), want: public(200)},
		{route: "/", name: "web UI", req: static("GET", "/"), want: public(200)},
		{route: "GET /login", name: "login form", req: static("GET", "/login"), want: public(200)},
		{route: "POST /login", name: "login with wrong password", req: func(*testing.T) request {
			return request{method: "POST", path: "/login", body: `{"username":"uma","password":"wrong-password"}`,
				hdr: map[string]string{"Content-Type": "application/json"}}
		}, want: public(401)},
		{route: "POST /logout", name: "logout", req: func(*testing.T) request {
			return request{method: "POST", path: "/logout", hdr: map[string]string{"Accept": "application/json"}}
		}, want: public(204)},

		{route: "GET /api/v1/openapi.json", name: "OpenAPI document", req: static("GET", "/api/v1/openapi.json"), want: public(200)},
		{route: "GET /api/v1/me", name: "who am I", req: static("GET", "/api/v1/me"), op: access.Me, ok: 200},
		// Tokens are minted with a password (or a web session), never with
		// another token.
		{route: "POST /api/v1/tokens", name: "token from a token", req: static("POST", "/api/v1/tokens"), want: tokenMinted},
		{route: "GET /api/v1/tokens", name: "list tokens", req: static("GET", "/api/v1/tokens"), op: access.TokenRead, ok: 200},
		{route: "DELETE /api/v1/tokens/{id}", name: "revoke the uploader's token", req: func(t *testing.T) request {
			tok, _, err := insertToken(t.Context(), f.a.db.W, f.up, "victim", nil, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return request{method: "DELETE", path: "/api/v1/tokens/" + tok.ID}
		}, op: access.TokenWrite, owned: true, ok: 204},

		{route: "GET /api/v1/users", name: "list users", req: static("GET", "/api/v1/users"), op: access.UserRead, ok: 200},
		{route: "POST /api/v1/users", name: "create user", req: func(*testing.T) request {
			return request{method: "POST", path: "/api/v1/users",
				body: `{"username":"` + unique("new") + `","role":"uploader","password":"long-enough-pw"}`}
		}, op: access.UserWrite, ok: 201},
		{route: "PATCH /api/v1/users/{id}", name: "disable user", req: func(t *testing.T) request {
			u := mustUser(t, f.a, unique("patchme"), RoleUploader)
			return request{method: "PATCH", path: "/api/v1/users/" + u.ID, body: `{"disabled":true}`}
		}, op: access.UserWrite, ok: 200},
		{route: "DELETE /api/v1/users/{id}", name: "delete user", req: func(t *testing.T) request {
			u := mustUser(t, f.a, unique("deleteme"), RoleUploader)
			return request{method: "DELETE", path: "/api/v1/users/" + u.ID}
		}, op: access.UserWrite, ok: 204},

		{route: "GET /api/v1/files", name: "list files", req: static("GET", "/api/v1/files"), op: access.FileRead, ok: 200},
		// Someone else's file answers 404, as if it did not exist.
		{route: "GET /api/v1/files/{id}", name: "get the uploader's file", req: static("GET", "/api/v1/files/"+f.fileID),
			op: access.FileRead, owned: true, ok: 200},
		{route: "GET /api/v1/files/{id}/content", name: "download the uploader's file",
			req: static("GET", "/api/v1/files/"+f.fileID+"/content"), op: access.FileRead, owned: true, ok: 200},
		{route: "DELETE /api/v1/files/{id}", name: "delete the uploader's file", req: func(t *testing.T) request {
			return request{method: "DELETE", path: "/api/v1/files/" + f.freshFile(t)}
		}, op: access.FileDelete, owned: true, ok: 204},
		// Changing a file's expiry is for admins, even on one's own file.
		{route: "PATCH /api/v1/files/{id}", name: "change the expiry of the uploader's file", req: func(t *testing.T) request {
			return request{method: "PATCH", path: "/api/v1/files/" + f.freshFile(t), body: `{"ttl":"1h"}`}
		}, op: access.FileExpiry, owned: true, ok: 200},
		{route: "GET /api/v1/events", name: "list events", req: static("GET", "/api/v1/events"), op: access.EventRead, ok: 200},
		{route: "GET /api/v1/events/{id}", name: "get event", req: static("GET", "/api/v1/events/"+f.eventID),
			op: access.EventRead, ok: 200},
		// Not a route: 401 without credentials, 404 for everyone else.
		{route: "/api/", name: "unknown API route", req: static("GET", "/api/v1/nothing"), op: access.Me, ok: 404},

		{route: "/files/", name: "create upload", req: tusReq("POST", "/files/"), op: access.UploadCreate, ok: 201},
		{route: "/files", name: "create upload without slash", req: tusReq("POST", "/files"), op: access.UploadCreate, ok: 201},
		{route: "/files/", name: "preflight", req: static("OPTIONS", "/files/"), want: public(200)},
		{route: "/files/", name: "HEAD the uploader's upload", req: tusReq("HEAD", f.path(f.openURL)),
			op: access.UploadWrite, owned: true, ok: 200},
		{route: "/files/", name: "PATCH the uploader's upload", req: func(t *testing.T) request {
			return request{method: "PATCH", path: f.freshUpload(t, "uploader", nil), body: "x", hdr: patchHdr}
		}, op: access.UploadWrite, owned: true, ok: 204},
		{route: "/files/", name: "DELETE the uploader's upload", req: func(t *testing.T) request {
			return request{method: "DELETE", path: f.freshUpload(t, "uploader", nil), hdr: tusHdr(nil)}
		}, op: access.UploadWrite, owned: true, ok: 204},
		{route: "/files/", name: "DELETE through X-HTTP-Method-Override", req: func(t *testing.T) request {
			return request{method: "POST", path: f.freshUpload(t, "uploader", nil),
				hdr: tusHdr(map[string]string{"X-HTTP-Method-Override": "DELETE"})}
		}, op: access.UploadWrite, owned: true, ok: 204},
		{route: "/files/", name: "GET (download) the uploader's upload", req: tusReq("GET", f.path(f.doneURL)),
			op: access.UploadRead, owned: true, ok: 200},
		{route: "/files/", name: "concatenate the uploader's partial upload", req: func(t *testing.T) request {
			part := createAs(t, f.a, f.tokens["uploader"], 2, map[string]string{"Upload-Concat": "partial"})
			fillAs(t, f.tokens["uploader"], part, []byte("ab"))
			return request{method: "POST", path: "/files/",
				hdr: tusHdr(map[string]string{"Upload-Concat": "final;" + f.path(part)})}
		}, op: access.UploadWrite, owned: true, ok: 201},
	}
}

// anonymousRows are the tus rows that change with --anonymous-uploads.
func (f *matrixFixture) anonymousRows() []matrixRow {
	return []matrixRow{
		{route: "/files/", name: "create upload", req: func(*testing.T) request {
			return request{method: "POST", path: "/files/", hdr: tusHdr(map[string]string{"Upload-Length": "1"})}
		}, op: access.UploadCreate, ok: 201},
		{route: "/files/", name: "HEAD an anonymous upload", req: func(*testing.T) request {
			return request{method: "HEAD", path: f.path(f.anonURL), hdr: tusHdr(nil)}
		}, op: access.UploadWrite, owned: true, ok: 200},
		{route: "/files/", name: "PATCH an anonymous upload", req: func(t *testing.T) request {
			return request{method: "PATCH", path: f.freshUpload(t, "anonymous", nil), body: "x", hdr: patchHdr}
		}, op: access.UploadWrite, owned: true, ok: 204},
		{route: "/files/", name: "DELETE an anonymous upload", req: func(t *testing.T) request {
			return request{method: "DELETE", path: f.freshUpload(t, "anonymous", nil), hdr: tusHdr(nil)}
		}, op: access.UploadWrite, owned: true, ok: 204},
		// Anonymous clients continue uploads; they do not download them.
		{route: "/files/", name: "GET (download) an anonymous upload", req: func(*testing.T) request {
			return request{method: "GET", path: f.path(f.anonDone), hdr: tusHdr(nil)}
		}, op: access.UploadRead, owned: true, ok: 200},
		{route: "/files/", name: "HEAD the uploader's upload", req: func(*testing.T) request {
			return request{method: "HEAD", path: f.path(f.openURL), hdr: tusHdr(nil)}
		}, op: access.UploadWrite, owned: true, ok: 200},
		{route: "/files/", name: "anonymous concatenation of the uploader's part", req: func(t *testing.T) request {
			part := createAs(t, f.a, f.tokens["uploader"], 2, map[string]string{"Upload-Concat": "partial"})
			fillAs(t, f.tokens["uploader"], part, []byte("ab"))
			return request{method: "POST", path: "/files/",
				hdr: tusHdr(map[string]string{"Upload-Concat": "final;" + f.path(part)})}
		}, op: access.UploadWrite, owned: true, ok: 201},
		{route: "GET /api/v1/files", name: "list files", req: static("GET", "/api/v1/files"), op: access.FileRead, ok: 200},
	}
}

// run sends the row's request as every identity and checks the status.
func (f *matrixFixture) run(t *testing.T, row matrixRow) {
	t.Helper()
	w := f.expect(row)
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
		st, resp := doAs(t, f.tokens[id], r.method, f.a.URL()+r.path, strings.NewReader(r.body), hdr)
		if st != w[id] {
			t.Errorf("%s %s as %s: %d, want %d (%s)", r.method, r.path, id, st, w[id], truncate(string(resp), 200))
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
		if op, ok := f.a.auth.routeOps[row.route]; ok && row.want == nil && op != row.op {
			t.Errorf("row %q tries op %s, but route %q performs %s", row.name, row.op, row.route, op)
		}
		covered[row.route] = true
		t.Run(row.route+" "+row.name, func(t *testing.T) { f.run(t, row) })
	}
	// Every API route names its operation; routes added without a row get
	// what the policy says of their operation checked with a made-up id.
	for _, pattern := range f.a.auth.routePatterns {
		if covered[pattern] {
			continue
		}
		t.Run(pattern+" (by its operation)", func(t *testing.T) { f.checkByOp(t, pattern) })
	}
}

var patternVar = regexp.MustCompile(`\{[^}]*\}`)

// checkByOp checks a route the table does not list: refusals exactly as
// the policy says, and no refusal where it grants the operation.
func (f *matrixFixture) checkByOp(t *testing.T, pattern string) {
	method, path, _ := strings.Cut(pattern, " ")
	op, ok := f.a.auth.routeOps[pattern]
	if !ok {
		t.Fatalf("route %q has no row in the authorization matrix and names no operation", pattern)
	}
	path = patternVar.ReplaceAllString(path, "01a207ca-0673-7e8a-93d4-b765bcb0528a")
	w := f.expect(matrixRow{op: op, ok: -1})
	for _, id := range identities {
		st, body := doAs(t, f.tokens[id], method, f.a.URL()+path, strings.NewReader("{}"), nil)
		switch {
		case w[id] == -1 && (st == 401 || st == 403 || st >= 500):
			t.Errorf("%s %s as %s: %d, want no refusal (%s)", method, path, id, st, body)
		case w[id] != -1 && st != w[id]:
			t.Errorf("%s %s as %s: %d, want %d (%s)", method, path, id, st, w[id], body)
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
