package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/doorito/portal/internal/keyset"
	"github.com/google/uuid"
)

// Endpoint is a webhook receiver: events whose type matches EventTypes are
// delivered to URL, signed with the endpoint's secrets.
type Endpoint struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"event_types"`
	Enabled     bool     `json:"enabled"`
	// DisabledReason says why the endpoint is disabled (null when enabled).
	DisabledReason *string    `json:"disabled_reason"`
	DisabledAt     *time.Time `json:"disabled_at"`
	// FailingSince is the time of the first failed attempt since the last
	// success (null when the last attempt succeeded).
	FailingSince *time.Time `json:"failing_since"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// EndpointParams are the fields of a new endpoint.
type EndpointParams struct {
	URL         string
	Description string
	EventTypes  []string
	Disabled    bool
}

// EndpointPatch changes the fields that are not nil.
type EndpointPatch struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Enabled     *bool
	// DisabledReason is recorded when Enabled turns false.
	DisabledReason string
}

// Limits of endpoint fields.
const (
	MaxURLLength         = 2048
	MaxDescriptionLength = 1000
	MaxEventTypes        = 50
	maxEventTypeLength   = 100
	// maxSecrets bounds the secrets that sign at once (rotations within
	// the grace period add one each).
	maxSecrets = 5
)

// ValidationError is returned for input that can never be accepted; its
// message is safe to show to the caller.
type ValidationError struct{ msg string }

func (e *ValidationError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &ValidationError{msg: fmt.Sprintf(format, args...)}
}

// ConflictError is returned for a request that the current state of a
// record does not allow; its message is safe to show to the caller.
type ConflictError struct{ msg string }

func (e *ConflictError) Error() string { return e.msg }

func conflictf(format string, args ...any) error {
	return &ConflictError{msg: fmt.Sprintf(format, args...)}
}

