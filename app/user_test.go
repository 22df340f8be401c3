package app

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers (log handlers).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// On first start without PORTAL_ADMIN_PASSWORD a random admin password is
// printed once to the console, never to the log; with it, that password
// works. Later starts create nothing.
func TestAdminCreatedOnFirstStart(t *testing.T) {
	dir := t.TempDir()
	var console, logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := MustOpen(t, Config{DataDir: dir, Console: &console, Logger: logger})
	m := regexp.MustCompile(`(?m)^\s+(\S{24})$`).FindStringSubmatch(console.String())
	if m == nil {
		t.Fatalf("no generated password on the console:\n%s", console.String())
	}
	pw := m[1]
	if strings.Contains(logs.String(), pw) {
		t.Fatal("the generated admin password is in the log")
	}
	if st, _, body := basicAs(t, a, "admin", pw, ""); st != 201 {
		t.Fatalf("token with the generated password: %d %s", st, body)
	}
	a.Close()

	console = syncBuffer{}
	b := MustOpen(t, Config{DataDir: dir, Console: &console, AdminPassword: "ignored-now-123"})
	if console.String() != "" {
		t.Fatalf("second start printed %q", console.String())
	}
	if st, _, _ := basicAs(t, b, "admin", "ignored-now-123", ""); st != 401 {
		t.Fatalf("a later PORTAL_ADMIN_PASSWORD changed the password: %d", st)
	}

	c := MustOpen(t, Config{AdminPassword: "chosen-admin-pw", Console: &console})
	if console.String() != "" {
		t.Fatalf("with a chosen password the console got %q", console.String())
	}
	if st, _, body := basicAs(t, c, "admin", "chosen-admin-pw", ""); st != 201 {
		t.Fatalf("token with the chosen password: %d %s", st, body)
	}
}

func TestUserAdministration(t *testing.T) {
	a := MustOpen(t, Config{AuthRateLimit: -1})
	admin := mustAdminToken(t, a)
	call := func(method, path, body string) (int, string) {
		st, b := doAs(t, admin, method, a.URL()+path, strings.NewReader(body), nil)
		return st, string(b)
	}
	st, body := call("POST", "/api/v1/users", `{"username":"uma","role":"uploader","password":"uma-password"}`)
	if st != 201 || strings.Contains(body, "password") {
		t.Fatalf("create: %d %s", st, body)
	}
	uma, _, _ := userByName(t.Context(), a.db.R, "uma")
	for _, c := range []struct{ body, why string }{
		{`{"username":"UMA","password":"another-password"}`, "duplicate name (case-insensitive)"},
	} {
		if st, body := call("POST", "/api/v1/users", c.body); st != 409 {
			t.Errorf("%s: %d %s, want 409", c.why, st, body)
		}
	}
	for _, c := range []struct{ body, why string }{
		{`{"username":"bob","role":"root","password":"long-enough"}`, "bad role"},
		{`{"username":"bob","password":"short"}`, "short password"},
		{`{"username":"bob","password":"` + strings.Repeat("x", 73) + `"}`, "password over 72 bytes"},
		{`{"username":"b o b","password":"long-enough"}`, "bad username"},
		{`{"username":"bob","password":"long-enough","admin":true}`, "unknown field"},
		{`not json`, "not JSON"},
	} {
		if st, body := call("POST", "/api/v1/users", c.body); st != 400 {
			t.Errorf("%s: %d %s, want 400", c.why, st, body)
		}
	}

	// A disabled user's token stops working; enabling brings it back.
	tok := mustToken(t, a, uma, nil)
	if st, body := call("PATCH", "/api/v1/users/"+uma.ID, `{"disabled":true}`); st != 200 || !strings.Contains(body, `"disabled":true`) {
		t.Fatalf("disable: %d %s", st, body)
	}
	if st, _ := doAs(t, tok, "GET", a.URL()+"/api/v1/me", nil, nil); st != 401 {
		t.Fatalf("disabled user's token: %d, want 401", st)
	}
	call("PATCH", "/api/v1/users/"+uma.ID, `{"disabled":false}`)
	if st, _ := doAs(t, tok, "GET", a.URL()+"/api/v1/me", nil, nil); st != 200 {
		t.Fatalf("re-enabled user's token: %d, want 200", st)
	}
	// A new password works at once.
	call("PATCH", "/api/v1/users/"+uma.ID, `{"password":"new-uma-password"}`)
	if st, _, _ := basicAs(t, a, "uma", "new-uma-password", ""); st != 201 {
		t.Fatalf("new password: %d", st)
	}

	// The last enabled admin stays.
	root, _, _ := userByName(t.Context(), a.db.R, "admin")
	for _, c := range []struct{ method, body string }{
		{"DELETE", ""}, {"PATCH", `{"disabled":true}`}, {"PATCH", `{"role":"uploader"}`},
	} {
		if st, body := call(c.method, "/api/v1/users/"+root.ID, c.body); st != 409 {
			t.Errorf("%s %s on the last admin: %d %s, want 409", c.method, c.body, st, body)
		}
	}
	// With a second admin the first may go; its tokens go with it.
	call("PATCH", "/api/v1/users/"+uma.ID, `{"role":"admin"}`)
	umaAdmin := mustToken(t, a, uma, nil)
	if st, body := doAs(t, umaAdmin, "DELETE", a.URL()+"/api/v1/users/"+root.ID, nil, nil); st != 204 {
		t.Fatalf("delete the first admin: %d %s", st, body)
	}
	if st, _ := doAs(t, admin, "GET", a.URL()+"/api/v1/me", nil, nil); st != 401 {
		t.Fatalf("deleted user's token: %d, want 401", st)
	}
	if st, _ := doAs(t, umaAdmin, "DELETE", a.URL()+"/api/v1/users/"+root.ID, nil, nil); st != 404 {
		t.Fatalf("delete twice: %d, want 404", st)
	}
	if st, _ := doAs(t, umaAdmin, "DELETE", a.URL()+"/api/v1/users/nope", nil, nil); st != 400 {
		t.Fatalf("bad id: %d, want 400", st)
	}
}
