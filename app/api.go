package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// The JSON API's decoding: one body decoder, path ids and query values.
// Handlers (api_*.go) decode a request with these, call one operation
// (ops.go) and write its result; errors become JSON in writeError.

// maxJSONBody bounds every JSON request body of the API.
const maxJSONBody = 64 << 10

// decodeJSON reads a JSON object body into v, refusing unknown fields and
// trailing data; a body over maxJSONBody is 413. An empty body is allowed
// (v stays as it is) when emptyOK.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("the request body is larger than %d bytes", maxJSONBody)}
	}
	if err != nil {
		return errBadRequest("the request body could not be read")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if emptyOK {
			return nil
		}
		return errBadRequest("the request needs a JSON body")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadRequest("invalid JSON body: " + err.Error())
	}
	if dec.More() {
		return errBadRequest("invalid JSON body: data after the object")
	}
	// null says nothing a request can mean here (absent fields stay as
	// they are), except where a field documents it: refused, not ignored.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return errBadRequest("invalid JSON body: want an object")
	}
	known := jsonFieldNames(reflect.TypeOf(v))
	for k, raw := range fields {
		// encoding/json matches keys without regard to case: "desCription"
		// would set description. Keys are exact, as the document says.
		if known != nil && !known[k] {
			return errBadRequest(fmt.Sprintf("invalid JSON body: unknown field %q", k))
		}
		if string(raw) == "null" && !nullableFields[k] {
			return errBadRequest(fmt.Sprintf("invalid JSON body: %s must not be null (leave it out to keep it as it is)", k))
		}
	}
	return nil
}

// fieldNames caches jsonFieldNames by type (request types are few and fixed).
var fieldNames sync.Map // reflect.Type -> map[string]bool

// jsonFieldNames returns the exact JSON keys of the struct t points to
// (embedded structs' included), or nil when t is not a pointer to a struct.
func jsonFieldNames(t reflect.Type) map[string]bool {
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	if names, ok := fieldNames.Load(t); ok {
		return names.(map[string]bool)
	}
	names := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(st reflect.Type) {
		for i := range st.NumField() {
			f := st.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			names[name] = true
		}
	}
	walk(t.Elem())
	fieldNames.Store(t, names)
	return names
}

// nullableFields are the request fields where null means something
// (quota_bytes: back to the portal's default; expires_in: no expiry).
var nullableFields = map[string]bool{"quota_bytes": true, "expires_in": true}

// isUUID reports whether s is a UUID in its canonical 36-character form
// (uuid.Parse also takes "urn:uuid:…", braces and bare hex, which name no
// row: ids are stored canonical).
func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// pathUUID returns the {id} path value, or a 400 when it is not a UUID.
func pathUUID(r *http.Request, what string) (string, error) {
	id := r.PathValue("id")
	if !isUUID(id) {
		return "", errBadRequest(what + " id must be a UUID")
	}
	return strings.ToLower(id), nil
}

// queryLimit reads ?limit=: a whole number (the operation checks its
// range); absent is 0, the operation's default.
func queryLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errBadRequest("limit must be a whole number from 1 to 500")
	}
	return n, nil
}

// queryBool reads a boolean query value: true/1 or false/0, absent false.
func queryBool(q url.Values, name string) (bool, error) {
	switch q.Get(name) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, errBadRequest(name + " must be true or false")
}

// apiError is the API's form of an operation's error.
func apiError(err error) *Error {
	var oe *OpError
	if errors.As(err, &oe) {
		return &Error{Status: oe.Status(), Code: oe.Code, Message: oe.Message}
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
