package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// EndpointStats are one endpoint's recent figures, for the web UI.
type EndpointStats struct {
	// Succeeded and Failed count the attempts since the start of the
	// window's first hour.
	Succeeded, Failed int
	// Pending counts the deliveries not finished yet.
	Pending int
	// LastFailure is the endpoint's latest failed attempt, if any.
	LastFailure *Attempt
}

// EndpointStats returns the figures of endpoint id since the start of
// since's hour. They come from the hourly history and the endpoint's
// record of its last failure, so they cost the same however many attempts
// the endpoint made.
func (o *Outbox) EndpointStats(ctx context.Context, id string, since time.Time) (EndpointStats, error) {
	var s EndpointStats
	err := o.r.QueryRowContext(ctx, sqlStatsAttempts, id, hourOf(since)).Scan(&s.Succeeded, &s.Failed)
	if err != nil {
		return s, fmt.Errorf("outbox: endpoint figures: %w", err)
	}
	err = o.r.QueryRowContext(ctx, sqlStatsOpen, id).Scan(&s.Pending)
	if err != nil {
		return s, fmt.Errorf("outbox: endpoint figures: %w", err)
	}
	var at Attempt
	var when int64
	err = o.r.QueryRowContext(ctx, sqlStatsLastFailure, id).Scan(
		&when, &at.DurationMS, &at.URL, &at.StatusCode, &at.ResponseBody, &at.Error)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return s, fmt.Errorf("outbox: endpoint figures: %w", err)
	default:
		at.AttemptedAt = time.UnixMilli(when).UTC()
		s.LastFailure = &at
	}
	return s, nil
}

// The queries of EndpointStats and Totals (their plans are tested).
const (
	sqlStatsAttempts = `SELECT COALESCE(SUM(success), 0), COALESCE(SUM(http_error + network_error + timeout + refused), 0)
		FROM delivery_hourly WHERE endpoint_id = ? AND hour >= ?`
	sqlStatsOpen = `SELECT (SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ?1 AND status = 'pending')
		+ (SELECT COUNT(*) FROM deliveries WHERE endpoint_id = ?1 AND status = 'delivering')`
	sqlStatsLastFailure = `SELECT t.attempted_at, t.duration_ms, t.url, t.status_code, t.response_body, t.error
		FROM endpoints ep JOIN delivery_attempts t ON t.id = ep.last_failure_id WHERE ep.id = ?`
	sqlTotals = `SELECT (SELECT n FROM outbox_counters WHERE name = 'events'),
		(SELECT n FROM outbox_counters WHERE name = 'deliveries_open'),
		(SELECT n FROM outbox_counters WHERE name = 'deliveries_failed')`
)

// Totals are the outbox's figures for the dashboard.
type Totals struct {
	Events int64
	// Backlog counts deliveries not finished yet; Failed those that gave up.
	Backlog, Failed int64
}

// Totals returns the counts of events and of unfinished and failed
// deliveries, which triggers keep in the transaction of every change.
func (o *Outbox) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := o.r.QueryRowContext(ctx, sqlTotals).Scan(&t.Events, &t.Backlog, &t.Failed)
	if err != nil {
		return t, fmt.Errorf("outbox: totals: %w", err)
	}
	return t, nil
}

// PruneEvents removes the hourly delivery history of the hours before
// before's and, in batches of batch, the events created before before
// whose file is gone (or that have no file: test events) and that
// have no delivery left to make; their deliveries and attempts go with
// them. gone reports which of some file ids are gone (deleted) — the
// outbox knows events, not files. Events of files that are not gone stay
// whatever their age. It returns how many events it removed.
func (o *Outbox) PruneEvents(ctx context.Context, before time.Time, batch int,
	gone func(ctx context.Context, fileIDs []string) (map[string]bool, error)) (int, error) {
	// The hourly history goes with the events it counted.
	if _, err := o.w.ExecContext(ctx, "DELETE FROM delivery_hourly WHERE hour < ?", hourOf(before)); err != nil {
		return 0, fmt.Errorf("outbox: prune history: %w", err)
	}
	pruned := 0
	var after pruneCandidate // the last candidate looked at
	after.createdAt = -1
	for {
		cands, err := o.pruneCandidates(ctx, before, after, batch)
		if err != nil || len(cands) == 0 {
			return pruned, err
		}
		after = cands[len(cands)-1]
		var fileIDs []string
		for _, c := range cands {
			if c.fileID != "" {
				fileIDs = append(fileIDs, c.fileID)
			}
		}
		isGone, err := gone(ctx, fileIDs)
		if err != nil {
			return pruned, fmt.Errorf("outbox: prune: %w", err)
		}
		var ids []string
		for _, c := range cands {
			if c.fileID == "" || isGone[c.fileID] {
				ids = append(ids, c.id)
			}
		}
		n, err := o.deleteEvents(ctx, ids)
		pruned += n
		if err != nil || len(cands) < batch || ctx.Err() != nil {
			return pruned, errors.Join(err, ctx.Err())
		}
	}
}

type pruneCandidate struct {
	seq, createdAt int64
	id, fileID     string
}

// pruneCandidates lists up to batch events older than before, after the
// candidate after (in the order of events_created: creation time, seq),
// with no delivery pending or in flight. It reads only the events older
// than before, which the pruning keeps few.
func (o *Outbox) pruneCandidates(ctx context.Context, before time.Time, after pruneCandidate, batch int) ([]pruneCandidate, error) {
	rows, err := o.r.QueryContext(ctx, `SELECT e.seq, e.created_at, e.id, COALESCE(e.file_id, '') FROM events e
		WHERE e.created_at < ? AND (e.created_at, e.seq) > (?, ?)
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status IN (?, ?))
		ORDER BY e.created_at, e.seq LIMIT ?`, before.UnixMilli(), after.createdAt, after.seq,
		StatusPending, StatusDelivering, batch)
	if err != nil {
		return nil, fmt.Errorf("outbox: prune: %w", err)
	}
	defer rows.Close()
	var out []pruneCandidate
	for rows.Next() {
		var c pruneCandidate
		if err := rows.Scan(&c.seq, &c.createdAt, &c.id, &c.fileID); err != nil {
			return nil, fmt.Errorf("outbox: prune: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// deleteEvents removes events by id (their deliveries and attempts
// cascade), unless a delivery was queued for one meanwhile.
func (o *Outbox) deleteEvents(ctx context.Context, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	res, err := o.w.ExecContext(ctx, `DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))
		AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status IN (?, ?))`,
		jsonList(ids), StatusPending, StatusDelivering)
	if err != nil {
		return 0, fmt.Errorf("outbox: prune: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
