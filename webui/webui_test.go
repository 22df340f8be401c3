package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "7 days"},
		{24 * time.Hour, "1 day"},
		{36 * time.Hour, "36 hours"},
		{90 * time.Minute, "90 minutes"},
		{time.Second, "1 second"},
		{0, "0 seconds"},
		{90*time.Minute + 30*time.Second, "1h30m30s"},
	} {
		if got := humanDuration(c.d); got != c.want {
			t.Errorf("humanDuration(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 6*1024*1024 + 512*1024: "6.5 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// The lifetimes offered never exceed the maximum and never repeat the
// default.
func TestTTLChoices(t *testing.T) {
	got := ttlChoices(24*time.Hour, 7*24*time.Hour)
	var labels []string
	for _, c := range got {
		labels = append(labels, c.Value+"="+c.Label)
	}
	want := "=default (1 day),3600=1 hour,604800=7 days"
	if strings.Join(labels, ",") != want {
		t.Errorf("choices %v, want %s", labels, want)
	}
	if !got[0].Default {
		t.Error("the default is not preselected")
	}
}

func TestEndpointInput(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(url.Values{
		"url": {" https://x.example/h "}, "description": {" d "}, "event_types": {"file.uploaded", "file.deleted"},
		"event_types_other": {"file.*, file.uploaded\nfile.expiring"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.ParseForm()
	in := endpointInput(r)
	if in.URL != "https://x.example/h" || in.Description != "d" ||
		strings.Join(in.EventTypes, " ") != "file.uploaded file.deleted file.* file.expiring" {
		t.Errorf("input %+v", in)
	}
}

// A form's "back" may only lead to a page of the UI.
func TestBackTo(t *testing.T) {
	for back, want := range map[string]string{
		"/ui/events?x=1":     "/ui/events?x=1",
		"https://evil.test/": "/fallback",
		"//evil.test/ui/":    "/fallback",
		"/ui/\r\nSet-Cookie": "/fallback",
		"/ui/\\evil":         "/fallback",
		"/ui/#\x00":          "/fallback",
		"":                   "/fallback",
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(url.Values{"back": {back}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.ParseForm()
		if got := backTo(r, "/fallback"); got != want {
			t.Errorf("backTo(%q) = %q, want %q", back, got, want)
		}
	}
}

// A portal without a feature (a nil Backend function) says so instead of
// failing, and its forms are refused the same way.
func TestMissingFeatures(t *testing.T) {
	admin := &User{ID: "1", Username: "ada", Role: RoleAdmin}
	ui := MustNew(Config{Backend: Backend{CurrentUser: func(*http.Request) *User { return admin }}})
	srv := httptest.NewServer(ui)
	defer srv.Close()
	for _, path := range []string{"/ui/files", "/ui/endpoints", "/ui/events", "/ui/users", "/ui/tokens", "/ui/dashboard"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "not available in this build") {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.PostForm(srv.URL+"/ui/endpoints", url.Values{"url": {"https://x.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /ui/endpoints: %d", resp.StatusCode)
	}
	// The upload page works without the backend's extras.
	resp, err = http.Get(srv.URL + "/ui/upload")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ui/upload: %d", resp.StatusCode)
	}
}

// Every template renders with empty data (no nil dereference hides in a
// rarely seen branch).
func TestPagesRenderEmpty(t *testing.T) {
	ui := MustNew(Config{})
	for name := range ui.pages {
		w := httptest.NewRecorder()
		ui.render(w, httptest.NewRequest("GET", "/", nil), http.StatusOK, name, view{Title: name, User: &User{Role: RoleAdmin}})
		if w.Code != http.StatusOK {
			t.Errorf("page %s: %d %s", name, w.Code, w.Body)
		}
	}
}

// The upload page's bundle is committed and embedded, so a plain `go build`
// or `go install` serves a working upload page (make ui-check proves the
// committed bytes are what webui/ui's lockfile builds).
func TestUploadBundleEmbedded(t *testing.T) {
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAssets(static)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dist/upload.js", "dist/upload.css"} {
		f, ok := a.files[name]
		if !ok || len(f.data) < 10_000 {
			t.Errorf("%s is missing from the embedded assets or too small (%d bytes): run make ui and commit webui/static/dist", name, len(f.data))
		}
	}
}
