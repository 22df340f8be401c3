// Package webui serves the portal's browser pages: server-rendered
// html/template pages, a small stylesheet, and the upload page's Uppy
// bundle, all embedded in the binary (no CDN). It knows nothing of the
// portal's storage: the app package hands it a Backend.
package webui

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

//go:embed templates
var templateFS embed.FS

// static holds the stylesheet, the scripts and static/dist/, the upload
// page's Uppy bundle. The bundle is generated (`make ui`) but committed, so
// `go build` and `go install` give the complete program; CI rebuilds it from
// webui/ui/package-lock.json and fails unless the bytes are the same
// (`make ui-check`).
//
//go:embed static
var staticFS embed.FS

// Config is what the pages need from the running portal.
type Config struct {
	Version string
	Backend Backend
	// CrossOrigin checks the UI's POST forms; nil means a default
	// http.CrossOriginProtection (same origin only).
	CrossOrigin *http.CrossOriginProtection
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// UI is the web UI's HTTP handler.
type UI struct {
	cfg    Config
	be     Backend
	log    *slog.Logger
	assets *assets
	pages  map[string]*template.Template
	mux    *http.ServeMux
}

// contentSecurityPolicy keeps every page to the portal's own scripts and
// styles: no inline script, no third-party origin. Uppy shows previews
// from blob: and data: URLs.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// New builds the UI.
func New(cfg Config) (*UI, error) {
	if cfg.CrossOrigin == nil {
		cfg.CrossOrigin = http.NewCrossOriginProtection()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backend.CurrentUser == nil {
		cfg.Backend.CurrentUser = func(*http.Request) *User { return nil }
	}
	if cfg.Backend.May == nil {
		current := cfg.Backend.CurrentUser
		cfg.Backend.May = func(r *http.Request, _ string) bool { return current(r).Admin() }
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("webui: static assets: %w", err)
	}
	u := &UI{cfg: cfg, be: cfg.Backend, log: cfg.Logger}
	if u.assets, err = newAssets(static); err != nil {
		return nil, err
	}
	if u.pages, err = u.parsePages(); err != nil {
		return nil, err
	}
	u.routes()
	return u, nil
}

// MustNew is New for configurations known to be valid; it panics on the
// errors New returns (which only a broken build can cause).
func MustNew(cfg Config) *UI {
	u, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return u
}

// ServeHTTP serves the UI.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// Route is one page or form of the UI and the operation it performs (an
// access policy name, as the Backend's May understands it).
type Route struct {
	Pattern string
	Op      string
}

// routes are the UI's pages and forms. Each is for signed-in users who
// may perform its operation (Backend.May decides).
var routes = []Route{
	{"GET /ui/upload", "upload.create"},
	{"GET /ui/files", "file.read"},
	{"GET /ui/files/{id}", "file.read"},
	{"POST /ui/files/{id}/delete", "file.delete"},
	{"GET /ui/dashboard", "dashboard"},
	{"GET /ui/events", "event.read"},
	{"GET /ui/events/{id}", "event.read"},
	{"POST /ui/deliveries/{id}/retry", "delivery.retry"},
	{"GET /ui/endpoints", "endpoint.read"},
	{"POST /ui/endpoints", "endpoint.write"},
	{"GET /ui/endpoints/{id}", "endpoint.read"},
	{"POST /ui/endpoints/{id}", "endpoint.write"},
	{"POST /ui/endpoints/{id}/enable", "endpoint.write"},
	{"POST /ui/endpoints/{id}/disable", "endpoint.write"},
	{"POST /ui/endpoints/{id}/rotate-secret", "endpoint.write"},
	{"POST /ui/endpoints/{id}/test", "endpoint.write"},
	{"POST /ui/endpoints/{id}/replay", "endpoint.write"},
	{"POST /ui/endpoints/{id}/delete", "endpoint.write"},
	{"GET /ui/users", "user.read"},
	{"POST /ui/users", "user.write"},
	{"POST /ui/users/{id}", "user.write"},
	{"POST /ui/users/{id}/delete", "user.write"},
	{"GET /ui/tokens", "token.read"},
	{"POST /ui/tokens", "token.write"},
	{"POST /ui/tokens/{id}/revoke", "token.write"},
}

// Routes lists the UI's pages and forms with their operations (the
// portal's access tests walk them).
func Routes() []Route { return slices.Clone(routes) }

func (u *UI) routes() {
	m := http.NewServeMux()
	u.mux = m
	m.Handle("GET /static/", http.StripPrefix("/static/", u.assets))
	m.HandleFunc("GET /{$}", u.home)
	m.HandleFunc("GET /ui/{$}", u.home)
	m.HandleFunc("GET /ui/api/uploads/{id}", u.uploadLookup)
	pages := map[string]handler{
		"GET /ui/upload": u.uploadPage, "GET /ui/files": u.filesPage, "GET /ui/files/{id}": u.filePage,
		"POST /ui/files/{id}/delete": u.deleteFile, "GET /ui/dashboard": u.dashboardPage,
		"GET /ui/events": u.eventsPage, "GET /ui/events/{id}": u.eventPage,
		"POST /ui/deliveries/{id}/retry": u.retryDelivery, "GET /ui/endpoints": u.endpointsPage,
		"POST /ui/endpoints": u.createEndpoint, "GET /ui/endpoints/{id}": u.endpointPage,
		"POST /ui/endpoints/{id}": u.updateEndpoint, "POST /ui/endpoints/{id}/enable": u.enableEndpoint,
		"POST /ui/endpoints/{id}/disable": u.disableEndpoint, "POST /ui/endpoints/{id}/rotate-secret": u.rotateSecret,
		"POST /ui/endpoints/{id}/test": u.testEndpoint, "POST /ui/endpoints/{id}/replay": u.replayEndpoint,
		"POST /ui/endpoints/{id}/delete": u.deleteEndpoint, "GET /ui/users": u.usersPage,
		"POST /ui/users": u.createUser, "POST /ui/users/{id}": u.updateUser, "POST /ui/users/{id}/delete": u.deleteUser,
		"GET /ui/tokens": u.tokensPage, "POST /ui/tokens": u.createToken, "POST /ui/tokens/{id}/revoke": u.revokeToken,
	}
	for _, rt := range routes {
		h := u.need(rt.Op, pages[rt.Pattern])
		if strings.HasPrefix(rt.Pattern, "POST ") {
			h = u.form(h)
		}
		m.HandleFunc(rt.Pattern, h)
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.renderError(w, r, http.StatusNotFound, "There is no page at "+r.URL.Path+".")
	})
}

// home sends people where they start: admins to the dashboard, uploaders
// to the upload page (or, without that right, their files), everyone else
// to sign in.
func (u *UI) home(w http.ResponseWriter, r *http.Request) {
	user := u.be.CurrentUser(r)
	switch {
	case user == nil:
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	case u.be.May(r, "dashboard"):
		http.Redirect(w, r, "/ui/dashboard", http.StatusSeeOther)
	case u.be.May(r, "upload.create"):
		http.Redirect(w, r, "/ui/upload", http.StatusSeeOther)
	default:
		http.Redirect(w, r, "/ui/files", http.StatusSeeOther)
	}
}

// handler is a page handler that knows the signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, user *User)

// signedIn sends anonymous visitors to the sign-in page.
func (u *UI) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		user := u.be.CurrentUser(r)
		if user == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, LoginURL(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			u.renderError(w, r, http.StatusUnauthorized, "Your session has ended. Sign in again.")
			return
		}
		h(w, r, user)
	}
}

