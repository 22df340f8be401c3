package outbox

// Recording: attempts and their outcomes reach the database in group
// commits (one transaction for many), and an endpoint's health follows
// from them. The claim is in claim.go, sending in send.go.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"time"
)

// recItem is what the recorder writes: an attempt's result, or (release)
// a claimed delivery put back to pending unsent, due at next.
type recItem struct {
	j       *job
	res     result
	release bool
	next    time.Time
}

// recordLoop writes what the requests hand it until d.records is closed,
// in group commits: each transaction takes every item that arrived while
// the previous one committed (up to recordBatch).
func (d *Dispatcher) recordLoop() {
	for it := range d.records {
		batch := []recItem{it}
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
		d.recordBatch(batch)
		select {
		case d.recorded <- struct{}{}:
		default:
		}
	}
}

// recordBatch writes a batch in one transaction; if that fails, each item
// on its own, so one bad item costs no other its record.
func (d *Dispatcher) recordBatch(batch []recItem) {
	// Database writes finish even when the dispatcher is stopping.
	ctx := context.Background()
	outcomes := make([]recOutcome, len(batch))
	err := d.o.inTx(ctx, func(tx *sql.Tx) error {
		h := historyDelta{}
		for i, it := range batch {
			var err error
			if outcomes[i], err = d.recordTx(ctx, tx, it, h); err != nil {
				return err
			}
		}
		return d.o.writeHistory(ctx, tx, h)
	})
	if err != nil && len(batch) > 1 {
		for i, it := range batch {
			err := d.o.inTx(ctx, func(tx *sql.Tx) error {
				h := historyDelta{}
				var err error
				if outcomes[i], err = d.recordTx(ctx, tx, it, h); err != nil {
					return err
				}
				return d.o.writeHistory(ctx, tx, h)
			})
			if err != nil {
				d.log.Error("webhooks: record attempt", "delivery_id", it.j.id, "err", err)
				outcomes[i] = recOutcome{}
			}
		}
	} else if err != nil {
		d.log.Error("webhooks: record attempt", "delivery_id", batch[0].j.id, "err", err)
		return
	}
	for i, it := range batch {
		if !it.release {
			d.logOutcome(it, outcomes[i])
		}
		if outcomes[i].disabled != "" {
			d.o.endpointChanged()
		}
	}
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

// recordTx writes one item inside tx. For an attempt: the attempt row, the
// delivery's new state, the endpoint's health (410 disables it; failing
// continuously for DisableAfter disables it; a success clears the failure
// record) and, into h, what the attempt adds to the hourly history. For a
// release: the delivery back to pending.
func (d *Dispatcher) recordTx(ctx context.Context, tx *sql.Tx, it recItem, h historyDelta) (recOutcome, error) {
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
	ins, err := d.o.txExec(ctx, tx, sqlInsertAttempt,
		j.id, r.at.UnixMilli(), r.duration.Milliseconds(), j.ep.url, code, r.body, r.err, r.outcome)
	if err != nil {
		return out, err
	}
	attemptID, _ := ins.LastInsertId()
	hs := h.of(j.endpointID, r.at)
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
	out.disabled, err = d.endpointHealth(ctx, tx, j.endpointID, r, attemptID, now)
	return out, err
}

// endpointHealth updates an endpoint after an attempt (attemptID) and
// returns the reason when it disabled it.
func (d *Dispatcher) endpointHealth(ctx context.Context, tx *sql.Tx, endpointID string, r result, attemptID int64, now time.Time) (string, error) {
	if r.ok() {
		_, err := d.o.txExec(ctx, tx, sqlEndpointHealthy, endpointID)
		return "", err
	}
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
