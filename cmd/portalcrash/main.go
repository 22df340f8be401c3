// Command portalcrash kills the real portal binary with SIGKILL again and
// again while tus clients upload and a webhook receiver takes deliveries,
// restarts it on the same data directory and port each time, and checks
// the durability promise and the delivery contract at the end: no
// acknowledged upload lost, no SHA-256 mismatch (in the file row and in
// the bytes read back through the API), exactly one file.uploaded event
// per file, every event delivered at least once; duplicates are counted.
//
// Scenarios:
//   - crash: uploads of mixed sizes in several PATCHes each from
//     concurrent clients that resume after failures (HEAD, then PATCH from
//     the offset, as tus-js-client does); kills during finalize (a final
//     PATCH's body sent, its answer not read), during webhook deliveries,
//     and at random moments.
//   - storm: many small uploads, each sent in its creation request (POST
//     with body) by 16 concurrent clients, with kills among them.
//   - diskfull: the data directory on a small tmpfs, filled during a
//     PATCH, during finalize and during an event commit (needs root, or a
//     user namespace).
//
// Everything is random but reproducible: the seed is printed and -seed
// replays it (timings differ, the workload and the kill plan do not). It
// talks to 127.0.0.1 only, and every run is bounded in count and time.
//
// Usage:
//
//	portalcrash [-long] [-mode crash,storm,diskfull] [-seed N] [-uploads N] [-kills N] [-bin build/portal]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	modes []string
	seed  uint64
	bin   string
	dir   string
	out   string
	keep  bool

	crash, storm scenario
}

// defaults are the sizes of a CI run (a couple of minutes); -long those of
// make crash.
func defaults(long bool) (crash, storm scenario) {
	crash = scenario{Name: "crash", Uploads: 48, Clients: 6, Kills: 12, MinSize: 1 << 10, MaxSize: 40 << 20,
		MaxPatches: 6, Timeout: 3 * time.Minute, Settle: time.Minute}
	storm = scenario{Name: "storm", Uploads: 800, Clients: 16, Kills: 4, MinSize: 10 << 10, MaxSize: 10 << 10,
		Storm: true, Timeout: 2 * time.Minute, Settle: time.Minute}
	if long {
		crash.Uploads, crash.Kills, crash.Timeout = 300, 110, 20*time.Minute
		storm.Uploads, storm.Kills, storm.Timeout = 5000, 20, 10*time.Minute
	}
	return crash, storm
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("portalcrash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.crash, o.storm = defaults(false)
	var modes, minSize, maxSize, stormSize string
	var seed string
	var long bool
	fs.BoolVar(&long, "long", false, "the long run of make crash (300 uploads, 110 kills; storm 5000 files, 20 kills); other flags still apply")
	fs.StringVar(&modes, "mode", "crash,storm,diskfull", "comma-separated scenarios: crash, storm, diskfull")
	fs.StringVar(&seed, "seed", "", "seed of the run (default: random, printed)")
	fs.StringVar(&o.bin, "bin", "build/portal", "the portal binary")
	fs.StringVar(&o.dir, "dir", "", "where the run directories go (default: the system's temporary directory)")
	fs.StringVar(&o.out, "out", "", "write the figures as JSON to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directories (data, portal.log)")
	fs.IntVar(&o.crash.Uploads, "uploads", o.crash.Uploads, "crash: uploads")
	fs.IntVar(&o.crash.Kills, "kills", o.crash.Kills, "crash: kills")
	fs.IntVar(&o.crash.Clients, "clients", o.crash.Clients, "crash: concurrent clients")
	fs.StringVar(&minSize, "min-size", "1KiB", "crash: smallest upload")
	fs.StringVar(&maxSize, "max-size", "40MiB", "crash: largest upload")
	fs.IntVar(&o.crash.MaxPatches, "max-patches", o.crash.MaxPatches, "crash: PATCHes per upload at most (at least 2)")
	fs.DurationVar(&o.crash.Timeout, "timeout", o.crash.Timeout, "crash: bound of the run")
	fs.IntVar(&o.storm.Uploads, "storm-files", o.storm.Uploads, "storm: files")
	fs.IntVar(&o.storm.Kills, "storm-kills", o.storm.Kills, "storm: kills")
	fs.IntVar(&o.storm.Clients, "storm-clients", o.storm.Clients, "storm: concurrent clients")
	fs.StringVar(&stormSize, "storm-size", "10KiB", "storm: size of each file")
	fs.DurationVar(&o.storm.Timeout, "storm-timeout", o.storm.Timeout, "storm: bound of the run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if long {
		// The long sizes, except where a flag said otherwise.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		lc, ls := defaults(true)
		pick(&o.crash.Uploads, lc.Uploads, !set["uploads"])
		pick(&o.crash.Kills, lc.Kills, !set["kills"])
		pick(&o.crash.Timeout, lc.Timeout, !set["timeout"])
		pick(&o.storm.Uploads, ls.Uploads, !set["storm-files"])
		pick(&o.storm.Kills, ls.Kills, !set["storm-kills"])
		pick(&o.storm.Timeout, ls.Timeout, !set["storm-timeout"])
	}
	var err error
	if o.crash.MinSize, err = parseSize(minSize); err != nil {
		return o, err
	}
	if o.crash.MaxSize, err = parseSize(maxSize); err != nil {
		return o, err
	}
	if o.storm.MinSize, err = parseSize(stormSize); err != nil {
		return o, err
	}
	o.storm.MaxSize = o.storm.MinSize
	if seed == "" {
		o.seed = rand.Uint64() % 1_000_000_000
	} else if o.seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
		return o, fmt.Errorf("-seed: %q is not a number", seed)
	}
	for _, m := range strings.Split(modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "crash", "storm", "diskfull":
			o.modes = append(o.modes, m)
		default:
			return o, fmt.Errorf("-mode: unknown scenario %q", m)
		}
	}
	for _, s := range []scenario{o.crash, o.storm} {
		if err := s.check(); err != nil {
			return o, err
		}
	}
	return o, nil
}