// need is signedIn for a page or form that performs op: a user who may
// not (Backend.May) gets a 403 page.
func (u *UI) need(op string, h handler) http.HandlerFunc {
	return u.signedIn(func(w http.ResponseWriter, r *http.Request, user *User) {
		if !u.be.May(r, op) {
			u.renderError(w, r, http.StatusForbidden, "This is for admins (or needs a right your account lacks).")
			return
		}
		h(w, r, user)
	})
}

// maxFormBody bounds the UI's form posts.
const maxFormBody = 64 << 10

// form checks a POST form: same origin (CrossOriginProtection; session
// cookies must not be usable from other sites) and a bounded body.
func (u *UI) form(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := u.cfg.CrossOrigin.Check(r); err != nil {
			u.renderError(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
		if err := r.ParseForm(); err != nil {
			u.renderError(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		next(w, r)
	}
}

// view is what every page template gets.
type view struct {
	Title   string
	Nav     string
	User    *User
	Version string
	Flash   string
	Error   string
	Status  int
	// Path is the request's path and query, for the sign-in link.
	Path string
	// Next is where the sign-in form sends the user afterwards.
	Next string
	Data any
}

const flashCookie = "portal_flash"

// redirect answers a form with a redirect to target, carrying msg to the
// next page in a short-lived cookie.
func (u *UI) redirect(w http.ResponseWriter, r *http.Request, target, msg string) {
	if msg != "" {
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: "/ui/", MaxAge: 60,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// takeFlash reads and clears the flash message.
func takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/ui/", MaxAge: -1})
	msg, _ := url.QueryUnescape(c.Value)
	return msg
}

// render writes page name with status. Rendering into a buffer first
// means a template failure is a clean 500, never half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	t, ok := u.pages[name]
	if !ok {
		u.log.Error("webui: no such page", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if v.User == nil {
		v.User = u.be.CurrentUser(r)
	}
	v.Version = u.cfg.Version
	v.Status = status
	v.Path = r.URL.RequestURI()
	if v.Flash == "" && status < 300 {
		v.Flash = takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		u.log.Error("webui: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// renderError shows an error page.
func (u *UI) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	u.render(w, r, status, "error", view{Title: http.StatusText(status), Error: msg})
}

// fail shows err: its own message for an *Error, "not found" for
// ErrNotFound, a generic message (and a log line) for anything else.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		u.renderError(w, r, e.Status, e.Message)
	case errors.Is(err, ErrNotFound):
		u.renderError(w, r, http.StatusNotFound, "Not found: it does not exist, or you may not see it.")
	default:
		u.log.Error("webui: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		u.renderError(w, r, http.StatusInternalServerError, "Something went wrong on the server. The log has the details.")
	}
}

// userMessage is the message of err to show inside a form, or "" when err
// is not one meant for users (and was logged).
func (u *UI) userMessage(r *http.Request, err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if errors.Is(err, ErrNotFound) {
		return "Not found."
	}
	u.log.Error("webui: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return "Something went wrong on the server. The log has the details."
}

func (u *UI) parsePages() (map[string]*template.Template, error) {
	base, err := template.New("base").Funcs(u.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("webui: layout: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if b := path.Base(n); b == "layout.html" || b == "partials.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("webui: %s: %w", n, err)
		}
		pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	return pages, nil
}

// RenderLogin writes the sign-in page with status and, when msg is not
// empty, an error. The form posts username and password to /login.
func (u *UI) RenderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	next := SafeNext(r.FormValue("next"))
	if next == "/" {
		next = ""
	}
	u.render(w, r, status, "login", view{Title: "Sign in", Error: msg, Next: next})
}

// LoginURL is the sign-in page that returns to path (a local path and
// query) afterwards.
func LoginURL(path string) string {
	if SafeNext(path) == "/" {
		return "/login"
	}
	return "/login?next=" + url.QueryEscape(path)
}

// SafeNext returns next if it is a path on this site ("/ui/files?x=1"),
// else "/": a sign-in never sends anyone to another site. Control
// characters are refused anywhere (url.Parse lets them pass in a
// fragment, and a Location header must not carry them).
func SafeNext(next string) string {
	if len(next) > 2000 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") ||
		strings.ContainsRune(next, '\\') || strings.ContainsFunc(next, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}
