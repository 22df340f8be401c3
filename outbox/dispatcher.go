package outbox

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSchedule is the wait before each retry after a failed attempt:
// eight attempts over about 28 hours, then the delivery is failed.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Dispatcher defaults (the zero values of DispatcherConfig).
const (
	DefaultTimeout         = 15 * time.Second
	DefaultWorkers         = 64
	DefaultPerEndpoint     = 16
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
// Claiming does not write: the dispatcher reads due deliveries on the read
// pool and holds them in memory (a held delivery is not claimed again)
// until its attempt is recorded. So the dispatcher never waits for
// SQLite's single writer, which uploads' finalize transactions share, and
// requests keep starting while a commit is slow. The recorder writes
// finished attempts in group commits (one transaction, one fsync, for
// every attempt that finished while the previous commit ran); requests
// hand their results to it without waiting. A crash loses only what was
// held: those deliveries are still pending and are sent again.
type Dispatcher struct {
	o      *Outbox
	cfg    DispatcherConfig
	log    *slog.Logger
	client *http.Client
	tr     *http.Transport

	// Owned by Run's goroutine. A claimed job is queued per endpoint until
	// a request slot is free, then sent; inflight and total count the
	// claimed jobs not yet sent or being sent, per endpoint and overall.
	// held are the claimed deliveries not recorded yet, by id (their
	// endpoint and lane), nheld counts them per endpoint and lane.
	queues   map[string][]*job
	sending  map[string]int
	nsending int
	inflight map[string]int
	total    int
	rr       int
	held     map[string]laneKey
	nheld    map[laneKey]int
	// failing marks the endpoints whose last attempt failed: they get
	// fewer request slots and claims (see slots). backlog marks those the
	// last claim left due deliveries on; next is when the next one falls
	// due on the others.
	failing map[string]bool
	backlog map[string]bool
	next    time.Time
	// eps caches the enabled endpoints, read at epsVersion of the
	// outbox's endpoint version.
	eps        []enabledEndpoint
	epsVersion int64

	done     chan finished // each finished request
	records  recQueue      // finished attempts, to the recorder
	recorded chan struct{} // a record batch committed: see unheld

	// unheld are the deliveries whose attempts the recorder committed;
	// Run lets go of them.
	mu     sync.Mutex
	unheld []string

	running atomic.Bool
}

// laneKey is one endpoint's claim lane.
type laneKey struct {
	endpointID string
	lane       int
}

// Claiming runs ahead of sending by this factor: an endpoint may have
// claimAhead times its request slots claimed (queued or being sent), and
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
		held:     map[string]laneKey{},
		nheld:    map[laneKey]int{},
		failing:  map[string]bool{},
		backlog:  map[string]bool{},
		done:     make(chan finished, cfg.Workers),
		records:  newRecQueue(),
		recorded: make(chan struct{}, 1),
	}
}

// job is one claimed delivery with what its attempt needs, read when it
// was claimed.
type job struct {
	id, endpointID  string
	lane            int
	eventID         string
	payload         []byte
	tries, attempts int
	committed       time.Time // when the event was written
	ep              *endpointTarget
}

// finished is a request that ended: its job and, when it made an attempt,
// whether that failed. An ended request without an attempt lets go of its
// delivery at once (still pending, claimed again later).
type finished struct {
	j                 *job
	attempted, failed bool
}

// endpointTarget is an endpoint as a claim read it: where to send and the
// secrets that sign. version is the outbox's endpoint version at that
// time; a job whose endpoint changed since is let go unsent (and claimed
// again with the new URL, secrets or state).
type endpointTarget struct {
	url     string
	secrets []string
	version int64
}

// Run (called once per Dispatcher) delivers until ctx ends, then waits for
// the requests in flight (cancelled with ctx; their deliveries are sent
// again on the next start) and for the recorder, and returns. Deliveries
// that an older release left "delivering" are pending again first:
// delivery is at least once.
// Its length is the start-up and shutdown order (recover, start the
// recorder and senders, loop, then wait in reverse) kept in one place.
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
	for full := true; ; {
		wait, err := d.dispatch(ctx, full)
		if err != nil && ctx.Err() == nil {
			d.log.Error("webhooks: claim deliveries", "err", err)
			wait = d.cfg.PollInterval
		}
		timer.Reset(max(wait, 5*time.Millisecond))
		// Only new events, recorded attempts (retry times, deliveries let
		// go) and the clock bring new due deliveries: a finished request
		// only makes room on endpoints that had more than they could take.
		full = true
		select {
		case <-ctx.Done():
			d.stop()
			d.records.close()
			<-recorderDone
			d.o.delivering.Store(0)
			return
		case <-d.o.Wake():
		case <-d.recorded:
		case f := <-d.done:
			d.finish(f)
			full = false
		case <-timer.C:
		}
		for drained := false; !drained; {
			select {
			case f := <-d.done:
				d.finish(f)
			default:
				drained = true
			}
		}
		d.letGo()
	}
}

