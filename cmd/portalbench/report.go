package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sample is a set of measurements of one quantity, summarized.
type Sample struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

// newSample summarizes values (which it does not reorder).
func newSample(values []float64) *Sample {
	if len(values) == 0 {
		return nil
	}
	s := slices.Clone(values)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Sample{N: len(s), Median: med, Min: s[0], Max: s[len(s)-1], Values: values}
}

// Spread is (max-min)/median, the relative range of the sample.
func (s *Sample) Spread() float64 {
	if s == nil || s.Median == 0 {
		return 0
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Result is one row of the report: a case of a scenario, the portal's
// figure and, where there is one, the baseline's, the raw limit and the
// per-repetition ratio the target is checked against.
type Result struct {
	Scenario int     `json:"scenario"`
	Case     string  `json:"case"`
	Unit     string  `json:"unit"`
	Portal   *Sample `json:"portal"`
	Baseline *Sample `json:"baseline,omitempty"`
	// Raw is the same bytes by io.Copy to files: with fsync beside the
	// durable baseline (tusd+fdatasync), without beside the bare one.
	Raw *Sample `json:"raw,omitempty"`
	// Ratio is portal/baseline per repetition (or the case's own ratio).
	Ratio  *Sample        `json:"ratio,omitempty"`
	Target string         `json:"target,omitempty"`
	Pass   *bool          `json:"pass,omitempty"`
	Notes  map[string]any `json:"notes,omitempty"`
}

// Machine is what the figures ran on.
type Machine struct {
	NProc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Model      string `json:"model"`
	GoVersion  string `json:"go_version"`
	Kernel     string `json:"kernel"`
	LoadAvg    string `json:"loadavg_at_start"`
}

// Report is the whole run, as written to the JSON file.
type Report struct {
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Command  string    `json:"command"`
	Short    bool      `json:"short"`
	Machine  Machine   `json:"machine"`
	Results  []Result  `json:"results"`
	Skipped  []string  `json:"skipped,omitempty"`
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

// atLeast returns a pass flag for v >= min.
func atLeast(v, min float64) *bool { b := v >= min; return &b }

// atMost returns a pass flag for v <= max.
func atMost(v, max float64) *bool { b := v <= max; return &b }

func fmtSample(s *Sample) string {
	if s == nil {
		return "-"
	}
	if s.N == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// printTable writes the results as an aligned table: medians with the
// [min–max] of the repetitions.
func printTable(w io.Writer, r Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tcase\tunit\tportal\tbaseline\traw io.Copy\tratio\ttarget\tok")
	for _, x := range r.Results {
		ok := "-"
		if x.Pass != nil {
			ok = map[bool]string{true: "yes", false: "NO"}[*x.Pass]
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Scenario, x.Case, x.Unit,
			fmtSample(x.Portal), fmtSample(x.Baseline), fmtSample(x.Raw), fmtSample(x.Ratio), x.Target, ok)
	}
	tw.Flush()
	for _, x := range r.Results {
		if len(x.Notes) == 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(x.Notes))
		var parts []string
		for _, k := range keys {
			switch v := x.Notes[k].(type) {
			case *Sample:
				parts = append(parts, k+" "+fmtSample(v))
			case float64:
				parts = append(parts, k+" "+fmtNum(v))
			default:
				parts = append(parts, fmt.Sprintf("%s %v", k, v))
			}
		}
		fmt.Fprintf(w, "  %d %s: %s\n", x.Scenario, x.Case, strings.Join(parts, ", "))
	}
	for _, s := range r.Skipped {
		fmt.Fprintln(w, "skipped:", s)
	}
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs (%s), GOMAXPROCS %d, %s, Linux %s, load at start %s; run took %s\n",
		m.NProc, m.Model, m.GOMAXPROCS, m.GoVersion, m.Kernel, m.LoadAvg, r.Duration)
}

func writeJSON(path string, r Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
