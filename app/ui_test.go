package app

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// uiSession is a browser-like client of the web UI: signed in through the
// login form, with the session cookie; it does not follow redirects.
type uiSession struct {
	tb     testing.TB
	a      *App
	client *http.Client
}

func newUISession(tb testing.TB, a *App) *uiSession {
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &uiSession{tb: tb, a: a, client: &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}}
}

// uiLogin signs username in through the login form.
func uiLogin(tb testing.TB, a *App, username string) *uiSession {
	tb.Helper()
	resp := formLogin(tb, a, username, userPassword(username), nil)
	c := sessionCookieOf(resp)
	if resp.StatusCode != http.StatusSeeOther || c == nil {
		tb.Fatalf("login %s: %s, cookie %v", username, resp.Status, c)
	}
	s := newUISession(tb, a)
	u, _ := url.Parse(a.URL())
	s.client.Jar.SetCookies(u, []*http.Cookie{c})
	return s
}

// uiPage is one response of the UI.
type uiPage struct {
	status int
	header http.Header
	body   string
}

func (s *uiSession) do(method, path string, form url.Values, hdr map[string]string) uiPage {
	s.tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.a.URL()+path, body)
	if err != nil {
		s.tb.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return uiPage{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (s *uiSession) get(path string) uiPage {
	s.tb.Helper()
	return s.do(http.MethodGet, path, nil, nil)
}

// post sends a form as a same-origin browser does.
func (s *uiSession) post(path string, form url.Values) uiPage {
	s.tb.Helper()
	return s.do(http.MethodPost, path, form, map[string]string{"Sec-Fetch-Site": "same-origin"})
}

// mustGet GETs path and requires status 200.
func (s *uiSession) mustGet(path string) string {
	s.tb.Helper()
	p := s.get(path)
	if p.status != http.StatusOK {
		s.tb.Fatalf("GET %s: %d\n%s", path, p.status, p.body)
	}
	return p.body
}

// mustContain checks the page's text (HTML entities decoded) has every
// string of want.
func mustContain(tb testing.TB, body string, want ...string) {
	tb.Helper()
	body = html.UnescapeString(body)
	for _, w := range want {
		if !strings.Contains(body, w) {
			tb.Errorf("page lacks %q", w)
		}
	}
}

func mustNotContain(tb testing.TB, body string, unwanted ...string) {
	tb.Helper()
	body = html.UnescapeString(body)
	for _, w := range unwanted {
		if strings.Contains(body, w) {
			tb.Errorf("page has %q", w)
		}
	}
}

// uploadAs uploads data as the user of token and returns its file.
func uploadAs(tb testing.TB, a *App, token, name string, data []byte) File {
	tb.Helper()
	u := createAs(tb, a, token, len(data), map[string]string{"Upload-Metadata": encodeMeta(map[string]string{"filename": name})})
	fillAs(tb, token, u, data)
	return fileOfUpload(tb, a, u)
}

func TestUIRedirectsAndRoles(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "uma", RoleUploader)
	anon := newUISession(t, a)
	for _, path := range []string{"/", "/ui/", "/ui/files", "/ui/upload", "/ui/dashboard", "/ui/endpoints"} {
		p := anon.get(path)
		want := "/login?next=" + url.QueryEscape(path) // back to the page after signing in
		if path == "/" || path == "/ui/" {
			want = "/login"
		}
		if p.status != http.StatusSeeOther || p.header.Get("Location") != want {
			t.Errorf("anonymous GET %s: %d to %q, want 303 to %s", path, p.status, p.header.Get("Location"), want)
		}
	}
	if p := anon.post("/ui/files/01a207ca-0673-7e8a-93d4-b765bcb0528a/delete", url.Values{}); p.status != http.StatusUnauthorized {
		t.Errorf("anonymous form post: %d, want 401", p.status)
	}
	login := anon.mustGet("/login")
	mustContain(t, login, `action="/login"`, `name="username"`, `name="password"`, `autocomplete="current-password"`)

	uma := uiLogin(t, a, "uma")
	if p := uma.get("/"); p.header.Get("Location") != "/ui/upload" {
		t.Errorf("uploader's start page: %q, want /ui/upload", p.header.Get("Location"))
	}
	for _, path := range []string{"/ui/dashboard", "/ui/events", "/ui/endpoints", "/ui/users"} {
		if p := uma.get(path); p.status != http.StatusForbidden || !strings.Contains(p.body, "for admins") {
			t.Errorf("uploader GET %s: %d, want 403", path, p.status)
		}
	}
	nav := uma.mustGet("/ui/upload")
	mustContain(t, nav, `href="/ui/files"`, `href="/ui/tokens"`, `action="/logout"`)
	mustNotContain(t, nav, `href="/ui/users"`, `href="/ui/endpoints"`)

	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	if p := ada.get("/"); p.header.Get("Location") != "/ui/dashboard" {
		t.Errorf("admin's start page: %q, want /ui/dashboard", p.header.Get("Location"))
	}
	for _, path := range []string{"/ui/dashboard", "/ui/events", "/ui/endpoints", "/ui/users", "/ui/tokens", "/ui/files", "/ui/upload"} {
		ada.mustGet(path)
	}
	if p := ada.get("/ui/no-such-page"); p.status != http.StatusNotFound || !strings.Contains(p.body, "There is no page") {
		t.Errorf("unknown page: %d", p.status)
	}
}

// Signing in from a page's redirect returns to that page; a "next" that
// leads off the site is ignored.
func TestUILoginReturnsToPage(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "uma", RoleUploader)
	anon := newUISession(t, a)
	loc := anon.get("/ui/files?page=2").header.Get("Location")
	if loc != "/login?next=%2Fui%2Ffiles%3Fpage%3D2" {
		t.Fatalf("redirect to %q", loc)
	}
	mustContain(t, anon.mustGet(loc), `<input type="hidden" name="next" value="/ui/files?page=2">`)
	for next, want := range map[string]string{
		"/ui/files?page=2":     "/ui/files?page=2",
		"":                     "/",
		"//evil.example/x":     "/",
		"https://evil.example": "/",
		"/\\evil.example":      "/",
		"ui/files":             "/",
	} {
		form := url.Values{"username": {"uma"}, "password": {userPassword("uma")}, "next": {next}}
		req, _ := http.NewRequest(http.MethodPost, a.URL()+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("login with next %q: %s to %q, want 303 to %q", next, resp.Status, resp.Header.Get("Location"), want)
		}
	}
	// A failed sign-in keeps the way back.
	form := url.Values{"username": {"uma"}, "password": {"wrong"}, "next": {"/ui/tokens"}}
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mustContain(t, string(body), `name="next" value="/ui/tokens"`)
}

