package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/doorito/portal/app"
)

func TestServeFlagsAndEnv(t *testing.T) {
	env := map[string]string{
		"PORTAL_LISTEN":          "127.0.0.1:9999",
		"PORTAL_DATA_DIR":        "/env/dir",
		"PORTAL_FILE_TTL":        "48h",
		"PORTAL_MAX_UPLOAD_SIZE": "2GiB",
		"PORTAL_CORS_ORIGINS":    "https://a.example, https://b.example",
	}
	cfg, _, err := parseServe([]string{"--data-dir", "/flag/dir"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.DataDir != "/flag/dir" || cfg.FileTTL != 48*time.Hour ||
		cfg.MaxUploadSize != 2<<30 || len(cfg.CORSOrigins) != 2 || cfg.CORSOrigins[1] != "https://b.example" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if _, _, err := parseServe(nil, func(k string) string {
		if k == "PORTAL_FILE_TTL" {
			return "forever"
		}
		return ""
	}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "PORTAL_FILE_TTL") {
		t.Fatalf("bad env value: %v", err)
	}
	if _, _, err := parseServe([]string{"--max-upload-size", "lots"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("bad size accepted")
	}
}

func TestHelpListsFlagsWithEnv(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"serve", "--help"}, &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--listen", "PORTAL_LISTEN", "--data-dir", "PORTAL_DATA_DIR", "--public-url",
		"--file-ttl", "--file-ttl-max", "--max-upload-size", "--cors-origins", "PORTAL_CORS_ORIGINS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s:\n%s", want, out.String())
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "5MiB": 5 << 20, "1GB": 1e9, "10 KiB": 10240} {
		if got, err := app.ParseSize(in); err != nil || got != want {
			t.Errorf("app.ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GB", "GB", "9999999999TiB"} {
		if _, err := app.ParseSize(in); err == nil {
			t.Errorf("app.ParseSize(%q) accepted", in)
		}
	}
}

func TestHealthcheckExitCode(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	var errOut bytes.Buffer
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, &errOut); code != 0 {
		t.Fatalf("ready portal: exit %d: %s", code, errOut.String())
	}
	status = http.StatusServiceUnavailable
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, &errOut); code == 0 {
		t.Fatal("unready portal: exit 0")
	}
	srv.Close()
	if code := healthcheck([]string{"--url", srv.URL + "/readyz"}, &errOut); code == 0 {
		t.Fatal("unreachable portal: exit 0")
	}
}

// The default listen address is loopback wherever the binary runs; the
// Docker image opts into 0.0.0.0 through PORTAL_LISTEN.
func TestDefaultListenIsLoopback(t *testing.T) {
	cfg, _, err := parseServe(nil, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.DataDir != "./data" {
		t.Fatalf("defaults: listen %q, data dir %q", cfg.Listen, cfg.DataDir)
	}
}
