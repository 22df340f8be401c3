package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"code.dny.dev/ssrf"
)

// DefaultSchedule is the wait before each retry after a failed attempt:
// eight attempts over about 28 hours, then the delivery is failed.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Dispatcher defaults (the zero values of DispatcherConfig).
const (
	DefaultTimeout         = 15 * time.Second
	DefaultWorkers         = 16
	DefaultPerEndpoint     = 4
	DefaultDisableAfter    = 5 * 24 * time.Hour
	DefaultRetryAfterMax   = 6 * time.Hour
	DefaultPollInterval    = 5 * time.Second
	DefaultMaxResponseBody = 4 << 10
	DefaultJitter          = 0.1
	// minRetryAfter is the shortest wait a Retry-After can ask for.
	minRetryAfter = time.Second
)

// DispatcherConfig tunes a Dispatcher; zero values mean the defaults.
type DispatcherConfig struct {
	// Workers bounds the requests in flight at once; PerEndpoint bounds
	// them per endpoint.
	Workers     int
	PerEndpoint int
	// Timeout bounds one request, from connecting to reading the capped
	// response body.
	Timeout time.Duration
	// Schedule is the wait before each retry; its length is the number of
	// retries. Jitter spreads each wait by up to this fraction either way
	// (negative: none).
	Schedule []time.Duration
	Jitter   float64
	// RetryAfterMax caps the wait a 429 or 503 can ask for with
	// Retry-After (the wait replaces the schedule's for that retry).
	RetryAfterMax time.Duration
	// DisableAfter disables an endpoint whose attempts have all failed for
	// this long (negative: never).
	DisableAfter time.Duration
	// MaxResponseBody is how many bytes of a response body are kept.
	MaxResponseBody int
	// PollInterval bounds how long the dispatcher sleeps without a wake-up.
	PollInterval time.Duration
	// UserAgent is sent with every request ("doorito-portal/<version>").
	UserAgent string
	// Policy decides which addresses requests may connect to.
	Policy NetPolicy
	// Logger receives delivery logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means the outbox's.
	Now func() time.Time
}

