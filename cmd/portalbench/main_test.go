package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the harness with tiny sizes (within 4 minutes, for a
// loaded machine): every scenario runs
// against the real portal (scenario 5 against the real binary, built
// here), the JSON report is written, uploads are recorded with the right
// SHA-256 (scenario 1 checks) and no byte is read back to finish a digest.
// It asserts no timing: the figures of a smoke run mean nothing.
func TestSmoke(t *testing.T) {
	scenarios := []int{1, 2, 3, 4, 6, 7, 8}
	bin := ""
	if !testing.Short() {
		if _, err := exec.LookPath("go"); err == nil {
			bin = filepath.Join(t.TempDir(), "portal")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/doorito/portal").CombinedOutput()
			if err != nil {
				t.Fatalf("build the portal: %v\n%s", err, out)
			}
			scenarios = append(scenarios, 5, 9) // 9 also needs versitygw (make test installs it)
		}
	}
	out := filepath.Join(t.TempDir(), "results.json")
	o := options{short: true, reps: 2, memReps: 1, scenarios: scenarios, dir: t.TempDir(), out: out, bin: bin,
		log: testWriter{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rep, err := benchmark(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	printTable(&table, *rep)
	t.Log("\n" + table.String())
	if err := writeJSON(out, *rep); err != nil {
		t.Fatal(err)
	}

	seen := map[int]int{}
	for _, r := range rep.Results {
		seen[r.Scenario]++
		if r.Portal == nil || r.Portal.N == 0 {
			t.Errorf("%d %s: no figures", r.Scenario, r.Case)
			continue
		}
		for _, s := range []*Sample{r.Portal, r.Baseline, r.Raw, r.Ratio} {
			if s != nil && (math.IsNaN(s.Median) || math.IsInf(s.Median, 0) || s.Median < 0) {
				t.Errorf("%d %s: median %v", r.Scenario, r.Case, s.Median)
			}
		}
		if (strings.HasPrefix(r.Case, "bytes re-read") || strings.HasPrefix(r.Case, "S3 bytes read back")) && r.Portal.Median != 0 {
			t.Errorf("%d %s: %v bytes read back, want 0", r.Scenario, r.Case, r.Portal.Median)
		}
		if (r.Scenario == 5 || r.Scenario == 9) && strings.Contains(r.Case, "peak RSS") && r.Portal.Median <= 1 {
			t.Errorf("%d %s: %v MiB is no process's resident set", r.Scenario, r.Case, r.Portal.Median)
		}
	}
	for _, s := range scenarios {
		if seen[s] == 0 {
			t.Errorf("scenario %d: no results", s)
		}
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results JSON: %v", err)
	}
	if len(back.Results) != len(rep.Results) || back.Machine.NProc == 0 || !back.Short {
		t.Fatalf("results JSON has %d results, machine %+v, short %v", len(back.Results), back.Machine, back.Short)
	}
}

func TestParseOptions(t *testing.T) {
	for _, args := range [][]string{{"-scenarios", "10"}, {"-scenarios", "x"}, {"-reps", "0"}, {"-mem-reps", "1000"}} {
		if _, err := parseOptions(args, testWriter{t}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	o, err := parseOptions([]string{"-scenarios", "6, 1", "-short"}, testWriter{t})
	if err != nil || len(o.scenarios) != 2 || o.scenarios[0] != 6 || !o.short {
		t.Fatalf("options = %+v, %v", o, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
