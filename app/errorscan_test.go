package app

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// errorBodiesScanned counts the error responses (status >= 400) of every
// test portal whose bodies were checked for the data directory's path.
var errorBodiesScanned atomic.Int64

// scanErrorBodies wraps a test portal's handler: every error response
// (status >= 400) must not name the data directory, whatever the request.
// A path in an error body tells a client where the portal keeps its data.
func scanErrorBodies(tb testing.TB, dataDir string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &errorBodyRecorder{statusRecorder: statusRecorder{ResponseWriter: w}}
			next.ServeHTTP(rec, r)
			if rec.status < 400 {
				return
			}
			errorBodiesScanned.Add(1)
			body := rec.body.String()
			for _, h := range rec.Header() {
				body += " " + strings.Join(h, " ")
			}
			if strings.Contains(body, dataDir) {
				tb.Errorf("%s %s answered %d with the data directory in it: %q", r.Method, r.URL.Path, rec.status, body)
			}
		})
	}
}

// errorBodyRecorder keeps a copy of the body of an error response; the
// status comes from the portal's own statusRecorder.
type errorBodyRecorder struct {
	statusRecorder
	body bytes.Buffer
}

func (e *errorBodyRecorder) Write(b []byte) (int, error) {
	n, err := e.statusRecorder.Write(b)
	if e.status >= 400 && e.body.Len() < 64<<10 {
		e.body.Write(b[:n])
	}
	return n, err
}
