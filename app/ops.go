package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
)

// Ops is the portal's operations layer: every operation a user can
// perform, implemented once. Each method takes the acting identity and
// typed input, applies the access policy, validates, does the work, writes
// the audit record, and returns typed errors (*OpError). The JSON API
// (api_*.go) and the web UI's adapter (ui*.go) only decode input, call an
// operation and show its result or error in their medium, so the two
// cannot drift.
type Ops struct {
	a      *App
	policy access.Policy
	// audit receives one record per change a user makes (component=audit).
	audit *slog.Logger
}

func newOps(a *App) *Ops {
	return &Ops{a: a, policy: access.Policy{AnonymousUploads: a.cfg.AnonymousUploads},
		audit: a.log.With("component", "audit")}
}

// record writes the audit record of a change id made.
func (o *Ops) record(ctx context.Context, id access.Identity, action string, kv ...any) {
	attrs := append([]any{"action", action, "actor_id", id.UserID, "actor", id.Username, "via", id.Via}, kv...)
	o.audit.InfoContext(ctx, "audit", attrs...)
}

// check applies the access policy to an operation on no particular
// resource and returns the identity's reach.
func (o *Ops) check(id access.Identity, op access.Op) (access.Reach, error) {
	reach, err := o.policy.Check(id, op)
	return reach, opError(err, "")
}

// checkOwned applies the access policy to an operation on a resource of
// ownerID ("" for an anonymous one); someone else's is not found (what).
func (o *Ops) checkOwned(id access.Identity, op access.Op, ownerID, what string) error {
	return opError(o.policy.CheckOwned(id, op, ownerID), what)
}

// Kind is the sort of failure an operation reports; each surface maps it
// to its medium (an HTTP status, a page with a message).
type Kind int

// Kinds of failure.
const (
	KindInvalid         Kind = iota + 1 // bad input
	KindNotFound                        // no such thing, or not the user's to see
	KindConflict                        // the state forbids it now
	KindForbidden                       // the user may not
	KindUnauthenticated                 // nobody signed in
	KindGone                            // it existed and is gone
	KindTooLarge                        // past a size or storage limit
	KindUnavailable                     // a part the operation needs is down; retry
)

// OpError is an operation's failure: its kind, a stable code, the input
// field at fault (for KindInvalid) and a message safe to show.
type OpError struct {
	Kind    Kind
	Code    string
	Field   string
	Message string
}

func (e *OpError) Error() string { return e.Message }

// Status is the HTTP status of the error's kind.
func (e *OpError) Status() int {
	switch e.Kind {
	case KindInvalid:
		return http.StatusBadRequest
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindForbidden:
		return http.StatusForbidden
	case KindUnauthenticated:
		return http.StatusUnauthorized
	case KindGone:
		return http.StatusGone
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func invalid(field, msg string) *OpError {
	return &OpError{Kind: KindInvalid, Code: "bad_request", Field: field, Message: msg}
}

func notFound(what string) *OpError {
	return &OpError{Kind: KindNotFound, Code: "not_found", Message: what + " not found"}
}

func conflict(code, msg string) *OpError {
	return &OpError{Kind: KindConflict, Code: code, Message: msg}
}

// opError turns the errors of the stores and the policy into *OpError;
// what names the thing looked up (for not found). Other errors (a failing
// database) stay as they are: the surfaces log them and answer a generic
// failure.
func opError(err error, what string) error {
	if err == nil {
		return nil
	}
	var oe *OpError
	var denied *access.Denied
	var ve *outbox.ValidationError
	var ce *outbox.ConflictError
	switch {
	case errors.As(err, &oe):
		return oe
	case errors.As(err, &denied):
		if errors.Is(denied, access.ErrUnauthenticated) {
			return &OpError{Kind: KindUnauthenticated, Code: "unauthorized", Message: denied.Reason}
		}
		return &OpError{Kind: KindForbidden, Code: "forbidden", Message: denied.Reason}
	case errors.Is(err, access.ErrHidden), errors.Is(err, ErrNotFound), errors.Is(err, outbox.ErrNotFound):
		return notFound(what)
	case errors.As(err, &ve):
		return invalid("", ve.Error())
	case errors.As(err, &ce):
		return conflict("conflict", ce.Error())
	case errors.Is(err, outbox.ErrBadCursor):
		return invalid("cursor", "invalid cursor")
	case errors.Is(err, ErrLastAdmin):
		return conflict("last_admin", err.Error())
	case errors.Is(err, ErrUserExists):
		return conflict("conflict", err.Error())
	}
	return err
}

// checkUUID refuses an id that is not a UUID, as not found (what): no
// record has such an id.
func checkUUID(id, what string) error {
	if !isUUID(id) {
		return notFound(what)
	}
	return nil
}

// parseCursorID checks a cursor that is a record id (a UUID).
func parseCursorID(cursor string) error {
	if cursor != "" && !isUUID(cursor) {
		return invalid("cursor", "invalid cursor")
	}
	return nil
}

// pageLimit checks a page size: 1 to 500 (0: the default, 50).
func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return 50, nil
	case n < 1 || n > 500:
		return 0, invalid("limit", "limit must be a whole number from 1 to 500")
	}
	return n, nil
}

func errf(format string, a ...any) error { return fmt.Errorf(format, a...) }
