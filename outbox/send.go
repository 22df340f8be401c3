package outbox

// Sending: one signed HTTP request per attempt, and what its answer means
// for the next one. The claim is in claim.go, recording in record.go.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"code.dny.dev/ssrf"
)

// result is the outcome of one HTTP attempt.
type result struct {
	at         time.Time
	duration   time.Duration
	code       int // 0: no response
	body       string
	err        string
	outcome    string // metric label
	retryAfter time.Duration
}

func (r result) ok() bool { return r.code >= 200 && r.code < 300 }

// send makes the HTTP request of one attempt.
func (d *Dispatcher) send(ctx context.Context, j *job) result {
	res := result{at: d.now(), outcome: "network_error"}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := d.request(rctx, j, res.at)
	if err != nil {
		res.err, res.outcome = err.Error(), "refused"
		return res
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		res.duration = time.Since(start)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			res.err, res.outcome = fmt.Sprintf("timeout: no response within %s", d.cfg.Timeout), "timeout"
		case errors.Is(err, ssrf.ErrProhibitedIP), errors.Is(err, ssrf.ErrProhibitedNetwork),
			errors.Is(err, ssrf.ErrProhibitedPort), errors.Is(err, ssrf.ErrInvalidHostPort):
			res.err, res.outcome = "refused by the address policy: "+err.Error(), "refused"
		default:
			res.err = err.Error()
		}
		return res
	}
	d.readAnswer(resp, &res)
	res.duration = time.Since(start)
	return res
}

// request is the signed POST of a delivery attempt made at at.
func (d *Dispatcher) request(ctx context.Context, j *job, at time.Time) (*http.Request, error) {
	if len(j.ep.secrets) == 0 {
		return nil, errors.New("the endpoint has no signing secret")
	}
	sig, err := SignatureHeader(j.ep.secrets, j.eventID, at.Unix(), j.payload)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.ep.url, bytes.NewReader(j.payload))
	if err != nil {
		return nil, fmt.Errorf("invalid request: %w", err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.cfg.UserAgent)
	h.Set("webhook-id", j.eventID)
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", sig)
	h.Set("X-Webhook-Delivery", j.id)
	return req, nil
}

// readAnswer records the status, the start of the body and what the
// answer means (success, a refused redirect, an HTTP error, a Retry-After)
// in res, and closes the body.
func (d *Dispatcher) readAnswer(resp *http.Response, res *result) {
	res.code = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(d.cfg.MaxResponseBody)))
	// Read a little more so the connection can be reused, then give up.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	res.body = strings.ToValidUTF8(string(body), "\uFFFD")
	switch {
	case res.ok():
		res.outcome = "success"
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.err, res.outcome = "redirect not followed (Location: "+truncate(resp.Header.Get("Location"), 500)+")", "http_error"
	default:
		res.err, res.outcome = "HTTP "+strconv.Itoa(resp.StatusCode), "http_error"
	}
	if err != nil && res.err == "" && !res.ok() {
		res.err = "reading the response: " + err.Error()
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), res.at)
	}
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date);
// zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return max(time.Duration(min(secs, int64(365*24*3600)))*time.Second, minRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), minRetryAfter)
	}
	return 0
}

// nextWait is the wait before the retry after a failed attempt that was the
// tries-th of its schedule (1-based): the schedule's step with jitter, or
// what Retry-After asked for, bounded.
func (d *Dispatcher) nextWait(tries int, r result) time.Duration {
	if r.retryAfter > 0 {
		return min(max(r.retryAfter, minRetryAfter), d.cfg.RetryAfterMax)
	}
	w := d.cfg.Schedule[tries-1]
	if d.cfg.Jitter > 0 {
		w = time.Duration(float64(w) * (1 + d.cfg.Jitter*(2*rand.Float64()-1)))
	}
	return w
}
