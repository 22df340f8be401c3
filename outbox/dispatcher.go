package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
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
// polls as a fallback), claims due deliveries in batches, fairly between
// fresh events and retries, sends them on a bounded pool of requests with
// a per-endpoint limit, and records every attempt.
//
// The database sees two kinds of write, both batched so that one commit
// (one fsync) serves many deliveries: a claim marks up to a batch of due
// deliveries "delivering" and loads what their attempts need; the
// recorder writes finished attempts in group commits, taking whatever
// results arrived while the previous commit ran. A request slot is free
// again as soon as its response is read; the delivery stays "delivering"
// (so it is not claimed twice) until its attempt is recorded.
type Dispatcher struct {
	o      *Outbox
	cfg    DispatcherConfig
	log    *slog.Logger
	client *http.Client
	tr     *http.Transport

	// Owned by Run's goroutine. A claimed job is queued until a request
	// slot is free, then sent; inflight and total count the claimed jobs
	// not yet sent or being sent, per endpoint and overall.
	queues   map[string][]*job
	sending  map[string]int
	nsending int
	inflight map[string]int
	total    int
	rr       int
	// eps caches the enabled endpoints, read at epsVersion of the
	// outbox's endpoint version.
	eps        []enabledEndpoint
	epsVersion int64

	done     chan string   // endpoint id of each finished request
	records  chan recItem  // finished attempts and releases, to the recorder
	recorded chan struct{} // a record batch committed (may unblock claims)

	running atomic.Bool
}

// Claiming runs ahead of sending by this factor: an endpoint may have
// claimAhead×PerEndpoint deliveries claimed (queued or being sent), and
// all endpoints together claimAhead×Workers. recordBatch bounds the
// attempts one commit records.
const (
	claimAhead  = 32
	recordBatch = 512
)

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
		Proxy:             nil, // a proxy would bypass the address check
		DialContext:       cfg.Policy.dialer(),
		ForceAttemptHTTP2: true,
		MaxIdleConns:      100,
		// Several endpoints may share a host: keep a connection for every
		// request slot, or they churn.
		MaxIdleConnsPerHost:   cfg.Workers,
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
		queues:   map[string][]*job{},
		sending:  map[string]int{},
		inflight: map[string]int{},
		done:     make(chan string, cfg.Workers),
		records:  make(chan recItem, recordBatch),
		recorded: make(chan struct{}, 1),
	}
}

// job is one claimed delivery with what its attempt needs, read when it
// was claimed.
type job struct {
	id, endpointID  string
	eventID         string
	payload         []byte
	tries, attempts int
	committed       time.Time // when the event was written
	ep              *endpointTarget
}

// endpointTarget is an endpoint as a claim read it: where to send and the
// secrets that sign. version is the outbox's endpoint version at that
// time; a job whose endpoint changed since is put back unsent (and claimed
// again with the new URL, secrets or state).
type endpointTarget struct {
	url     string
	secrets []string
	version int64
}

// Run (called once per Dispatcher) delivers until ctx ends, then waits for the requests in flight
// (cancelled with ctx; their deliveries are sent again on the next start),
// puts back the claimed deliveries not yet sent, and returns. Deliveries
// that a crash left "delivering" are queued again first: delivery is at
// least once.
func (d *Dispatcher) Run(ctx context.Context) {
	d.running.Store(true)
	defer d.running.Store(false)
	defer d.tr.CloseIdleConnections()
	if err := d.prepare(ctx); err != nil {
		d.log.Error("webhooks: prepare statements", "err", err) // they run unprepared
	}
	// Nothing is claimed before the recovery has worked (a full disk may
	// hold it up): a later one would put back this run's claims too.
	for {
		n, err := d.recover(ctx)
		if err == nil {
			if n > 0 {
				d.log.Info("webhooks: deliveries interrupted by the last shutdown queued again", "count", n)
			}
			break
		}
		d.log.Error("webhooks: recover deliveries; trying again before delivering", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.PollInterval):
		}
	}
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		d.recordLoop()
	}()
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
			d.stop()
			close(d.records)
			<-recorderDone
			return
		case <-d.o.Wake():
		case <-d.recorded:
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

