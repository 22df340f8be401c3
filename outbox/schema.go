package outbox

import (
	"embed"
	"io/fs"
)

//go:embed schema/*.sql
var schemaFS embed.FS

// Schema returns the outbox's migrations: numbered SQL files
// (NNNN_name.sql) that create and change its tables (events, endpoints,
// endpoint_secrets, deliveries, delivery_attempts). The program that owns
// the database applies them in order, each once; nothing outside this
// package writes SQL against those tables.
func Schema() fs.FS {
	sub, err := fs.Sub(schemaFS, "schema")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return sub
}