// Pages carry a strict CSP and load only the binary's own assets, under
// content-hashed URLs cached for a year.
func TestUIAssetsAndHeaders(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "uma", RoleUploader)
	uma := uiLogin(t, a, "uma")
	p := uma.get("/ui/upload")
	csp := p.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q", csp)
	}
	if p.header.Get("Cache-Control") != "no-store" || p.header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("page headers: %v", p.header)
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(p.body) || strings.Contains(p.body, " style=") {
		t.Error("a page has inline script or style")
	}
	assets := regexp.MustCompile(`(?:href|src)="(/static/[0-9a-f]{16}/[^"]+)"`).FindAllStringSubmatch(p.body, -1)
	seen := map[string]bool{}
	for _, m := range assets {
		seen[m[1][strings.LastIndex(m[1], "/")+1:]] = true
		st, hdr, body := rawGet(t, a.URL()+m[1])
		if st != http.StatusOK || hdr.Get("Cache-Control") != "public, max-age=31536000, immutable" || len(body) == 0 {
			t.Errorf("GET %s: %d, Cache-Control %q", m[1], st, hdr.Get("Cache-Control"))
		}
		// Another hash (an older page) still gets the file, revalidated.
		st, hdr, _ = rawGet(t, a.URL()+"/static/0000000000000000/"+strings.SplitN(m[1], "/", 4)[3])
		if st != http.StatusOK || hdr.Get("Cache-Control") != "no-cache" {
			t.Errorf("stale hash of %s: %d %q", m[1], st, hdr.Get("Cache-Control"))
		}
	}
	for _, want := range []string{"portal.css", "portal.js"} {
		if !seen[want] {
			t.Errorf("the upload page does not load %s", want)
		}
	}
	// make test bundles Uppy first (make ui); a plain go test may lack it.
	if os.Getenv("PORTAL_REQUIRE_TOOLS") != "" || seen["upload.js"] {
		if !seen["upload.js"] || !seen["upload.css"] {
			t.Error("the upload page lacks the Uppy bundle (run make ui)")
		}
		mustNotContain(t, p.body, "was not built")
	} else {
		mustContain(t, p.body, "make ui")
	}
	if st, _, _ := rawGet(t, a.URL()+"/static/0000000000000000/nothing.js"); st != http.StatusNotFound {
		t.Errorf("unknown asset: %d", st)
	}
}

