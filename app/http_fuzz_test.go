package app

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/doorito/portal/webui"
)

// Fuzz targets that send outside input through the portal's real HTTP
// handler (fuzzportal_test.go): JSON bodies, query strings, paths, sign-in
// forms. Every answer is checked by fuzzPortal.check (no 5xx, no data
// directory path, JSON refusals on JSON routes); a refused request must
// leave the database as it was, and a GET must never change it.

// fuzzBodyRoutes are the routes that read a JSON body.
var fuzzBodyRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/endpoints"},
	{"PATCH", "/api/v1/endpoints/{endpoint}"},
	{"POST", "/api/v1/endpoints/{endpoint}/rotate-secret"},
	{"POST", "/api/v1/endpoints/{endpoint}/replay"},
	{"POST", "/api/v1/users"},
	{"PATCH", "/api/v1/users/{user}"},
	{"POST", "/api/v1/tokens"},
	{"PATCH", "/api/v1/files/{file}"},
	{"POST", "/login"},
}

// FuzzAPIBody sends a fuzzed JSON body to every route that reads one, as
// each kind of client (fuzzPortal.creds).
func FuzzAPIBody(f *testing.F) {
	p := newFuzzPortal(f, Config{})
	f.Fuzz(func(t *testing.T, route, who uint8, body []byte) {
		rt := fuzzBodyRoutes[int(route)%len(fuzzBodyRoutes)]
		before := p.state(t)
		ans, ok := p.do(t, rt.method, p.subst(rt.path), p.cred(who),
			http.Header{"Content-Type": {"application/json"}}, []byte(p.subst(string(body))))
		if !ok {
			return
		}
		p.check(t, ans, true)
		p.checkRefusalChangedNothing(t, ans, before)
	})
}

// checkRefusalChangedNothing fails t when a refused request changed the
// database; after a success it restores the fixtures the request may have
// deleted.
func (p *fuzzPortal) checkRefusalChangedNothing(t *testing.T, ans fuzzAnswer, before string) {
	t.Helper()
	if ans.status < 400 {
		if ans.method != http.MethodGet && ans.method != http.MethodHead {
			p.refresh(t)
		}
		return
	}
	if after := p.state(t); after != before {
		t.Fatalf("%s: the refused request changed the database:\nbefore %s\nafter  %s", ans, before, after)
	}
}

// fuzzQueryRoutes are the pages and API routes that read query values
// (filters, cursors, limits) or a Range.
var fuzzQueryRoutes = []struct {
	path string
	json bool
}{
	{"/api/v1/files", true},
	{"/api/v1/events", true},
	{"/api/v1/deliveries", true},
	{"/api/v1/endpoints/{endpoint}/deliveries", true},
	{"/api/v1/endpoints", true},
	{"/api/v1/tokens", true},
	{"/api/v1/users", true},
	{"/api/v1/files/{file}/content", true},
	{"/api/v1/events/{event}", true},
	{"/api/v1/deliveries/{delivery}", true},
	{"/ui/files", false},
	{"/ui/events", false},
	{"/ui/endpoints/{endpoint}", false},
	{"/ui/files/{file}", false},
	{"/ui/dashboard", false},
	{"/ui/tokens", false},
	{"/ui/users", false},
	{"/login", false},
}

// FuzzAPIQuery sends fuzzed query strings (and a Range header) to the
// list routes and pages. A GET never changes the database.
func FuzzAPIQuery(f *testing.F) {
	p := newFuzzPortal(f, Config{})
	f.Fuzz(func(t *testing.T, route, who uint8, query, rangeHeader string) {
		rt := fuzzQueryRoutes[int(route)%len(fuzzQueryRoutes)]
		var hdr http.Header
		if rangeHeader != "" {
			hdr = http.Header{"Range": {rangeHeader}}
		}
		before := p.state(t)
		ans, ok := p.do(t, http.MethodGet, p.subst(rt.path)+"?"+escapeFuzz(p.subst(query)), p.cred(who), hdr, nil)
		if !ok {
			return
		}
		p.check(t, ans, rt.json)
		if after := p.state(t); after != before {
			t.Fatalf("%s: a GET changed the database:\nbefore %s\nafter  %s", ans, before, after)
		}
	})
}

var fuzzMethods = []string{"GET", "POST", "PATCH", "DELETE", "HEAD", "PUT", "OPTIONS"}

// FuzzHTTPPath sends any method to any path (path ids, upload ids, route
// names), with a JSON body. Beyond the checks of every answer: an upload
// id that is not of the store's form is never served (it answers 404
// before the store or the file system sees it).
func FuzzHTTPPath(f *testing.F) {
	p := newFuzzPortal(f, Config{})
	f.Fuzz(func(t *testing.T, method, who uint8, path string, body []byte) {
		target := escapeFuzz(p.subst(path))
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		var hdr http.Header
		if len(body) > 0 {
			hdr = http.Header{"Content-Type": {"application/json"}, "Tus-Resumable": {"1.0.0"}}
		}
		before := p.state(t)
		ans, ok := p.do(t, m, target, p.cred(who), hdr, []byte(p.subst(string(body))))
		if !ok {
			return
		}
		pth := pathOf(target)
		p.check(t, ans, strings.HasPrefix(pth, "/api/") && ans.status != http.StatusMovedPermanently)
		p.checkRefusalChangedNothing(t, ans, before)
		if id, ok := strings.CutPrefix(pth, "/files/"); ok && ans.status < 300 && m != "OPTIONS" && m != "POST" {
			if id = strings.Trim(id, "/"); id != "" && !p.a.tus.ValidID(id) {
				t.Fatalf("%s: the malformed upload id %q was served", ans, id)
			}
		}
	})
}

