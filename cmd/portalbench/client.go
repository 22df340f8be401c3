package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pattern is the block every upload body repeats: random bytes, so nothing
// along the way can compress or deduplicate them, generated once so the
// client spends its time sending, not generating.
var pattern = func() []byte {
	b := make([]byte, 1<<20+13) // an odd period, so blocks do not line up with buffers
	r := rand.NewChaCha8([32]byte{'p', 'o', 'r', 't', 'a', 'l'})
	r.Read(b)
	return b
}()

// patternReader yields n bytes of the repeating pattern, starting at the
// pattern offset of the upload offset off, so the chunks of an upload join
// into one stream however it is split.
type patternReader struct {
	off int64 // position in the whole upload
	n   int64 // bytes left
}

func newPatternReader(off, n int64) *patternReader { return &patternReader{off: off, n: n} }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	total := 0
	for len(p) > 0 {
		k := copy(p, pattern[r.off%int64(len(pattern)):])
		p = p[k:]
		r.off += int64(k)
		total += k
	}
	r.n -= int64(total)
	return total, nil
}

var sumCache sync.Map // size -> hex sha256 of the first size pattern bytes

// patternSum is the SHA-256 of the first n bytes of the pattern stream.
func patternSum(n int64) string {
	if v, ok := sumCache.Load(n); ok {
		return v.(string)
	}
	h := sha256.New()
	io.Copy(h, newPatternReader(0, n))
	s := hex.EncodeToString(h.Sum(nil))
	sumCache.Store(n, s)
	return s
}

// tusClient is a minimal tus 1.0 client over a keep-alive http.Client.
type tusClient struct {
	hc    *http.Client
	base  string // server root, "http://127.0.0.1:port"
	token string // bearer token, if any
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // loopback only, never through a proxy
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		WriteBufferSize:     64 << 10,
		ReadBufferSize:      16 << 10,
	}}
}

func newTusClient(base string) *tusClient { return &tusClient{hc: newHTTPClient(), base: base} }

func (c *tusClient) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Tus-Resumable", "1.0.0")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	// Drain so the connection is reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, nil
}

// create makes an upload of size bytes with the given metadata and returns
// its URL.
func (c *tusClient) create(ctx context.Context, size int64, meta map[string]string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/files/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	var pairs []string
	for k, v := range meta {
		pairs = append(pairs, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	req.Header.Set("Upload-Metadata", strings.Join(pairs, ","))
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("create upload: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("create upload: location: %w", err)
	}
	base, _ := url.Parse(c.base + "/files/")
	return base.ResolveReference(loc).String(), nil
}

// patch sends n pattern bytes at offset and returns when the server has
// answered.
func (c *tusClient) patch(ctx context.Context, u string, offset, n int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, newPatternReader(offset, n))
	if err != nil {
		return err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("patch at %d: %s", offset, resp.Status)
	}
	if got := resp.Header.Get("Upload-Offset"); got != strconv.FormatInt(offset+n, 10) {
		return fmt.Errorf("patch at %d: offset %s, want %d", offset, got, offset+n)
	}
	return nil
}

// upload creates an upload of size bytes and sends it in PATCHes of at
// most chunk bytes (chunk <= 0: one PATCH).
func (c *tusClient) upload(ctx context.Context, size, chunk int64, name string) (string, error) {
	return c.uploadMetaChunked(ctx, size, chunk, map[string]string{"filename": name, "filetype": "application/octet-stream"})
}

// uploadMeta sends an upload with the given metadata in one PATCH.
func (c *tusClient) uploadMeta(ctx context.Context, size int64, meta map[string]string) (string, error) {
	return c.uploadMetaChunked(ctx, size, 0, meta)
}

func (c *tusClient) uploadMetaChunked(ctx context.Context, size, chunk int64, meta map[string]string) (string, error) {
	u, err := c.create(ctx, size, meta)
	if err != nil {
		return "", err
	}
	if chunk <= 0 {
		chunk = size
	}
	for off := int64(0); off < size; {
		n := min(chunk, size-off)
		if err := c.patch(ctx, u, off, n); err != nil {
			return u, err
		}
		off += n
	}
	return u, nil
}

// uploadMany runs conc uploads of size bytes at once and returns the wall
// time from the first request to the last answer.
func (c *tusClient) uploadMany(ctx context.Context, conc int, size, chunk int64) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, conc)
	for i := range conc {
		go func() {
			_, err := c.upload(ctx, size, chunk, fmt.Sprintf("bench-%d.bin", i))
			errs <- err
		}()
	}
	var all []error
	for range conc {
		all = append(all, <-errs)
	}
	return time.Since(start), errors.Join(all...)
}
