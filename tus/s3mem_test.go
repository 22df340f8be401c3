package tus

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// prngReader yields n pseudo-random bytes without holding them.
type prngReader struct {
	r *rand.ChaCha8
	n int64
}

func (p *prngReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.r.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

// vmRSS is the process's resident set size in bytes.
func vmRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dirBytes is the size of the files in dir.
func dirBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Many uploads at once: the parts wait on local disk, within
// (uploads × (1 + MaxBufferedParts) + ConcurrentPartUploads) parts, and
// memory does not grow with the bytes in flight.
func TestS3ManyUploadsStayBounded(t *testing.T) {
	const uploads, size = 20, 20*mib + 1000
	e := newS3Env(t)
	// A slow bucket (each part takes 150 ms more), so parts pile up on the
	// portal's side unless bounded.
	proxy := newFaultProxy(t, e.srv.URL)
	proxy.delay = 150 * time.Millisecond
	cfg := e.config("portal-a")
	cfg.S3.Endpoint = proxy.URL
	cfg.S3.MaxBufferedParts, cfg.S3.ConcurrentPartUploads = 1, 4
	p := e.start(t, cfg)
	tempDir := filepath.Join(e.dir, "s3-parts")
	bound := int64(uploads*(1+cfg.S3.MaxBufferedParts)+int64(cfg.S3.ConcurrentPartUploads)) * cfg.S3.PartSize

	runtime.GC()
	base := vmRSS(t)
	var peakRSS, peakTemp atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if r := vmRSS(t); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			if d := dirBytes(tempDir); d > peakTemp.Load() {
				peakTemp.Store(d)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	sums := make(map[string]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range uploads {
		url := p.create(size, "many-"+strconv.Itoa(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			body := io.TeeReader(&prngReader{r: rand.NewChaCha8([32]byte{byte(i)}), n: size}, h)
			req, _ := http.NewRequest(http.MethodPatch, url, body)
			req.ContentLength = size
			req.Header.Set("Tus-Resumable", "1.0.0")
			req.Header.Set("Upload-Offset", "0")
			req.Header.Set("Content-Type", "application/offset+octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Errorf("PATCH %s: %d", url, resp.StatusCode)
			}
			mu.Lock()
			sums[idOf(url)] = hex.EncodeToString(h.Sum(nil))
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()

	cs := e.completions()
	if len(cs) != uploads {
		t.Fatalf("finalized %d uploads, want %d", len(cs), uploads)
	}
	for _, c := range cs {
		if c.SHA256 != sums[c.UploadID] || c.Size != size {
			t.Fatalf("upload %s: sha256 %s, want %s", c.UploadID, c.SHA256, sums[c.UploadID])
		}
	}
	noReadBack(t, p.s)
	if d := dirBytes(tempDir); d != 0 {
		t.Fatalf("%d bytes left in the temporary directory", d)
	}
	grew := max(peakRSS.Load()-base, 0)
	t.Logf("%d uploads of %.1f MiB in %v (%.0f MiB/s): temp dir peak %.0f MiB (bound %.0f MiB), RSS %.0f MiB at start, grew by %.0f MiB at most",
		uploads, float64(size)/mib, elapsed.Round(time.Millisecond), float64(uploads*size)/mib/elapsed.Seconds(),
		float64(peakTemp.Load())/mib, float64(bound)/mib, float64(base)/mib, float64(grew)/mib)
	if peakTemp.Load() > bound {
		t.Fatalf("temporary parts peaked at %d bytes, over the bound %d", peakTemp.Load(), bound)
	}
	if grew > 96*mib {
		t.Fatalf("RSS grew by %d MiB with %d MiB in flight", grew/mib, uploads*size/mib)
	}
}
