package app

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/tus"
)

// Error is an API error: an HTTP status, a stable machine-readable code and
// a message safe to show. It is written as {"error": {"code", "message"}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errBadRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: msg}
}

func errNotFound(what string) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: what + " not found"}
}

// writeJSON writes v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// writeError writes err as a JSON error: an operation's *OpError or an
// *Error with its status; anything else is logged and answered with a
// generic 500 that leaks nothing.
func (a *App) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := apiError(err)
	if e == nil && errors.Is(storageFull(err), tus.ErrStorageFull) {
		e = &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage",
			Message: "the portal's storage is full; nothing was changed; try again later"}
		a.log.Error("request failed: storage full", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e == nil {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if e.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portal"`)
	}
	writeJSON(w, e.Status, map[string]*Error{"error": e})
}

// handlerFunc is an HTTP handler that returns its error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *App) h(fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// routes builds the portal's HTTP handler. It is the route table, one line
// per route, and stays one function so the whole surface reads in one place.
func (a *App) routes() http.Handler {
	mux := &routeMux{ServeMux: http.NewServeMux(), ops: map[string]access.Op{}}
	uploads := a.guardUploads(a.tus)
	mux.Handle("/files/", http.StripPrefix("/files/", uploads))
	mux.Handle("/files", http.StripPrefix("/files", uploads))

	// The OpenAPI document is public, like the event schemas.
	mux.Handle("GET "+openAPIPath, a.h(a.serveOpenAPI))
	// Every API route names the operation it performs; allow checks the
	// access policy before the handler runs (POST /api/v1/tokens takes a
	// password instead, and the operation checks).
	api := func(pattern string, op access.Op, fn handlerFunc) {
		mux.Handle(pattern, a.allow(op, fn))
		mux.ops[pattern] = op
	}
	api("GET /api/v1/files", access.FileRead, a.apiListFiles)
	api("GET /api/v1/files/{id}", access.FileRead, a.apiGetFile)
	api("PATCH /api/v1/files/{id}", access.FileExpiry, a.apiPatchFile)
	api("DELETE /api/v1/files/{id}", access.FileDelete, a.apiDeleteFile)
	api("GET /api/v1/files/{id}/content", access.FileRead, a.apiFileContent)
	api("GET /api/v1/events", access.EventRead, a.apiListEvents)
	api("GET /api/v1/events/{id}", access.EventRead, a.apiGetEvent)
	api("GET /api/v1/endpoints", access.EndpointRead, a.apiListEndpoints)
	api("POST /api/v1/endpoints", access.EndpointWrite, a.apiCreateEndpoint)
	api("GET /api/v1/endpoints/{id}", access.EndpointRead, a.apiGetEndpoint)
	api("PATCH /api/v1/endpoints/{id}", access.EndpointWrite, a.apiUpdateEndpoint)
	api("DELETE /api/v1/endpoints/{id}", access.EndpointWrite, a.apiDeleteEndpoint)
	api("POST /api/v1/endpoints/{id}/rotate-secret", access.EndpointWrite, a.apiRotateSecret)
	api("POST /api/v1/endpoints/{id}/test", access.EndpointWrite, a.apiTestEndpoint)
	api("POST /api/v1/endpoints/{id}/replay", access.EndpointWrite, a.apiReplayEndpoint)
	api("GET /api/v1/endpoints/{id}/deliveries", access.EventRead, a.apiListEndpointDeliveries)
	api("GET /api/v1/deliveries", access.EventRead, a.apiListDeliveries)
	api("GET /api/v1/deliveries/{id}", access.EventRead, a.apiGetDelivery)
	api("POST /api/v1/deliveries/{id}/retry", access.DeliveryRetry, a.apiRetryDelivery)
	api("GET /api/v1/me", access.Me, a.apiMe)
	mux.Handle("POST /api/v1/tokens", a.h(a.apiCreateToken))
	mux.ops["POST /api/v1/tokens"] = access.TokenWrite
	api("GET /api/v1/tokens", access.TokenRead, a.apiListTokens)
	api("DELETE /api/v1/tokens/{id}", access.TokenWrite, a.apiRevokeToken)
	api("GET /api/v1/users", access.UserRead, a.apiListUsers)
	api("POST /api/v1/users", access.UserWrite, a.apiCreateUser)
	api("PATCH /api/v1/users/{id}", access.UserWrite, a.apiUpdateUser)
	api("DELETE /api/v1/users/{id}", access.UserWrite, a.apiDeleteUser)
	// Not an API route: 404 for a user, 401 without credentials (the
	// API says nothing to strangers).
	mux.Handle("/api/", a.allow(access.Me, func(w http.ResponseWriter, r *http.Request) error {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such API route: " + r.Method + " " + r.URL.Path}
	}))

	mux.Handle("GET /schemas/{name}", a.h(a.serveSchema))
	if a.cfg.MetricsListen == "" {
		mux.Handle("GET /metrics", a.metricsHandler())
	}
	mux.Handle("GET /healthz", a.h(a.healthz))
	mux.Handle("GET /readyz", a.h(a.readyz))
	ui := a.newWebUI()
	a.auth.loginForm = ui.RenderLogin
	mux.Handle("GET /login", a.uiLoginPage(ui))
	mux.Handle("POST /login", a.h(a.login))
	mux.Handle("POST /logout", a.h(a.logout))
	mux.Handle("/", ui)
	a.auth.routePatterns, a.auth.routeOps = mux.patterns, mux.ops
	return a.logRequests(a.authenticate(mux))
}

// statusRecorder remembers the status a handler wrote. It keeps Unwrap so
// http.ResponseController (which tusd uses for deadlines) still reaches the
// connection.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests writes one log line per request with its status and
// duration. Successful tus PATCHes (one per chunk) log at debug level.
func (a *App) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		level := slog.LevelInfo
		if r.Method == http.MethodPatch && rec.status < 400 || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" ||
			strings.HasPrefix(r.URL.Path, "/static/") {
			level = slog.LevelDebug
		}
		if rec.status >= 500 {
			level = slog.LevelWarn
		}
		elapsed := time.Since(start)
		metricRequestDuration.WithLabelValues(routeGroup(r.URL.Path), methodLabel(r.Method), statusClass(rec.status)).
			Observe(elapsed.Seconds())
		a.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes", rec.bytes, "duration", elapsed, "remote", r.RemoteAddr)
	})
}

// routeMux is a ServeMux that remembers its patterns, so the
// authorization test can walk every route, including ones added later.
type routeMux struct {
	*http.ServeMux
	patterns []string
	// ops are the operations the API's routes perform.
	ops map[string]access.Op
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
