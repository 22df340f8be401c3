package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// uploadCase is one workload of scenario 1.
type uploadCase struct {
	name  string
	conc  int
	size  int64
	chunk int64 // 0: one PATCH per upload
}

func (c uploadCase) bytes() int64 { return int64(c.conc) * c.size }

func (b *bench) uploadCases() []uploadCase {
	s := b.sz
	return []uploadCase{
		{name: fmt.Sprintf("1×%s, one PATCH", human(s.Single)), conc: 1, size: s.Single},
		{name: fmt.Sprintf("1×%s in %s PATCHes", human(s.Chunked), human(s.Chunk)), conc: 1, size: s.Chunked, chunk: s.Chunk},
		{name: fmt.Sprintf("%d×%s concurrent", s.Conc, human(s.ConcSize)), conc: s.Conc, size: s.ConcSize},
	}
}

func human(n int64) string {
	switch {
	case n >= giB && n%giB == 0:
		return fmt.Sprintf("%dGiB", n/giB)
	case n >= miB && n%miB == 0:
		return fmt.Sprintf("%dMiB", n/miB)
	case n >= kiB && n%kiB == 0:
		return fmt.Sprintf("%dKiB", n/kiB)
	}
	return fmt.Sprintf("%dB", n)
}

func mibps(n int64, d time.Duration) float64 { return float64(n) / miB / d.Seconds() }