// stop waits for the requests in flight and puts the queued jobs back.
func (d *Dispatcher) stop() {
	for d.nsending > 0 {
		d.finish(<-d.done)
	}
	for ep, q := range d.queues {
		for _, j := range q {
			d.records <- recItem{j: j, release: true, next: d.now()}
		}
		delete(d.queues, ep)
	}
}

// finish accounts for a request that ended (its attempt is with the
// recorder).
func (d *Dispatcher) finish(endpointID string) {
	d.nsending--
	d.total--
	if d.sending[endpointID]--; d.sending[endpointID] <= 0 {
		delete(d.sending, endpointID)
	}
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

// dispatch claims what is due, queues it and starts requests as far as the
// limits allow; it returns how long to sleep before something else falls
// due.
func (d *Dispatcher) dispatch(ctx context.Context) (time.Duration, error) {
	if ctx.Err() != nil {
		return d.cfg.PollInterval, nil
	}
	jobs, next, err := d.claim(ctx)
	for _, j := range jobs {
		d.total++
		d.inflight[j.endpointID]++
		d.queues[j.endpointID] = append(d.queues[j.endpointID], j)
	}
	d.startRequests(ctx)
	wait := d.cfg.PollInterval
	if !next.IsZero() {
		wait = min(wait, next.Sub(d.now()))
	}
	return wait, err
}

// startRequests starts queued jobs while there are request slots, one
// endpoint after the other.
func (d *Dispatcher) startRequests(ctx context.Context) {
	for progress := true; progress && d.nsending < d.cfg.Workers; {
		progress = false
		for ep, q := range d.queues {
			if d.nsending >= d.cfg.Workers {
				return
			}
			if len(q) == 0 || d.sending[ep] >= d.cfg.PerEndpoint {
				continue
			}
			j := q[0]
			q[0] = nil
			if d.queues[ep] = q[1:]; len(q) == 1 {
				delete(d.queues, ep)
			}
			d.sending[ep]++
			d.nsending++
			progress = true
			go d.work(ctx, j)
		}
	}
}

// claim marks due deliveries "delivering", within the claim limits, and
// returns them as jobs with the earliest time another becomes due on an
// endpoint that has room (zero if none). Endpoints are visited
// round-robin, and on each, fresh deliveries and retries are taken in
// turn. Candidates are found on the read pool; one write statement flips
// those still pending (and still in order), so the claim holds the single
// writer briefly; what the attempts need is then read on the read pool.
func (d *Dispatcher) claim(ctx context.Context) ([]*job, time.Time, error) {
	free := claimAhead*d.cfg.Workers - d.total
	if free <= 0 {
		return nil, time.Time{}, nil // a finishing request wakes the loop
	}
	version := d.o.endpointVersion.Load()
	if d.eps == nil || d.epsVersion != version {
		eps, err := enabledEndpoints(ctx, d.o.r)
		if err != nil {
			return nil, time.Time{}, err
		}
		d.eps, d.epsVersion = eps, version
		if d.eps == nil {
			d.eps = []enabledEndpoint{}
		}
	}
	eps := d.eps
	if len(eps) == 0 {
		return nil, time.Time{}, nil
	}
	now := d.now()
	d.rr = (d.rr + 1) % len(eps)
	var candidates []string
	roomy := map[string]bool{} // endpoints with room left after this claim
	for i := range eps {
		ep := eps[(d.rr+i)%len(eps)].id
		limit := claimAhead * d.cfg.PerEndpoint
		if d.inflight[ep] > limit/2 {
			// Enough claimed to keep its requests busy: claim again when
			// it falls below half, in one larger batch.
			continue
		}
		room := min(limit-d.inflight[ep], free-len(candidates))
		if room <= 0 {
			continue
		}
		fresh, err := d.dueDeliveries(ctx, ep, laneFresh, now, room)
		if err != nil {
			return nil, time.Time{}, err
		}
		retry, err := d.dueDeliveries(ctx, ep, laneRetry, now, room)
		if err != nil {
			return nil, time.Time{}, err
		}
		for k := 0; room > 0 && (k < len(fresh) || k < len(retry)); k++ {
			if k < len(fresh) {
				candidates, room = append(candidates, fresh[k]), room-1
			}
			if k < len(retry) && room > 0 {
				candidates, room = append(candidates, retry[k]), room-1
			}
		}
		if room > 0 {
			roomy[ep] = true
		}
	}
	var jobs []*job
	if len(candidates) > 0 {
		var claimed []string
		err := d.o.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			claimed, err = scanStrings(d.o.txQuery(ctx, tx, sqlClaim, now.UnixMilli(), jsonList(candidates), now.UnixMilli()))
			return err
		})
		if err != nil {
			return nil, time.Time{}, err
		}
		if jobs, err = d.loadJobs(ctx, claimed, eps, version, now); err != nil {
			// Claimed but not loaded: put back for the next round.
			for _, id := range claimed {
				d.records <- recItem{j: &job{id: id}, release: true, next: now.Add(d.cfg.PollInterval)}
			}
			return nil, time.Time{}, err
		}
	}
	// When does the next delivery fall due on an endpoint with room?
	var next time.Time
	for ep := range roomy {
		t, err := d.nextDue(ctx, ep)
		if err != nil {
			return jobs, time.Time{}, err
		}
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return jobs, next, nil
}

