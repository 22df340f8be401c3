package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// upload is one file a client sends, and what happened to it.
type upload struct {
	content
	chunk int64  // bytes per PATCH
	sha   string // SHA-256 of the content
	storm bool   // sent in the creation request (POST with body), no PATCH

	url    string // the upload's URL once a 201 was seen
	offset int64  // the offset the client believes the server has
	head   bool   // the next request is a HEAD (after a failure)

	// ackedBy says how the client learned the upload was complete:
	// "204" (the final PATCH), "201" (a creation-with-upload) or "head"
	// (after a failure, HEAD reported every byte there, as tus-js-client
	// takes it). Empty while unfinished.
	ackedBy string
	ackedAt time.Time // when the client read that answer
	err     error     // why the client gave up, if it did

	creates, patches, heads, failures int
}

// uploadID is the last segment of the upload's URL.
func (u *upload) uploadID() string {
	if i := strings.LastIndexByte(u.url, '/'); i >= 0 {
		return u.url[i+1:]
	}
	return u.url
}

// activity is what the clients tell the killer: how many body bytes they
// sent, and which final requests (the last PATCH of an upload, or a
// creation-with-upload) have sent their whole body and await the answer,
// which is when the portal finalizes.
type activity struct {
	sent atomic.Int64

	mu       sync.Mutex
	finals   map[*upload]time.Time
	finalled chan struct{} // signalled (without blocking) when a final body is sent
}

func newActivity() *activity {
	return &activity{finals: map[*upload]time.Time{}, finalled: make(chan struct{}, 1)}
}

func (a *activity) finalSent(u *upload) {
	a.mu.Lock()
	a.finals[u] = time.Now()
	a.mu.Unlock()
	select {
	case a.finalled <- struct{}{}:
	default:
	}
}

func (a *activity) finalAnswered(u *upload) {
	a.mu.Lock()
	delete(a.finals, u)
	a.mu.Unlock()
}

// finalizing counts the final requests whose body is sent and whose answer
// has not arrived.
func (a *activity) finalizing() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.finals)
}

// sendingBody counts a request body's bytes as they are read and, for a
// final request, tells the activity once the transport has read all of
// it (the read that returns EOF comes after the last byte was written).
type sendingBody struct {
	r     io.Reader
	act   *activity
	u     *upload
	final bool
	done  bool
}

func (b *sendingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.act.sent.Add(int64(n))
	if err == io.EOF && b.final && !b.done {
		b.done = true
		b.act.finalSent(b.u)
	}
	return n, err
}

// tusClient speaks tus 1.0 like tus-js-client: create, PATCH in chunks,
// and after any failure wait, HEAD for the offset and go on from there.
type tusClient struct {
	hc    *http.Client
	base  string
	token string
	act   *activity
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil, // loopback only, never through a proxy
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
			WriteBufferSize:     64 << 10,
		},
		Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// retryDelays are the waits after consecutive failures (the last one
// repeats); tus-js-client's default is 0, 1, 3, 5 s, shortened here so a
// restart a few hundred milliseconds long is not followed by seconds of
// idling.
var retryDelays = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond}

// errFatal marks an answer no retry can fix (the upload is gone, or the
// request was refused): the client gives up on the upload.
var errFatal = errors.New("fatal")

// send runs the upload until the client knows it complete, gives up, or
// ctx ends.
func (c *tusClient) send(ctx context.Context, u *upload) {
	fails := 0
	for u.ackedBy == "" {
		if ctx.Err() != nil {
			u.err = fmt.Errorf("unfinished at the deadline (last error: %v)", u.err)
			return
		}
		err := c.step(ctx, u)
		if err == nil {
			fails = 0
			u.err = nil
			continue
		}
		u.failures++
		u.err = err
		if errors.Is(err, errFatal) {
			return
		}
		u.head = u.url != ""
		select {
		case <-ctx.Done():
		case <-time.After(retryDelays[min(fails, len(retryDelays)-1)]):
		}
		fails++
	}
}

// step makes one request of the upload.
func (c *tusClient) step(ctx context.Context, u *upload) error {
	switch {
	case u.url == "":
		return c.create(ctx, u)
	case u.head:
		return c.headOffset(ctx, u)
	default:
		return c.patch(ctx, u)
	}
}