// uploadThroughput is scenario 1: the portal (hashing and finalize on)
// against tusd's bare filestore handler and against the same handler
// fdatasyncing each upload before its last answer (the durable baseline:
// the ratio that can reach 1, as the portal makes every upload durable
// before its 204), in rotating order, and a plain io.Copy of the same bytes
// to files (with and without fsync) as the machine's limit.
func (b *bench) uploadThroughput(ctx context.Context) error {
	pdir, err := b.scratch("s1-portal")
	if err != nil {
		return err
	}
	p, err := startPortal(ctx, pdir)
	if err != nil {
		return err
	}
	defer p.Close()
	bdir, err := b.scratch("s1-baseline")
	if err != nil {
		return err
	}
	bl, err := startBaseline(bdir, false)
	if err != nil {
		return err
	}
	defer bl.Close()
	ddir, err := b.scratch("s1-durable")
	if err != nil {
		return err
	}
	dl, err := startBaseline(ddir, true)
	if err != nil {
		return err
	}
	defer dl.Close()
	rawDir, err := b.scratch("s1-raw")
	if err != nil {
		return err
	}
	token, err := adminToken(ctx, p.URL())
	if err != nil {
		return err
	}
	servers := []server{p, bl, dl}
	clients := []*tusClient{newTusClient(p.URL()), newTusClient(bl.URL()), newTusClient(dl.URL())}
	// Warm up the servers (connections, page cache of the binary).
	for i, c := range clients {
		if _, err := c.uploadMany(ctx, 2, miB, 0); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := servers[i].Clear(); err != nil {
			return err
		}
	}
	shaCPU := b.sha256Alone()
	rehashed0 := p.rehashed()
	for _, uc := range b.uploadCases() {
		if !strings.Contains(uc.name, b.o.only) {
			continue
		}
		// Per server (portal, tusd, tusd+fdatasync): MiB/s and CPU-s/GiB.
		speed, cpu := make([][]float64, 3), make([][]float64, 3)
		var rv, rsv, ratio, bareRatio []float64
		for rep := range b.o.reps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			order := []int{0, 1, 2}
			order = append(order[rep%3:], order[:rep%3]...)
			for _, i := range order {
				cpu0 := cpuTime()
				d, err := clients[i].uploadMany(ctx, uc.conc, uc.size, uc.chunk)
				if err != nil {
					return fmt.Errorf("%s: %w", uc.name, err)
				}
				speed[i] = append(speed[i], mibps(uc.bytes(), d))
				cpu[i] = append(cpu[i], (cpuTime()-cpu0).Seconds()/(float64(uc.bytes())/giB))
				if i == 0 && rep == 0 {
					if err := verifyStored(ctx, p.URL(), token, uc); err != nil {
						return err
					}
				}
				if err := servers[i].Clear(); err != nil {
					return err
				}
			}
			d, err := rawCopy(rawDir, uc.conc, uc.size, false)
			if err != nil {
				return err
			}
			rv = append(rv, mibps(uc.bytes(), d))
			if d, err = rawCopy(rawDir, uc.conc, uc.size, true); err != nil {
				return err
			}
			rsv = append(rsv, mibps(uc.bytes(), d))
			ratio = append(ratio, speed[0][rep]/speed[2][rep])
			bareRatio = append(bareRatio, speed[0][rep]/speed[1][rep])
			b.logf("  %s rep %d: portal %.0f MiB/s (%.2f CPU-s/GiB), tusd+fdatasync %.0f MiB/s, tusd %.0f MiB/s (%.2f CPU-s/GiB), raw %.0f MiB/s, raw+fsync %.0f MiB/s",
				uc.name, rep+1, speed[0][rep], cpu[0][rep], speed[2][rep], speed[1][rep], cpu[1][rep], rv[rep], rsv[rep])
		}
		rs, bs := newSample(ratio), newSample(bareRatio)
		b.add(Result{Scenario: 1, Case: "upload " + uc.name + " vs tusd+fdatasync", Unit: "MiB/s",
			Portal: newSample(speed[0]), Baseline: newSample(speed[2]), Raw: newSample(rsv), Ratio: rs,
			Target: "ratio >= 0.9", Pass: atLeast(rs.Median, 0.9),
			Notes: map[string]any{
				// CPU time of the whole process (client and server) per GiB
				// uploaded: the client's share is the same for all.
				"portal_cpu_s_per_gib": newSample(cpu[0]), "tusd_cpu_s_per_gib": newSample(cpu[1]),
				"tusd_fdatasync_cpu_s_per_gib": newSample(cpu[2]),
			}})
		b.add(Result{Scenario: 1, Case: "upload " + uc.name + " vs bare tusd", Unit: "MiB/s",
			Portal: newSample(speed[0]), Baseline: newSample(speed[1]), Raw: newSample(rv), Ratio: bs,
			Notes: map[string]any{
				// The CPU ceiling of the bare ratio: the baseline's work plus
				// SHA-256 of every byte, spread perfectly over all cores,
				// against the baseline's speed.
				"cpu_ceiling_ratio": math.Min(1, float64(runtime.NumCPU())/
					((newSample(cpu[1]).Median+shaCPU)*newSample(speed[1]).Median/1024)),
			}})
	}
	re := float64(p.rehashed() - rehashed0)
	b.add(Result{Scenario: 1, Case: "bytes re-read (all uploads)", Unit: "bytes",
		Portal: newSample([]float64{re}), Target: "0", Pass: atMost(re, 0)})
	return nil
}

// sha256Alone measures SHA-256 on one core in this process, the work the
// portal adds to every byte, and records it; it returns CPU-seconds per GiB.
func (b *bench) sha256Alone() float64 {
	n := int64(256 * miB)
	if b.o.short {
		n = 16 * miB
	}
	var v []float64
	for range 3 {
		h := sha256.New()
		start := time.Now()
		for off := int64(0); off < n; off += int64(len(pattern)) {
			h.Write(pattern[:min(int64(len(pattern)), n-off)])
		}
		v = append(v, mibps(n, time.Since(start)))
	}
	s := newSample(v)
	b.add(Result{Scenario: 1, Case: "SHA-256 alone, one core", Unit: "MiB/s", Portal: s})
	return giB / miB / s.Median
}