// pick sets *p to v when cond holds.
func pick[T any](p *T, v T, cond bool) {
	if cond {
		*p = v
	}
}

// check refuses a scenario outside the harness's bounds.
func (s scenario) check() error {
	switch {
	case s.Uploads < 1 || s.Uploads > 100_000:
		return fmt.Errorf("%s: uploads must be 1..100000", s.Name)
	case s.Kills < 0 || s.Kills > 1000:
		return fmt.Errorf("%s: kills must be 0..1000", s.Name)
	case s.Clients < 1 || s.Clients > 64:
		return fmt.Errorf("%s: clients must be 1..64", s.Name)
	case s.MinSize < 1 || s.MaxSize < s.MinSize || s.MaxSize > 1<<30:
		return fmt.Errorf("%s: sizes must satisfy 1 <= min <= max <= 1GiB", s.Name)
	case s.MaxPatches < 2 && !s.Storm:
		return fmt.Errorf("%s: max-patches must be at least 2", s.Name)
	case s.Timeout <= 0 || s.Timeout > 2*time.Hour:
		return fmt.Errorf("%s: timeout must be within 2h", s.Name)
	}
	return nil
}

// parseSize reads a byte count: a whole number with an optional KiB, MiB
// or GiB unit.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for unit, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, unit) {
			s, mult = strings.TrimSuffix(s, unit), m
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number with an optional KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "portalcrash:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	fmt.Fprintf(stdout, "portalcrash: seed %d\n", o.seed)
	var figs []*Figures
	var df *diskFullResult
	failed := false
	for _, m := range o.modes {
		switch m {
		case "crash", "storm":
			s := o.crash
			if m == "storm" {
				s = o.storm
			}
			s.Seed, s.Dir, s.Keep, s.Log = o.seed, o.dir, o.keep, logf
			f, err := runScenario(ctx, s, o.bin)
			if err != nil {
				fmt.Fprintf(stderr, "portalcrash %s: %v\n", m, err)
				failed = true
				continue
			}
			f.print(stdout)
			figs = append(figs, f)
			failed = failed || !f.OK()
		case "diskfull":
			if os.Geteuid() != 0 {
				// Mounting the tmpfs needs root: run this scenario again
				// as root of a user and mount namespace.
				if err := diskFullInNamespace(ctx, o, stdout, stderr); err != nil {
					fmt.Fprintf(stderr, "portalcrash diskfull: %v\n", err)
					failed = true
				}
				continue
			}
			res, err := runDiskFull(ctx, diskFullConfig{Bin: o.bin, Dir: o.dir, Log: logf})
			if err != nil {
				fmt.Fprintf(stderr, "portalcrash diskfull: %v\n", err)
				failed = true
				continue
			}
			res.print(stdout)
			df = res
			failed = failed || !res.OK()
		}
	}
	if o.out != "" {
		if err := writeJSON(o.out, figs, df); err != nil {
			fmt.Fprintln(stderr, "portalcrash:", err)
			failed = true
		}
	}
	if failed {
		return 1
	}
	return 0
}

// diskFullInNamespace runs `portalcrash -mode diskfull` again under
// unshare --user --map-root-user --mount.
func diskFullInNamespace(ctx context.Context, o options, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	args := []string{"--user", "--map-root-user", "--mount", self, "-mode", "diskfull", "-bin", bin}
	if o.dir != "" {
		args = append(args, "-dir", o.dir)
	}
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("run in a user namespace: %w", err)
		}
		return fmt.Errorf("%w (%v)", errNotRoot, err)
	}
	return nil
}
