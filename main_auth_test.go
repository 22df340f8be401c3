package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorito/portal/app"
)

// portal user add and portal token create work on the data dir; the
// token they print authenticates against a portal on that dir.
func TestUserAddAndTokenCreate(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	noEnv := func(string) string { return "" }
	add := []string{"add", "--data-dir", dir, "--username", "carol"}
	if code := userCmd(add, strings.NewReader("carol-password\n"), noEnv, &out, &errOut); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "created user carol (role uploader") {
		t.Fatalf("user add printed %q", out.String())
	}
	if strings.Contains(out.String()+errOut.String(), "carol-password") {
		t.Fatal("user add echoed the password")
	}
	env := func(k string) string { return map[string]string{"PORTAL_USER_PASSWORD": "dave-password"}[k] }
	if code := userCmd([]string{"add", "--data-dir", dir, "--username", "dave", "--role", "admin"}, strings.NewReader(""), env,
		io.Discard, &errOut); code != 0 {
		t.Fatalf("user add from env: exit %d: %s", code, errOut.String())
	}
	if code := userCmd(add, strings.NewReader("carol-password\n"), noEnv, io.Discard, io.Discard); code != 1 {
		t.Fatalf("duplicate user: exit %d, want 1", code)
	}
	if code := userCmd([]string{"add", "--data-dir", dir, "--username", "erin"}, strings.NewReader("short\n"), noEnv, io.Discard, io.Discard); code != 1 {
		t.Fatalf("short password: exit %d, want 1", code)
	}
	if code := userCmd([]string{"add", "--data-dir", dir}, strings.NewReader(""), noEnv, io.Discard, io.Discard); code != 2 {
		t.Fatalf("no username: exit %d, want 2", code)
	}

	out.Reset()
	errOut.Reset()
	if code := tokenCmd([]string{"create", "--data-dir", dir, "--username", "carol", "--name", "ci", "--expires", "720h"},
		&out, &errOut); code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	if !strings.HasPrefix(token, app.TokenPrefix) || strings.Contains(token, "\n") || !strings.Contains(errOut.String(), "shown only this once") {
		t.Fatalf("token create printed %q / %q", out.String(), errOut.String())
	}
	if code := tokenCmd([]string{"create", "--data-dir", dir, "--username", "nobody"}, io.Discard, io.Discard); code != 1 {
		t.Fatalf("token for an unknown user: exit %d, want 1", code)
	}

	a, err := app.New(app.Config{DataDir: dir, Listen: "127.0.0.1:0", Console: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	req, _ := http.NewRequest(http.MethodGet, a.URL()+"/api/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"username":"carol"`) {
		t.Fatalf("me with the CLI token: %d %s", resp.StatusCode, body)
	}
}

// The admin password comes from PORTAL_ADMIN_PASSWORD or the file named by
// PORTAL_ADMIN_PASSWORD_FILE, never from a flag; --anonymous-uploads has
// its environment variable.
func TestServeAuthSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("from-a-file-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PORTAL_ADMIN_PASSWORD": "from-env-pw"}, "from-env-pw"},
		{map[string]string{"PORTAL_ADMIN_PASSWORD_FILE": file}, "from-a-file-pw"},
		{nil, ""},
	} {
		cfg, _, err := parseServe(nil, func(k string) string { return c.env[k] }, io.Discard)
		if err != nil || cfg.AdminPassword != c.want {
			t.Errorf("env %v: admin password %q, %v; want %q", c.env, cfg.AdminPassword, err, c.want)
		}
	}
	if _, _, err := parseServe(nil, func(k string) string {
		return map[string]string{"PORTAL_ADMIN_PASSWORD_FILE": "/nonexistent/pw"}[k]
	}, io.Discard); err == nil {
		t.Error("a missing password file was accepted")
	}
	if _, _, err := parseServe([]string{"--admin-password", "x"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("an --admin-password flag exists; secrets must not be flags")
	}
	cfg, _, err := parseServe(nil, func(k string) string {
		return map[string]string{"PORTAL_ANONYMOUS_UPLOADS": "true", "PORTAL_AUTH_RATE_LIMIT": "30"}[k]
	}, io.Discard)
	if err != nil || !cfg.AnonymousUploads || cfg.AuthRateLimit != 30 {
		t.Fatalf("cfg %+v, %v", cfg, err)
	}
}