// verifyStored checks that the portal recorded the case's last uploads
// with the right size and SHA-256 (untimed).
func verifyStored(ctx context.Context, base, token string, uc uploadCase) error {
	fl, err := listFiles(ctx, newHTTPClient(), base, token, uc.conc)
	if err != nil {
		return err
	}
	if len(fl.Items) < uc.conc {
		return fmt.Errorf("%s: %d files recorded, want %d", uc.name, len(fl.Items), uc.conc)
	}
	want := patternSum(uc.size)
	for _, f := range fl.Items {
		if f.SizeBytes != uc.size || f.SHA256 != want {
			return fmt.Errorf("%s: file %s recorded as %d bytes, sha256 %s; want %d, %s",
				uc.name, f.UploadID, f.SizeBytes, f.SHA256, uc.size, want)
		}
	}
	return nil
}

// rawCopy writes conc files of size pattern bytes with io.Copy at once
// (and fsyncs each, with sync) and returns the wall time; the files are
// removed afterwards (untimed).
func rawCopy(dir string, conc int, size int64, sync bool) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, conc)
	for i := range conc {
		go func() {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("raw-%d", i)))
			if err != nil {
				errs <- err
				return
			}
			_, err = io.Copy(f, newPatternReader(0, size))
			if err == nil && sync {
				err = f.Sync()
			}
			errs <- errors.Join(err, f.Close())
		}()
	}
	var all []error
	for range conc {
		all = append(all, <-errs)
	}
	d := time.Since(start)
	return d, errors.Join(append(all, clearDir(dir))...)
}

// finalizeCost is scenario 2: from the last byte written to the answer of
// the last PATCH, for a small and a large file, with the data sync (which
// grows with the bytes not yet written back) reported on its own; and the
// bytes read back from disk to finish digests.
func (b *bench) finalizeCost(ctx context.Context) error {
	dir, err := b.scratch("s2-portal")
	if err != nil {
		return err
	}
	p, err := startPortal(ctx, dir)
	if err != nil {
		return err
	}
	defer p.Close()
	c := newTusClient(p.URL())
	if _, err := c.uploadMany(ctx, 2, miB, 0); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	rehashed0 := p.rehashed()
	sizes := []int64{b.sz.FinSmall, b.sz.FinLarge}
	lat := make([][]float64, 2)   // ms, excluding the data sync
	syncs := make([][]float64, 2) // ms
	var ratio []float64
	// The case is short (a few seconds) and its figures are milliseconds
	// that a single slow disk flush moves, so it runs three times as many
	// repetitions as the others.
	for rep := range 3 * b.o.reps {
		for i, size := range sizes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			u, err := c.upload(ctx, size, 0, "finalize.bin")
			done := time.Now()
			if err != nil {
				return err
			}
			ft := p.lastFinish()
			if ft.UploadID != path.Base(u) {
				return fmt.Errorf("finish timing is of upload %q, want %q", ft.UploadID, path.Base(u))
			}
			total := done.Sub(ft.LastByte)
			lat[i] = append(lat[i], ms(total-ft.Sync))
			syncs[i] = append(syncs[i], ms(ft.Sync))
			if err := p.Clear(); err != nil {
				return err
			}
		}
		ratio = append(ratio, lat[1][rep]/lat[0][rep])
		b.logf("  rep %d: %s %.2f ms + sync %.2f ms, %s %.2f ms + sync %.2f ms", rep+1,
			human(sizes[0]), lat[0][rep], syncs[0][rep], human(sizes[1]), lat[1][rep], syncs[1][rep])
	}
	for i, size := range sizes {
		b.add(Result{Scenario: 2, Case: "finalize " + human(size) + ", excl. data sync", Unit: "ms", Portal: newSample(lat[i])})
		b.add(Result{Scenario: 2, Case: "data sync " + human(size), Unit: "ms", Portal: newSample(syncs[i])})
	}
	rs := newSample(ratio)
	b.add(Result{Scenario: 2, Case: fmt.Sprintf("finalize %s / %s", human(sizes[1]), human(sizes[0])), Unit: "ratio",
		Portal: rs, Target: "<= 1.5", Pass: atMost(rs.Median, 1.5)})
	re := float64(p.rehashed() - rehashed0)
	b.add(Result{Scenario: 2, Case: "bytes re-read at finalize", Unit: "bytes",
		Portal: newSample([]float64{re}), Target: "0", Pass: atMost(re, 0)})
	return nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
