package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// noisyNeighbours is scenario 7: the delivery latency of a healthy
// endpoint (from each upload's 204 to the verified delivery of its
// file.uploaded) with small uploads at a steady rate, in three phases of
// one portal: the endpoint alone; beside an endpoint that never answers
// (every attempt times out) and one that fails every attempt (HTTP 500);
// and beside both while large uploads keep both cores busy. The targets:
// p99 beside the noisy endpoints within 2x of alone, and under 1 s beside
// the uploads. The failing endpoint's first attempts are timed too: its
// retries must not delay them.
func (b *bench) noisyNeighbours(ctx context.Context) error {
	recv, p, token, closeAll, err := b.webhookPortal(ctx, "s7-noisy")
	if err != nil {
		return err
	}
	defer closeAll()
	for _, path := range []string{"/healthy", "/failing", "/hanging"} {
		if path != "/healthy" {
			recv.mu.Lock()
			recv.mode[path] = map[string]string{"/failing": "fail", "/hanging": "hang"}[path]
			recv.mu.Unlock()
		}
		if path == "/failing" {
			// Phase 1: the healthy endpoint alone.
			if err := b.noisyPhase(ctx, recv, p.URL(), "alone", nil); err != nil {
				return err
			}
		}
		if err := subscribe(ctx, recv, p.URL(), token, path); err != nil {
			return err
		}
	}
	if err := b.noisyPhase(ctx, recv, p.URL(), "beside noisy", nil); err != nil {
		return err
	}
	return b.noisyPhase(ctx, recv, p.URL(), "beside noisy and uploads", &bgUploads{conc: b.sz.NoisyBgConc, size: b.sz.NoisyBgSize})
}

// bgUploads is load that keeps the portal's CPUs busy: conc clients each
// uploading files of size bytes, one after the other, until stopped.
type bgUploads struct {
	conc  int
	size  int64
	bytes atomic.Int64
	errs  atomic.Int64
}

func (u *bgUploads) run(ctx context.Context, base string) *sync.WaitGroup {
	var wg sync.WaitGroup
	c := newTusClient(base)
	for i := range u.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				if _, err := c.upload(ctx, u.size, 0, fmt.Sprintf("bg-%d-%d.bin", i, k)); err != nil {
					if ctx.Err() == nil {
						u.errs.Add(1)
					}
					continue
				}
				u.bytes.Add(u.size)
			}
		}()
	}
	return &wg
}

// noisyPhase measures one phase: paced small uploads (with bg running
// meanwhile, if not nil), the healthy endpoint's latency percentiles and
// the failing endpoint's first-attempt latencies.
func (b *bench) noisyPhase(ctx context.Context, recv *receiver, base, name string, bg *bgUploads) error {
	n, rate := b.sz.NoisyEvents, b.sz.NoisyRate
	var mu sync.Mutex
	firstFail := map[int]time.Time{}
	recv.mu.Lock()
	recv.onFirst = func(path string, body []byte, at time.Time) {
		if i := uploadSeq(body); path == "/failing" && i >= 0 {
			mu.Lock()
			firstFail[i] = at
			mu.Unlock()
		}
	}
	recv.mu.Unlock()
	start := time.Now()
	if bg != nil {
		bctx, stop := context.WithCancel(ctx)
		wg := bg.run(bctx, base)
		defer func() {
			stop()
			wg.Wait()
			secs := time.Since(start).Seconds()
			b.logf("  background uploads: %.0f MiB/s (%d errors)", float64(bg.bytes.Load())/miB/secs, bg.errs.Load())
		}()
		time.Sleep(2 * time.Second) // let them fill the CPUs first
	}
	cpu0 := cpuTime()
	lat, early, done, err := pacedUploads(ctx, recv, base, "/healthy", n, rate)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sorted := slices.Sorted(slices.Values(lat))
	p50, p99 := percentile(sorted, 50), percentile(sorted, 99)
	notes := map[string]any{"events": n, "rate_per_s": rate, "delivered_before_204": early,
		"p50_ms": p50, "max_ms": sorted[n-1], "cpu_s": (cpuTime() - cpu0).Seconds()}
	// The failing endpoint's first attempts, from the same 204s (its
	// retries pile up meanwhile).
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		mu.Lock()
		k := len(firstFail)
		mu.Unlock()
		if k >= n || name == "alone" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	var first []float64
	for i, at := range firstFail {
		if i < n {
			first = append(first, ms(max(at.Sub(done[i]), 0)))
		}
	}
	mu.Unlock()
	if len(first) > 0 {
		slices.Sort(first)
		notes["failing_first_attempt_p99_ms"] = percentile(first, 99)
		notes["failing_first_attempts"] = len(first)
	}
	if bg != nil {
		notes["bg_uploads_mib_s"] = float64(bg.bytes.Load()) / miB / time.Since(start).Seconds()
		notes["bg_uploads"] = fmt.Sprintf("%d x %s", bg.conc, human(bg.size))
	}
	r := Result{Scenario: 7, Case: "healthy endpoint latency p99, " + name, Unit: "ms",
		Portal: &Sample{N: 1, Median: p99, Min: p99, Max: p99, Values: []float64{p99}}, Notes: notes}
	switch name {
	case "beside noisy":
		if alone := b.noisyAlone(); alone > 0 {
			ratio := p99 / alone
			r.Ratio = &Sample{N: 1, Median: ratio, Min: ratio, Max: ratio}
			r.Target, r.Pass = "<= 2x alone", atMost(ratio, 2)
		}
	case "beside noisy and uploads":
		r.Target, r.Pass = "<= 1000", atMost(p99, 1000)
	}
	b.add(r)
	b.logf("  %s: healthy p50 %.1f ms, p99 %.1f ms", name, p50, p99)
	return nil
}

// noisyAlone is the p99 of the phase "alone" of this run (0 if none).
func (b *bench) noisyAlone() float64 {
	for _, r := range b.rep.Results {
		if r.Scenario == 7 && r.Case == "healthy endpoint latency p99, alone" {
			return r.Portal.Median
		}
	}
	return 0
}