// ParseEndpointURL checks that raw is an absolute http(s) URL without
// credentials or fragment, and returns it parsed. Where it may connect is
// checked by NetPolicy, at save time for IP literals and at dial time for
// every address a name resolves to.
func ParseEndpointURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, invalidf("url is required")
	}
	if len(raw) > MaxURLLength {
		return nil, invalidf("url is longer than %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, invalidf("url is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, invalidf("url must start with http:// or https://")
	case u.Hostname() == "":
		return nil, invalidf("url needs a host")
	case u.User != nil:
		return nil, invalidf("url must not contain credentials (user:password@)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, invalidf("url must not contain a fragment (#...)")
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return nil, invalidf("url has an invalid port")
		}
	}
	return u, nil
}

// eventTypePattern is an exact event type ("file.uploaded") or a prefix
// ending in ".*" ("file.*").
var eventTypePattern = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$`)

// CheckEventTypes validates an endpoint's event_types: exact types or
// "prefix.*" patterns, no duplicates.
func CheckEventTypes(types []string) error {
	if len(types) > MaxEventTypes {
		return invalidf("event_types may list at most %d types", MaxEventTypes)
	}
	seen := map[string]bool{}
	for _, t := range types {
		if len(t) > maxEventTypeLength || !eventTypePattern.MatchString(t) {
			return invalidf("event type %q: use an exact type (file.uploaded) or a prefix ending in .* (file.*)", truncate(t, 100))
		}
		if seen[t] {
			return invalidf("event type %q is listed twice", t)
		}
		seen[t] = true
	}
	return nil
}

// MatchEventType reports whether an event of type typ goes to an endpoint
// with these event_types: an empty list matches every type, an entry
// matches its exact type, and an entry ending in ".*" matches every type
// starting with what precedes the "*" ("file.*" matches "file.uploaded").
func MatchEventType(patterns []string, typ string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasSuffix(prefix, ".") {
			if strings.HasPrefix(typ, prefix) {
				return true
			}
		} else if p == typ {
			return true
		}
	}
	return false
}

func checkDescription(d string) error {
	if len(d) > MaxDescriptionLength || !utf8.ValidString(d) {
		return invalidf("description must be valid UTF-8 of at most %d bytes", MaxDescriptionLength)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func encodeTypes(types []string) string {
	if types == nil {
		types = []string{}
	}
	b, _ := json.Marshal(types)
	return string(b)
}

func decodeTypes(s string) []string {
	var types []string
	if json.Unmarshal([]byte(s), &types) != nil || types == nil {
		return []string{}
	}
	return types
}

// CreateEndpoint stores a new endpoint with a fresh signing secret and
// returns it with the secret, which is never shown again.
func (o *Outbox) CreateEndpoint(ctx context.Context, p EndpointParams) (Endpoint, string, error) {
	if _, err := ParseEndpointURL(p.URL); err != nil {
		return Endpoint{}, "", err
	}
	if err := CheckEventTypes(p.EventTypes); err != nil {
		return Endpoint{}, "", err
	}
	if err := checkDescription(p.Description); err != nil {
		return Endpoint{}, "", err
	}
	secret, err := NewSecret()
	if err != nil {
		return Endpoint{}, "", err
	}
	now := o.clock()
	ep := Endpoint{ID: uuid.Must(uuid.NewV7()).String(), URL: p.URL, Description: p.Description,
		EventTypes: p.EventTypes, Enabled: !p.Disabled, CreatedAt: now, UpdatedAt: now}
	if ep.EventTypes == nil {
		ep.EventTypes = []string{}
	}
	var reason, disabledAt any
	if p.Disabled {
		r := "created disabled"
		ep.DisabledReason, ep.DisabledAt = &r, &now
		reason, disabledAt = r, now.UnixMilli()
	}
	err = o.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO endpoints (id, url, description, event_types, enabled,
			disabled_reason, disabled_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ep.ID, ep.URL, ep.Description, encodeTypes(ep.EventTypes), ep.Enabled, reason, disabledAt,
			now.UnixMilli(), now.UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES (?, ?, ?)",
			ep.ID, secret, now.UnixMilli())
		return err
	})
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("outbox: create endpoint: %w", err)
	}
	o.endpointChanged()
	return ep, secret, nil
}

const endpointColumns = `id, url, description, event_types, enabled, disabled_reason, disabled_at,
	failing_since, created_at, updated_at`

func scanEndpoint(s keyset.Scanner) (Endpoint, error) {
	var ep Endpoint
	var types string
	var reason sql.NullString
	var disabledAt, failing sql.NullInt64
	var created, updated int64
	if err := s.Scan(&ep.ID, &ep.URL, &ep.Description, &types, &ep.Enabled, &reason, &disabledAt,
		&failing, &created, &updated); err != nil {
		return Endpoint{}, err
	}
	ep.EventTypes = decodeTypes(types)
	if reason.Valid {
		ep.DisabledReason = &reason.String
	}
	ep.DisabledAt = msPtr(disabledAt)
	ep.FailingSince = msPtr(failing)
	ep.CreatedAt = time.UnixMilli(created).UTC()
	ep.UpdatedAt = time.UnixMilli(updated).UTC()
	return ep, nil
}

func msPtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// sqlListEndpoints selects the endpoints not deleted, oldest first.
const sqlListEndpoints = "SELECT " + endpointColumns + " FROM endpoints WHERE deleted_at IS NULL ORDER BY id"

// ListEndpoints returns the endpoints that are not deleted, oldest first.
func (o *Outbox) ListEndpoints(ctx context.Context) ([]Endpoint, error) {
	rows, err := o.r.QueryContext(ctx, sqlListEndpoints)
	eps, err := keyset.All(rows, err, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("outbox: list endpoints: %w", err)
	}
	return eps, nil
}

// GetEndpoint returns one endpoint that is not deleted.
func (o *Outbox) GetEndpoint(ctx context.Context, id string) (Endpoint, error) {
	return getEndpoint(ctx, o.r, id)
}

func getEndpoint(ctx context.Context, q querier, id string) (Endpoint, error) {
	ep, err := scanEndpoint(q.QueryRowContext(ctx,
		"SELECT "+endpointColumns+" FROM endpoints WHERE id = ? AND deleted_at IS NULL", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Endpoint{}, ErrNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("outbox: get endpoint: %w", err)
	}
	return ep, nil
}

// UpdateEndpoint applies p to an endpoint. Re-enabling clears the disabled
// reason and the failure record, and its waiting deliveries resume; a new
// URL also clears the failure record.
func (o *Outbox) UpdateEndpoint(ctx context.Context, id string, p EndpointPatch) (Endpoint, error) {
	if p.URL != nil {
		if _, err := ParseEndpointURL(*p.URL); err != nil {
			return Endpoint{}, err
		}
	}
	if p.EventTypes != nil {
		if err := CheckEventTypes(*p.EventTypes); err != nil {
			return Endpoint{}, err
		}
	}
	if p.Description != nil {
		if err := checkDescription(*p.Description); err != nil {
			return Endpoint{}, err
		}
	}
	var ep Endpoint
	err := o.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if ep, err = getEndpoint(ctx, tx, id); err != nil {
			return err
		}
		now := o.clock()
		if p.URL != nil && *p.URL != ep.URL {
			ep.URL, ep.FailingSince = *p.URL, nil
		}
		if p.Description != nil {
			ep.Description = *p.Description
		}
		if p.EventTypes != nil {
			ep.EventTypes = *p.EventTypes
		}
		if p.Enabled != nil && *p.Enabled != ep.Enabled {
			ep.Enabled = *p.Enabled
			if ep.Enabled {
				ep.DisabledReason, ep.DisabledAt, ep.FailingSince = nil, nil, nil
			} else {
				reason := p.DisabledReason
				if reason == "" {
					reason = "disabled by an administrator"
				}
				ep.DisabledReason, ep.DisabledAt = &reason, &now
			}
		}
		ep.UpdatedAt = now
		_, err = tx.ExecContext(ctx, `UPDATE endpoints SET url = ?, description = ?, event_types = ?, enabled = ?,
			disabled_reason = ?, disabled_at = ?, failing_since = ?, updated_at = ? WHERE id = ?`,
			ep.URL, ep.Description, encodeTypes(ep.EventTypes), ep.Enabled, ep.DisabledReason,
			timeMs(ep.DisabledAt), timeMs(ep.FailingSince), now.UnixMilli(), id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Endpoint{}, ErrNotFound
	}
	if err != nil {
		return Endpoint{}, fmt.Errorf("outbox: update endpoint: %w", err)
	}
	o.endpointChanged()
	if p.Enabled != nil && *p.Enabled {
		o.Committed() // waiting deliveries resume
	}
	return ep, nil
}

func timeMs(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// DeleteEndpoint deletes an endpoint: it disappears from the API, its
// secrets are erased, and its deliveries that were not done are cancelled
// (one being sent right now finishes, and is recorded, but is not retried).
// Its past deliveries stay in the events' history.
func (o *Outbox) DeleteEndpoint(ctx context.Context, id string) error {
	err := o.inTx(ctx, func(tx *sql.Tx) error {
		now := o.clock().UnixMilli()
		res, err := tx.ExecContext(ctx, `UPDATE endpoints SET deleted_at = ?, enabled = 0,
			disabled_reason = 'deleted', disabled_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL`,
			now, now, now, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM endpoint_secrets WHERE endpoint_id = ?", id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET status = 'cancelled', next_attempt_at = NULL,
			last_error = 'endpoint deleted', updated_at = ? WHERE endpoint_id = ? AND status IN ('pending', 'delivering')`,
			now, id)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("outbox: delete endpoint: %w", err)
	}
	o.endpointChanged()
	return nil
}

