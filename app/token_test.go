package app

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// basicAs sends POST /api/v1/tokens with HTTP Basic credentials.
func basicAs(tb testing.TB, a *App, username, password, body string) (int, http.Header, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/api/v1/tokens", strings.NewReader(body))
	req.SetBasicAuth(username, password)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestTokenIssuedWithBasicAuth(t *testing.T) {
	a := MustOpen(t, Config{AuthRateLimit: -1})
	up := mustUser(t, a, "uma", RoleUploader)

	st, _, body := basicAs(t, a, "uma", userPassword("uma"), `{"name":"ci","expires_in":"1h"}`)
	var created struct {
		Token
		Secret string `json:"token"`
	}
	if st != 201 || json.Unmarshal(body, &created) != nil {
		t.Fatalf("create token: %d %s", st, body)
	}
	if !strings.HasPrefix(created.Secret, TokenPrefix) || len(created.Secret) < 40 || created.Name != "ci" ||
		created.UserID != up.ID || created.ExpiresAt == nil {
		t.Fatalf("token = %+v", created)
	}
	if d := time.Until(*created.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %s, want 1h", d)
	}
	st, me := doAs(t, created.Secret, "GET", a.URL()+"/api/v1/me", nil, nil)
	if st != 200 || !strings.Contains(string(me), `"username":"uma"`) {
		t.Fatalf("me with the new token: %d %s", st, me)
	}

	// Only the hash is stored.
	var stored string
	a.db.R.QueryRow("SELECT hash FROM tokens WHERE id = ?", created.ID).Scan(&stored)
	if stored != secretHash(created.Secret) || strings.Contains(stored, created.Secret) {
		t.Fatalf("stored %q", stored)
	}

	// Without a body: named "api", no expiry. Seconds work too.
	if st, _, body := basicAs(t, a, "uma", userPassword("uma"), ""); st != 201 ||
		!strings.Contains(string(body), `"name":"api"`) || !strings.Contains(string(body), `"expires_at":null`) {
		t.Fatalf("token without body: %d %s", st, body)
	}
	if st, _, body := basicAs(t, a, "UMA", userPassword("uma"), `{"expires_in":60}`); st != 201 {
		t.Fatalf("token with seconds (and the name in capitals): %d %s", st, body)
	}
	for _, bad := range []string{`{"expires_in":"soon"}`, `{"expires_in":-5}`, `{"name":""}`, `{"nme":"x"}`, `[`} {
		if st, _, body := basicAs(t, a, "uma", userPassword("uma"), bad); st != 400 {
			t.Errorf("body %s: %d %s, want 400", bad, st, body)
		}
	}

	// Listing shows metadata, never a secret.
	st, list := doAs(t, created.Secret, "GET", a.URL()+"/api/v1/tokens", nil, nil)
	if st != 200 || !strings.Contains(string(list), created.ID) || strings.Contains(string(list), TokenPrefix) ||
		strings.Contains(string(list), stored) {
		t.Fatalf("list: %d %s", st, list)
	}

	// Revoked: refused at once.
	if st, body := doAs(t, created.Secret, "DELETE", a.URL()+"/api/v1/tokens/"+created.ID, nil, nil); st != 204 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	if st, _ := doAs(t, created.Secret, "GET", a.URL()+"/api/v1/me", nil, nil); st != 401 {
		t.Fatalf("revoked token: %d, want 401", st)
	}
}

// Wrong password, unknown user and disabled user get the same answer.
func TestWrongCredentialsLookTheSame(t *testing.T) {
	a := MustOpen(t, Config{AuthRateLimit: -1})
	mustUser(t, a, "uma", RoleUploader)
	d := mustUser(t, a, "dora", RoleUploader)
	if _, err := a.updateUser(t.Context(), d.ID, UserChange{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		auth   string
		body   string
	}
	ask := func(user, pw string) answer {
		st, h, body := basicAs(t, a, user, pw, "")
		return answer{st, h.Get("WWW-Authenticate"), string(body)}
	}
	wrongPw := ask("uma", "not-the-password")
	if wrongPw.status != 401 || wrongPw.auth == "" {
		t.Fatalf("wrong password: %+v", wrongPw)
	}
	for name, got := range map[string]answer{
		"unknown user":  ask("nobody", "not-the-password"),
		"disabled user": ask("dora", userPassword("dora")),
		"invalid name":  ask("no such user!", "x"),
	} {
		if got != wrongPw {
			t.Errorf("%s: %+v, want the same as a wrong password %+v", name, got, wrongPw)
		}
	}
	// The login endpoint too.
	login := func(user, pw string) answer {
		st, body := doAs(t, "", "POST", a.URL()+"/login", strings.NewReader(`{"username":"`+user+`","password":"`+pw+`"}`),
			map[string]string{"Content-Type": "application/json"})
		return answer{st, "", string(body)}
	}
	if w, u := login("uma", "not-the-password"), login("nobody", "not-the-password"); w.status != 401 || w != u {
		t.Errorf("login: wrong password %+v, unknown user %+v", w, u)
	}
}

func ptr[T any](v T) *T { return &v }

// Login and token endpoints are rate limited per client address.
func TestAuthRateLimit(t *testing.T) {
	a := MustOpen(t, Config{AuthRateLimit: 3, TrustProxy: true})
	mustUser(t, a, "uma", RoleUploader)
	for i := 0; i < 3; i++ {
		if st, _, _ := basicAs(t, a, "uma", "wrong-password", ""); st != 401 {
			t.Fatalf("attempt %d: %d, want 401", i+1, st)
		}
	}
	st, h, body := basicAs(t, a, "uma", userPassword("uma"), "")
	var e struct{ Error Error }
	if st != 429 || json.Unmarshal(body, &e) != nil || e.Error.Code != "rate_limited" || h.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d %s (Retry-After %q), want 429 JSON", st, body, h.Get("Retry-After"))
	}
	// The login form shares the limit.
	if st, _ := doAs(t, "", "POST", a.URL()+"/login", strings.NewReader("username=uma&password=x"),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); st != 429 {
		t.Fatalf("login after the limit: %d, want 429", st)
	}
	// Another client (behind the trusted proxy) is not limited.
	st, _ = doAs(t, "", "POST", a.URL()+"/login", strings.NewReader(`{"username":"uma","password":"`+userPassword("uma")+`"}`),
		map[string]string{"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"})
	if st != 200 {
		t.Fatalf("other client: %d, want 200", st)
	}
}
