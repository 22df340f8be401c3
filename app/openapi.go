package app

import (
	_ "embed"
	"net/http"
)

// openAPIPath is where the portal serves its OpenAPI document.
const openAPIPath = "/api/v1/openapi.json"

// openAPIDoc is the OpenAPI 3.1 document of the JSON API and the webhooks.
// It sits at the path it is served under (api/v1/ here, /api/v1/ on the
// portal), so its relative references to the event schemas
// (../../schemas/{type}.json) resolve alike in the repository and against
// a running portal's /schemas/.
//
//go:embed api/v1/openapi.json
var openAPIDoc []byte

// OpenAPIDocument returns the OpenAPI document the portal serves.
func OpenAPIDocument() []byte { return openAPIDoc }

// serveOpenAPI serves GET /api/v1/openapi.json (public, like /schemas/).
func (a *App) serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDoc)
	return nil
}
