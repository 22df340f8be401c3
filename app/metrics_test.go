package app

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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

// The exposition passes promtool's linter (Debian's prometheus package;
// `make test` installs it).
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PORTAL_REQUIRE_TOOLS") != "" {
			t.Fatal("promtool not found; make test installs it (apt-get install prometheus)")
		}
		t.Skip("promtool not installed")
	}
	a := MustOpen(t, Config{})
	MustUpload(t, a.URL(), randomBytes(t, 100), 100, nil)
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = resp.Body
	out, err := cmd.CombinedOutput()
	// tusd's own counters predate the _total convention; dashboards for
	// tusd use those names, so they stay. Every other finding fails.
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || tusdLegacyName.MatchString(line) {
			continue
		}
		problems = append(problems, line)
	}
	if len(problems) > 0 || (err != nil && len(out) == 0) {
		t.Fatalf("promtool check metrics: %v\n%s", err, strings.Join(problems, "\n"))
	}
}

var tusdLegacyName = regexp.MustCompile(`^tusd_[a-z_]+ counter metrics should have "_total" suffix$`)

func TestDeliveryMetrics(t *testing.T) {
	a := MustOpen(t, whConfig())
	rc, ep := whReceiverEndpoint(t, a)
	// The latency histogram is process-wide (other tests deliver too, and
	// -count runs the test again): it must grow by exactly this delivery.
	latencyCount := func(text string) int {
		m := regexp.MustCompile(`(?m)^portal_webhook_delivery_latency_seconds_count (\d+)$`).FindStringSubmatch(text)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	before := latencyCount(scrape(t, a))
	whUpload(t, a)
	rc.next(5 * time.Second)
	wants := []string{
		`portal_webhook_attempts_total{endpoint="` + ep.ID + `",outcome="success"} 1`,
		fmt.Sprintf("portal_webhook_delivery_latency_seconds_count %d\n", before+1),
		"portal_outbox_oldest_undelivered_age_seconds 0",
		`portal_webhook_deliveries{status="delivering"} 0`,
		`portal_webhook_endpoints{state="enabled"} 1`,
		`portal_http_request_duration_seconds_count{code="2xx",method="PATCH",route="tus"}`,
		`portal_http_request_duration_seconds_count{code="2xx",method="POST",route="api"}`,
	}
	// The attempt is recorded just after the receiver answers, and one
	// scrape may gather the collectors around that moment: scrape until
	// everything shows, for a bounded time.
	var text string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		text = scrape(t, a)
		missing := 0
		for _, want := range wants {
			if !strings.Contains(text, want) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "webhook") && !strings.HasPrefix(l, "#") {
				t.Log(l)
			}
		}
	}
}

func scrape(tb testing.TB, a *App) string {
	tb.Helper()
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMetricsListen(t *testing.T) {
	a := MustOpen(t, Config{MetricsListen: "127.0.0.1:0"})
	if resp, err := http.Get(a.URL() + "/metrics"); err != nil || resp.StatusCode == http.StatusOK {
		t.Fatalf("/metrics still on the main listener: %v %v", resp, err)
	}
	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "portal_build_info") {
		t.Fatalf("metrics listener: %d", resp.StatusCode)
	}
}