func (c *tusClient) newRequest(ctx context.Context, method, url string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends req and reads (a bounded part of) the answer's body.
func (c *tusClient) do(req *http.Request) (*http.Response, string, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if err != nil {
		return nil, "", err
	}
	return resp, strings.TrimSpace(string(b)), nil
}

// create makes the upload (POST); in storm mode the whole body goes with
// it (creation-with-upload) and a 201 completes the upload.
func (c *tusClient) create(ctx context.Context, u *upload) error {
	var body io.Reader
	if u.storm {
		body = &sendingBody{r: u.reader(0, u.size), act: c.act, u: u, final: true}
	}
	req, err := c.newRequest(ctx, http.MethodPost, c.base+"/files/", body)
	if err != nil {
		return err
	}
	meta := map[string]string{"filename": fmt.Sprintf("crash-%04d.bin", u.n), "filetype": "application/octet-stream",
		"n": strconv.Itoa(u.n)}
	var pairs []string
	for k, v := range meta {
		pairs = append(pairs, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
	}
	req.Header.Set("Upload-Metadata", strings.Join(pairs, ","))
	req.Header.Set("Upload-Length", strconv.FormatInt(u.size, 10))
	if u.storm {
		req.ContentLength = u.size
		req.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	u.creates++
	resp, text, err := c.do(req)
	if u.storm {
		defer c.act.finalAnswered(u)
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return statusError("create", resp, text)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path == "" {
		return fmt.Errorf("create: 201 without a usable Location (%q): %w", resp.Header.Get("Location"), errFatal)
	}
	base, _ := url.Parse(c.base + "/files/")
	u.url = base.ResolveReference(loc).String()
	u.offset = 0
	if u.storm {
		if got := resp.Header.Get("Upload-Offset"); got != strconv.FormatInt(u.size, 10) {
			return fmt.Errorf("create with upload: 201 with offset %q, want %d", got, u.size)
		}
		u.offset = u.size
		u.ackedBy, u.ackedAt = "201", time.Now()
	}
	return nil
}

// headOffset asks where the upload stands (after a failure).
func (c *tusClient) headOffset(ctx context.Context, u *upload) error {
	req, err := c.newRequest(ctx, http.MethodHead, u.url, nil)
	if err != nil {
		return err
	}
	u.heads++
	resp, _, err := c.do(req)
	if err != nil {
		return fmt.Errorf("head: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("head: %s: the upload is gone: %w", resp.Status, errFatal)
	case resp.StatusCode != http.StatusOK:
		return statusError("head", resp, "")
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 || off > u.size {
		return fmt.Errorf("head: bad Upload-Offset %q: %w", resp.Header.Get("Upload-Offset"), errFatal)
	}
	u.offset, u.head = off, false
	if off == u.size {
		u.ackedBy, u.ackedAt = "head", time.Now()
	}
	return nil
}

// patch sends the next chunk from the current offset.
func (c *tusClient) patch(ctx context.Context, u *upload) error {
	n := min(u.chunk, u.size-u.offset)
	final := u.offset+n == u.size
	body := &sendingBody{r: u.reader(u.offset, n), act: c.act, u: u, final: final}
	req, err := c.newRequest(ctx, http.MethodPatch, u.url, body)
	if err != nil {
		return err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(u.offset, 10))
	u.patches++
	resp, text, err := c.do(req)
	if final {
		c.act.finalAnswered(u)
	}
	if err != nil {
		return fmt.Errorf("patch at %d: %w", u.offset, err)
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
	case http.StatusNotFound, http.StatusGone:
		return fmt.Errorf("patch at %d: %s: the upload is gone: %w", u.offset, resp.Status, errFatal)
	default:
		return statusError(fmt.Sprintf("patch at %d", u.offset), resp, text)
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off != u.offset+n {
		return fmt.Errorf("patch at %d: 204 with offset %q, want %d: %w", u.offset, resp.Header.Get("Upload-Offset"), u.offset+n, errFatal)
	}
	u.offset = off
	if off == u.size {
		u.ackedBy, u.ackedAt = "204", time.Now()
	}
	return nil
}

// statusError describes an unexpected answer: 4xx other than a conflict,
// a lock or a rate limit is fatal (a retry would get the same), anything
// else is retried.
func statusError(what string, resp *http.Response, body string) error {
	err := fmt.Errorf("%s: %s %s", what, resp.Status, truncate(body, 200))
	switch s := resp.StatusCode; {
	case s == http.StatusConflict || s == http.StatusLocked || s == http.StatusTooManyRequests:
		return err
	case s >= 400 && s < 500:
		return fmt.Errorf("%w: %w", err, errFatal)
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