// FuzzLogin sends fuzzed credentials: a sign-in form or JSON body to POST
// /login, and HTTP Basic to POST /api/v1/tokens. Properties beyond the
// answer checks: only the right password signs in or gets a token; a
// refused attempt creates no session and no token; a sign-in form only
// ever redirects to a path on the portal.
func FuzzLogin(f *testing.F) {
	p := newFuzzPortal(f, Config{})
	f.Fuzz(func(t *testing.T, contentType, accept string, body []byte, basicUser, basicPass string) {
		hdr := http.Header{}
		if contentType != "" {
			hdr.Set("Content-Type", contentType)
		}
		if accept != "" {
			hdr.Set("Accept", accept)
		}
		mt, _, _ := mime.ParseMediaType(contentType)
		wantsJSON := mt == "application/json" || strings.Contains(accept, "application/json")
		before := p.state(t)
		if ans, ok := p.do(t, http.MethodPost, "/login", fuzzCred{who: "nobody"}, hdr, body); ok {
			p.check(t, ans, wantsJSON)
			p.checkRefusalChangedNothing(t, ans, before)
			if ans.status < 400 {
				user, pw := loginCredentials(mt, body)
				if !strings.EqualFold(user, "fuzzer") || pw != fuzzUserPassword {
					t.Fatalf("%s: signed in as %q with password %q", ans, user, pw)
				}
			}
			if loc := ans.header.Get("Location"); ans.status == http.StatusSeeOther && webui.SafeNext(loc) != loc {
				t.Fatalf("%s: sign-in redirects to %q", ans, loc)
			}
		}
		if basicUser == "" && basicPass == "" {
			return
		}
		before = p.state(t)
		cred := fuzzCred{"basic", "Authorization", "Basic " + basicAuth(basicUser, basicPass)}
		ans, ok := p.do(t, http.MethodPost, "/api/v1/tokens", cred, http.Header{"Content-Type": {"application/json"}}, body)
		if !ok {
			return
		}
		p.check(t, ans, true)
		p.checkRefusalChangedNothing(t, ans, before)
		user, pw, _ := strings.Cut(basicUser+":"+basicPass, ":")
		if ans.status < 400 && (!strings.EqualFold(user, "fuzzer") || pw != fuzzUserPassword) {
			t.Fatalf("%s: a token for %q with password %q", ans, user, pw)
		}
	})
}

// loginCredentials reads username and password from a sign-in body as
// the portal does (JSON, else a form).
func loginCredentials(mediaType string, body []byte) (string, string) {
	var c loginRequest
	if mediaType == "application/json" {
		json.Unmarshal(body, &c)
		return c.Username, c.Password
	}
	q, _ := url.ParseQuery(string(body))
	return q.Get("username"), q.Get("password")
}

// fuzzFormRoutes are the web UI's forms.
var fuzzFormRoutes = []string{
	"/ui/endpoints", "/ui/endpoints/{endpoint}", "/ui/endpoints/{endpoint}/enable", "/ui/endpoints/{endpoint}/disable",
	"/ui/endpoints/{endpoint}/rotate-secret", "/ui/endpoints/{endpoint}/test", "/ui/endpoints/{endpoint}/replay",
	"/ui/endpoints/{endpoint}/delete", "/ui/users", "/ui/users/{user}", "/ui/users/{user}/delete", "/ui/tokens",
	"/ui/tokens/{token}/revoke", "/ui/files/{file}/delete", "/ui/deliveries/{delivery}/retry",
}

// FuzzUIForm posts fuzzed forms to the web UI's form routes (as the
// admin's session, or another client). Beyond the answer checks: a
// refused form changes nothing, and a form only ever redirects to a path
// on the portal (webui.SafeNext: no other host, no control characters).
func FuzzUIForm(f *testing.F) {
	p := newFuzzPortal(f, Config{})
	f.Fuzz(func(t *testing.T, route, who uint8, form string) {
		target := p.subst(fuzzFormRoutes[int(route)%len(fuzzFormRoutes)])
		before := p.state(t)
		ans, ok := p.do(t, http.MethodPost, target, p.cred(who),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, []byte(p.subst(form)))
		if !ok {
			return
		}
		p.check(t, ans, false)
		p.checkRefusalChangedNothing(t, ans, before)
		if loc := ans.header.Get("Location"); ans.status/100 == 3 && webui.SafeNext(loc) != loc {
			t.Fatalf("%s: the form redirects to %q", ans, loc)
		}
	})
}
