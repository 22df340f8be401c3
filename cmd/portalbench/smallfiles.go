package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// createWithUpload sends a whole upload of size pattern bytes in its
// creation request (the tus creation-with-upload extension) and returns
// its URL once the server has answered 201 with the full offset: the
// answer that tells a client its file is stored.
func (c *tusClient) createWithUpload(ctx context.Context, size int64, name string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/files/", newPatternReader(0, size))
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", "filename "+b64(name)+",filetype "+b64("application/octet-stream"))
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create with upload: %s", resp.Status)
	}
	if got := resp.Header.Get("Upload-Offset"); got != strconv.FormatInt(size, 10) {
		return "", fmt.Errorf("create with upload: offset %q, want %d", got, size)
	}
	return resp.Header.Get("Location"), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// smallRun is one repetition of a small-file case: files per second over
// the whole run and the latency of each creation request.
type smallRun struct {
	filesPerSec float64
	p50, p99    float64 // ms
}

// smallFiles sends files uploads of size bytes, each one
// creation-with-upload request, from clients concurrent clients (each
// sending its next file as soon as the last is answered).
func (c *tusClient) smallFiles(ctx context.Context, clients, files int, size int64) (smallRun, error) {
	var next atomic.Int64
	lat := make([][]float64, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1); n <= int64(files) && ctx.Err() == nil; n = next.Add(1) {
				t := time.Now()
				if _, err := c.createWithUpload(ctx, size, fmt.Sprintf("small-%d.bin", n)); err != nil {
					errs[i] = err
					return
				}
				lat[i] = append(lat[i], ms(time.Since(t)))
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return smallRun{}, err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return smallRun{filesPerSec: float64(len(all)) / d.Seconds(), p50: quantile(all, 0.50), p99: quantile(all, 0.99)}, nil
}

// quantile is the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// smallFileThroughput is scenario 8: many small files, each one tus
// creation-with-upload request, from 1, 16 and 64 concurrent clients; the
// portal (every 201 after the file's bytes are synced and its row and
// event committed) against tusd's bare filestore handler (no sync at all)
// and, for reference, tusd that fdatasyncs each file before its answer.
// Each server first makes one discarded run (a fresh directory is slower
// than a used one); the servers then alternate, repetition by repetition.
func (b *bench) smallFileThroughput(ctx context.Context) error {
	pdir, err := b.scratch("s8-portal")
	if err != nil {
		return err
	}
	p, err := startPortal(ctx, pdir)
	if err != nil {
		return err
	}
	defer p.Close()
	bdir, err := b.scratch("s8-baseline")
	if err != nil {
		return err
	}
	bl, err := startBaseline(bdir, false)
	if err != nil {
		return err
	}
	defer bl.Close()
	ddir, err := b.scratch("s8-durable")
	if err != nil {
		return err
	}
	dl, err := startBaseline(ddir, true)
	if err != nil {
		return err
	}
	defer dl.Close()
	token, err := adminToken(ctx, p.URL())
	if err != nil {
		return err
	}
	type target struct {
		srv server
		c   *tusClient
	}
	targets := []target{{p, newTusClient(p.URL())}, {bl, newTusClient(bl.URL())}, {dl, newTusClient(dl.URL())}}
	files, size := b.sz.SmallFiles, b.sz.SmallSize
	for _, t := range targets {
		if _, err := t.c.smallFiles(ctx, 16, files, size); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := t.srv.Clear(); err != nil {
			return err
		}
	}
	for _, clients := range b.sz.SmallClients {
		runs := make([][]smallRun, len(targets))
		var ratio, p99ratio, durRatio []float64
		for rep := range b.o.reps {
			order := []int{0, 1, 2}
			// Rotate who goes first, so none always follows the same one.
			order = append(order[rep%3:], order[:rep%3]...)
			for _, i := range order {
				r, err := targets[i].c.smallFiles(ctx, clients, files, size)
				if err != nil {
					return fmt.Errorf("%d clients: %w", clients, err)
				}
				runs[i] = append(runs[i], r)
				if i == 0 && rep == 0 {
					if err := verifySmall(ctx, p.URL(), token, files, size); err != nil {
						return err
					}
				}
				if err := targets[i].srv.Clear(); err != nil {
					return err
				}
			}
			pr, br, dr := runs[0][rep], runs[1][rep], runs[2][rep]
			ratio = append(ratio, pr.filesPerSec/br.filesPerSec)
			p99ratio = append(p99ratio, pr.p99/br.p99)
			durRatio = append(durRatio, pr.filesPerSec/dr.filesPerSec)
			b.logf("  %d clients rep %d: portal %.0f files/s (p50 %.1f ms, p99 %.1f ms), tusd %.0f (%.1f, %.1f), tusd+fdatasync %.0f (%.1f, %.1f)",
				clients, rep+1, pr.filesPerSec, pr.p50, pr.p99, br.filesPerSec, br.p50, br.p99, dr.filesPerSec, dr.p50, dr.p99)
		}
		field := func(i int, f func(smallRun) float64) *Sample {
			var v []float64
			for _, r := range runs[i] {
				v = append(v, f(r))
			}
			return newSample(v)
		}
		fps := func(r smallRun) float64 { return r.filesPerSec }
		p50 := func(r smallRun) float64 { return r.p50 }
		p99 := func(r smallRun) float64 { return r.p99 }
		name := fmt.Sprintf("%d×%s creation-with-upload, %d clients", files, human(size), clients)
		rs, ps := newSample(ratio), newSample(p99ratio)
		res := Result{Scenario: 8, Case: name, Unit: "files/s",
			Portal: field(0, fps), Baseline: field(1, fps), Ratio: rs,
			Notes: map[string]any{
				"portal_p50_ms": field(0, p50), "portal_p99_ms": field(0, p99),
				"tusd_p50_ms": field(1, p50), "tusd_p99_ms": field(1, p99),
				"tusd_fdatasync_files_s": field(2, fps), "tusd_fdatasync_p99_ms": field(2, p99),
				"ratio_vs_tusd_fdatasync": newSample(durRatio),
			}}
		if clients == 16 {
			res.Target, res.Pass = "ratio >= 0.8", atLeast(rs.Median, 0.8)
		}
		b.add(res)
		lr := Result{Scenario: 8, Case: fmt.Sprintf("p99 latency / tusd's, %d clients", clients), Unit: "ratio", Portal: ps}
		if clients == 16 {
			lr.Target, lr.Pass = "<= 2", atMost(ps.Median, 2)
		}
		b.add(lr)
	}
	return nil
}

// verifySmall checks that the portal recorded the last run's files with
// the right size and SHA-256 (untimed): every page of the file list.
func verifySmall(ctx context.Context, base, token string, files int, size int64) error {
	hc := newHTTPClient()
	want := patternSum(size)
	n, cursor := 0, ""
	for {
		fl, err := listFilesAfter(ctx, hc, base, token, 500, cursor)
		if err != nil {
			return err
		}
		for _, f := range fl.Items {
			if f.SizeBytes != size || f.SHA256 != want {
				return fmt.Errorf("small files: file %s recorded as %d bytes, sha256 %s; want %d, %s",
					f.UploadID, f.SizeBytes, f.SHA256, size, want)
			}
			n++
		}
		if cursor = fl.NextCursor; cursor == "" {
			break
		}
	}
	if n < files {
		return fmt.Errorf("small files: %d files recorded, want at least %d", n, files)
	}
	return nil
}
