package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tus/tusd/v2/pkg/handler"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Who may do what (docs/auth.md has the whole matrix):
//   - anonymous: public pages only (health, metrics, schemas, the web UI's
//     static pages, the login form); with Config.AnonymousUploads also tus
//     creation and HEAD/PATCH/DELETE of anonymous uploads.
//   - uploader: tus creation, and HEAD/PATCH/DELETE/GET of their own
//     uploads; their own files in /api/v1/files; their own tokens.
//   - admin: everything.
// Someone else's upload or file answers 404, as if it did not exist.

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
	via  string // "token", "session" or "" (anonymous)
	// bad: credentials were presented but are not valid (unknown, expired,
	// revoked, disabled user); protected routes answer 401.
	bad bool
}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey).(principal)
	return p
}

// requestUser is the authenticated user of r, or nil.
func requestUser(r *http.Request) *User { return principalFrom(r.Context()).user }

// userActor names u in an event payload; a nil user is the null actor.
func userActor(u *User) PayloadActor {
	if u == nil {
		return PayloadActor{}
	}
	id, name := u.ID, u.Username
	return PayloadActor{UserID: &id, Username: &name}
}

// requestActor is the actor of an event caused by request r: its
// authenticated user, or the null actor.
func requestActor(r *http.Request) PayloadActor { return userActor(requestUser(r)) }

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
	// routePatterns are the patterns routes() registered (the
	// authorization test walks every one).
	routePatterns []string
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
			u, err := a.userByToken(r.Context(), strings.TrimSpace(cred))
			if errors.Is(err, ErrBadCredentials) {
				return principal{bad: true}, nil
			}
			if err != nil {
				return principal{}, err
			}
			return principal{user: &u, via: "token"}, nil
		case strings.EqualFold(scheme, "Basic"):
			// Only POST /api/v1/tokens takes a password; elsewhere Basic
			// is ignored and the request is anonymous.
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

// authenticate resolves every request's credentials and, for the JSON API,
// enforces who may call what. /api/ is closed by default: a route is
// admin-only unless it is listed here as open to every user (and those
// check ownership themselves or below).
func (a *App) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.resolve(r)
		if err != nil {
			a.writeError(w, r, fmt.Errorf("authenticate: %w", err))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		if strings.HasPrefix(r.URL.Path, "/api/") {
			if e := a.authorizeAPI(r, p); e != nil {
				a.deny(w, r, e)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authorizeAPI applies the API's access policy to r.
func (a *App) authorizeAPI(r *http.Request, p principal) *Error {
	path := r.URL.Path
	if path == "/api/v1/tokens" && r.Method == http.MethodPost {
		return nil // HTTP Basic or a session; apiCreateToken checks
	}
	if path == openAPIPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return nil // public, like the event schemas
	}
	if e := a.needUser(r, p); e != nil {
		return e
	}
	switch {
	case path == "/api/v1/me", path == "/api/v1/tokens", strings.HasPrefix(path, "/api/v1/tokens/"),
		path == "/api/v1/files":
		return nil
	case strings.HasPrefix(path, "/api/v1/files/"):
		return a.authorizeFilePath(r, p.user, strings.TrimPrefix(path, "/api/v1/files/"))
	}
	if !p.user.IsAdmin() {
		return errDenied("this needs the admin role")
	}
	return nil
}

// authorizeFilePath hides files of others from a non-admin, whatever the
// route below /api/v1/files/{id} (the handlers check again through
// fileFromPath).
func (a *App) authorizeFilePath(r *http.Request, u *User, rest string) *Error {
	if u.IsAdmin() {
		return nil
	}
	id, _, _ := strings.Cut(rest, "/")
	if _, err := uuid.Parse(id); err != nil {
		return nil // the handler answers 400
	}
	f, err := a.getFile(r.Context(), id)
	if err != nil {
		return nil // not found (404) or a failure the handler reports
	}
	if !mayAccessFile(u, f) {
		return errNotFound("file")
	}
	return nil
}

// mayAccessFile reports whether u may see, download or change f: admins
// any file, uploaders their own.
func mayAccessFile(u *User, f File) bool {
	if u == nil {
		return false
	}
	return u.IsAdmin() || f.OwnerID != nil && *f.OwnerID == u.ID
}

// uploadOwner is who created a tus upload.
type uploadOwner struct {
	UserID   *string
	Username *string
}

// ownerOfUpload returns the recorded creator of an upload; an upload
// without a record (created before users existed) is anonymous.
func ownerOfUpload(ctx context.Context, q queryer, uploadID string) (uploadOwner, error) {
	var o uploadOwner
	err := q.QueryRowContext(ctx, "SELECT user_id, username FROM upload_owners WHERE upload_id = ?", uploadID).
		Scan(&o.UserID, &o.Username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return uploadOwner{}, fmt.Errorf("upload owner: %w", err)
	}
	return o, nil
}

// newUploadID returns an upload id like tusd's own: 32 random hex digits.
func newUploadID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recordUploadOwner is called by the pre-create hook: it picks the new
// upload's id and records its creator under that id before the upload
// exists, so every later request and the finalizer (also the sweep, which
// has no request) find the owner. Client metadata plays no part.
func (a *App) recordUploadOwner(ctx context.Context) (string, error) {
	p := principalFrom(ctx)
	if p.user == nil && (p.bad || !a.cfg.AnonymousUploads) {
		return "", handler.NewError("ERR_UNAUTHORIZED", "authentication required", http.StatusUnauthorized)
	}
	id := newUploadID()
	var uid, name *string
	if p.user != nil {
		uid, name = &p.user.ID, &p.user.Username
	}
	if _, err := a.db.W.ExecContext(ctx, `INSERT INTO upload_owners (upload_id, user_id, username, created_at)
		VALUES (?, ?, ?, ?)`, id, uid, name, a.cfg.Now().UnixMilli()); err != nil {
		return "", fmt.Errorf("record upload owner: %w", err)
	}
	return id, nil
}

// mayUseUpload reports whether p may use method on an upload owned by o.
// Anonymous clients may continue and cancel anonymous uploads, not
// download them.
func (a *App) mayUseUpload(p principal, o uploadOwner, method string) bool {
	switch {
	case p.user.IsAdmin():
		return true
	case p.user != nil:
		return o.UserID != nil && *o.UserID == p.user.ID
	default:
		return a.cfg.AnonymousUploads && o.UserID == nil && method != http.MethodGet
	}
}

// guardUploads wraps the tus handler (mounted with /files/ stripped):
// tusd has no per-upload authorization, so this checks who may create an
// upload and who may touch an existing one.
func (a *App) guardUploads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		// tusd honours the override, so the check must too.
		if o := r.Header.Get("X-HTTP-Method-Override"); method == http.MethodPost && o != "" {
			method = o
		}
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r) // CORS preflight carries no credentials
			return
		}
		if e := a.authorizeUpload(r, method); e != nil {
			a.deny(w, r, e)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *App) authorizeUpload(r *http.Request, method string) *Error {
	p := principalFrom(r.Context())
	if p.user != nil || p.bad || !a.cfg.AnonymousUploads {
		if e := a.needUser(r, p); e != nil {
			return e
		}
	}
	id := strings.Trim(r.URL.Path, "/")
	if id == "" {
		if method != http.MethodPost {
			return nil // tusd answers 405
		}
		// A concatenation may only use partial uploads the client owns.
		for _, part := range concatParts(r.Header.Get("Upload-Concat"), a.tusBasePath()) {
			if e := a.authorizeUploadID(r, p, part, http.MethodPatch); e != nil {
				return e
			}
		}
		return nil
	}
	return a.authorizeUploadID(r, p, id, method)
}

