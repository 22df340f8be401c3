package app

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// A full run at debug level — admin login, user creation, form login,
// tokens from Basic and from a session, token and anonymous uploads,
// downloads, wrong passwords, bad tokens, a password change, revocation,
// logout — writes none of the passwords, tokens, session ids or their
// hashes to the log or into event payloads.
func TestNoSecretsInLogsOrPayloads(t *testing.T) {
	var logs, console syncBuffer
	const adminPW = "Admin-Secret-Pw-4711"
	a := MustOpen(t, Config{
		AdminPassword: adminPW, AnonymousUploads: true, AuthRateLimit: -1, Console: &console,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	secrets := map[string]string{"admin password": adminPW}

	st, _, body := basicAs(t, a, "admin", adminPW, `{"name":"ops"}`)
	var tok struct{ Token string }
	if st != 201 || json.Unmarshal(body, &tok) != nil {
		t.Fatalf("admin token: %d %s", st, body)
	}
	admin := tok.Token
	secrets["admin token"] = admin

	const userPW = "Uma-Secret-Pw-0815"
	if st, body := doAs(t, admin, "POST", a.URL()+"/api/v1/users", strings.NewReader(
		`{"username":"uma","role":"uploader","password":"`+userPW+`"}`), nil); st != 201 {
		t.Fatalf("create user: %d %s", st, body)
	}
	secrets["user password"] = userPW
	secrets["Basic header"] = base64.StdEncoding.EncodeToString([]byte("uma:" + userPW))

	c := sessionCookieOf(formLogin(t, a, "uma", userPW, nil))
	if c == nil {
		t.Fatal("no session")
	}
	secrets["session cookie"] = c.Value
	st, body = withCookie(t, c, "POST", a.URL()+"/api/v1/tokens", `{"name":"laptop"}`, nil)
	if st != 201 || json.Unmarshal(body, &tok) != nil {
		t.Fatalf("token from session: %d %s", st, body)
	}
	user := tok.Token
	secrets["user token"] = user

	url := createAs(t, a, user, 6, map[string]string{"Upload-Metadata": encodeMeta(map[string]string{"filename": "r.txt"})})
	fillAs(t, user, url, []byte("report"))
	f := fileOfUpload(t, a, url)
	anon := createAs(t, a, "", 2, nil)
	fillAs(t, "", anon, []byte("hi"))
	doAs(t, user, "GET", a.URL()+"/api/v1/files/"+f.ID+"/content", nil, nil)
	doAs(t, user, "GET", url, nil, tusHdr(nil))
	doAs(t, admin, "GET", a.URL()+"/api/v1/events", nil, nil)

	const wrongPW = "Wrong-Secret-Pw-1234"
	secrets["wrong password"] = wrongPW
	formLogin(t, a, "uma", wrongPW, nil)
	basicAs(t, a, "nobody", wrongPW, "")
	bogus := randomToken()
	secrets["bogus token"] = bogus
	if st, _ := doAs(t, bogus, "GET", a.URL()+"/api/v1/files", nil, nil); st != 401 {
		t.Fatalf("bogus token: %d", st)
	}
	doAs(t, bogus, "POST", a.URL()+"/files/", nil, tusHdr(map[string]string{"Upload-Length": "1"}))

	const newPW = "Changed-Secret-Pw-99"
	secrets["changed password"] = newPW
	uma, _, _ := userByName(t.Context(), a.db.R, "uma")
	if st, body := doAs(t, admin, "PATCH", a.URL()+"/api/v1/users/"+uma.ID, strings.NewReader(`{"password":"`+newPW+`"}`), nil); st != 200 {
		t.Fatalf("change password: %d %s", st, body)
	}
	var list struct{ Items []Token }
	json.Unmarshal([]byte(mustGetBody(t, user, a.URL()+"/api/v1/tokens")), &list)
	for _, tk := range list.Items {
		doAs(t, user, "DELETE", a.URL()+"/api/v1/tokens/"+tk.ID, nil, nil)
	}
	withCookie(t, c, "POST", a.URL()+"/logout", "", nil)

	var payloads strings.Builder
	rows, err := a.db.R.Query("SELECT payload FROM events")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var p []byte
		rows.Scan(&p)
		payloads.Write(p)
		n++
	}
	rows.Close()
	if n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	a.Close() // the log is complete

	for _, s := range []string{admin, user, c.Value, bogus} {
		secrets["hash of "+s[:8]] = secretHash(s)
	}
	out := logs.String()
	for _, want := range []string{"login", "action=token.create", "file stored", "level=DEBUG", "action=user.update", "action=token.revoke"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the log lacks %q; did the run happen?\n%s", want, out)
		}
	}
	for what, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log contains the %s", what)
		}
		if strings.Contains(payloads.String(), s) {
			t.Errorf("an event payload contains the %s", what)
		}
		if strings.Contains(console.String(), s) {
			t.Errorf("the console got the %s", what)
		}
	}
	for _, prefix := range []string{TokenPrefix, sessionPrefix} {
		if strings.Contains(out, prefix) || strings.Contains(payloads.String(), prefix) {
			t.Errorf("%q appears in the log or payloads", prefix)
		}
	}
}

// mustGetBody GETs rawURL with a token and returns the body of a 200.
func mustGetBody(tb testing.TB, token, rawURL string) string {
	tb.Helper()
	st, body := doAs(tb, token, http.MethodGet, rawURL, nil, nil)
	if st != 200 {
		tb.Fatalf("GET %s: %d %s", rawURL, st, body)
	}
	return string(body)
}
