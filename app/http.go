package app

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
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

// writeError writes err as a JSON error. Errors that are not *Error are
// logged and answered with a generic 500 that leaks nothing.
func (a *App) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
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

// routes builds the portal's HTTP handler.
func (a *App) routes() http.Handler {
	mux := &routeMux{ServeMux: http.NewServeMux()}
	uploads := a.guardUploads(a.tus)
	mux.Handle("/files/", http.StripPrefix("/files/", uploads))
	mux.Handle("/files", http.StripPrefix("/files", uploads))

	mux.Handle("GET "+openAPIPath, a.h(a.serveOpenAPI))
	mux.Handle("GET /api/v1/files", a.h(a.apiListFiles))
	mux.Handle("GET /api/v1/files/{id}", a.h(a.apiGetFile))
	mux.Handle("PATCH /api/v1/files/{id}", a.h(a.apiPatchFile))
	mux.Handle("DELETE /api/v1/files/{id}", a.h(a.apiDeleteFile))
	mux.Handle("GET /api/v1/files/{id}/content", a.h(a.apiFileContent))
	mux.Handle("GET /api/v1/events", a.h(a.apiListEvents))
	mux.Handle("GET /api/v1/events/{id}", a.h(a.apiGetEvent))
	mux.Handle("GET /api/v1/endpoints", a.h(a.apiListEndpoints))
	mux.Handle("POST /api/v1/endpoints", a.h(a.apiCreateEndpoint))
	mux.Handle("GET /api/v1/endpoints/{id}", a.h(a.apiGetEndpoint))
	mux.Handle("PATCH /api/v1/endpoints/{id}", a.h(a.apiUpdateEndpoint))
	mux.Handle("DELETE /api/v1/endpoints/{id}", a.h(a.apiDeleteEndpoint))
	mux.Handle("POST /api/v1/endpoints/{id}/rotate-secret", a.h(a.apiRotateSecret))
	mux.Handle("POST /api/v1/endpoints/{id}/test", a.h(a.apiTestEndpoint))
	mux.Handle("POST /api/v1/endpoints/{id}/replay", a.h(a.apiReplayEndpoint))
	mux.Handle("GET /api/v1/endpoints/{id}/deliveries", a.h(a.apiListEndpointDeliveries))
	mux.Handle("GET /api/v1/deliveries", a.h(a.apiListDeliveries))
	mux.Handle("GET /api/v1/deliveries/{id}", a.h(a.apiGetDelivery))
	mux.Handle("POST /api/v1/deliveries/{id}/retry", a.h(a.apiRetryDelivery))
	mux.Handle("GET /api/v1/me", a.h(a.apiMe))
	mux.Handle("POST /api/v1/tokens", a.h(a.apiCreateToken))
	mux.Handle("GET /api/v1/tokens", a.h(a.apiListTokens))
	mux.Handle("DELETE /api/v1/tokens/{id}", a.h(a.apiRevokeToken))
	mux.Handle("GET /api/v1/users", a.h(a.apiListUsers))
	mux.Handle("POST /api/v1/users", a.h(a.apiCreateUser))
	mux.Handle("PATCH /api/v1/users/{id}", a.h(a.apiUpdateUser))
	mux.Handle("DELETE /api/v1/users/{id}", a.h(a.apiDeleteUser))
	mux.Handle("/api/", a.h(func(w http.ResponseWriter, r *http.Request) error {
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
	a.auth.routePatterns = mux.patterns
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