func rawGet(tb testing.TB, u string) (int, http.Header, []byte) {
	tb.Helper()
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// The upload page offers lifetimes within the configured maximum and
// tells the browser where to upload.
func TestUIUploadPage(t *testing.T) {
	a := MustOpen(t, Config{FileTTL: 24 * time.Hour, FileTTLMax: 7 * 24 * time.Hour, MaxUploadSize: 5 << 20})
	mustUser(t, a, "uma", RoleUploader)
	body := uiLogin(t, a, "uma").mustGet("/ui/upload")
	mustContain(t, body, `data-endpoint="/files/"`, `data-max-size="5242880"`, `<option value="" selected>default (1 day)</option>`,
		`<option value="3600">1 hour</option>`, `<option value="604800">7 days</option>`, "at most 7 days", "Files up to 5.0 MiB.")
	mustNotContain(t, body, `value="2592000"`) // 30 days: over the maximum
}

// The upload page's lookup gives a finished upload's file to its owner
// only.
func TestUIUploadLookup(t *testing.T) {
	a := MustOpen(t, Config{})
	uma, otto := mustUser(t, a, "uma", RoleUploader), mustUser(t, a, "otto", RoleUploader)
	data := randomBytes(t, 70_000)
	f := uploadAs(t, a, mustToken(t, a, uma, nil), "report.pdf", data)
	s := uiLogin(t, a, "uma")
	p := s.get("/ui/api/uploads/" + f.UploadID)
	if p.status != http.StatusOK || p.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("lookup: %d %s", p.status, p.body)
	}
	mustContain(t, p.body, `"id":"`+f.ID+`"`, `"sha256":"`+sha256Hex(data)+`"`, `"size_bytes":70000`,
		`"filename":"report.pdf"`, `"url":"/ui/files/`+f.ID+`"`)
	_ = otto
	if p := uiLogin(t, a, "otto").get("/ui/api/uploads/" + f.UploadID); p.status != http.StatusNotFound {
		t.Errorf("another uploader's lookup: %d %s", p.status, p.body)
	}
	if p := newUISession(t, a).get("/ui/api/uploads/" + f.UploadID); p.status != http.StatusUnauthorized {
		t.Errorf("anonymous lookup: %d", p.status)
	}
	if p := s.get("/ui/api/uploads/nonexistent"); p.status != http.StatusNotFound || !strings.Contains(p.body, `"error"`) {
		t.Errorf("unknown upload: %d %s", p.status, p.body)
	}
}

