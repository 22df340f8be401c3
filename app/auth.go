package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/doorito/portal/app/access"
	"golang.org/x/crypto/bcrypt"
)

// Authentication: who made a request (a bearer token, the web UI's session
// cookie, or nobody). What they may do is decided by the one policy in
// package access (docs/auth.md shows it), which the operations (ops.go),
// the API's routes and the tus guard (tusguard.go) all ask.

// ErrBadCredentials is the one answer to a wrong username, a wrong
// password or a disabled account.
var ErrBadCredentials = errors.New("wrong username or password")

// DefaultAuthRateLimit is how many login and token requests a client
// address may make per minute (and in a burst).
const DefaultAuthRateLimit = 10

type ctxKey int

const principalKey ctxKey = 0

// principal is who made a request.
type principal struct {
	user *User
	// scopes narrow a scoped token (nil: unscoped, or not a token).
	scopes []access.Scope
	via    string // "token", "session" or "" (anonymous)
	// bad: credentials were presented but are not valid (unknown, expired,
	// revoked, disabled user), or are HTTP Basic outside token creation;
	// protected routes answer 401.
	bad bool
	// basic: the credential was HTTP Basic (accepted only by POST
	// /api/v1/tokens).
	basic bool
}

// identity is who the operations see acting.
func (p principal) identity() access.Identity {
	if p.user == nil {
		return access.Identity{}
	}
	return access.Identity{UserID: p.user.ID, Username: p.user.Username, Role: p.user.Role, Scopes: p.scopes, Via: p.via}
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey).(principal)
	return p
}

// requestUser is the authenticated user of r, or nil.
func requestUser(r *http.Request) *User { return principalFrom(r.Context()).user }

// requestIdentity is who made r, as the operations see it.
func requestIdentity(r *http.Request) access.Identity { return principalFrom(r.Context()).identity() }

// identityActor names id in an event payload; nobody is the null actor.
func identityActor(id access.Identity) PayloadActor {
	if id.Anonymous() {
		return PayloadActor{}
	}
	return PayloadActor{UserID: &id.UserID, Username: &id.Username}
}

// fileOwnerActor is the actor recorded when f was uploaded (null for an
// anonymous upload).
func fileOwnerActor(f File) PayloadActor {
	return PayloadActor{UserID: f.OwnerID, Username: f.OwnerUsername}
}

// ownerIDOf is the id of f's owner, "" for an anonymous upload.
func ownerIDOf(f File) string {
	if f.OwnerID == nil {
		return ""
	}
	return *f.OwnerID
}

// authState is the App's authentication machinery.
type authState struct {
	cop       *http.CrossOriginProtection
	limiter   *rateLimiter
	dummyHash []byte
	// routePatterns are the patterns routes() registered, routeOps the
	// operations of the API's (the authorization tests walk them).
	routePatterns []string
	routeOps      map[string]access.Op
	// loginForm renders the sign-in page with a message (set by routes()
	// to the web UI's); a failed form login shows it again.
	loginForm func(w http.ResponseWriter, r *http.Request, status int, msg string)
}

func (a *App) newAuth() (*authState, error) {
	s := &authState{cop: http.NewCrossOriginProtection()}
	if a.cfg.PublicURL != "" {
		if err := s.cop.AddTrustedOrigin(originOf(a.cfg.PublicURL)); err != nil {
			return nil, fmt.Errorf("trusted origin: %w", err)
		}
	}
	n := a.cfg.AuthRateLimit
	if n == 0 {
		n = DefaultAuthRateLimit
	}
	s.limiter = newRateLimiter(n)
	// Unknown usernames are checked against this hash, so they cost the
	// same bcrypt work as known ones.
	var err error
	if s.dummyHash, err = bcrypt.GenerateFromPassword([]byte(rand.Text()), a.passwordCost()); err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	return s, nil
}

// originOf returns scheme://host of an absolute URL.
func originOf(u string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	host, _, _ := strings.Cut(rest, "/")
	return scheme + "://" + host
}

// checkCredentials returns the enabled user with that username and
// password. Every failure is ErrBadCredentials after the same bcrypt work,
// whether or not the user exists.
func (a *App) checkCredentials(ctx context.Context, username, password string) (User, error) {
	u, hash, err := userByName(ctx, a.db.R, username)
	known := err == nil
	if errors.Is(err, ErrNotFound) {
		hash = string(a.auth.dummyHash)
	} else if err != nil {
		return User{}, err
	}
	cmp := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	if !known || cmp != nil || u.Disabled {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// resolve finds who made r: a bearer token wins over the session cookie.
func (a *App) resolve(r *http.Request) (principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			u, scopes, err := a.userByToken(r.Context(), strings.TrimSpace(cred))
			if errors.Is(err, ErrBadCredentials) {
				return principal{bad: true}, nil
			}
			if err != nil {
				return principal{}, err
			}
			return principal{user: &u, scopes: scopes, via: "token"}, nil
		case strings.EqualFold(scheme, "Basic"):
			// Only POST /api/v1/tokens takes a password (apiCreateToken
			// checks it). Anywhere else a Basic credential is refused,
			// never taken for an anonymous request.
			return principal{bad: true, basic: true}, nil
		default:
			return principal{bad: true}, nil
		}
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		u, err := a.userBySession(r.Context(), c.Value)
		if errors.Is(err, ErrBadCredentials) {
			return principal{bad: true}, nil
		}
		if err != nil {
			return principal{}, err
		}
		return principal{user: &u, via: "session"}, nil
	}
	return principal{}, nil
}

func errNoAuth(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: msg}
}

func errDenied(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Message: msg}
}

var errCrossOrigin = &Error{Status: http.StatusForbidden, Code: "cross_origin",
	Message: "cross-origin request refused; use a token for requests from other sites"}

// deny answers a request that lacks the right to proceed.
func (a *App) deny(w http.ResponseWriter, r *http.Request, err *Error) {
	if err.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portal"`)
	}
	a.writeError(w, r, err)
}

// needUser is nil when p is an authenticated user whose request passed
// the cross-origin check (for session cookies), else the error to answer.
func (a *App) needUser(r *http.Request, p principal) *Error {
	switch {
	case p.basic:
		return errNoAuth("HTTP Basic is accepted only by POST /api/v1/tokens; send Authorization: Bearer <token>")
	case p.bad:
		return errNoAuth("invalid, expired or revoked credentials")
	case p.user == nil:
		return errNoAuth("authentication required: send Authorization: Bearer <token>")
	case p.via == "session":
		if a.auth.cop.Check(r) != nil {
			return errCrossOrigin
		}
	}
	return nil
}

// authenticate resolves every request's credentials into its context.
// Who may do what is decided further in: by allow for the API's routes,
// by the operations, by the tus guard.
func (a *App) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.resolve(r)
		if err != nil {
			a.writeError(w, r, fmt.Errorf("authenticate: %w", err))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
	})
}

// allow guards an API route that performs op: the request needs valid
// credentials (a session only from the portal's own pages) and the policy
// must grant op at some reach; which resources the reach covers the
// operation checks itself.
func (a *App) allow(op access.Op, fn handlerFunc) http.Handler {
	return a.h(func(w http.ResponseWriter, r *http.Request) error {
		p := principalFrom(r.Context())
		if e := a.needUser(r, p); e != nil {
			a.deny(w, r, e)
			return nil
		}
		if _, err := a.ops.policy.Check(p.identity(), op); err != nil {
			return opError(err, "")
		}
		return fn(w, r)
	})
}
