package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Figures are a run's results: what was done, what was found.
type Figures struct {
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	Uploads  int    `json:"uploads"`
	Clients  int    `json:"clients"`
	Bytes    int64  `json:"bytes"`

	// How the clients learned each upload complete.
	Acked204   int `json:"acked_by_final_patch_204"`
	Acked201   int `json:"acked_by_creation_201"`
	AckedHead  int `json:"acked_by_head_after_failure"`
	Unfinished int `json:"unfinished"`

	Creates        int `json:"posts"`
	Patches        int `json:"patches"`
	Heads          int `json:"heads"`
	ClientFailures int `json:"client_failures"`

	Kills         int `json:"kills"`
	KillsFinalize int `json:"kills_during_finalize"`
	KillsDelivery int `json:"kills_during_delivery"`
	KillsMissed   int `json:"kills_whose_moment_did_not_come"`
	// SweepFinalized counts uploads the portal's sweep finalized (at
	// start-up after a kill): a kill struck between their last byte and
	// their commit.
	SweepFinalized int    `json:"finalized_by_sweep"`
	RestartMedian  string `json:"restart_median,omitempty"`
	RestartMax     string `json:"restart_max,omitempty"`

	Files                int    `json:"files"`
	UnackedFiles         int    `json:"files_never_acknowledged"`
	Lost                 int    `json:"lost"`
	AckedEarly           int    `json:"acknowledged_before_recorded"`
	Mismatched           int    `json:"mismatched"`
	Events               int    `json:"file_uploaded_events"`
	FilesWithoutOneEvent int    `json:"files_without_exactly_one_event"`
	EventsWithoutFile    int    `json:"events_without_file"`
	Deliveries           int    `json:"deliveries"`
	Requests             int    `json:"webhook_requests"`
	Answered500          int    `json:"answered_500"`
	Undelivered          int    `json:"undelivered"`
	Duplicates           int    `json:"duplicates"`
	MaxCopies            int    `json:"max_copies"`
	RejectedSignatures   int    `json:"rejected_signatures"`
	Integrity            string `json:"integrity_check"`
	LogErrors            int    `json:"portal_log_errors"`
	Panics               int    `json:"panics"`

	UploadPhase string  `json:"upload_phase"`
	AckedPerSec float64 `json:"acknowledged_per_second"` // over the upload phase, restarts included
	Duration    string  `json:"duration"`

	Problems []string `json:"problems"`
}

func (f *Figures) problem(format string, args ...any) {
	if len(f.Problems) < 50 {
		f.Problems = append(f.Problems, fmt.Sprintf(format, args...))
	}
}

// OK reports whether the run found nothing wrong.
func (f *Figures) OK() bool { return len(f.Problems) == 0 }

// print writes the figures as a short report.
func (f *Figures) print(w io.Writer) {
	fmt.Fprintf(w, "portalcrash %s: seed %d (replay with -seed %d)\n", f.Scenario, f.Seed, f.Seed)
	fmt.Fprintf(w, "  uploads %d (%s) by %d clients: acknowledged %d by final 204, %d by 201, %d by HEAD after a failure; unfinished %d\n",
		f.Uploads, human(f.Bytes), f.Clients, f.Acked204, f.Acked201, f.AckedHead, f.Unfinished)
	fmt.Fprintf(w, "  requests: %d POST, %d PATCH, %d HEAD; %d failed and were retried or resumed\n",
		f.Creates, f.Patches, f.Heads, f.ClientFailures)
	fmt.Fprintf(w, "  kills %d: %d during finalize, %d during deliveries, %d whose moment did not come; %d uploads finalized by the start-up sweep; restart median %s, max %s\n",
		f.Kills, f.KillsFinalize, f.KillsDelivery, f.KillsMissed, f.SweepFinalized, f.RestartMedian, f.RestartMax)
	fmt.Fprintf(w, "  files %d (%d never acknowledged to a client): lost %d, mismatched %d, acknowledged before recorded %d\n",
		f.Files, f.UnackedFiles, f.Lost, f.Mismatched, f.AckedEarly)
	fmt.Fprintf(w, "  file.uploaded events %d: files without exactly one %d, events without a file %d\n",
		f.Events, f.FilesWithoutOneEvent, f.EventsWithoutFile)
	fmt.Fprintf(w, "  deliveries %d over %d requests (%d answered 500 on purpose): undelivered %d, duplicates %d (at most %d copies), bad signatures %d\n",
		f.Deliveries, f.Requests, f.Answered500, f.Undelivered, f.Duplicates, f.MaxCopies, f.RejectedSignatures)
	fmt.Fprintf(w, "  integrity_check %s; portal log: %d errors, %d panics; uploads took %s (%.0f acknowledged per second, restarts included), the run %s\n",
		f.Integrity, f.LogErrors, f.Panics, f.UploadPhase, f.AckedPerSec, f.Duration)
	if len(f.Problems) == 0 {
		fmt.Fprintln(w, "  PASS")
		return
	}
	fmt.Fprintf(w, "  FAIL: %d problems\n", len(f.Problems))
	for _, p := range f.Problems {
		fmt.Fprintln(w, "   -", p)
	}
}

// writeJSON writes the figures of the runs (and the disk-full moments, if
// they ran) to path.
func writeJSON(path string, figs []*Figures, df *diskFullResult) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	out := struct {
		Runs     []*Figures `json:"runs"`
		DiskFull []*moment  `json:"diskfull,omitempty"`
	}{Runs: figs}
	if df != nil {
		out.DiskFull = df.Moments
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