func (a *App) authorizeUploadID(r *http.Request, p principal, id, method string) *Error {
	o, err := ownerOfUpload(r.Context(), a.db.R, id)
	if err != nil {
		a.log.Error("upload owner", "upload_id", id, "err", err)
		return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if a.mayUseUpload(p, o, method) {
		return nil
	}
	if p.user == nil {
		return errNoAuth("authentication required: send Authorization: Bearer <token>")
	}
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "upload not found"}
}

// tusBasePath is the base path tusd was configured with (it resolves
// Upload-Concat URLs against it).
func (a *App) tusBasePath() string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL + "/files/"
	}
	return "/files/"
}

// concatParts returns the upload ids of an Upload-Concat: final;... header,
// extracted the way tusd does.
func concatParts(header, basePath string) []string {
	list, ok := strings.CutPrefix(header, "final;")
	if !ok {
		return nil
	}
	var ids []string
	for _, v := range strings.Split(list, " ") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		_, id, found := strings.Cut(v, basePath)
		if !found {
			continue // tusd refuses it
		}
		ids = append(ids, strings.Trim(id, "/"))
	}
	return ids
}

// rateLimiter limits requests per client address.
type rateLimiter struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// newRateLimiter allows perMinute requests a minute per key, in bursts of
// as many; a negative perMinute disables the limit.
func newRateLimiter(perMinute int) *rateLimiter {
	if perMinute < 0 {
		return &rateLimiter{limit: rate.Inf}
	}
	return &rateLimiter{limit: rate.Every(time.Minute / time.Duration(perMinute)), burst: perMinute,
		m: map[string]*limiterEntry{}}
}

// allow reports whether key may make a request now, and if not, how long
// to wait.
func (l *rateLimiter) allow(key string) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 {
		for k, e := range l.m {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(l.m, k)
			}
		}
	}
	e := l.m[key]
	if e == nil {
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration(float64(time.Second) / float64(l.limit))
}

// clientAddr is the address rate limits apply to: the peer, or behind a
// trusted proxy the address the proxy appended to X-Forwarded-For.
func (a *App) clientAddr(r *http.Request) string {
	if a.cfg.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rateLimited answers 429 and returns true when r's client is over the
// login/token limit.
func (a *App) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := a.auth.limiter.allow(a.clientAddr(r))
	if ok {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	a.writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Message: "too many attempts; try again later"})
	return true
}

// routeMux is a ServeMux that remembers its patterns, so the
// authorization test can walk every route, including ones added later.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

// Handle registers h for pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers fn for pattern.
func (m *routeMux) HandleFunc(pattern string, fn func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(fn))
}
