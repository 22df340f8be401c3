package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestMetricsExposition(t *testing.T) {
	a := MustOpen(t, Config{Version: "v-test"})
	MustUpload(t, a.URL(), randomBytes(t, 4096), 1024, nil)
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`portal_build_info{version="v-test"} 1`,
		`portal_files{status="stored"} 1`,
		`portal_file_bytes{status="stored"} 4096`,
		`portal_events_written_total{type="file.uploaded"}`,
		`portal_finalize_duration_seconds_count`,
		`tusd_uploads_finished`,
		`tusd_bytes_received 4096`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
