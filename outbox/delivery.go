package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/internal/keyset"

	"github.com/google/uuid"
)

// Delivery statuses.
const (
	StatusPending    = "pending"    // waiting for its next attempt
	StatusDelivering = "delivering" // claimed by the sender: queued or being sent
	StatusSucceeded  = "succeeded"  // the endpoint answered 2xx
	StatusFailed     = "failed"     // every attempt of the schedule failed; replay by hand
	StatusCancelled  = "cancelled"  // the endpoint was deleted first
)

// Claim lanes: fresh fan-out is claimed in turn with retries and replays,
// so a backlog of either never starves the other.
const (
	laneFresh = 0
	laneRetry = 1
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID         string `json:"id"`
	EventID    string `json:"event_id"`
	EventType  string `json:"event_type"`
	EndpointID string `json:"endpoint_id"`
	// EndpointURL is the endpoint's current URL (its last one if deleted).
	EndpointURL string `json:"endpoint_url"`
	Status      string `json:"status"`
	// AttemptCount counts every attempt ever made.
	AttemptCount   int        `json:"attempt_count"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	LastAttemptAt  *time.Time `json:"last_attempt_at"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// Attempts are filled in by the calls that say so, oldest first.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	ID          int64     `json:"id"`
	AttemptedAt time.Time `json:"attempted_at"`
	DurationMS  int64     `json:"duration_ms"`
	URL         string    `json:"url"`
	// StatusCode is null when no HTTP response came (network error,
	// timeout, refused address).
	StatusCode *int `json:"status_code"`
	// ResponseBody is the start of the response body (capped).
	ResponseBody string `json:"response_body"`
	Error        string `json:"error"`
}

func insertDelivery(ctx context.Context, tx *sql.Tx, eventID, eventType, endpointID string, lane int, now time.Time) (string, error) {
	id := uuid.Must(uuid.NewV7()).String()
	_, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, event_id, event_type, endpoint_id, status, lane, next_attempt_at,
		created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
		id, eventID, eventType, endpointID, lane, now.UnixMilli(), now.UnixMilli(), now.UnixMilli())
	return id, err
}

const deliveryColumns = `d.id, d.event_id, ev.type, d.endpoint_id, ep.url, d.status, d.attempts, d.next_attempt_at,
	d.last_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at`

const deliveryFrom = ` FROM deliveries d JOIN events ev ON ev.id = d.event_id JOIN endpoints ep ON ep.id = d.endpoint_id`

func scanDelivery(s keyset.Scanner) (Delivery, error) {
	var d Delivery
	var next, last, code sql.NullInt64
	var lastErr sql.NullString
	var created, updated int64
	if err := s.Scan(&d.ID, &d.EventID, &d.EventType, &d.EndpointID, &d.EndpointURL, &d.Status, &d.AttemptCount,
		&next, &last, &code, &lastErr, &created, &updated); err != nil {
		return Delivery{}, err
	}
	d.NextAttemptAt, d.LastAttemptAt = msPtr(next), msPtr(last)
	if code.Valid {
		c := int(code.Int64)
		d.LastStatusCode = &c
	}
	if lastErr.Valid {
		d.LastError = &lastErr.String
	}
	d.CreatedAt = time.UnixMilli(created).UTC()
	d.UpdatedAt = time.UnixMilli(updated).UTC()
	return d, nil
}

// GetDelivery returns one delivery with its attempts.
func (o *Outbox) GetDelivery(ctx context.Context, id string) (Delivery, error) {
	d, err := scanDelivery(o.r.QueryRowContext(ctx, "SELECT "+deliveryColumns+deliveryFrom+" WHERE d.id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, ErrNotFound
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("outbox: get delivery: %w", err)
	}
	if err := o.fillAttempts(ctx, []*Delivery{&d}); err != nil {
		return Delivery{}, err
	}
	return d, nil
}

// sqlEventDeliveries selects the deliveries of one event.
// They come in the order of the unique index (event_id, endpoint_id), which
// needs no sort; EventDeliveries puts its few rows (one per endpoint) in
// creation order.
const sqlEventDeliveries = "SELECT " + deliveryColumns + deliveryFrom + " WHERE d.event_id = ? ORDER BY d.endpoint_id"

// sqlAttemptsOf selects the attempts of n deliveries, each delivery's
// oldest first (the order of the index (delivery_id, id): no sort).
func sqlAttemptsOf(n int) string {
	return `SELECT delivery_id, id, attempted_at, duration_ms, url, status_code, response_body, error
		FROM delivery_attempts WHERE delivery_id IN (?` + strings.Repeat(", ?", n-1) + `) ORDER BY delivery_id, id`
}

// EventDeliveries returns the deliveries of one event, with their
// attempts, in the order they were created.
func (o *Outbox) EventDeliveries(ctx context.Context, eventID string) ([]Delivery, error) {
	ds, err := o.queryDeliveries(ctx, sqlEventDeliveries, eventID)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ds, func(a, b Delivery) int { return strings.Compare(a.ID, b.ID) })
	ptrs := make([]*Delivery, len(ds))
	for i := range ds {
		ptrs[i] = &ds[i]
	}
	if err := o.fillAttempts(ctx, ptrs); err != nil {
		return nil, err
	}
	return ds, nil
}

