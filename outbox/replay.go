package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Replay: deliveries sent again by hand, alone or in bulk.

// ReplayFilter selects what Replay queues again. With FailedOnly, the
// endpoint's failed deliveries (of events since Since, when set); without
// it, every event since Since that the endpoint received or should have
// received: existing deliveries that are done are queued again, and
// missing ones (events from while the endpoint was disabled or did not
// exist yet, or did not match its event types) are created.
type ReplayFilter struct {
	FailedOnly bool
	Since      time.Time
}

// replayBatch bounds the rows one replay transaction writes, so a large
// replay does not hold the writer for long.
const replayBatch = 500

// Replay queues an endpoint's deliveries again (see ReplayFilter) and
// returns how many it queued. They are sent as retries, in turn with fresh
// events, so a large replay does not delay new events. The deliveries of
// a disabled endpoint wait until it is enabled.
func (o *Outbox) Replay(ctx context.Context, endpointID string, f ReplayFilter) (int, error) {
	ep, err := o.GetEndpoint(ctx, endpointID)
	if err != nil {
		return 0, err
	}
	if !f.FailedOnly && f.Since.IsZero() {
		return 0, invalidf("replay needs a status (failed) or a since time")
	}
	since := int64(0)
	if !f.Since.IsZero() {
		since = f.Since.UnixMilli()
	}
	total, err := o.requeue(ctx, endpointID, f.FailedOnly, since)
	if err != nil || f.FailedOnly {
		return total, err
	}
	n, err := o.addMissing(ctx, ep, since)
	return total + n, err
}

// requeue puts the endpoint's finished deliveries of events since since
// (only the failed ones when failedOnly) back to pending, in batches, each
// visited once (by id).
func (o *Outbox) requeue(ctx context.Context, endpointID string, failedOnly bool, since int64) (int, error) {
	statuses := "('succeeded', 'failed')"
	if failedOnly {
		statuses = "('failed')"
	}
	total, after := 0, ""
	for {
		var n int
		err := o.inTx(ctx, func(tx *sql.Tx) error {
			ids, err := scanStrings(tx.QueryContext(ctx, `SELECT d.id FROM deliveries d JOIN events ev ON ev.id = d.event_id
				WHERE d.endpoint_id = ? AND d.status IN `+statuses+` AND ev.created_at >= ? AND d.id > ?
				ORDER BY d.id LIMIT ?`, endpointID, since, after, replayBatch))
			if err != nil || len(ids) == 0 {
				return err
			}
			after, n = ids[len(ids)-1], len(ids)
			now := o.clock().UnixMilli()
			_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', lane = 1, tries = 0,
				next_attempt_at = ?, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))`, now, now, jsonList(ids))
			return err
		})
		if err != nil {
			return total, fmt.Errorf("outbox: replay: %w", err)
		}
		total += n
		if n > 0 {
			o.Committed()
		}
		if n < replayBatch {
			return total, nil
		}
	}
}

// addMissing queues deliveries to ep of the matching events since since
// that have none for it (test events are only ever sent to their own
// endpoint), in batches.
func (o *Outbox) addMissing(ctx context.Context, ep Endpoint, since int64) (int, error) {
	// Events are written in time order: start at the first one since.
	var first sql.NullInt64
	if err := o.r.QueryRowContext(ctx, "SELECT MIN(seq) FROM events WHERE created_at >= ?", since).Scan(&first); err != nil {
		return 0, fmt.Errorf("outbox: replay: %w", err)
	}
	if !first.Valid {
		return 0, nil
	}
	total, afterSeq := 0, first.Int64-1
	for {
		ids, seen, last, err := o.missingBatch(ctx, ep, since, afterSeq)
		if err != nil {
			return total, err
		}
		afterSeq = last
		if len(ids) > 0 {
			if err := o.inTx(ctx, func(tx *sql.Tx) error { return o.insertDeliveries(ctx, tx, ids, ep.ID) }); err != nil {
				return total, fmt.Errorf("outbox: replay: %w", err)
			}
			total += len(ids)
			o.Committed()
		}
		if seen < replayBatch {
			return total, nil
		}
	}
}

// missingBatch reads up to replayBatch events after seq afterSeq without a
// delivery to ep and returns those ep subscribes to, how many it read and
// the last seq.
func (o *Outbox) missingBatch(ctx context.Context, ep Endpoint, since, afterSeq int64) ([]string, int, int64, error) {
	rows, err := o.r.QueryContext(ctx, `SELECT ev.seq, ev.id, ev.type FROM events ev
		WHERE ev.created_at >= ? AND ev.seq > ? AND ev.type <> ? AND NOT EXISTS
		(SELECT 1 FROM deliveries d WHERE d.event_id = ev.id AND d.endpoint_id = ?) ORDER BY ev.seq LIMIT ?`,
		since, afterSeq, TestEventType, ep.ID, replayBatch)
	if err != nil {
		return nil, 0, afterSeq, fmt.Errorf("outbox: replay: %w", err)
	}
	defer rows.Close()
	var ids []string
	seen := 0
	for rows.Next() {
		var id, typ string
		if err := rows.Scan(&afterSeq, &id, &typ); err != nil {
			return nil, 0, afterSeq, fmt.Errorf("outbox: replay: %w", err)
		}
		seen++
		if MatchEventType(ep.EventTypes, typ) {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, afterSeq, fmt.Errorf("outbox: replay: %w", err)
	}
	return ids, seen, afterSeq, nil
}

// insertDeliveries adds pending retry-lane deliveries of the events to an
// endpoint that still exists (an existing one is left as it is).
func (o *Outbox) insertDeliveries(ctx context.Context, tx *sql.Tx, eventIDs []string, endpointID string) error {
	now := o.clock().UnixMilli()
	for _, id := range eventIDs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, event_id, event_type, endpoint_id, status, lane,
			next_attempt_at, created_at, updated_at) SELECT ?, ev.id, ev.type, ?, 'pending', 1, ?, ?, ?
			FROM events ev WHERE ev.id = ? AND EXISTS (SELECT 1 FROM endpoints WHERE id = ? AND deleted_at IS NULL)
			ON CONFLICT (event_id, endpoint_id) DO NOTHING`,
			uuid.Must(uuid.NewV7()).String(), endpointID, now, now, now, id, endpointID); err != nil {
			return err
		}
	}
	return nil
}