func (c DispatcherConfig) withDefaults(o *Outbox) DispatcherConfig {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.PerEndpoint <= 0 {
		c.PerEndpoint = DefaultPerEndpoint
	}
	c.PerEndpoint = min(c.PerEndpoint, c.Workers)
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.RetryAfterMax <= 0 {
		c.RetryAfterMax = DefaultRetryAfterMax
	}
	if c.DisableAfter == 0 {
		c.DisableAfter = DefaultDisableAfter
	}
	if c.MaxResponseBody <= 0 {
		c.MaxResponseBody = DefaultMaxResponseBody
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.UserAgent == "" {
		c.UserAgent = "doorito-portal/dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = o.now
	}
	return c
}

// Dispatcher sends pending deliveries: it wakes when events commit (and
// polls as a fallback), claims due deliveries fairly between fresh events
// and retries, and sends them on a bounded pool of workers, recording
// every attempt.
type Dispatcher struct {
	o      *Outbox
	cfg    DispatcherConfig
	log    *slog.Logger
	client *http.Client
	tr     *http.Transport

	// Owned by Run's goroutine.
	done     chan string // endpoint id of each finished job
	inflight map[string]int
	total    int
	rr       int

	running atomic.Bool
}

// Running reports whether the dispatcher is delivering (for readiness
// checks): from Run's call, or Starting's, until Run returns.
func (d *Dispatcher) Running() bool { return d.running.Load() }

// Starting marks the dispatcher running before the goroutine that calls
// Run is scheduled, so a readiness check right after start-up is not
// told otherwise.
func (d *Dispatcher) Starting() { d.running.Store(true) }

// NewDispatcher returns a dispatcher over the outbox; Run starts it.
func NewDispatcher(o *Outbox, cfg DispatcherConfig) *Dispatcher {
	cfg = cfg.withDefaults(o)
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would bypass the address check
		DialContext:           cfg.Policy.dialer(),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   cfg.PerEndpoint,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &Dispatcher{
		o:   o,
		cfg: cfg,
		log: cfg.Logger,
		tr:  tr,
		client: &http.Client{
			Transport: tr,
			// Never follow redirects: the 3xx is the answer (a failure).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		done:     make(chan string, cfg.Workers),
		inflight: map[string]int{},
	}
}

// job is one claimed delivery.
type job struct {
	id, endpointID string
}

// Run delivers until ctx ends, then waits for the requests in flight
// (cancelled with ctx; their deliveries are sent again on the next start)
// and returns. Deliveries that a crash left "delivering" are queued again
// first: delivery is at least once.
func (d *Dispatcher) Run(ctx context.Context) {
	d.running.Store(true)
	defer d.running.Store(false)
	defer d.tr.CloseIdleConnections()
	if n, err := d.recover(ctx); err != nil {
		d.log.Error("webhooks: recover deliveries", "err", err)
	} else if n > 0 {
		d.log.Info("webhooks: deliveries interrupted by the last shutdown queued again", "count", n)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait, err := d.dispatch(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: claim deliveries", "err", err)
			wait = d.cfg.PollInterval
		}
		timer.Reset(max(wait, 5*time.Millisecond))
		select {
		case <-ctx.Done():
			for d.total > 0 {
				d.finish(<-d.done)
			}
			return
		case <-d.o.Wake():
		case ep := <-d.done:
			d.finish(ep)
		case <-timer.C:
		}
		for drained := false; !drained; {
			select {
			case ep := <-d.done:
				d.finish(ep)
			default:
				drained = true
			}
		}
	}
}

func (d *Dispatcher) finish(endpointID string) {
	d.total--
	if d.inflight[endpointID]--; d.inflight[endpointID] <= 0 {
		delete(d.inflight, endpointID)
	}
}

// recover queues again the deliveries a previous run left "delivering".
func (d *Dispatcher) recover(ctx context.Context) (int64, error) {
	var n int64
	err := d.o.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE deliveries SET status = 'pending', updated_at = ? WHERE status = 'delivering'",
			d.now().UnixMilli())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

func (d *Dispatcher) now() time.Time { return d.cfg.Now().UTC().Truncate(time.Millisecond) }

// dispatch claims what is due and starts a worker for each; it returns how
// long to sleep before something else falls due.
func (d *Dispatcher) dispatch(ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		return d.cfg.PollInterval, nil
	}
	jobs, next, err := d.claim(ctx)
	for _, j := range jobs {
		d.total++
		d.inflight[j.endpointID]++
		go d.work(ctx, j)
	}
	wait := d.cfg.PollInterval
	if !next.IsZero() {
		wait = min(wait, next.Sub(d.now()))
	}
	return wait, err
}

// claim marks due deliveries "delivering", within the global and
// per-endpoint limits, and returns them with the earliest time another
// becomes due on an endpoint that has room (zero if none). Endpoints are
// visited round-robin, and on each, fresh deliveries and retries are taken
// in turn. Candidates are found on the read pool; the write transaction
// only flips their status (if they are still pending), so it holds the
// single writer briefly.
func (d *Dispatcher) claim(ctx context.Context) ([]job, time.Time, error) {
	free := d.cfg.Workers - d.total
	if free <= 0 {
		return nil, time.Time{}, nil // a finishing worker wakes the loop
	}
	eps, err := enabledEndpoints(ctx, d.o.r)
	if err != nil || len(eps) == 0 {
		return nil, time.Time{}, err
	}
	now := d.now()
	d.rr = (d.rr + 1) % len(eps)
	var candidates []job
	roomy := map[string]bool{} // endpoints with room left after this claim
	for i := range eps {
		ep := eps[(d.rr+i)%len(eps)]
		room := min(d.cfg.PerEndpoint-d.inflight[ep], free-len(candidates))
		if room <= 0 {
			continue
		}
		fresh, err := dueDeliveries(ctx, d.o.r, ep, laneFresh, now, room)
		if err != nil {
			return nil, time.Time{}, err
		}
		retry, err := dueDeliveries(ctx, d.o.r, ep, laneRetry, now, room)
		if err != nil {
			return nil, time.Time{}, err
		}
		for k := 0; room > 0 && (k < len(fresh) || k < len(retry)); k++ {
			if k < len(fresh) {
				candidates, room = append(candidates, job{fresh[k], ep}), room-1
			}
			if k < len(retry) && room > 0 {
				candidates, room = append(candidates, job{retry[k], ep}), room-1
			}
		}
		if room > 0 {
			roomy[ep] = true
		}
	}
	var jobs []job
	if len(candidates) > 0 {
		err := d.o.inTx(ctx, func(tx *sql.Tx) error {
			jobs = jobs[:0]
			for _, j := range candidates {
				res, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'delivering', updated_at = ?
					WHERE id = ? AND status = 'pending' AND next_attempt_at <= ? AND EXISTS (SELECT 1 FROM endpoints ep
					WHERE ep.id = deliveries.endpoint_id AND ep.enabled = 1 AND ep.deleted_at IS NULL)`+inOrder,
					now.UnixMilli(), j.id, now.UnixMilli())
				if err != nil {
					return err
				}
				if n, _ := res.RowsAffected(); n == 1 {
					jobs = append(jobs, j)
				}
			}
			return nil
		})
		if err != nil {
			return nil, time.Time{}, err
		}
	}
	// When does the next delivery fall due on an endpoint with room?
	var next time.Time
	for ep := range roomy {
		t, err := nextDue(ctx, d.o.r, ep)
		if err != nil {
			return jobs, time.Time{}, err
		}
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return jobs, next, nil
}

// inOrder keeps one endpoint's deliveries about one file in event order: a
// delivery waits while an earlier event of the same file still has an
// unfinished (pending or delivering) delivery to the same endpoint. So a
// receiver sees file.uploaded, file.expiring and file.deleted of a file in
// the order they were committed, even with several workers per endpoint.
// events(file_id, seq) and deliveries(event_id, endpoint_id) index it.
const inOrder = ` AND NOT EXISTS (SELECT 1 FROM events e JOIN events e2 ON e2.file_id = e.file_id AND e2.seq < e.seq
	JOIN deliveries d2 ON d2.event_id = e2.id AND d2.endpoint_id = deliveries.endpoint_id
	WHERE e.id = deliveries.event_id AND d2.status IN ('pending', 'delivering'))`

// querier is a database pool or transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func enabledEndpoints(ctx context.Context, q querier) ([]string, error) {
	return scanStrings(q.QueryContext(ctx, "SELECT id FROM endpoints WHERE enabled = 1 AND deleted_at IS NULL ORDER BY id"))
}

func dueDeliveries(ctx context.Context, q querier, endpointID string, lane int, now time.Time, limit int) ([]string, error) {
	return scanStrings(q.QueryContext(ctx, `SELECT id FROM deliveries WHERE endpoint_id = ? AND lane = ? AND status = 'pending'
		AND next_attempt_at <= ?`+inOrder+` ORDER BY next_attempt_at LIMIT ?`, endpointID, lane, now.UnixMilli(), limit))
}

// scanStrings reads a one-column result of strings.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// nextDue is the earliest next attempt of an endpoint's pending
// deliveries, or zero.
func nextDue(ctx context.Context, q querier, endpointID string) (time.Time, error) {
	var next time.Time
	for _, lane := range []int{laneFresh, laneRetry} {
		var ms sql.NullInt64
		if err := q.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM deliveries
			WHERE endpoint_id = ? AND lane = ? AND status = 'pending'`+inOrder, endpointID, lane).Scan(&ms); err != nil {
			return time.Time{}, err
		}
		if t := msPtr(ms); t != nil && (next.IsZero() || t.Before(next)) {
			next = *t
		}
	}
	return next, nil
}

// target is what one attempt needs, read when it starts (so a new URL or a
// rotated secret applies to the next attempt).
type target struct {
	eventID, url    string
	payload         []byte
	tries, attempts int
	enabled         bool
	deleted         bool
	committed       time.Time // when the event was written
}

func (d *Dispatcher) load(ctx context.Context, deliveryID string) (target, error) {
	var t target
	var deleted sql.NullInt64
	var committed int64
	err := d.o.r.QueryRowContext(ctx, `SELECT d.event_id, ep.url, ev.payload, d.tries, d.attempts, ep.enabled, ep.deleted_at,
		ev.created_at FROM deliveries d JOIN events ev ON ev.id = d.event_id JOIN endpoints ep ON ep.id = d.endpoint_id
		WHERE d.id = ?`, deliveryID).Scan(&t.eventID, &t.url, &t.payload, &t.tries, &t.attempts, &t.enabled, &deleted, &committed)
	t.deleted = deleted.Valid
	t.committed = time.UnixMilli(committed)
	return t, err
}

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

// work makes one attempt of a claimed delivery and records it.
func (d *Dispatcher) work(ctx context.Context, j job) {
	defer func() { d.done <- j.endpointID }()
	// Database writes finish even when ctx ends (shutdown).
	dbctx := context.WithoutCancel(ctx)
	log := d.log.With("delivery_id", j.id, "endpoint_id", j.endpointID)
	t, err := d.load(dbctx, j.id)
	if err != nil {
		log.Error("webhooks: load delivery", "err", err)
		d.release(dbctx, j, d.now().Add(d.cfg.PollInterval))
		return
	}
	if t.deleted || !t.enabled {
		// Deleted: already cancelled. Disabled: waits for re-enabling.
		d.release(dbctx, j, d.now())
		return
	}
	secrets, err := activeSecrets(dbctx, d.o.r, j.endpointID, d.now())
	if err != nil {
		log.Error("webhooks: load secrets", "err", err)
		d.release(dbctx, j, d.now().Add(d.cfg.PollInterval))
		return
	}
	res := d.send(ctx, j, t, secrets)
	if ctx.Err() != nil && !res.ok() {
		// Shut down mid-request: not an attempt; sent again after restart.
		d.release(dbctx, j, d.now())
		return
	}
	metricAttempts.WithLabelValues(j.endpointID, res.outcome).Inc()
	metricAttemptDuration.Observe(res.duration.Seconds())
	if res.ok() && t.attempts == 0 {
		// First delivery of the event to this endpoint: the end-to-end
		// latency a consumer sees (retries and replays would skew it).
		metricDeliveryLatency.Observe(res.at.Add(res.duration).Sub(t.committed).Seconds())
	}
	if err := d.record(dbctx, j, t, res, log); err != nil {
		log.Error("webhooks: record attempt", "err", err)
	}
}

// release puts a claimed delivery back to pending without an attempt.
func (d *Dispatcher) release(ctx context.Context, j job, next time.Time) {
	_, err := d.o.w.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?
		WHERE id = ? AND status = 'delivering'`, next.UnixMilli(), d.now().UnixMilli(), j.id)
	if err != nil {
		d.log.Error("webhooks: release delivery", "delivery_id", j.id, "err", err)
	}
}

// send makes the HTTP request of one attempt.
func (d *Dispatcher) send(ctx context.Context, j job, t target, secrets []string) result {
	res := result{at: d.now(), outcome: "network_error"}
	if len(secrets) == 0 {
		res.err, res.outcome = "the endpoint has no signing secret", "refused"
		return res
	}
	sig, err := SignatureHeader(secrets, t.eventID, res.at.Unix(), t.payload)
	if err != nil {
		res.err, res.outcome = err.Error(), "refused"
		return res
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, t.url, bytes.NewReader(t.payload))
	if err != nil {
		res.err, res.outcome = "invalid request: "+err.Error(), "refused"
		return res
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.cfg.UserAgent)
	h.Set("webhook-id", t.eventID)
	h.Set("webhook-timestamp", strconv.FormatInt(res.at.Unix(), 10))
	h.Set("webhook-signature", sig)
	h.Set("X-Webhook-Delivery", j.id)
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
	res.code = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(d.cfg.MaxResponseBody)))
	// Read a little more so the connection can be reused, then give up.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	res.duration = time.Since(start)
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
	return res
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

// record writes an attempt and its consequences: the delivery's new state
// and the endpoint's health (410 disables it; failing continuously for
// DisableAfter disables it; a success clears the failure record).
func (d *Dispatcher) record(ctx context.Context, j job, t target, r result, log *slog.Logger) error {
	now := d.now()
	tries := t.tries + 1
	status, next := StatusSucceeded, time.Time{}
	if !r.ok() {
		if tries > len(d.cfg.Schedule) {
			status = StatusFailed
		} else {
			status, next = StatusPending, now.Add(d.nextWait(tries, r))
		}
	}
	var code any
	if r.code != 0 {
		code = r.code
	}
	var lastErr any
	if r.err != "" {
		lastErr = r.err
	}
	var nextMs any
	if !next.IsZero() {
		nextMs = next.UnixMilli()
	}
	var disabled string
	err := d.o.inTx(ctx, func(tx *sql.Tx) error {
		disabled = ""
		if _, err := tx.ExecContext(ctx, `INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url,
			status_code, response_body, error) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			j.id, r.at.UnixMilli(), r.duration.Milliseconds(), t.url, code, r.body, r.err); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = ?, attempts = attempts + 1, tries = ?,
			next_attempt_at = ?, last_attempt_at = ?, last_status_code = ?, last_error = ?, updated_at = ?
			WHERE id = ? AND status = 'delivering'`,
			status, tries, nextMs, r.at.UnixMilli(), code, lastErr, now.UnixMilli(), j.id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			// Cancelled meanwhile (endpoint deleted): record the attempt's
			// outcome, but it is never retried.
			status = ""
			_, err := tx.ExecContext(ctx, `UPDATE deliveries SET attempts = attempts + 1, last_attempt_at = ?,
				last_status_code = ?, last_error = ?, updated_at = ?,
				status = CASE WHEN ? THEN 'succeeded' ELSE status END WHERE id = ? AND status = 'cancelled'`,
				r.at.UnixMilli(), code, lastErr, now.UnixMilli(), r.ok(), j.id)
			return err
		}
		disabled, err = d.endpointHealth(ctx, tx, j.endpointID, r, now)
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case status == StatusFailed:
		metricDeliveriesFailed.Inc()
		log.Warn("webhooks: delivery failed after its last attempt", "event_id", t.eventID, "attempts", t.attempts+1,
			"status_code", r.code, "error", r.err)
	case !r.ok():
		log.Info("webhooks: attempt failed", "event_id", t.eventID, "status_code", r.code, "error", r.err,
			"next_attempt_at", next)
	}
	if disabled != "" {
		log.Warn("webhooks: endpoint disabled", "reason", disabled)
	}
	return nil
}

// endpointHealth updates an endpoint after an attempt and returns the
// reason when it disabled it.
func (d *Dispatcher) endpointHealth(ctx context.Context, tx *sql.Tx, endpointID string, r result, now time.Time) (string, error) {
	if r.ok() {
		_, err := tx.ExecContext(ctx, "UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL", endpointID)
		return "", err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL",
		r.at.UnixMilli(), endpointID); err != nil {
		return "", err
	}
	var reason, label string
	if r.code == http.StatusGone {
		reason, label = "the endpoint answered 410 Gone at "+r.at.Format(time.RFC3339), "gone"
	} else if d.cfg.DisableAfter > 0 {
		var since int64
		if err := tx.QueryRowContext(ctx, "SELECT failing_since FROM endpoints WHERE id = ?", endpointID).Scan(&since); err != nil {
			return "", err
		}
		if sinceT := time.UnixMilli(since).UTC(); now.Sub(sinceT) >= d.cfg.DisableAfter {
			reason, label = fmt.Sprintf("every attempt failed since %s (longer than %s); last error: %s",
				sinceT.Format(time.RFC3339), d.cfg.DisableAfter, truncate(r.err, 300)), "failing"
		}
	}
	if reason == "" {
		return "", nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE endpoints SET enabled = 0, disabled_reason = ?, disabled_at = ?, updated_at = ?
		WHERE id = ? AND enabled = 1 AND deleted_at IS NULL`, reason, now.UnixMilli(), now.UnixMilli(), endpointID)
	if err != nil {
		return "", err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", nil
	}
	metricEndpointsDisabled.WithLabelValues(label).Inc()
	return reason, nil
}
