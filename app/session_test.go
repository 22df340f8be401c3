package app

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// formLogin posts the login form and returns the response.
func formLogin(tb testing.TB, a *App, username, password string, hdr map[string]string) *http.Response {
	tb.Helper()
	form := url.Values{"username": {username}, "password": {password}}
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func sessionCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// withCookie sends a request carrying the session cookie.
func withCookie(tb testing.TB, c *http.Cookie, method, rawURL, body string, hdr map[string]string) (int, []byte) {
	tb.Helper()
	h := map[string]string{"Cookie": c.Name + "=" + c.Value}
	for k, v := range hdr {
		h[k] = v
	}
	return doAs(tb, "", method, rawURL, strings.NewReader(body), h)
}

func TestSessionLoginAndLogout(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := MustOpen(t, Config{AuthRateLimit: -1, Now: clock})
	mustUser(t, a, "uma", RoleUploader)

	// A wrong password re-shows the form with 401 and sets no cookie.
	if resp := formLogin(t, a, "uma", "wrong-password", nil); resp.StatusCode != 401 || sessionCookieOf(resp) != nil {
		t.Fatalf("wrong password: %d, cookie %v", resp.StatusCode, sessionCookieOf(resp))
	}
	// Login from another site is refused (login CSRF).
	if resp := formLogin(t, a, "uma", userPassword("uma"), map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != 403 {
		t.Fatalf("cross-site login: %d, want 403", resp.StatusCode)
	}

	resp := formLogin(t, a, "uma", userPassword("uma"), map[string]string{"Sec-Fetch-Site": "same-origin"})
	c := sessionCookieOf(resp)
	if resp.StatusCode != http.StatusSeeOther || c == nil {
		t.Fatalf("login: %d, cookie %v", resp.StatusCode, c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" || c.MaxAge <= 0 {
		t.Fatalf("cookie attributes: %+v (over plain http Secure must be off)", c)
	}
	var stored string
	a.db.R.QueryRow("SELECT hash FROM sessions").Scan(&stored)
	if stored != secretHash(c.Value) {
		t.Fatalf("session stored as %q, want the hash of the cookie", stored)
	}

	if st, body := withCookie(t, c, "GET", a.URL()+"/api/v1/me", "", nil); st != 200 || !strings.Contains(string(body), `"auth":"session"`) {
		t.Fatalf("me with the cookie: %d %s", st, body)
	}
	// State-changing cookie requests from other sites are refused; from
	// the portal's own pages they pass.
	for name, hdr := range map[string]map[string]string{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
		"foreign Origin":            {"Origin": "https://evil.example"},
	} {
		if st, body := withCookie(t, c, "POST", a.URL()+"/files/", "", tusHdr(merge(hdr, map[string]string{"Upload-Length": "1"}))); st != 403 {
			t.Errorf("%s tus create with the cookie: %d %s, want 403", name, st, body)
		}
		if st, body := withCookie(t, c, "POST", a.URL()+"/api/v1/tokens", "", hdr); st != 403 {
			t.Errorf("%s token with the cookie: %d %s, want 403", name, st, body)
		}
	}
	same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": a.URL()}
	if st, body := withCookie(t, c, "POST", a.URL()+"/files/", "", tusHdr(merge(same, map[string]string{"Upload-Length": "1"}))); st != 201 {
		t.Errorf("same-origin tus create with the cookie: %d %s", st, body)
	}
	// The web UI can mint a token with its session.
	if st, body := withCookie(t, c, "POST", a.URL()+"/api/v1/tokens", `{"name":"from the UI"}`, same); st != 201 {
		t.Errorf("token from a session: %d %s", st, body)
	}

	// Sessions expire.
	mu.Lock()
	now = now.Add(sessionTTL + time.Minute)
	mu.Unlock()
	if st, _ := withCookie(t, c, "GET", a.URL()+"/api/v1/me", "", nil); st != 401 {
		t.Fatalf("expired session: %d, want 401", st)
	}

	// Logout ends the session and clears the cookie.
	resp = formLogin(t, a, "uma", userPassword("uma"), nil)
	c = sessionCookieOf(resp)
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/logout", nil)
	req.AddCookie(c)
	out, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if cleared := sessionCookieOf(out); out.StatusCode != http.StatusSeeOther || cleared == nil || cleared.MaxAge >= 0 {
		t.Fatalf("logout: %d, cookie %+v", out.StatusCode, cleared)
	}
	if st, _ := withCookie(t, c, "GET", a.URL()+"/api/v1/me", "", nil); st != 401 {
		t.Fatalf("session after logout: %d, want 401", st)
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Behind https the cookie is Secure.
func TestSessionCookieSecureOverHTTPS(t *testing.T) {
	a := MustOpen(t, Config{PublicURL: "https://portal.example"})
	mustUser(t, a, "uma", RoleUploader)
	form := url.Values{"username": {"uma"}, "password": {userPassword("uma")}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.Addr()+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := sessionCookieOf(resp); c == nil || !c.Secure || !c.HttpOnly {
		t.Fatalf("cookie %+v, want Secure and HttpOnly", c)
	}
}

// A JSON login answers the user; the login form page is served.
func TestLoginJSONAndForm(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "uma", RoleUploader)
	st, body := doAs(t, "", "POST", a.URL()+"/login", strings.NewReader(`{"username":"uma","password":"`+userPassword("uma")+`"}`),
		map[string]string{"Content-Type": "application/json"})
	if st != 200 || !strings.Contains(string(body), `"username":"uma"`) || strings.Contains(string(body), "password") {
		t.Fatalf("JSON login: %d %s", st, body)
	}
	st, page := doAs(t, "", "GET", a.URL()+"/login", nil, nil)
	if st != 200 || !strings.Contains(string(page), `name="password"`) {
		t.Fatalf("login page: %d", st)
	}
	if st, body := doAs(t, "", "POST", a.URL()+"/login", strings.NewReader(`{"username":`),
		map[string]string{"Content-Type": "application/json"}); st != 400 {
		t.Fatalf("malformed JSON login: %d %s", st, body)
	}
}
