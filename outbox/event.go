// Package outbox is the portal's transactional outbox: events written in the
// same transaction as the change they describe, fanned out to webhook
// endpoints, and delivered, signed and retried, by a dispatcher.
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doorito/portal/internal/keyset"
)

// ErrNotFound is returned when an event (or other record) does not exist.
var ErrNotFound = errors.New("not found")

// Event is one outbox event. Payload holds the exact bytes delivered.
type Event struct {
	Seq       int64           `json:"-"`
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	FileID    string          `json:"file_id,omitempty"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
}

// Outbox appends and reads events, and keeps the webhook endpoints and the
// deliveries of events to them.
type Outbox struct {
	w, r *sql.DB
	wake chan struct{}
	now  func() time.Time
	// endpointVersion counts changes to endpoints (URL, state, secrets),
	// so the dispatcher can tell a claim read an endpoint that has changed
	// since.
	endpointVersion atomic.Int64
	// inHand has the ids of the deliveries a dispatcher holds (claimed,
	// not recorded yet: queued or being sent), delivering counts them.
	inHand     sync.Map
	delivering atomic.Int64
	stmts      stmtCache
}

// InHand reports whether the dispatcher has a delivery in hand: claimed,
// queued or being sent, its attempt not recorded yet.
func (o *Outbox) InHand(deliveryID string) bool {
	_, ok := o.inHand.Load(deliveryID)
	return ok
}

// Option configures an Outbox.
type Option func(*Outbox)

// WithClock makes the outbox read the current time from now (tests inject a
// clock); the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *Outbox) {
		if now != nil {
			o.now = now
		}
	}
}

// New returns an Outbox over the writer and reader pools of the database.
func New(w, r *sql.DB, opts ...Option) *Outbox {
	o := &Outbox{w: w, r: r, wake: make(chan struct{}, 1), now: time.Now}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// clock is the current time, UTC, at the database's millisecond precision.
func (o *Outbox) clock() time.Time { return o.now().UTC().Truncate(time.Millisecond) }

// Append writes ev inside tx, the caller's transaction, so the event
// commits or rolls back with the change it describes, and fans it out: one
// pending delivery per enabled endpoint whose event_types match ev.Type,
// in the same transaction. Call Committed after the transaction commits.
func (o *Outbox) Append(ctx context.Context, tx *sql.Tx, ev Event) error {
	if err := insertEvent(ctx, tx, ev); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, "SELECT id, event_types FROM endpoints WHERE enabled = 1 AND deleted_at IS NULL")
	if err != nil {
		return fmt.Errorf("outbox: fan out %s: %w", ev.Type, err)
	}
	var targets []string
	for rows.Next() {
		var id, types string
		if err := rows.Scan(&id, &types); err != nil {
			rows.Close()
			return fmt.Errorf("outbox: fan out %s: %w", ev.Type, err)
		}
		if MatchEventType(decodeTypes(types), ev.Type) {
			targets = append(targets, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("outbox: fan out %s: %w", ev.Type, err)
	}
	now := o.clock()
	for _, ep := range targets {
		if _, err := insertDelivery(ctx, tx, ev.ID, ev.Type, ep, laneFresh, now); err != nil {
			return fmt.Errorf("outbox: fan out %s: %w", ev.Type, err)
		}
	}
	return nil
}

// AppendTo writes ev inside tx with one delivery, to endpointID only,
// whatever the endpoint's event_types (the test event). It returns the
// delivery id; ErrNotFound when the endpoint does not exist and a
// *ConflictError when it is disabled.
func (o *Outbox) AppendTo(ctx context.Context, tx *sql.Tx, ev Event, endpointID string) (string, error) {
	var enabled bool
	err := tx.QueryRowContext(ctx, "SELECT enabled FROM endpoints WHERE id = ? AND deleted_at IS NULL", endpointID).Scan(&enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("outbox: append %s: %w", ev.Type, err)
	}
	if !enabled {
		return "", conflictf("the endpoint is disabled; enable it first")
	}
	if err := insertEvent(ctx, tx, ev); err != nil {
		return "", err
	}
	id, err := insertDelivery(ctx, tx, ev.ID, ev.Type, endpointID, laneFresh, o.clock())
	if err != nil {
		return "", fmt.Errorf("outbox: append %s: %w", ev.Type, err)
	}
	return id, nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, ev Event) error {
	if ev.ID == "" || ev.Type == "" || len(ev.Payload) == 0 {
		return errors.New("outbox: event needs an id, a type and a payload")
	}
	var fileID any
	if ev.FileID != "" {
		fileID = ev.FileID
	}
	_, err := tx.ExecContext(ctx,
		"INSERT INTO events (id, type, file_id, payload, created_at) VALUES (?, ?, ?, ?, ?)",
		ev.ID, ev.Type, fileID, []byte(ev.Payload), ev.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("outbox: append %s: %w", ev.Type, err)
	}
	return nil
}

// Committed tells the outbox that events were committed, waking whoever
// waits on Wake without blocking.
func (o *Outbox) Committed() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Wake is signalled after events commit.
func (o *Outbox) Wake() <-chan struct{} { return o.wake }

// EventFilter selects events for List.
type EventFilter struct {
	Type   string
	FileID string
	Cursor string // opaque; from a previous page's NextCursor
	Limit  int
}

// EventPage is one page of events, newest first.
type EventPage struct {
	Items      []Event `json:"items"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// ErrBadCursor is returned for a cursor that List did not produce.
var ErrBadCursor = errors.New("invalid cursor")

// List returns events matching f, newest first.
func (o *Outbox) List(ctx context.Context, f EventFilter) (EventPage, error) {
	var after any
	if f.Cursor != "" {
		seq, err := strconv.ParseInt(f.Cursor, 10, 64)
		if err != nil || seq <= 0 {
			return EventPage{}, ErrBadCursor
		}
		after = seq
	}
	q := eventsQuery(f)
	items, next, err := keyset.Page(ctx, o.r, q, "seq", after, f.Limit, scanEvent,
		func(ev Event) string { return strconv.FormatInt(ev.Seq, 10) })
	if err != nil {
		return EventPage{}, fmt.Errorf("outbox: list events: %w", err)
	}
	return EventPage{Items: items, NextCursor: next}, nil
}

// eventsQuery selects the events f matches (List pages it).
func eventsQuery(f EventFilter) *keyset.Query {
	return keyset.Select("SELECT seq, id, type, COALESCE(file_id, ''), payload, created_at FROM events").
		Eq("type", f.Type).Eq("file_id", f.FileID)
}

// Get returns one event by its id.
func (o *Outbox) Get(ctx context.Context, id string) (Event, error) {
	row := o.r.QueryRowContext(ctx,
		"SELECT seq, id, type, COALESCE(file_id, ''), payload, created_at FROM events WHERE id = ?", id)
	ev, err := scanEvent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	return ev, err
}

func scanEvent(s keyset.Scanner) (Event, error) {
	var ev Event
	var payload []byte
	var created int64
	if err := s.Scan(&ev.Seq, &ev.ID, &ev.Type, &ev.FileID, &payload, &created); err != nil {
		return Event{}, err
	}
	ev.Payload = payload
	ev.CreatedAt = time.UnixMilli(created).UTC()
	return ev, nil
}

// stmtCache keeps prepared statements by pool and text, so the hot paths
// of the dispatcher do not parse their SQL again on every call.
type stmtCache struct {
	mu sync.Mutex
	m  map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	db    *sql.DB
	query string
}

// stmt returns db's prepared statement for query, preparing it once.
func (o *Outbox) stmt(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	o.stmts.mu.Lock()
	defer o.stmts.mu.Unlock()
	k := stmtKey{db, query}
	if st := o.stmts.m[k]; st != nil {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if o.stmts.m == nil {
		o.stmts.m = map[stmtKey]*sql.Stmt{}
	}
	o.stmts.m[k] = st
	return st, nil
}

// cached returns db's prepared statement for query, or nil if it was not
// prepared yet.
func (o *Outbox) cached(db *sql.DB, query string) *sql.Stmt {
	o.stmts.mu.Lock()
	defer o.stmts.mu.Unlock()
	return o.stmts.m[stmtKey{db, query}]
}

// txExec runs query inside tx, as a prepared statement if the writer pool
// has it (preparing one here could wait for the connection tx holds).
func (o *Outbox) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := o.cached(o.w, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQuery is txExec for a query with rows.
func (o *Outbox) txQuery(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	if st := o.cached(o.w, query); st != nil {
		return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return tx.QueryContext(ctx, query, args...)
}

// readQuery runs a cached query on the read pool.
func (o *Outbox) readQuery(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := o.stmt(ctx, o.r, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}
