package app

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func createWith(t *testing.T, base string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "5")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := authDo(t, req)
	resp.Body.Close()
	return resp
}

func TestForwardedHeaders(t *testing.T) {
	fwd := map[string]string{"X-Forwarded-Host": "uploads.example.org", "X-Forwarded-Proto": "https"}
	trusting := MustOpen(t, Config{TrustProxy: true})
	if loc := createWith(t, trusting.URL(), fwd).Header.Get("Location"); !strings.HasPrefix(loc, "https://uploads.example.org/files/") {
		t.Errorf("behind a trusted proxy, Location = %q", loc)
	}
	plain := MustOpen(t, Config{})
	if loc := createWith(t, plain.URL(), fwd).Header.Get("Location"); !strings.HasPrefix(loc, plain.URL()+"/files/") {
		t.Errorf("without --trust-proxy, forwarded headers were used: %q", loc)
	}
	public := MustOpen(t, Config{PublicURL: "https://portal.example.com/"})
	if loc := createWith(t, "http://"+public.Addr(), nil).Header.Get("Location"); !strings.HasPrefix(loc, "https://portal.example.com/files/") {
		t.Errorf("with --public-url, Location = %q", loc)
	}
	if public.URL() != "https://portal.example.com" {
		t.Errorf("public URL = %q", public.URL())
	}
}

func TestCORSOrigins(t *testing.T) {
	a := MustOpen(t, Config{CORSOrigins: []string{"https://app.example"}})
	for origin, allowed := range map[string]bool{"https://app.example": true, "https://evil.example": false} {
		req, _ := http.NewRequest(http.MethodOptions, a.URL()+"/files/", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("Access-Control-Allow-Origin") == origin
		if got != allowed {
			t.Errorf("origin %s: allowed=%v, want %v", origin, got, allowed)
		}
	}
}

func TestIETFDraftSwitch(t *testing.T) {
	data := []byte("draft upload body")
	send := func(a *App) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", bytes.NewReader(data))
		req.Header.Set("Upload-Draft-Interop-Version", "6")
		req.Header.Set("Upload-Complete", "?1")
		resp := authDo(t, req)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	on := MustOpen(t, Config{IETFDraft: true})
	resp := send(on)
	if resp.StatusCode >= 300 {
		t.Fatalf("IETF draft upload with the draft on: %s", resp.Status)
	}
	f, ok := fileByUpload(t, on, resp.Header.Get("Location"))
	if !ok || f.SHA256 != sha256Hex(data) {
		t.Fatalf("IETF draft upload not stored: %+v", f)
	}
	off := MustOpen(t, Config{})
	if resp := send(off); resp.StatusCode < 400 {
		t.Fatalf("IETF draft upload accepted with the draft off: %s", resp.Status)
	}
}

func TestPublicURLOfUnspecifiedListen(t *testing.T) {
	a := MustOpen(t, Config{Listen: "0.0.0.0:0"})
	_, port, _ := net.SplitHostPort(a.Addr())
	if a.URL() != "http://localhost:"+port {
		t.Fatalf("public URL %q, want http://localhost:%s", a.URL(), port)
	}
}
