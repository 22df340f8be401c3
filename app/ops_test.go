package app

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/webui"
)

// auditRecords returns the audit records logged so far (JSON log lines
// with component=audit), each as its attributes.
func (s *syncBuffer) auditRecords(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		if !strings.Contains(line, `"component":"audit"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("audit line %q: %v", line, err)
		}
		delete(m, "time")
		out = append(out, m)
	}
	return out
}

// The JSON API and the web UI call the same operations: the same bad input
// gets the same refusal from both, and the same change writes the same
// audit record.
func TestAPIAndUIShareOperations(t *testing.T) {
	logs := &syncBuffer{}
	a := MustOpen(t, Config{Logger: slog.New(slog.NewJSONHandler(logs, nil)), AllowPrivateEndpoints: true})
	mustUser(t, a, "ada", RoleAdmin)
	tok := mustToken(t, a, userNamed(t, a, "ada"), nil)
	ui := uiLogin(t, a, "ada")

	refusals := []struct {
		name     string
		api      func() (int, []byte)
		uiPath   string
		uiForm   url.Values
		wantCode int
	}{
		{"endpoint URL not http(s)", func() (int, []byte) {
			return sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/endpoints", `{"url":"ftp://example.com/hook"}`)
		}, "/ui/endpoints", url.Values{"url": {"ftp://example.com/hook"}}, 400},
		{"endpoint URL missing", func() (int, []byte) {
			return sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/endpoints", `{"description":"no url"}`)
		}, "/ui/endpoints", url.Values{"url": {""}}, 400},
		{"event type nobody sends", func() (int, []byte) {
			return sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/endpoints",
				`{"url":"http://127.0.0.1:9/x","event_types":["file.uploded"]}`)
		}, "/ui/endpoints", url.Values{"url": {"http://127.0.0.1:9/x"}, "event_types": {"file.uploded"}}, 400},
		{"password too short", func() (int, []byte) {
			return sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/users", `{"username":"sam","password":"short"}`)
		}, "/ui/users", url.Values{"username": {"sam"}, "role": {"uploader"}, "password": {"short"}}, 400},
		{"user exists", func() (int, []byte) {
			return sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/users", `{"username":"ada","password":"long-enough-pw"}`)
		}, "/ui/users", url.Values{"username": {"ada"}, "role": {"uploader"}, "password": {"long-enough-pw"}}, 409},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			st, body := tc.api()
			var e struct{ Error Error }
			if st != tc.wantCode || json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
				t.Fatalf("API: %d %s, want %d with a message", st, body, tc.wantCode)
			}
			page := ui.post(tc.uiPath, tc.uiForm)
			if page.status != tc.wantCode || !strings.Contains(html.UnescapeString(page.body), e.Error.Message) {
				t.Errorf("UI: %d, want %d with the API's message %q in the page", page.status, tc.wantCode, e.Error.Message)
			}
		})
	}
	if n := len(logs.auditRecords(t)); n != 0 {
		t.Fatalf("refused changes wrote %d audit records", n)
	}

	// The same change through each surface: one audit record each, the
	// same but for how the admin signed in and the new endpoint's id.
	if st, body := sendJSON(t, tok, http.MethodPost, a.URL()+"/api/v1/endpoints", `{"url":"http://127.0.0.1:9/same"}`); st != 201 {
		t.Fatalf("API create: %d %s", st, body)
	}
	if page := ui.post("/ui/endpoints", url.Values{"url": {"http://127.0.0.1:9/same"}}); page.status >= 400 {
		t.Fatalf("UI create: %d", page.status)
	}
	recs := logs.auditRecords(t)
	if len(recs) != 2 {
		t.Fatalf("audit records: %v, want 2", recs)
	}
	for _, r := range recs {
		delete(r, "endpoint_id")
	}
	if recs[0]["via"] != "token" || recs[1]["via"] != "session" {
		t.Errorf("via: %v and %v, want token and session", recs[0]["via"], recs[1]["via"])
	}
	delete(recs[0], "via")
	delete(recs[1], "via")
	want := map[string]any{"level": "INFO", "msg": "audit", "component": "audit", "action": "endpoint.create",
		"actor_id": userNamed(t, a, "ada").ID, "actor": "ada", "url": "http://127.0.0.1:9/same"}
	for i, r := range recs {
		if !mapsEqual(r, want) {
			t.Errorf("audit record %d: %v, want %v", i, r, want)
		}
	}
}

func mapsEqual(x, y map[string]any) bool {
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return bytes.Equal(bx, by)
}

func userNamed(tb testing.TB, a *App, name string) User {
	tb.Helper()
	u, _, err := userByName(context.Background(), a.db.R, name)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// The web UI's pages and forms walk the same policy: a signed-in user who
// may not perform a page's operation gets 403, one who may does not; the
// anonymous are sent to sign in.
func TestUIAuthorizationMatrix(t *testing.T) {
	a := MustOpen(t, Config{})
	mustUser(t, a, "uma", RoleUploader)
	mustUser(t, a, "ada", RoleAdmin)
	sessions := map[string]*uiSession{"anonymous": newUISession(t, a), "uploader": uiLogin(t, a, "uma"), "admin": uiLogin(t, a, "ada")}
	idents := map[string]access.Identity{"anonymous": {},
		"uploader": {UserID: "u", Role: RoleUploader}, "admin": {UserID: "a", Role: RoleAdmin}}
	const someID = "01a207ca-0673-7e8a-93d4-b765bcb0528a"
	for _, rt := range webui.Routes() {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		path = patternVar.ReplaceAllString(path, someID)
		for who, s := range sessions {
			var page uiPage
			if method == http.MethodGet {
				page = s.get(path)
			} else {
				page = s.post(path, url.Values{})
			}
			_, err := a.ops.policy.Check(idents[who], access.Op(rt.Op))
			switch {
			case who == "anonymous" && method == http.MethodGet:
				if page.status != http.StatusSeeOther || !strings.HasPrefix(page.header.Get("Location"), "/login") {
					t.Errorf("%s as anonymous: %d to %q, want 303 to sign in", rt.Pattern, page.status, page.header.Get("Location"))
				}
			case who == "anonymous":
				if page.status != http.StatusUnauthorized {
					t.Errorf("%s as anonymous: %d, want 401", rt.Pattern, page.status)
				}
			case err != nil && page.status != http.StatusForbidden:
				t.Errorf("%s as %s: %d, want 403 (policy: %v)", rt.Pattern, who, page.status, err)
			case err == nil && (page.status == http.StatusForbidden || page.status == http.StatusUnauthorized || page.status >= 500):
				t.Errorf("%s as %s: %d, want no refusal", rt.Pattern, who, page.status)
			}
		}
	}
}
