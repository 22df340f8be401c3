// Command portalbench measures the portal's upload path against baselines
// run in the same process: tusd's bare filestore handler, a plain io.Copy
// to a file, and the portal's own small uploads. It prints a table and
// writes the figures as JSON. Absolute times on a shared machine are
// noisy; the targets are checked on same-run ratios (or on latencies and
// sizes that do not depend on the machine's load).
//
// Usage:
//
//	portalbench [-short] [-scenarios 1,2,5,8,9] [-reps N] [-bin build/portal] [-out build/bench/results.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	kiB = 1 << 10
	miB = 1 << 20
	giB = 1 << 30
)

// sizes are the workloads of the scenarios; -short shrinks them to a smoke
// run of a few seconds.
type sizes struct {
	Single             int64 // one upload in a single PATCH
	Chunked, Chunk     int64 // one upload in PATCHes of Chunk bytes
	Conc               int   // concurrent uploads of ConcSize bytes
	ConcSize           int64
	FinSmall, FinLarge int64 // finalize cost
	MemConc            int   // concurrent uploads of MemConcSize (peak RSS)
	MemConcSize        int64
	MemSmall, MemLarge int64 // RSS flat in file size
	Rows               int   // registry scale (scenario 6 measures Rows and 4×Rows files)
	ListReps           int
	EventUploads       int // uploads at 20/s for the event latency
	Backlog            int // events to deliver
	NoisyEvents        int // small uploads per phase of scenario 7, at NoisyRate/s
	NoisyRate          int
	NoisyBgConc        int // background uploads of NoisyBgSize in its last phase
	NoisyBgSize        int64
	SmallFiles         int // files per run of scenario 8, of SmallSize bytes
	SmallSize          int64
	SmallClients       []int // the concurrent clients of its cases
	S3Single           int64 // scenario 9: one upload in a single PATCH
	S3Conc             int   // concurrent uploads of S3ConcSize
	S3ConcSize         int64
	S3MemConc          int // concurrent uploads of S3MemSize (peak RSS)
	S3MemSize          int64
}

var fullSizes = sizes{
	Single: giB, Chunked: 256 * miB, Chunk: 5 * miB, Conc: 8, ConcSize: 64 * miB,
	FinSmall: miB, FinLarge: giB,
	MemConc: 50, MemConcSize: 256 * miB, MemSmall: 10 * miB, MemLarge: giB,
	Rows: 1_000_000, ListReps: 30,
	EventUploads: 300, Backlog: 100_000,
	NoisyEvents: 600, NoisyRate: 50, NoisyBgConc: 16, NoisyBgSize: 64 * miB,
	SmallFiles: 3000, SmallSize: 10 * kiB, SmallClients: []int{1, 16, 64},
	S3Single: 256 * miB, S3Conc: 8, S3ConcSize: 64 * miB, S3MemConc: 20, S3MemSize: 64 * miB,
}

var shortSizes = sizes{
	Single: 4 * miB, Chunked: 3 * miB, Chunk: 512 * kiB, Conc: 3, ConcSize: miB,
	FinSmall: 64 * kiB, FinLarge: 4 * miB,
	MemConc: 3, MemConcSize: 2 * miB, MemSmall: miB, MemLarge: 4 * miB,
	Rows: 2_000, ListReps: 3,
	EventUploads: 10, Backlog: 300,
	NoisyEvents: 10, NoisyRate: 50, NoisyBgConc: 2, NoisyBgSize: miB,
	SmallFiles: 40, SmallSize: 10 * kiB, SmallClients: []int{1, 16},
	S3Single: 8 * miB, S3Conc: 2, S3ConcSize: 6 * miB, S3MemConc: 3, S3MemSize: 6 * miB,
}

