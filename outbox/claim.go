package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// The claim: which due deliveries the dispatcher takes next, and the
// queries that find them. Sending is in send.go, recording in record.go.

// claim takes due deliveries that it does not hold yet, within the claim
// limits, and returns them as jobs with the earliest time another becomes
// due on an endpoint that has room (zero if none). Endpoints are visited
// round-robin, and on each, fresh deliveries and retries are taken in
// turn. It only reads, on the read pool: the caller holds the jobs in
// memory until their attempts are recorded.
//
// With full false, it visits only the endpoints the last claim left due
// deliveries on, and the earliest due time is the one the last full claim
// found.
func (d *Dispatcher) claim(ctx context.Context, full bool) ([]*job, time.Time, error) {
	free := claimAhead*d.cfg.Workers - d.total
	if free <= 0 {
		return nil, d.next, nil // a finishing request wakes the loop
	}
	eps, version, err := d.endpoints(ctx)
	if err != nil || len(eps) == 0 {
		return nil, time.Time{}, err
	}
	if !full {
		eps = slices.DeleteFunc(slices.Clone(eps), func(ep enabledEndpoint) bool { return !d.backlog[ep.id] })
		if len(eps) == 0 {
			return nil, d.next, nil
		}
	}
	now := d.now()
	candidates, roomy, err := d.candidates(ctx, eps, free, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	jobs, err := d.loadJobs(ctx, candidates, eps, version, now)
	if err != nil || !full {
		return jobs, d.next, err
	}
	d.next, err = d.nextDueOf(ctx, roomy)
	return jobs, d.next, err
}

// slots is how many requests an endpoint may have in flight: the
// per-endpoint limit, or a quarter of it while its attempts fail (more
// would not deliver more, only take request slots and claims from the
// endpoints that answer).
func (d *Dispatcher) slots(endpointID string) int {
	if d.failing[endpointID] {
		return max(1, d.cfg.PerEndpoint/4)
	}
	return d.cfg.PerEndpoint
}

// endpoints returns the enabled endpoints, read again only when they
// changed, with the version of the list.
func (d *Dispatcher) endpoints(ctx context.Context) ([]enabledEndpoint, int64, error) {
	version := d.o.endpointVersion.Load()
	if d.eps == nil || d.epsVersion != version {
		eps, err := enabledEndpoints(ctx, d.o.r)
		if err != nil {
			return nil, 0, err
		}
		d.eps, d.epsVersion = eps, version
		if d.eps == nil {
			d.eps = []enabledEndpoint{}
		}
		for _, ep := range d.eps {
			if _, known := d.failing[ep.id]; !known {
				d.failing[ep.id] = ep.failing
			}
		}
	}
	return d.eps, version, nil
}

// candidate is a due delivery found by a claim.
type candidate struct {
	id   string
	lane int
}

// candidates picks up to free due deliveries not held yet, round-robin
// over the endpoints, fresh ones and retries in turn on each, within each
// endpoint's claim limit; roomy are the endpoints with room left.
func (d *Dispatcher) candidates(ctx context.Context, eps []enabledEndpoint, free int, now time.Time) ([]candidate, map[string]bool, error) {
	d.rr = (d.rr + 1) % len(eps)
	var out []candidate
	roomy := map[string]bool{}
	for i := range eps {
		ep := eps[(d.rr+i)%len(eps)].id
		limit := claimAhead * d.slots(ep)
		if d.inflight[ep] > limit/2 {
			// Enough claimed to keep its requests busy: claim again when
			// it falls below half, in one larger batch.
			continue
		}
		// Held deliveries still pending (sent, not recorded yet) are
		// skipped by reading past them: bound them, so a slow commit
		// does not make every claim read further (a commit wakes the
		// loop).
		held := d.nheld[laneKey{ep, laneFresh}] + d.nheld[laneKey{ep, laneRetry}]
		room := min(limit-d.inflight[ep], 2*limit-held, free-len(out))
		if room <= 0 {
			continue
		}
		fresh, err := d.dueDeliveries(ctx, ep, laneFresh, now, room)
		if err != nil {
			return nil, nil, err
		}
		retry, err := d.dueDeliveries(ctx, ep, laneRetry, now, room)
		if err != nil {
			return nil, nil, err
		}
		for k := 0; room > 0 && (k < len(fresh) || k < len(retry)); k++ {
			if k < len(fresh) {
				out, room = append(out, candidate{fresh[k], laneFresh}), room-1
			}
			if k < len(retry) && room > 0 {
				out, room = append(out, candidate{retry[k], laneRetry}), room-1
			}
		}
		if room > 0 {
			roomy[ep] = true
		}
		// Room left: nothing more was due; none left: more may be.
		d.backlog[ep] = room == 0
	}
	return out, roomy, nil
}

// dueDeliveries returns up to limit due deliveries of one endpoint and
// lane, oldest due first, that the dispatcher does not hold. Those it
// holds are still pending and due: it asks for as many more.
func (d *Dispatcher) dueDeliveries(ctx context.Context, endpointID string, lane int, now time.Time, limit int) ([]string, error) {
	ids, err := scanStrings(d.o.readQuery(ctx, sqlDue, endpointID, lane, now.UnixMilli(), limit+d.nheld[laneKey{endpointID, lane}]))
	if err != nil {
		return nil, err
	}
	out := ids[:0]
	for _, id := range ids {
		if _, held := d.held[id]; !held && len(out) < limit {
			out = append(out, id)
		}
	}
	return out, nil
}

// nextDueOf is when the next delivery falls due on one of the endpoints
// (zero if none is waiting).
func (d *Dispatcher) nextDueOf(ctx context.Context, endpoints map[string]bool) (time.Time, error) {
	var next time.Time
	for ep := range endpoints {
		t, err := d.nextDue(ctx, ep)
		if err != nil {
			return time.Time{}, err
		}
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next, nil
}

// jsonList encodes ids as a JSON array, for json_each: one statement
// takes any number of them.
func jsonList(ids []string) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// loadJobs reads what the attempts of the claimed deliveries need, in the
// order of cands: the event and the delivery's counters, the endpoint's
// URL (from eps) and its signing secrets. A delivery that is no longer
// pending (recorded, cancelled meanwhile) is left out.
func (d *Dispatcher) loadJobs(ctx context.Context, cands []candidate, eps []enabledEndpoint, version int64, now time.Time) ([]*job, error) {
	if len(cands) == 0 {
		return nil, nil
	}
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.id
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
	jobs := make([]*job, 0, len(cands))
	for _, c := range cands {
		j := byID[c.id]
		if j == nil {
			continue
		}
		j.lane = c.lane
		t := targets[j.endpointID]
		if t == nil {
			return nil, fmt.Errorf("claimed delivery %s of an endpoint not read", c.id)
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
	sqlInsertAttempt = `INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url,
		status_code, response_body, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	// A held delivery is pending (delivering only if an older release
	// claimed it). A failed attempt's retry goes to the retry lane, so a
	// backlog of retries never delays first attempts.
	sqlRecordAttempt = `UPDATE deliveries SET status = ?1, attempts = attempts + 1, tries = ?2,
		next_attempt_at = ?3, last_attempt_at = ?4, last_status_code = ?5, last_error = ?6, updated_at = ?7,
		lane = CASE WHEN ?1 = 'pending' THEN 1 ELSE lane END
		WHERE id = ?8 AND status IN ('pending', 'delivering')`
	sqlEndpointHealthy = "UPDATE endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL"
	sqlEndpointFailing = `UPDATE endpoints SET failing_since = COALESCE(failing_since, ?), last_failure_id = ?
		WHERE id = ?`

	sqlDue = `SELECT id FROM deliveries WHERE endpoint_id = ? AND lane = ? AND status = 'pending'
		AND next_attempt_at <= ?` + inOrder + ` ORDER BY next_attempt_at LIMIT ?`
	sqlNextDue = `SELECT id, next_attempt_at FROM deliveries
		WHERE endpoint_id = ? AND lane = ? AND status = 'pending'` + inOrder + ` ORDER BY next_attempt_at LIMIT ?`
	sqlLoadJobs = `SELECT d.id, d.endpoint_id, d.event_id, ev.payload, d.tries, d.attempts, ev.created_at
		FROM deliveries d JOIN events ev ON ev.id = d.event_id
		WHERE d.id IN (SELECT value FROM json_each(?)) AND d.status = 'pending'`
)

// prepare prepares the writer's statements, while no transaction holds
// the writer (the read pool prepares its own on first use).
func (d *Dispatcher) prepare(ctx context.Context) error {
	for _, q := range []string{sqlInsertAttempt, sqlRecordAttempt, sqlEndpointHealthy, sqlEndpointFailing, sqlHistoryUpsert} {
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

// enabledEndpoint is an endpoint deliveries can be claimed for; failing
// says its last attempt failed.
type enabledEndpoint struct {
	id, url string
	failing bool
}

func enabledEndpoints(ctx context.Context, q querier) ([]enabledEndpoint, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, url, failing_since IS NOT NULL FROM endpoints
		WHERE enabled = 1 AND deleted_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var eps []enabledEndpoint
	for rows.Next() {
		var ep enabledEndpoint
		if err := rows.Scan(&ep.id, &ep.url, &ep.failing); err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	return eps, rows.Err()
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
		// The deliveries it holds are pending too: skip them, or the
		// loop would wake at once for what it is already sending.
		rows, err := d.o.readQuery(ctx, sqlNextDue, endpointID, lane, 1+d.nheld[laneKey{endpointID, lane}])
		if err != nil {
			return time.Time{}, err
		}
		t, err := d.firstNotHeld(rows)
		if err != nil {
			return time.Time{}, err
		}
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next, nil
}

// firstNotHeld reads rows of (id, next_attempt_at) and returns the time
// of the first delivery the dispatcher does not hold (zero if none).
func (d *Dispatcher) firstNotHeld(rows *sql.Rows) (time.Time, error) {
	defer rows.Close()
	for rows.Next() {
		var id string
		var ms int64
		if err := rows.Scan(&id, &ms); err != nil {
			return time.Time{}, err
		}
		if _, held := d.held[id]; !held {
			return time.UnixMilli(ms).UTC(), nil
		}
	}
	return time.Time{}, rows.Err()
}