// endpointChanged records that an endpoint changed: deliveries the
// dispatcher claimed before are claimed again before they are sent.
func (o *Outbox) endpointChanged() { o.endpointVersion.Add(1) }

// RotateSecret gives an endpoint a new signing secret and returns it (it is
// never shown again). The previous secrets keep signing, next to the new
// one, for grace (0 stops them at once); at most a few secrets sign at a
// time, the oldest dropping out first.
func (o *Outbox) RotateSecret(ctx context.Context, id string, grace time.Duration) (string, time.Time, error) {
	if grace < 0 {
		return "", time.Time{}, invalidf("the grace period must not be negative")
	}
	secret, err := NewSecret()
	if err != nil {
		return "", time.Time{}, err
	}
	now := o.clock()
	until := now.Add(grace)
	err = o.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := getEndpoint(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE endpoint_secrets SET expires_at = ?
			WHERE endpoint_id = ? AND (expires_at IS NULL OR expires_at > ?)`,
			until.UnixMilli(), id, until.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES (?, ?, ?)",
			id, secret, now.UnixMilli()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM endpoint_secrets WHERE endpoint_id = ? AND (expires_at <= ?
			OR id NOT IN (SELECT id FROM endpoint_secrets WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?))`,
			id, now.UnixMilli(), id, maxSecrets)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return "", time.Time{}, ErrNotFound
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("outbox: rotate secret: %w", err)
	}
	o.endpointChanged()
	return secret, until, nil
}

// activeSecrets returns the secrets that sign for an endpoint at now,
// newest first.
func (o *Outbox) activeSecrets(ctx context.Context, endpointID string, now time.Time) ([]string, error) {
	return scanStrings(o.readQuery(ctx, `SELECT secret FROM endpoint_secrets
		WHERE endpoint_id = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC`, endpointID, now.UnixMilli()))
}

// inTx runs fn in a write transaction and commits it when fn succeeds.
func (o *Outbox) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := o.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