// options are the command line.
type options struct {
	short      bool
	reps       int
	memReps    int
	scenarios  []int
	dir        string
	out        string
	bin        string
	cpuprofile string
	only       string
	backlog    int
	// registryDir keeps scenario 6's registries (filled once, used again).
	registryDir string
	log         io.Writer
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("portalbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var scen string
	fs.BoolVar(&o.short, "short", false, "tiny sizes: a smoke run of the harness, not a measurement")
	fs.IntVar(&o.reps, "reps", 5, "repetitions of each upload case (the finalize case runs 3×)")
	fs.IntVar(&o.memReps, "mem-reps", 3, "repetitions of each memory case")
	fs.StringVar(&scen, "scenarios", "1,2,3,4,5,6,7,8,9", "comma-separated scenarios to run")
	fs.StringVar(&o.dir, "dir", "", "where to put the run's scratch directory (uploads, databases; default: the system's temporary directory)")
	fs.StringVar(&o.out, "out", "build/bench/results.json", "where to write the JSON results")
	fs.StringVar(&o.bin, "bin", "build/portal", "portal binary for the memory scenario (5)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (client and in-process portal)")
	fs.IntVar(&o.backlog, "backlog", 0, "events in the delivery backlog of scenario 4 (default 100000; -short 300)")
	fs.StringVar(&o.registryDir, "registry-dir", "", "keep scenario 6's registries (databases of millions of rows) here and use them again on later runs")
	fs.StringVar(&o.only, "case", "", "run only the upload cases (scenario 1) whose name contains this")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.reps < 1 || o.reps > 100 || o.memReps < 1 || o.memReps > 20 {
		return o, errors.New("-reps must be 1..100 and -mem-reps 1..20")
	}
	for _, s := range strings.Split(scen, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 9 {
			return o, fmt.Errorf("-scenarios: %q is not a scenario number 1..9", s)
		}
		o.scenarios = append(o.scenarios, n)
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "portalbench:", err)
		return 2
	}
	o.log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := benchmark(ctx, o)
	if rep != nil {
		printTable(stdout, *rep)
		if werr := writeJSON(o.out, *rep); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintln(stdout, "results written to", o.out)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "portalbench:", err)
		return 1
	}
	return 0
}

// bench is one run: its options, sizes and the report being filled.
type bench struct {
	o   options
	sz  sizes
	dir string
	rep *Report
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (b *bench) add(r Result) { b.rep.Results = append(b.rep.Results, r) }

// benchmark runs the chosen scenarios and returns the report, complete or
// as far as it got.
func benchmark(ctx context.Context, o options) (*Report, error) {
	b := &bench{o: o, sz: fullSizes}
	if o.short {
		b.sz = shortSizes
	}
	if o.backlog > 0 {
		b.sz.Backlog = o.backlog
	}
	b.rep = &Report{Started: time.Now().UTC(), Command: "portalbench " + strings.Join(os.Args[1:], " "),
		Short: o.short, Machine: machine()}
	// Everything goes to a fresh directory (inside -dir when given), removed
	// at the end: uploads, databases, the 1M-row registry.
	if o.dir != "" {
		if err := os.MkdirAll(o.dir, 0o750); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(o.dir, "portalbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b.dir = dir
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	defer func() { b.rep.Duration = time.Since(start).Round(time.Second).String() }()
	scenarios := map[int]func(context.Context) error{
		1: b.uploadThroughput,
		2: b.finalizeCost,
		3: b.eventLatency,
		4: b.deliveryThroughput,
		5: b.memory,
		6: b.registry,
		7: b.noisyNeighbours,
		8: b.smallFileThroughput,
		9: b.s3Throughput,
	}
	var errs []error
	for _, n := range slices.Compact(slices.Sorted(slices.Values(o.scenarios))) {
		if ctx.Err() != nil {
			break
		}
		b.logf("scenario %d", n)
		b.settle(ctx)
		if err := scenarios[n](ctx); err != nil {
			errs = append(errs, fmt.Errorf("scenario %d: %w", n, err))
			b.logf("scenario %d failed: %v", n, err)
		}
	}
	return b.rep, errors.Join(errs...)
}

// settle flushes the file system and waits until the disk is quiet, so a
// scenario does not pay for the writeback of the one before: after gigabytes
// of writes, fsync latency on the benchmark machine stays two to three times
// its idle level for about 20 s (the virtual disk's host is still writing).
// It probes the latency of a 4 KiB write and fsync every half second and
// returns once the best round has not improved by 10% for 8 s, or after a
// minute; in short (smoke) runs it only flushes.
func (b *bench) settle(ctx context.Context) {
	start := time.Now()
	syscall.Sync()
	if b.o.short {
		return
	}
	f, err := os.Create(filepath.Join(b.dir, "settle-probe"))
	if err != nil {
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var best time.Duration
	bestAt := time.Now()
	for time.Since(start) < time.Minute && time.Since(bestAt) < 8*time.Second && ctx.Err() == nil {
		var round []float64
		for range 5 {
			t := time.Now()
			if _, err := f.WriteAt(buf, 0); err != nil {
				return
			}
			if err := f.Sync(); err != nil {
				return
			}
			round = append(round, float64(time.Since(t)))
		}
		if m := time.Duration(newSample(round).Median); best == 0 || m < best*9/10 {
			best, bestAt = m, time.Now()
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.logf("  settled in %s (fsync of 4 KiB: %s)", time.Since(start).Round(100*time.Millisecond), best.Round(time.Microsecond))
}

// scratch returns a new empty directory under the run's scratch dir.
func (b *bench) scratch(name string) (string, error) {
	d := filepath.Join(b.dir, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o750)
}
