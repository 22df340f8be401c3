// Package access decides who may do what in the portal. One table, Rules,
// names every operation a user can perform with the reach each role has
// (none, their own, any) and the token scope it needs; the JSON API, the
// web UI and the tus endpoint all ask Check or CheckOwned, so no surface
// decides on its own.
package access

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Roles a user may have.
const (
	RoleAdmin    = "admin"
	RoleUploader = "uploader"
)

// Op is an operation a user can perform.
type Op string

// The operations. Listing and reading share an op where the same people
// may do both.
const (
	FileRead      Op = "file.read"      // list files, see one, download its bytes
	FileDelete    Op = "file.delete"    // delete a stored file
	FileExpiry    Op = "file.expiry"    // change a file's expiry
	UploadCreate  Op = "upload.create"  // tus: create an upload (or a concatenation)
	UploadWrite   Op = "upload.write"   // tus: HEAD, PATCH, DELETE an upload
	UploadRead    Op = "upload.read"    // tus: GET an upload's bytes
	EventRead     Op = "event.read"     // events, deliveries and their attempts
	EndpointRead  Op = "endpoint.read"  // webhook endpoints and their figures
	EndpointWrite Op = "endpoint.write" // create, change, delete, rotate, test, replay
	DeliveryRetry Op = "delivery.retry" // retry one delivery
	UserRead      Op = "user.read"      // list users
	UserWrite     Op = "user.write"     // create, change, delete users
	TokenRead     Op = "token.read"     // list tokens
	TokenWrite    Op = "token.write"    // mint and revoke tokens
	Dashboard     Op = "dashboard"      // the admin overview
	Me            Op = "me"             // who am I
)

// Scope narrows a token to some operations of its owner. A token without
// scopes (and a web session) may do all its owner's role allows.
type Scope string

// The scopes.
const (
	ScopeFilesRead     Scope = "files:read"
	ScopeFilesWrite    Scope = "files:write"
	ScopeUploads       Scope = "uploads:write"
	ScopeEventsRead    Scope = "events:read"
	ScopeWebhooksRead  Scope = "webhooks:read"
	ScopeWebhooksWrite Scope = "webhooks:write"
	ScopeUsers         Scope = "users:admin"
	ScopeTokens        Scope = "tokens:write"
)

// Reach is how far a role's right to an operation goes.
type Reach int

// Reaches, from nothing to everything.
const (
	None Reach = iota
	Own        // resources the user owns (anonymous: anonymous ones)
	Any        // every resource
)

func (r Reach) String() string { return [...]string{"none", "own", "any"}[r] }

// Rule is one operation's row of the table.
type Rule struct {
	// Scope is what a scoped token needs for the op ("" for none).
	Scope Scope
	// Uploader and Admin are the roles' reach.
	Uploader, Admin Reach
	// Anonymous is the reach of a request without credentials when
	// anonymous uploads are on (without them it is None).
	Anonymous Reach
}

// Rules is the portal's access policy: operation × role, with ownership
// and scopes. docs/auth.md shows it as a table; the route × role matrix
// tests walk it.
var Rules = map[Op]Rule{
	FileRead:      {Scope: ScopeFilesRead, Uploader: Own, Admin: Any},
	FileDelete:    {Scope: ScopeFilesWrite, Uploader: Own, Admin: Any},
	FileExpiry:    {Scope: ScopeFilesWrite, Admin: Any},
	UploadCreate:  {Scope: ScopeUploads, Uploader: Own, Admin: Any, Anonymous: Own},
	UploadWrite:   {Scope: ScopeUploads, Uploader: Own, Admin: Any, Anonymous: Own},
	UploadRead:    {Scope: ScopeFilesRead, Uploader: Own, Admin: Any},
	EventRead:     {Scope: ScopeEventsRead, Admin: Any},
	EndpointRead:  {Scope: ScopeWebhooksRead, Admin: Any},
	EndpointWrite: {Scope: ScopeWebhooksWrite, Admin: Any},
	DeliveryRetry: {Scope: ScopeWebhooksWrite, Admin: Any},
	UserRead:      {Scope: ScopeUsers, Admin: Any},
	UserWrite:     {Scope: ScopeUsers, Admin: Any},
	TokenRead:     {Scope: ScopeTokens, Uploader: Own, Admin: Any},
	TokenWrite:    {Scope: ScopeTokens, Uploader: Own, Admin: Any},
	Dashboard:     {Admin: Any},
	Me:            {Uploader: Own, Admin: Own},
}