func TestUIFilesListAndDetail(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &now
	a := MustOpen(t, Config{Now: func() time.Time { return *clock }, FileTTL: 48 * time.Hour})
	uma, otto := mustUser(t, a, "uma", RoleUploader), mustUser(t, a, "otto", RoleUploader)
	umaTok, ottoTok := mustToken(t, a, uma, nil), mustToken(t, a, otto, nil)
	var mine []File
	for i := range 5 {
		mine = append(mine, uploadAs(t, a, umaTok, fmt.Sprintf("uma-%d.txt", i), randomBytes(t, 100+i)))
	}
	theirs := uploadAs(t, a, ottoTok, "otto.txt", []byte("otto's"))

	s := uiLogin(t, a, "uma")
	empty := uiLogin(t, a, "otto").mustGet("/ui/files?status=deleted")
	mustContain(t, empty, "No files match these filters.")

	body := s.mustGet("/ui/files")
	for _, f := range mine {
		mustContain(t, body, f.Filename, f.SHA256, `href="/ui/files/`+f.ID+`"`)
	}
	mustNotContain(t, body, "otto.txt", `name="owner"`) // uploaders see their own files, no owner filter

	// Pages of 2: newest first, then a cursor link.
	page1 := s.mustGet("/ui/files?limit=2")
	mustContain(t, page1, "uma-4.txt", "uma-3.txt")
	mustNotContain(t, page1, "uma-2.txt")
	next := regexp.MustCompile(`href="(/ui/files\?[^"]*cursor=[^"]+)" rel="next"`).FindStringSubmatch(page1)
	if next == nil {
		t.Fatal("no next page link")
	}
	page2 := s.mustGet(strings.ReplaceAll(next[1], "&amp;", "&"))
	mustContain(t, page2, "uma-2.txt", "uma-1.txt", "First page")
	mustNotContain(t, page2, "uma-4.txt", "uma-0.txt")

	// Someone else's file does not exist for an uploader; its own does.
	if p := s.get("/ui/files/" + theirs.ID); p.status != http.StatusNotFound {
		t.Errorf("another uploader's file: %d", p.status)
	}
	detail := s.mustGet("/ui/files/" + mine[0].ID)
	mustContain(t, detail, mine[0].SHA256, `href="/api/v1/files/`+mine[0].ID+`/content"`, "file.uploaded",
		"2030-01-04 03:04:05 UTC", "(in 2 days)")
	mustNotContain(t, detail, `href="/ui/events/`) // event details are for admins

	// Admins see everyone's files, filter by owner, and by "expiring soon".
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	all := ada.mustGet("/ui/files")
	mustContain(t, all, "otto.txt", "uma-0.txt", `name="owner"`)
	byOwner := ada.mustGet("/ui/files?owner=otto")
	mustContain(t, byOwner, "otto.txt")
	mustNotContain(t, byOwner, "uma-0.txt")
	if body := ada.mustGet("/ui/files?expiring=1"); !strings.Contains(body, "No files match") {
		t.Error("files expiring in 2 days are listed as expiring within 1 day")
	}
	now = now.Add(25 * time.Hour)
	ada = uiLogin(t, a, "ada") // the session ended meanwhile
	mustContain(t, ada.mustGet("/ui/files?expiring=1"), "otto.txt", "uma-0.txt")
	mustContain(t, ada.mustGet("/ui/files/"+theirs.ID), `href="/ui/events/`, "otto")
	if p := ada.get("/ui/files?status=bogus"); p.status != http.StatusBadRequest {
		t.Errorf("bad status filter: %d", p.status)
	}
	if p := ada.get("/ui/files/not-a-uuid"); p.status != http.StatusNotFound {
		t.Errorf("malformed id: %d", p.status)
	}
}

// Deleting through the UI is the API's deletion: row, file.deleted and
// bytes; a form from another site is refused.
func TestUIDeleteFile(t *testing.T) {
	a := MustOpen(t, Config{})
	uma := mustUser(t, a, "uma", RoleUploader)
	f := uploadAs(t, a, mustToken(t, a, uma, nil), "gone.txt", []byte("bye"))
	s := uiLogin(t, a, "uma")
	mustContain(t, s.mustGet("/ui/files/"+f.ID), `action="/ui/files/`+f.ID+`/delete"`)

	cross := s.do(http.MethodPost, "/ui/files/"+f.ID+"/delete", url.Values{}, map[string]string{"Sec-Fetch-Site": "cross-site"})
	if cross.status != http.StatusForbidden {
		t.Fatalf("cross-site delete: %d", cross.status)
	}
	if got, _ := a.getFile(t.Context(), f.ID); got.Status != StatusStored {
		t.Fatal("a cross-site form deleted the file")
	}
	p := s.post("/ui/files/"+f.ID+"/delete", url.Values{})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/ui/files/"+f.ID {
		t.Fatalf("delete: %d %q", p.status, p.header.Get("Location"))
	}
	got, err := a.getFile(t.Context(), f.ID)
	if err != nil || got.Status != StatusDeleted || got.DeleteReason != ReasonDeletedByUser {
		t.Fatalf("after delete: %+v %v", got, err)
	}
	if n := countEventsOfType(t, a, f.ID, EventFileDeleted); n != 1 {
		t.Errorf("file.deleted events: %d", n)
	}
	if _, err := a.tus.Open(t.Context(), f.UploadID); err == nil {
		t.Error("the bytes are still there")
	}
	page := s.get("/ui/files/" + f.ID) // follows the redirect, with its message
	mustContain(t, page.body, "The file was deleted.", "deleted_by_user", "file.deleted")
	mustNotContain(t, page.body, `/delete"`, `/content"`)
}