// stop waits for the requests in flight and drops the queued jobs (their
// deliveries are still pending; the recorder may still be writing the
// attempts of others).
func (d *Dispatcher) stop() {
	for d.nsending > 0 {
		d.finish(<-d.done)
	}
	clear(d.queues)
	for id := range d.held {
		d.o.inHand.Delete(id)
	}
}

// finish accounts for a request that ended (its attempt, if it made one,
// is with the recorder).
func (d *Dispatcher) finish(f finished) {
	ep := f.j.endpointID
	if f.attempted {
		d.failing[ep] = f.failed
	} else {
		d.release(f.j.id)
	}
	d.nsending--
	d.total--
	if d.sending[ep]--; d.sending[ep] <= 0 {
		delete(d.sending, ep)
	}
	if d.inflight[ep]--; d.inflight[ep] <= 0 {
		delete(d.inflight, ep)
	}
}

// hold marks a claimed delivery as in hand until its attempt is recorded.
func (d *Dispatcher) hold(j *job) {
	k := laneKey{j.endpointID, j.lane}
	d.held[j.id] = k
	d.nheld[k]++
	d.o.inHand.Store(j.id, struct{}{})
	d.o.delivering.Store(int64(len(d.held)))
}

// release lets go of a delivery (recorded, or put back unsent).
func (d *Dispatcher) release(id string) {
	k, ok := d.held[id]
	if !ok {
		return
	}
	delete(d.held, id)
	if d.nheld[k]--; d.nheld[k] <= 0 {
		delete(d.nheld, k)
	}
	d.o.inHand.Delete(id)
	d.o.delivering.Store(int64(len(d.held)))
}

// letGo releases the deliveries whose attempts the recorder committed.
func (d *Dispatcher) letGo() {
	d.mu.Lock()
	ids := d.unheld
	d.unheld = nil
	d.mu.Unlock()
	for _, id := range ids {
		d.release(id)
	}
}

// recover makes pending again the deliveries an older release left
// "delivering" (this one never writes that status).
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

// dispatch claims what is due (on every endpoint, or with full false only
// on those the last claim left due deliveries on), queues it and starts
// requests as far as the limits allow; it returns how long to sleep before
// something else falls due.
func (d *Dispatcher) dispatch(ctx context.Context, full bool) (time.Duration, error) {
	if ctx.Err() != nil {
		return d.cfg.PollInterval, nil
	}
	jobs, next, err := d.claim(ctx, full)
	for _, j := range jobs {
		d.total++
		d.inflight[j.endpointID]++
		d.hold(j)
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
			if len(q) == 0 || d.sending[ep] >= d.slots(ep) {
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

// work makes one attempt of a claimed job and hands it to the recorder.
func (d *Dispatcher) work(ctx context.Context, j *job) {
	f := finished{j: j}
	defer func() { d.done <- f }()
	if d.o.endpointVersion.Load() != j.ep.version {
		return // the endpoint changed since the claim: claimed again afresh
	}
	res := d.send(ctx, j)
	if ctx.Err() != nil && !res.ok() {
		return // shut down mid-request: not an attempt; sent again after restart
	}
	f.attempted, f.failed = true, !res.ok()
	metricAttempts.WithLabelValues(j.endpointID, res.outcome).Inc()
	metricAttemptDuration.Observe(res.duration.Seconds())
	if res.ok() && j.attempts == 0 {
		// First delivery of the event to this endpoint: the end-to-end
		// latency a consumer sees (retries and replays would skew it).
		metricDeliveryLatency.Observe(res.at.Add(res.duration).Sub(j.committed).Seconds())
	}
	d.records.put(recItem{j: j, res: res})
}
