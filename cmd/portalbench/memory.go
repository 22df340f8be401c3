package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is the real portal binary running as its own process, so its
// memory can be read from /proc.
type proc struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

// startProc runs `portal serve` on a free loopback port and waits until it
// answers /readyz.
func startProc(ctx context.Context, bin, dir string) (*proc, error) {
	return startProcWith(ctx, bin, dir, nil, nil)
}

// startProcWith is startProc with more flags and environment variables.
func startProcWith(ctx context.Context, bin, dir string, args, env []string) (*proc, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("portal binary: %w (run make build, or pass -bin)", err)
	}
	cmd := exec.Command(abs, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dir, "--anonymous-uploads",
		"--anonymous-quota", "0"}, args...)...)
	cmd.Env = append(append(os.Environ(), "PORTAL_ADMIN_PASSWORD="+benchPassword), env...)
	logf, err := os.Create(filepath.Join(dir, "portal.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		// The portal prints "... listening on http://127.0.0.1:PORT".
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), " listening on "); ok {
				select {
				case urls <- strings.TrimSpace(u):
				default:
				}
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.url = <-urls:
	case err := <-p.done:
		return nil, fmt.Errorf("portal exited at start: %v (log in %s)", err, logf.Name())
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("portal did not print its address within 30s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
	hc := newHTTPClient()
	for i := 0; ; i++ {
		resp, err := hc.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if i == 300 {
			p.stop()
			return nil, fmt.Errorf("portal not ready after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (bounded) for the process to exit.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		return errors.New("portal did not stop within 40s; killed")
	}
}

// memStatus reads VmHWM (peak resident set) and VmRSS of the process, in
// bytes.
func (p *proc) memStatus() (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", k, err)
		}
		if k == "VmHWM" {
			hwm = kb * kiB
		} else {
			rss = kb * kiB
		}
	}
	return hwm, rss, sc.Err()
}

// memRun starts a fresh portal process, runs conc uploads of size bytes
// and returns its peak RSS (VmHWM) and its RSS when idle after start.
func (b *bench) memRun(ctx context.Context, name string, conc int, size int64) (peak, idle int64, err error) {
	dir, err := b.scratch(name)
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	p, err := startProc(ctx, b.o.bin, dir)
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	_, idle, err = p.memStatus()
	if err != nil {
		return 0, 0, err
	}
	// Sample VmRSS meanwhile too: VmHWM is the kernel's exact peak, the
	// samples only confirm it.
	var sampled atomic.Int64
	stop := make(chan struct{})
	sampler := make(chan struct{})
	go func() {
		defer close(sampler)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, rss, err := p.memStatus(); err == nil && rss > sampled.Load() {
					sampled.Store(rss)
				}
			}
		}
	}()
	_, err = newTusClient(p.url).uploadMany(ctx, conc, size, 0)
	close(stop)
	<-sampler
	if err != nil {
		return 0, 0, err
	}
	peak, _, err = p.memStatus()
	if s := sampled.Load(); s > peak {
		peak = s
	}
	return peak, idle, err
}

// memory is scenario 5: peak RSS of the real binary under many concurrent
// uploads, and whether it stays flat as one file grows.
func (b *bench) memory(ctx context.Context) error {
	var peaks, idles, small, large, ratio []float64
	for rep := range b.o.memReps {
		peak, idle, err := b.memRun(ctx, "s5-conc", b.sz.MemConc, b.sz.MemConcSize)
		if err != nil {
			return err
		}
		peaks, idles = append(peaks, float64(peak)/miB), append(idles, float64(idle)/miB)
		s, _, err := b.memRun(ctx, "s5-small", 1, b.sz.MemSmall)
		if err != nil {
			return err
		}
		l, _, err := b.memRun(ctx, "s5-large", 1, b.sz.MemLarge)
		if err != nil {
			return err
		}
		small, large = append(small, float64(s)/miB), append(large, float64(l)/miB)
		ratio = append(ratio, float64(l)/float64(s))
		b.logf("  rep %d: peak %.1f MiB (idle %.1f) with %d×%s; %s %.1f MiB, %s %.1f MiB", rep+1,
			float64(peak)/miB, float64(idle)/miB, b.sz.MemConc, human(b.sz.MemConcSize),
			human(b.sz.MemSmall), float64(s)/miB, human(b.sz.MemLarge), float64(l)/miB)
	}
	ps := newSample(peaks)
	b.add(Result{Scenario: 5, Case: fmt.Sprintf("peak RSS, %d×%s concurrent", b.sz.MemConc, human(b.sz.MemConcSize)),
		Unit: "MiB", Portal: ps, Target: "<= 100", Pass: atMost(ps.Median, 100),
		Notes: map[string]any{"idle_rss_mib": newSample(idles)}})
	b.add(Result{Scenario: 5, Case: "peak RSS, 1×" + human(b.sz.MemSmall), Unit: "MiB", Portal: newSample(small)})
	b.add(Result{Scenario: 5, Case: "peak RSS, 1×" + human(b.sz.MemLarge), Unit: "MiB", Portal: newSample(large)})
	rs := newSample(ratio)
	b.add(Result{Scenario: 5, Case: fmt.Sprintf("RSS %s / %s", human(b.sz.MemLarge), human(b.sz.MemSmall)),
		Unit: "ratio", Portal: rs, Target: "<= 1.2", Pass: atMost(rs.Median, 1.2)})
	return nil
}