// jsonList encodes ids as a JSON array, for json_each: one statement
// takes any number of them.
func jsonList(ids []string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// loadJobs reads what the attempts of the claimed deliveries need, in the
// order of ids: the event and the delivery's counters, the endpoint's URL
// (from eps) and its signing secrets.
func (d *Dispatcher) loadJobs(ctx context.Context, ids []string, eps []enabledEndpoint, version int64, now time.Time) ([]*job, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := d.o.readQuery(ctx, sqlLoadJobs, jsonList(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byID := make(map[string]*job, len(ids))
	for rows.Next() {
		j := &job{}
		var committed int64
		if err := rows.Scan(&j.id, &j.endpointID, &j.eventID, &j.payload, &j.tries, &j.attempts, &committed); err != nil {
			return nil, err
		}
		j.committed = time.UnixMilli(committed)
		byID[j.id] = j
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	targets := map[string]*endpointTarget{}
	for _, ep := range eps {
		targets[ep.id] = &endpointTarget{url: ep.url, version: version}
	}
	jobs := make([]*job, 0, len(ids))
	for _, id := range ids {
		j := byID[id]
		if j == nil {
			return nil, fmt.Errorf("claimed delivery %s vanished", id)
		}
		t := targets[j.endpointID]
		if t == nil {
			return nil, fmt.Errorf("claimed delivery %s of an endpoint not read", id)
		}
		if t.secrets == nil {
			if t.secrets, err = d.o.activeSecrets(ctx, j.endpointID, now); err != nil {
				return nil, err
			}
			if t.secrets == nil {
				t.secrets = []string{}
			}
		}
		j.ep = t
		jobs = append(jobs, j)
	}
	return jobs, nil
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

// The statements of the hot paths, prepared once (see prepare).
const (
	sqlClaim = `UPDATE deliveries SET status = 'delivering', updated_at = ?
		WHERE id IN (SELECT value FROM json_each(?)) AND status = 'pending' AND next_attempt_at <= ?
		AND EXISTS (SELECT 1 FROM endpoints ep
		WHERE ep.id = deliveries.endpoint_id AND ep.enabled = 1 AND ep.deleted_at IS NULL)` + inOrder + ` RETURNING id`
	sqlRelease = `UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?
		WHERE id = ? AND status = 'delivering'`
	sqlInsertAttempt = `INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url,
		status_code, response_body, error) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlRecordAttempt = `UPDATE deliveries SET status = ?, attempts = attempts + 1, tries = ?,
		next_attempt_at = ?, last_attempt_at = ?, last_status_code = ?, last_error = ?, updated_at = ?
		WHERE id = ? AND status = 'delivering'`
	sqlEndpointHealthy = "UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL"

	sqlDue = `SELECT id FROM deliveries WHERE endpoint_id = ? AND lane = ? AND status = 'pending'
		AND next_attempt_at <= ?` + inOrder + ` ORDER BY next_attempt_at LIMIT ?`
	sqlNextDue = `SELECT next_attempt_at FROM deliveries
		WHERE endpoint_id = ? AND lane = ? AND status = 'pending'` + inOrder + ` ORDER BY next_attempt_at LIMIT 1`
	sqlLoadJobs = `SELECT d.id, d.endpoint_id, d.event_id, ev.payload, d.tries, d.attempts, ev.created_at
		FROM deliveries d JOIN events ev ON ev.id = d.event_id WHERE d.id IN (SELECT value FROM json_each(?))`
)

// prepare prepares the writer's statements, while no transaction holds
// the writer (the read pool prepares its own on first use).
func (d *Dispatcher) prepare(ctx context.Context) error {
	for _, q := range []string{sqlClaim, sqlRelease, sqlInsertAttempt, sqlRecordAttempt, sqlEndpointHealthy} {
		if _, err := d.o.stmt(ctx, d.o.w, q); err != nil {
			return err
		}
	}
	return nil
}

// querier is a database pool or transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// enabledEndpoint is an endpoint deliveries can be claimed for.
type enabledEndpoint struct{ id, url string }

func enabledEndpoints(ctx context.Context, q querier) ([]enabledEndpoint, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, url FROM endpoints WHERE enabled = 1 AND deleted_at IS NULL ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var eps []enabledEndpoint
	for rows.Next() {
		var ep enabledEndpoint
		if err := rows.Scan(&ep.id, &ep.url); err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	return eps, rows.Err()
}

func (d *Dispatcher) dueDeliveries(ctx context.Context, endpointID string, lane int, now time.Time, limit int) ([]string, error) {
	return scanStrings(d.o.readQuery(ctx, sqlDue, endpointID, lane, now.UnixMilli(), limit))
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

// nextDue is the earliest next attempt of an endpoint's pending deliveries
// that are not waiting for an earlier event of their file, or zero. (The
// index yields them in due order, so the scan stops at the first one in
// order.)
func (d *Dispatcher) nextDue(ctx context.Context, endpointID string) (time.Time, error) {
	var next time.Time
	for _, lane := range []int{laneFresh, laneRetry} {
		ms, err := scanStrings(d.o.readQuery(ctx, sqlNextDue, endpointID, lane))
		if err != nil {
			return time.Time{}, err
		}
		if len(ms) == 0 {
			continue
		}
		v, err := strconv.ParseInt(ms[0], 10, 64)
		if err != nil {
			return time.Time{}, err
		}
		if t := time.UnixMilli(v).UTC(); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, nil
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

// recItem is what the recorder writes: an attempt's result, or (release)
// a claimed delivery put back to pending unsent, due at next.
type recItem struct {
	j       *job
	res     result
	release bool
	next    time.Time
}

// work makes one attempt of a claimed job and hands it to the recorder.
func (d *Dispatcher) work(ctx context.Context, j *job) {
	defer func() { d.done <- j.endpointID }()
	if d.o.endpointVersion.Load() != j.ep.version {
		// The endpoint changed since the claim: claim it again afresh.
		d.records <- recItem{j: j, release: true, next: d.now()}
		return
	}
	res := d.send(ctx, j)
	if ctx.Err() != nil && !res.ok() {
		// Shut down mid-request: not an attempt; sent again after restart.
		d.records <- recItem{j: j, release: true, next: d.now()}
		return
	}
	metricAttempts.WithLabelValues(j.endpointID, res.outcome).Inc()
	metricAttemptDuration.Observe(res.duration.Seconds())
	if res.ok() && j.attempts == 0 {
		// First delivery of the event to this endpoint: the end-to-end
		// latency a consumer sees (retries and replays would skew it).
		metricDeliveryLatency.Observe(res.at.Add(res.duration).Sub(j.committed).Seconds())
	}
	d.records <- recItem{j: j, res: res}
}

// recordLoop writes what the requests hand it until d.records is closed,
// in group commits: each transaction takes every item that arrived while
// the previous one committed (up to recordBatch). Items whose record
// failed (a full disk, an I/O error) are written again after a pause that
// backs off to recordRetryMax; their deliveries stay "delivering"
// meanwhile, so they are neither claimed twice nor forgotten, and a crash
// before the record leaves them for the next start's recovery.
func (d *Dispatcher) recordLoop() {
	var failed []recItem
	var wait time.Duration
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	armed := false
	for {
		var batch []recItem
		select {
		case it, ok := <-d.records:
			if !ok {
				if len(failed) > 0 {
					d.recordBatch(failed) // a last try; what fails is recovered on the next start
				}
				return
			}
			batch = []recItem{it}
		more:
			for len(batch) < recordBatch {
				select {
				case it, ok := <-d.records:
					if !ok {
						break more
					}
					batch = append(batch, it)
				default:
					break more
				}
			}
		case <-retry.C:
			armed = false
			batch, failed = failed, nil
		}
		failed = append(failed, d.recordBatch(batch)...)
		switch {
		case len(failed) == 0:
			wait = 0
		case !armed:
			wait = min(max(2*wait, recordRetryMin), recordRetryMax)
			retry.Reset(wait)
			armed = true
		}
		select {
		case d.recorded <- struct{}{}:
		default:
		}
	}
}

// The pause before writing again the records that failed: doubling from
// recordRetryMin up to recordRetryMax.
const (
	recordRetryMin = 500 * time.Millisecond
	recordRetryMax = 10 * time.Second
)

// recordBatch writes a batch in one transaction; if that fails, each item
// on its own, so one bad item costs no other its record. It returns the
// items it could not record.
func (d *Dispatcher) recordBatch(batch []recItem) (failed []recItem) {
	// Database writes finish even when the dispatcher is stopping.
	ctx := context.Background()
	outcomes := make([]recOutcome, len(batch))
	err := d.o.inTx(ctx, func(tx *sql.Tx) error {
		for i, it := range batch {
			var err error
			if outcomes[i], err = d.recordTx(ctx, tx, it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for i, it := range batch {
			err := d.o.inTx(ctx, func(tx *sql.Tx) error {
				var err error
				outcomes[i], err = d.recordTx(ctx, tx, it)
				return err
			})
			if err != nil {
				d.log.Error("webhooks: record attempt; trying again later", "delivery_id", it.j.id, "err", err)
				outcomes[i] = recOutcome{}
				failed = append(failed, it)
			}
		}
	} else if err != nil {
		d.log.Error("webhooks: record attempt; trying again later", "delivery_id", batch[0].j.id, "err", err)
		return batch
	}
	for i, it := range batch {
		if !it.release {
			d.logOutcome(it, outcomes[i])
		}
		if outcomes[i].disabled != "" {
			d.o.endpointChanged()
		}
	}
	return failed
}

// recOutcome is what recording an attempt did, for logs and metrics.
type recOutcome struct {
	status   string // the delivery's new status ("" if cancelled meanwhile)
	next     time.Time
	disabled string // why the endpoint was disabled, if it was
}

func (d *Dispatcher) logOutcome(it recItem, out recOutcome) {
	log := d.log.With("delivery_id", it.j.id, "endpoint_id", it.j.endpointID)
	r := it.res
	switch {
	case out.status == StatusFailed:
		metricDeliveriesFailed.Inc()
		log.Warn("webhooks: delivery failed after its last attempt", "event_id", it.j.eventID, "attempts", it.j.attempts+1,
			"status_code", r.code, "error", r.err)
	case out.status != "" && !r.ok():
		log.Info("webhooks: attempt failed", "event_id", it.j.eventID, "status_code", r.code, "error", r.err,
			"next_attempt_at", out.next)
	}
	if out.disabled != "" {
		log.Warn("webhooks: endpoint disabled", "reason", out.disabled)
	}
}

// send makes the HTTP request of one attempt.
func (d *Dispatcher) send(ctx context.Context, j *job) result {
	res := result{at: d.now(), outcome: "network_error"}
	secrets := j.ep.secrets
	if len(secrets) == 0 {
		res.err, res.outcome = "the endpoint has no signing secret", "refused"
		return res
	}
	sig, err := SignatureHeader(secrets, j.eventID, res.at.Unix(), j.payload)
	if err != nil {
		res.err, res.outcome = err.Error(), "refused"
		return res
	}
	rctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, j.ep.url, bytes.NewReader(j.payload))
	if err != nil {
		res.err, res.outcome = "invalid request: "+err.Error(), "refused"
		return res
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", d.cfg.UserAgent)
	h.Set("webhook-id", j.eventID)
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

// recordTx writes one item inside tx. For an attempt: the attempt row, the
// delivery's new state and the endpoint's health (410 disables it;
// failing continuously for DisableAfter disables it; a success clears the
// failure record). For a release: the delivery back to pending.
func (d *Dispatcher) recordTx(ctx context.Context, tx *sql.Tx, it recItem) (recOutcome, error) {
	now := d.now()
	j, r := it.j, it.res
	if it.release {
		_, err := d.o.txExec(ctx, tx, sqlRelease, it.next.UnixMilli(), now.UnixMilli(), j.id)
		return recOutcome{}, err
	}
	tries := j.tries + 1
	out := recOutcome{status: StatusSucceeded}
	if !r.ok() {
		if tries > len(d.cfg.Schedule) {
			out.status = StatusFailed
		} else {
			out.status, out.next = StatusPending, now.Add(d.nextWait(tries, r))
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
	if !out.next.IsZero() {
		nextMs = out.next.UnixMilli()
	}
	if _, err := d.o.txExec(ctx, tx, sqlInsertAttempt,
		j.id, r.at.UnixMilli(), r.duration.Milliseconds(), j.ep.url, code, r.body, r.err); err != nil {
		return out, err
	}
	res, err := d.o.txExec(ctx, tx, sqlRecordAttempt,
		out.status, tries, nextMs, r.at.UnixMilli(), code, lastErr, now.UnixMilli(), j.id)
	if err != nil {
		return out, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Cancelled meanwhile (endpoint deleted): record the attempt's
		// outcome, but it is never retried.
		_, err := tx.ExecContext(ctx, `UPDATE deliveries SET attempts = attempts + 1, last_attempt_at = ?,
			last_status_code = ?, last_error = ?, updated_at = ?,
			status = CASE WHEN ? THEN 'succeeded' ELSE status END WHERE id = ? AND status = 'cancelled'`,
			r.at.UnixMilli(), code, lastErr, now.UnixMilli(), r.ok(), j.id)
		return recOutcome{}, err
	}
	out.disabled, err = d.endpointHealth(ctx, tx, j.endpointID, r, now)
	return out, err
}

// endpointHealth updates an endpoint after an attempt and returns the
// reason when it disabled it.
func (d *Dispatcher) endpointHealth(ctx context.Context, tx *sql.Tx, endpointID string, r result, now time.Time) (string, error) {
	if r.ok() {
		_, err := d.o.txExec(ctx, tx, sqlEndpointHealthy, endpointID)
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
