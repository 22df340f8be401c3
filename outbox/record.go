package outbox

// Recording: attempts and their outcomes reach the database in group
// commits (one transaction for many), and an endpoint's health follows
// from them. The claim is in claim.go, sending in send.go.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// recItem is what the recorder writes: an attempt's result.
type recItem struct {
	j   *job
	res result
}

// recQueue hands finished attempts to the recorder. It never blocks the
// request that puts one: while a commit waits for the writer (slow
// fsyncs while uploads flush, finalize transactions ahead of it), requests
// go on and their results wait here.
type recQueue struct {
	mu     sync.Mutex
	items  []recItem
	closed bool
	ready  chan struct{} // signalled when items arrive or the queue closes
}

func newRecQueue() recQueue { return recQueue{ready: make(chan struct{}, 1)} }

func (q *recQueue) put(it recItem) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	q.signal()
}

func (q *recQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *recQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// poll returns up to n items without waiting; open is false once the
// queue is closed and empty.
func (q *recQueue) poll(n int) (batch []recItem, open bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		k := min(n, len(q.items))
		batch = q.items[:k:k]
		q.items = q.items[k:]
		if len(q.items) == 0 {
			q.items = nil
		}
		return batch, true
	}
	return nil, !q.closed
}

// recordLoop writes what the requests hand it until the queue is closed,
// in group commits: each transaction takes every attempt that arrived
// while the previous one committed (up to recordBatch). After each commit
// the dispatcher lets go of the recorded deliveries. Attempts whose record
// failed (a full disk, an I/O error) are written again after a pause that
// backs off to recordRetryMax; their deliveries stay held meanwhile, so
// they are neither claimed and sent again nor forgotten, and a crash
// before the record leaves them pending for the next start.
func (d *Dispatcher) recordLoop() {
	var failed []recItem
	var wait time.Duration
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	armed := false
	for {
		batch, open := d.records.poll(recordBatch)
		if len(batch) == 0 {
			if !open {
				if len(failed) > 0 {
					d.recordBatch(failed) // a last try; what fails is sent again after the next start
				}
				return
			}
			select {
			case <-d.records.ready:
				continue
			case <-retry.C:
				armed = false
				batch, failed = failed, nil
			}
		}
		bad := d.recordBatch(batch)
		d.unhold(batch, bad)
		failed = append(failed, bad...)
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

// unhold lets go of the deliveries of batch whose attempts were recorded
// (all but those in bad).
func (d *Dispatcher) unhold(batch, bad []recItem) {
	skip := make(map[*job]bool, len(bad))
	for _, it := range bad {
		skip[it.j] = true
	}
	ids := make([]string, 0, len(batch))
	for _, it := range batch {
		if !skip[it.j] {
			ids = append(ids, it.j.id)
		}
	}
	d.mu.Lock()
	d.unheld = append(d.unheld, ids...)
	d.mu.Unlock()
}

// recordBatch writes a batch in one transaction; if that fails, each item
// on its own, so one bad item costs no other its record.
func (d *Dispatcher) recordBatch(batch []recItem) (failed []recItem) {
	// Database writes finish even when the dispatcher is stopping.
	ctx := context.Background()
	outcomes := make([]recOutcome, len(batch))
	err := d.o.inTx(ctx, func(tx *sql.Tx) error {
		b := newRecTx(tx)
		for i, it := range batch {
			var err error
			if outcomes[i], err = d.recordTx(ctx, b, it); err != nil {
				return err
			}
		}
		return d.finishTx(ctx, b)
	})
	if err != nil && len(batch) > 1 {
		for i, it := range batch {
			err := d.o.inTx(ctx, func(tx *sql.Tx) error {
				b := newRecTx(tx)
				var err error
				if outcomes[i], err = d.recordTx(ctx, b, it); err != nil {
					return err
				}
				return d.finishTx(ctx, b)
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
		if outcomes[i] == (recOutcome{}) {
			continue // not recorded: written again later
		}
		d.logOutcome(it, outcomes[i])
		if outcomes[i].disabled != "" {
			d.o.endpointChanged()
		}
	}
	return failed
}

// recTx is one record transaction with what it writes once, at its end:
// the batch's additions to the hourly history, and the endpoints whose
// failure record a success clears.
type recTx struct {
	tx      *sql.Tx
	history historyDelta
	healthy map[string]bool
}

func newRecTx(tx *sql.Tx) *recTx {
	return &recTx{tx: tx, history: historyDelta{}, healthy: map[string]bool{}}
}

// finishTx writes what the batch collected.
func (d *Dispatcher) finishTx(ctx context.Context, b *recTx) error {
	for ep := range b.healthy {
		if err := d.clearFailing(ctx, b, ep); err != nil {
			return err
		}
	}
	return d.o.writeHistory(ctx, b.tx, b.history)
}

// clearFailing clears an endpoint's failure record (after a success).
func (d *Dispatcher) clearFailing(ctx context.Context, b *recTx, endpointID string) error {
	delete(b.healthy, endpointID)
	_, err := d.o.txExec(ctx, b.tx, sqlEndpointHealthy, endpointID)
	return err
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

// recordTx writes one attempt inside b's transaction: the attempt row,
// the delivery's new state, the endpoint's health (410 disables it;
// failing continuously for DisableAfter disables it; a success clears the
// failure record, at the end of the batch) and, into b, what the attempt
// adds to the hourly history.
func (d *Dispatcher) recordTx(ctx context.Context, b *recTx, it recItem) (recOutcome, error) {
	tx := b.tx
	now := d.now()
	j, r := it.j, it.res
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
	ins, err := d.o.txExec(ctx, tx, sqlInsertAttempt,
		j.id, r.at.UnixMilli(), r.duration.Milliseconds(), j.ep.url, code, r.body, r.err, r.outcome)
	if err != nil {
		return out, err
	}
	attemptID, _ := ins.LastInsertId()
	hs := b.history.of(j.endpointID, r.at)
	hs.Attempts.count(r.outcome)
	if r.ok() && j.attempts == j.tries {
		// Its first schedule (never replayed or retried by hand): the
		// latency from the event's commit is the one a consumer sees.
		// In whole milliseconds, as the attempt row keeps it.
		hs.Latency.observe(time.Duration(r.at.UnixMilli()+r.duration.Milliseconds()-j.committed.UnixMilli()) * time.Millisecond)
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
		if r.ok() {
			hs.Succeeded++
		}
		return recOutcome{}, err
	}
	switch out.status {
	case StatusSucceeded:
		hs.Succeeded++
	case StatusFailed:
		hs.Failed++
	}
	out.disabled, err = d.endpointHealth(ctx, b, j.endpointID, r, attemptID, now)
	return out, err
}

// endpointHealth updates an endpoint after an attempt (attemptID) and
// returns the reason when it disabled it.
func (d *Dispatcher) endpointHealth(ctx context.Context, b *recTx, endpointID string, r result, attemptID int64, now time.Time) (string, error) {
	if r.ok() {
		b.healthy[endpointID] = true
		return "", nil
	}
	if b.healthy[endpointID] {
		// A success earlier in the batch: this failure starts a new record.
		if err := d.clearFailing(ctx, b, endpointID); err != nil {
			return "", err
		}
	}
	tx := b.tx
	if _, err := d.o.txExec(ctx, tx, sqlEndpointFailing, r.at.UnixMilli(), attemptID, endpointID); err != nil {
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