func countEventsOfType(tb testing.TB, a *App, fileID, typ string) int {
	tb.Helper()
	var n int
	if err := a.db.R.QueryRow("SELECT COUNT(*) FROM events WHERE file_id = ? AND type = ?", fileID, typ).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestUIUsersAndTokens(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")

	p := ada.post("/ui/users", url.Values{"username": {"newbie"}, "role": {"uploader"}, "password": {"long-enough-1"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("create user: %d %s", p.status, p.body)
	}
	newbie, _, err := userByName(t.Context(), a.db.R, "newbie")
	if err != nil || newbie.Role != RoleUploader {
		t.Fatalf("created user: %+v %v", newbie, err)
	}
	for _, c := range []struct {
		form   url.Values
		status int
		msg    string
	}{
		{url.Values{"username": {"newbie"}, "role": {"uploader"}, "password": {"long-enough-1"}}, http.StatusConflict, "exists"},
		{url.Values{"username": {"bad name!"}, "role": {"uploader"}, "password": {"long-enough-1"}}, http.StatusBadRequest, "username may only contain"},
		{url.Values{"username": {"shorty"}, "role": {"uploader"}, "password": {"short"}}, http.StatusBadRequest, "password must have"},
		{url.Values{"username": {"x"}, "role": {"root"}, "password": {"long-enough-1"}}, http.StatusBadRequest, "role must be"},
	} {
		p := ada.post("/ui/users", c.form)
		if p.status != c.status || !strings.Contains(p.body, c.msg) || !strings.Contains(p.body, `role="alert"`) {
			t.Errorf("create %v: %d, want %d with %q", c.form, p.status, c.status, c.msg)
		}
	}
	// Disable, then the last admin cannot demote themself.
	if p := ada.post("/ui/users/"+newbie.ID, url.Values{"disabled": {"true"}}); p.status != http.StatusSeeOther {
		t.Fatalf("disable: %d %s", p.status, p.body)
	}
	if u, _ := userByID(t.Context(), a.db.R, newbie.ID); !u.Disabled {
		t.Error("user not disabled")
	}
	admin, _, _ := userByName(t.Context(), a.db.R, "admin")
	if err := a.deleteUser(t.Context(), admin.ID); err != nil {
		t.Fatal(err)
	}
	me, _, _ := userByName(t.Context(), a.db.R, "ada")
	p = ada.post("/ui/users/"+me.ID, url.Values{"role": {"uploader"}})
	if p.status != http.StatusConflict || !strings.Contains(p.body, "last enabled admin") {
		t.Errorf("demote the last admin: %d", p.status)
	}

	// Tokens: the secret is shown once and works; uploaders see their own.
	mustUser(t, a, "uma", RoleUploader)
	uma := uiLogin(t, a, "uma")
	p = uma.post("/ui/tokens", url.Values{"name": {"runner"}, "expires_days": {"7"}})
	if p.status != http.StatusCreated {
		t.Fatalf("create token: %d %s", p.status, p.body)
	}
	secret := regexp.MustCompile(`id="token-secret" readonly value="(` + TokenPrefix + `[^"]+)"`).FindStringSubmatch(p.body)
	if secret == nil {
		t.Fatal("no token shown")
	}
	secret[1] = html.UnescapeString(secret[1])
	if st, body := doAs(t, secret[1], "GET", a.URL()+"/api/v1/me", nil, nil); st != 200 || !strings.Contains(string(body), `"uma"`) {
		t.Errorf("the new token: %d %s", st, body)
	}
	list := uma.mustGet("/ui/tokens")
	mustContain(t, list, "runner", "active")
	mustNotContain(t, list, secret[1])
	if p := uma.post("/ui/tokens", url.Values{"name": {""}, "expires_days": {"7"}}); p.status != http.StatusBadRequest {
		t.Errorf("nameless token: %d", p.status)
	}
	if p := uma.post("/ui/tokens", url.Values{"name": {"x"}, "expires_days": {"9999"}}); p.status != http.StatusBadRequest {
		t.Errorf("odd lifetime: %d", p.status)
	}
	mustNotContain(t, ada.mustGet("/ui/tokens"), secret[1])
	mustContain(t, ada.mustGet("/ui/tokens"), "runner", "uma")
	toks, _ := listTokens(t.Context(), a.db.R, "")
	var id string
	for _, tk := range toks {
		if tk.Name == "runner" {
			id = tk.ID
		}
	}
	mustUser(t, a, "otto", RoleUploader)
	if p := uiLogin(t, a, "otto").post("/ui/tokens/"+id+"/revoke", url.Values{}); p.status != http.StatusNotFound {
		t.Errorf("revoke someone else's token: %d", p.status)
	}
	if p := uma.post("/ui/tokens/"+id+"/revoke", url.Values{}); p.status != http.StatusSeeOther {
		t.Errorf("revoke: %d", p.status)
	}
	if st, _ := doAs(t, secret[1], "GET", a.URL()+"/api/v1/me", nil, nil); st != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", st)
	}
}

// uiSecret returns the signing secret a page shows once.
func uiSecret(tb testing.TB, body string) string {
	tb.Helper()
	m := regexp.MustCompile(`id="secret" readonly value="(whsec_[^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		tb.Fatal("the page shows no secret")
	}
	return html.UnescapeString(m[1])
}

// uiWaitStatus waits until delivery id has status.
func uiWaitStatus(tb testing.TB, a *App, id, status string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := a.outbox.GetDelivery(tb.(*testing.T).Context(), id)
		if err == nil && d.Status == status {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("delivery %s: not %s in time (%+v, %v)", id, status, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUIEndpointsAndDeliveries(t *testing.T) {
	a := MustOpen(t, whConfig())
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	mustContain(t, ada.mustGet("/ui/endpoints"), "No endpoints yet")
	rc := newWhReceiver(t)

	for _, c := range []struct {
		form url.Values
		msg  string
	}{
		{url.Values{"url": {"ftp://example.com/x"}}, "http"},
		{url.Values{"url": {rc.URL()}, "event_types_other": {"file.upload"}}, "matches no event"},
		{url.Values{"url": {""}}, "Enter the URL"},
	} {
		p := ada.post("/ui/endpoints", c.form)
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, c.msg) {
			t.Errorf("create %v: %d, want 400 with %q\n%s", c.form, p.status, c.msg, p.body)
		}
	}

	p := ada.post("/ui/endpoints", url.Values{"url": {rc.URL()}, "description": {"runner"}, "event_types": {"file.uploaded"}})
	if p.status != http.StatusCreated {
		t.Fatalf("create endpoint: %d %s", p.status, p.body)
	}
	secret := uiSecret(t, p.body)
	rc.setSecrets([]string{secret})
	eps, _ := a.outbox.ListEndpoints(t.Context())
	if len(eps) != 1 || eps[0].Description != "runner" || len(eps[0].EventTypes) != 1 {
		t.Fatalf("endpoints: %+v", eps)
	}
	ep := eps[0]
	epPage := "/ui/endpoints/" + ep.ID
	mustNotContain(t, ada.mustGet(epPage), secret, `id="secret"`)
	mustContain(t, ada.mustGet("/ui/endpoints"), "runner", "file.uploaded", "enabled")

	// A delivery that succeeds shows on the endpoint and the event pages.
	f := uploadAs(t, a, mustAdminToken(t, a), "one.bin", []byte("one"))
	d1 := rc.next(10 * time.Second)
	uiWaitStatus(t, a, d1.delivery(), "succeeded")
	mustContain(t, ada.mustGet(epPage), "succeeded", "100%")
	mustContain(t, ada.mustGet("/ui/events/"+d1.eventID()), "HTTP 204", "succeeded", f.ID, `"sha256": "`+f.SHA256+`"`)
	mustContain(t, ada.mustGet("/ui/files/"+f.ID), "succeeded", rc.URL())

	// A receiver that answers 500: the delivery fails, and says why.
	rc.setRespond(func(int, *http.Request) (int, http.Header, string) { return 500, nil, "database on fire" })
	f2 := uploadAs(t, a, mustAdminToken(t, a), "two.bin", []byte("two"))
	d2 := rc.next(10 * time.Second)
	uiWaitStatus(t, a, d2.delivery(), "failed")
	for len(rc.ch) > 0 {
		<-rc.ch
	}
	failed := ada.mustGet("/ui/events?status=failed&endpoint=" + ep.ID)
	mustContain(t, failed, "file.uploaded", "HTTP 500", "Replay all failed deliveries of this endpoint")
	mustNotContain(t, failed, d1.eventID()[28:])
	mustContain(t, ada.mustGet("/ui/events?status=failed"), d2.eventID()[28:])
	mustContain(t, ada.mustGet("/ui/events/"+d2.eventID()), "database on fire", "failed", "Retry now")
	mustContain(t, ada.mustGet(epPage), "Last error", "HTTP 500: database on fire")
	dash := ada.mustGet("/ui/dashboard")
	mustContain(t, dash, "failed deliveries", `href="/ui/endpoints/`+ep.ID+`"`)
	if !regexp.MustCompile(`<span class="n">1</span> failed deliveries`).MatchString(dash) {
		t.Error("the dashboard does not count the failed delivery")
	}

	// Fixed: replay the failed ones from the events page.
	rc.answer(http.StatusNoContent)
	back := "/ui/events?endpoint=" + ep.ID
	p = ada.post("/ui/endpoints/"+ep.ID+"/replay", url.Values{"back": {back}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != back {
		t.Fatalf("replay: %d %q", p.status, p.header.Get("Location"))
	}
	mustContain(t, ada.get(back).body, "1 delivery was queued again.")
	if d := rc.next(10 * time.Second); d.eventID() != d2.eventID() || !strings.Contains(string(d.Body), f2.ID) {
		t.Fatalf("replayed: %s", d.Body)
	}
	uiWaitStatus(t, a, d2.delivery(), "succeeded")

	// Retry one delivery by hand; an unknown one is 404.
	if p := ada.post("/ui/deliveries/"+d1.delivery()+"/retry", url.Values{"back": {"/ui/events/" + d1.eventID()}}); p.status != http.StatusSeeOther {
		t.Fatalf("retry: %d %s", p.status, p.body)
	}
	if d := rc.next(10 * time.Second); d.delivery() != d1.delivery() {
		t.Errorf("retried %s, want %s", d.delivery(), d1.delivery())
	}
	if p := ada.post("/ui/deliveries/01a207ca-0673-7e8a-93d4-b765bcb0528a/retry", url.Values{}); p.status != http.StatusNotFound {
		t.Errorf("retry unknown: %d", p.status)
	}

	// Disable with a reason, enable again.
	ada.post(epPage+"/disable", url.Values{"reason": {"receiver maintenance"}})
	mustContain(t, ada.mustGet(epPage), "disabled", "receiver maintenance")
	mustContain(t, ada.mustGet("/ui/endpoints"), "receiver maintenance")
	ada.post(epPage+"/enable", url.Values{})
	if got, _ := a.outbox.GetEndpoint(t.Context(), ep.ID); !got.Enabled {
		t.Error("not enabled again")
	}

	// Rotate: a new secret, shown once; the old one still signs for now.
	p = ada.post(epPage+"/rotate-secret", url.Values{})
	rotated := uiSecret(t, p.body)
	if p.status != http.StatusOK || rotated == secret {
		t.Fatalf("rotate: %d", p.status)
	}
	rc.setSecrets([]string{rotated, secret})
	if p := ada.post(epPage+"/test", url.Values{}); p.status != http.StatusSeeOther {
		t.Fatalf("test event: %d %s", p.status, p.body)
	}
	if d := rc.next(10 * time.Second); !strings.Contains(string(d.Body), `"portal.test"`) {
		t.Errorf("test event: %s", d.Body)
	}

	// Edit the filters; delete.
	p = ada.post(epPage, url.Values{"url": {rc.URL()}, "description": {"renamed"}, "event_types_other": {"file.*"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("edit: %d %s", p.status, p.body)
	}
	mustContain(t, ada.mustGet(epPage), "renamed", "file.*")
	if p := ada.post(epPage, url.Values{"url": {"not a url"}}); p.status != http.StatusBadRequest || !strings.Contains(p.body, `role="alert"`) {
		t.Errorf("bad edit: %d", p.status)
	}
	if p := ada.post(epPage+"/delete", url.Values{}); p.status != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.status)
	}
	mustContain(t, ada.mustGet("/ui/endpoints"), "No endpoints yet")
	if p := ada.get(epPage); p.status != http.StatusNotFound {
		t.Errorf("deleted endpoint's page: %d", p.status)
	}
}

func TestUIDashboard(t *testing.T) {
	a := MustOpen(t, whConfig())
	tok := mustAdminToken(t, a)
	uploadAs(t, a, tok, "a.bin", randomBytes(t, 2048))
	uploadAs(t, a, tok, "b.bin", randomBytes(t, 1024))
	createAs(t, a, tok, 100, nil) // in progress
	mustUser(t, a, "ada", RoleAdmin)
	body := uiLogin(t, a, "ada").mustGet("/ui/dashboard")
	for _, re := range []string{
		`<span class="n">2</span> files stored <span class="sub">3.0 KiB</span>`,
		`<span class="n">1</span> uploads in progress`,
		`<span class="n">2</span> events`,
		`<span class="n">2</span> users`,
		`<span class="n">0/0</span> endpoints enabled`,
	} {
		if !strings.Contains(body, re) {
			t.Errorf("dashboard lacks %s", re)
		}
	}
	mustContain(t, body, "Expiry notices", "Cleanup")
}

// The deliveries of every endpoint, merged, page by page: each exactly
// once.
func TestUIDeliveriesPagination(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc1, ep1 := whReceiverEndpoint(t, a)
	rc2, _ := whReceiverEndpoint(t, a)
	tok := mustAdminToken(t, a)
	for i := range 3 {
		uploadAs(t, a, tok, fmt.Sprintf("f%d.bin", i), []byte{byte(i)})
	}
	for range 3 {
		rc1.next(10 * time.Second)
		rc2.next(10 * time.Second)
	}
	// Received is not yet recorded: wait until no delivery is open.
	waitFor(t, "every delivery recorded", func() bool {
		tot, err := a.outbox.Totals(t.Context())
		return err == nil && tot.Backlog == 0
	})
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	rows := regexp.MustCompile(`href="/ui/events/([0-9a-f-]+)">file.uploaded</a>[^\n]*\n\s*<td data-label="Endpoint" class="wrap">([^<]+)</td>`)
	// walk follows the pages from path; it returns what it saw and the
	// number of pages.
	walk := func(path string, first int) (map[string]int, int) {
		seen, pages := map[string]int{}, 0
		for path != "" && pages < 10 {
			pages++
			deadline := time.Now().Add(10 * time.Second)
			var body string
			for {
				body = ada.mustGet(path)
				if pages > 1 || len(rows.FindAllString(body, -1)) == first || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond) // the last "succeeded" is being recorded
			}
			for _, m := range rows.FindAllStringSubmatch(body, -1) {
				seen[m[1]+" "+m[2]]++
			}
			path = ""
			if next := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(body); next != nil {
				path = html.UnescapeString(next[1])
			}
		}
		return seen, pages
	}
	check := func(seen map[string]int, pages, wantSeen, wantPages int) {
		t.Helper()
		if len(seen) != wantSeen || pages != wantPages {
			t.Errorf("%d pages, deliveries seen %v; want %d on %d pages", pages, seen, wantSeen, wantPages)
		}
		for k, n := range seen {
			if n != 1 {
				t.Errorf("delivery %s listed %d times", k, n)
			}
		}
	}
	seen, pages := walk("/ui/events?status=succeeded&limit=4", 4)
	check(seen, pages, 6, 2)
	eps, _ := a.outbox.ListEndpoints(t.Context())
	seen, pages = walk("/ui/events?status=succeeded&limit=2&endpoint="+eps[0].ID, 2)
	check(seen, pages, 3, 2)
	// The newest deliveries are test events: a type filter must skip them
	// in the query, not leave pages empty.
	testDeliveries := make([]string, 3)
	for i := range testDeliveries {
		_, did, err := a.sendTestEvent(t.Context(), ep1.ID, PayloadActor{})
		if err != nil {
			t.Fatal(err)
		}
		testDeliveries[i] = did
		rc1.next(10 * time.Second)
	}
	for _, did := range testDeliveries {
		uiWaitStatus(t, a, did, "succeeded")
	}
	seen, pages = walk("/ui/events?status=succeeded&type=file.uploaded&limit=3", 3)
	check(seen, pages, 6, 2)
}