// Scopes lists every scope, sorted.
func Scopes() []Scope {
	seen := map[Scope]bool{}
	for _, r := range Rules {
		if r.Scope != "" {
			seen[r.Scope] = true
		}
	}
	out := make([]Scope, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ParseScopes checks a list of scope names: each known, none twice.
func ParseScopes(names []string) ([]Scope, error) {
	known := Scopes()
	out := make([]Scope, 0, len(names))
	for _, n := range names {
		s := Scope(strings.TrimSpace(n))
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown scope %q (scopes: %s)", n, joinScopes(known))
		}
		if slices.Contains(out, s) {
			return nil, fmt.Errorf("scope %q named twice", n)
		}
		out = append(out, s)
	}
	return out, nil
}

func joinScopes(ss []Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Identity is who performs an operation.
type Identity struct {
	UserID   string
	Username string
	Role     string
	// Scopes narrow a scoped token; nil means all the role allows.
	Scopes []Scope
	// Via is how the identity was established: "token", "session",
	// "" for an anonymous request.
	Via string
}

// Anonymous reports whether no user acts.
func (id Identity) Anonymous() bool { return id.UserID == "" }

// Errors of Check. A caller that finds the resource belongs to someone
// else answers ErrHidden as if it did not exist.
var (
	ErrUnauthenticated = errors.New("authentication required")
	ErrForbidden       = errors.New("not allowed")
	ErrHidden          = errors.New("not found")
)

// Denied is a refusal with its reason.
type Denied struct {
	Err    error // ErrUnauthenticated or ErrForbidden
	Reason string
}

func (d *Denied) Error() string { return d.Reason }
func (d *Denied) Unwrap() error { return d.Err }

// Policy is Rules under the portal's settings.
type Policy struct {
	// AnonymousUploads lets requests without credentials create and use
	// anonymous uploads.
	AnonymousUploads bool
}

// Check returns how far id may perform op: Own or Any, or a *Denied
// error (wrapping ErrUnauthenticated or ErrForbidden).
func (p Policy) Check(id Identity, op Op) (Reach, error) {
	rule, ok := Rules[op]
	if !ok {
		return None, &Denied{ErrForbidden, fmt.Sprintf("unknown operation %q", op)}
	}
	if id.Anonymous() {
		if p.AnonymousUploads && rule.Anonymous != None {
			return rule.Anonymous, nil
		}
		return None, &Denied{ErrUnauthenticated, "authentication required: send Authorization: Bearer <token>"}
	}
	reach := rule.Uploader
	if id.Role == RoleAdmin {
		reach = rule.Admin
	}
	if reach == None {
		return None, &Denied{ErrForbidden, "this needs the admin role"}
	}
	if id.Scopes != nil && rule.Scope != "" && !slices.Contains(id.Scopes, rule.Scope) {
		return None, &Denied{ErrForbidden, fmt.Sprintf("this token lacks the scope %s", rule.Scope)}
	}
	return reach, nil
}

// CheckOwned is Check for one resource owned by ownerID ("" for an
// anonymous one): with Own reach, a resource of someone else is
// ErrHidden.
func (p Policy) CheckOwned(id Identity, op Op, ownerID string) error {
	reach, err := p.Check(id, op)
	if err != nil {
		return err
	}
	if reach == Own && ownerID != id.UserID {
		return ErrHidden
	}
	return nil
}