// DeliveryFilter selects deliveries for ListDeliveries.
type DeliveryFilter struct {
	EndpointID string // empty: every endpoint's
	Status     string // empty: all
	EventType  string // empty: all
	Cursor     string // opaque; from a previous page's NextCursor
	Limit      int
}

// DeliveryPage is one page of deliveries, newest first, without attempts.
type DeliveryPage struct {
	Items      []Delivery `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// ListDeliveries returns deliveries, newest first.
func (o *Outbox) ListDeliveries(ctx context.Context, f DeliveryFilter) (DeliveryPage, error) {
	var after any
	if f.Cursor != "" {
		if _, err := uuid.Parse(f.Cursor); err != nil || len(f.Cursor) != 36 { // canonical form only
			return DeliveryPage{}, ErrBadCursor
		}
		after = f.Cursor
	}
	q := keyset.Select("SELECT "+deliveryColumns+deliveryFrom).
		Eq("d.endpoint_id", f.EndpointID).Eq("d.status", f.Status).Eq("d.event_type", f.EventType)
	items, next, err := keyset.Page(ctx, o.r, q, "d.id", after, f.Limit, scanDelivery,
		func(d Delivery) string { return d.ID })
	if err != nil {
		return DeliveryPage{}, fmt.Errorf("outbox: list deliveries: %w", err)
	}
	return DeliveryPage{Items: items, NextCursor: next}, nil
}

func (o *Outbox) queryDeliveries(ctx context.Context, q string, args ...any) ([]Delivery, error) {
	rows, err := o.r.QueryContext(ctx, q, args...)
	ds, err := keyset.All(rows, err, scanDelivery)
	if err != nil {
		return nil, fmt.Errorf("outbox: list deliveries: %w", err)
	}
	return ds, nil
}

func (o *Outbox) fillAttempts(ctx context.Context, ds []*Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	byID := map[string]*Delivery{}
	ids := make([]any, len(ds))
	for i, d := range ds {
		byID[d.ID] = d
		ids[i] = d.ID
		d.Attempts = []Attempt{}
	}
	rows, err := o.r.QueryContext(ctx, sqlAttemptsOf(len(ids)), ids...)
	if err != nil {
		return fmt.Errorf("outbox: attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var did string
		var a Attempt
		var at int64
		var code sql.NullInt64
		if err := rows.Scan(&did, &a.ID, &at, &a.DurationMS, &a.URL, &code, &a.ResponseBody, &a.Error); err != nil {
			return fmt.Errorf("outbox: attempts: %w", err)
		}
		a.AttemptedAt = time.UnixMilli(at).UTC()
		if code.Valid {
			c := int(code.Int64)
			a.StatusCode = &c
		}
		byID[did].Attempts = append(byID[did].Attempts, a)
	}
	return rows.Err()
}

// RetryDelivery queues a delivery for an attempt now: a pending one is
// moved up; a succeeded or failed one starts a new schedule. It is a
// *ConflictError while the sender has the delivery claimed (queued or
// being sent) or when the endpoint is deleted.
func (o *Outbox) RetryDelivery(ctx context.Context, id string) (Delivery, error) {
	err := o.inTx(ctx, func(tx *sql.Tx) error {
		var status string
		var deleted sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT d.status, ep.deleted_at FROM deliveries d
			JOIN endpoints ep ON ep.id = d.endpoint_id WHERE d.id = ?`, id).Scan(&status, &deleted)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		switch {
		case deleted.Valid:
			return conflictf("the delivery's endpoint was deleted")
		case status == StatusDelivering || o.InHand(id):
			return conflictf("the sender has this delivery in hand (queued or being sent); try again in a moment")
		}
		now := o.clock().UnixMilli()
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,
			lane = CASE WHEN status = 'pending' THEN lane ELSE 1 END,
			tries = CASE WHEN status = 'pending' THEN tries ELSE 0 END WHERE id = ?`, now, now, id)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.As(err, new(*ConflictError)) {
			return Delivery{}, err
		}
		return Delivery{}, fmt.Errorf("outbox: retry delivery: %w", err)
	}
	o.Committed()
	return o.GetDelivery(ctx, id)
}

// TestEventType is the type of the test event an administrator sends to
// one endpoint.
const TestEventType = "portal.test"

// ParseStatus checks a delivery status filter.
func ParseStatus(s string) (string, error) {
	switch s {
	case "", StatusPending, StatusDelivering, StatusSucceeded, StatusFailed, StatusCancelled:
		return s, nil
	}
	return "", invalidf("status must be one of pending, delivering, succeeded, failed, cancelled")
}
