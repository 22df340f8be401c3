package app

import (
	"embed"
	"net/http"
	"strings"
)

// schemaFS holds the JSON Schemas of the events (one file per event type).
//
//go:embed schemas/*.json
var schemaFS embed.FS

// EventSchema returns the JSON Schema of an event type, or nil.
func EventSchema(eventType string) []byte {
	b, err := schemaFS.ReadFile("schemas/" + eventType + ".json")
	if err != nil {
		return nil
	}
	return b
}

// serveSchema serves GET /schemas/{event_type}.json.
func (a *App) serveSchema(w http.ResponseWriter, r *http.Request) error {
	name, ok := strings.CutSuffix(r.PathValue("name"), ".json")
	b := EventSchema(name)
	if !ok || b == nil {
		return errNotFound("schema")
	}
	w.Header().Set("Content-Type", "application/schema+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(b)
	return nil
}
