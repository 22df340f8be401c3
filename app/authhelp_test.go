package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test portals require authentication like real ones. The shared helpers
// (getJSON, tusCreate, tusPatch, MustUpload, authDo, authGet) act as the
// portal's admin: MustOpen registers each portal by its address, and the
// first authenticated request creates an admin token for it.
var (
	testPortalsMu sync.Mutex
	testPortals   = map[string]*App{} // listen address -> portal
	testTokens    = map[*App]string{} // portal -> admin token
)

// registerTestPortal makes a's address resolve to a for authDo.
func registerTestPortal(tb testing.TB, a *App) {
	testPortalsMu.Lock()
	testPortals[a.Addr()] = a
	testPortalsMu.Unlock()
	tb.Cleanup(func() {
		testPortalsMu.Lock()
		if testPortals[a.Addr()] == a {
			delete(testPortals, a.Addr())
		}
		delete(testTokens, a)
		testPortalsMu.Unlock()
	})
}

// mustAdminToken returns an API token of the portal's admin user, created
// on first use.
func mustAdminToken(tb testing.TB, a *App) string {
	tb.Helper()
	testPortalsMu.Lock()
	tok, ok := testTokens[a]
	testPortalsMu.Unlock()
	if ok {
		return tok
	}
	admin, _, err := userByName(context.Background(), a.db.R, "admin")
	if err != nil {
		tb.Fatalf("admin user: %v", err)
	}
	tok = mustToken(tb, a, admin, nil)
	testPortalsMu.Lock()
	testTokens[a] = tok
	testPortalsMu.Unlock()
	return tok
}

// mustUser creates a user with the given role; its password is
// "pw-"+username+"-secret" (see userPassword).
func mustUser(tb testing.TB, a *App, username, role string) User {
	tb.Helper()
	pw := userPassword(username)
	u, hash, err := newUser(username, role, pw, a.passwordCost(), a.cfg.Now())
	if err != nil {
		tb.Fatal(err)
	}
	if err := insertUser(context.Background(), a.db.W, u, hash); err != nil {
		tb.Fatal(err)
	}
	return u
}

// userPassword is the password mustUser gives username.
func userPassword(username string) string { return "pw-" + username + "-secret" }

// mustToken issues a token for u, expiring at exp (nil: never).
func mustToken(tb testing.TB, a *App, u User, exp *time.Time) string {
	tb.Helper()
	_, secret, err := insertToken(context.Background(), a.db.W, u, "test", nil, a.cfg.Now(), exp)
	if err != nil {
		tb.Fatal(err)
	}
	return secret
}

// authDo sends req; when it has no Authorization header and goes to a
// test portal, it carries that portal's admin token.
func authDo(tb testing.TB, req *http.Request) *http.Response {
	tb.Helper()
	if req.Header.Get("Authorization") == "" {
		testPortalsMu.Lock()
		a := testPortals[req.URL.Host]
		testPortalsMu.Unlock()
		if a != nil {
			req.Header.Set("Authorization", "Bearer "+mustAdminToken(tb, a))
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// authGet GETs rawURL as the portal's admin.
func authGet(tb testing.TB, rawURL string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return authDo(tb, req)
}

// doAs sends a request with the given bearer token ("" for none) and
// returns the status and body.
func doAs(tb testing.TB, token, method, rawURL string, body io.Reader, hdr map[string]string) (int, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil && strings.HasPrefix(req.URL.Path, "/api/") {
		req.Header.Set("Content-Type", "application/json") // as the OpenAPI document asks
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
