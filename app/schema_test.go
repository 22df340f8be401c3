package app

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

// compiledSchema compiles the embedded JSON Schema of an event type with a
// real validator (formats asserted).
func compiledSchema(tb testing.TB, eventType string) *jsonschema.Schema {
	tb.Helper()
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if s, ok := schemaCache[eventType]; ok {
		return s
	}
	raw := EventSchema(eventType)
	if raw == nil {
		tb.Fatalf("no schema for event type %q", eventType)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("schema %s: %v", eventType, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "mem://schemas/" + eventType + ".json"
	if err := c.AddResource(url, doc); err != nil {
		tb.Fatalf("schema %s: %v", eventType, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		tb.Fatalf("compile schema %s: %v", eventType, err)
	}
	schemaCache[eventType] = s
	return s
}

// MustValidatePayload fails the test unless payload is valid against the
// schema of its own event_type.
func MustValidatePayload(tb testing.TB, payload []byte) {
	tb.Helper()
	var head struct {
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		tb.Fatalf("payload is not JSON: %v\n%s", err, payload)
	}
	if err := validatePayload(tb, head.EventType, payload); err != nil {
		tb.Fatalf("payload invalid against %s schema: %v\n%s", head.EventType, err, payload)
	}
}

func validatePayload(tb testing.TB, eventType string, payload []byte) error {
	tb.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return err
	}
	return compiledSchema(tb, eventType).Validate(v)
}

func TestSchemaRejectsBadPayloads(t *testing.T) {
	good := `{"event_type":"file.uploaded","event_id":"01a207ca-0674-7570-b834-55c3919fb17b",
	"occurred_at":"2026-11-23T09:43:30.163Z","file":{"id":"01a207ca-0673-7e8a-93d4-b765bcb0528a",
	"filename":"a.txt","content_type":"text/plain","size_bytes":1,
	"sha256":"b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
	"storage":{"backend":"local","bucket":"uploads","key":"k"},"expires_at":"2026-11-30T09:43:30.163Z",
	"metadata":{},"download_url":"http://127.0.0.1:8080/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a/content"},
	"actor":{"user_id":null,"username":null},"source":"http://127.0.0.1:8080"}`
	deleted := strings.Replace(strings.Replace(good, `"file.uploaded"`, `"file.deleted"`, 1), `"source"`, `"reason":"expired","source"`, 1)
	for typ, p := range map[string]string{"file.uploaded": good, "file.deleted": deleted} {
		if err := validatePayload(t, typ, []byte(p)); err != nil {
			t.Fatalf("good %s payload rejected: %v", typ, err)
		}
	}
	bad := map[string]struct{ typ, payload string }{
		"missing actor":       {"file.uploaded", strings.Replace(good, `"actor":{"user_id":null,"username":null},`, "", 1)},
		"upper-case sha256":   {"file.uploaded", strings.Replace(good, "b94d27b9", "B94D27B9", 1)},
		"event_id not uuid7":  {"file.uploaded", strings.Replace(good, "01a207ca-0674-7570", "01a207ca-0674-4570", 1)},
		"negative size":       {"file.uploaded", strings.Replace(good, `"size_bytes":1`, `"size_bytes":-1`, 1)},
		"missing storage key": {"file.uploaded", strings.Replace(good, `,"key":"k"`, "", 1)},
		"wrong type":          {"file.uploaded", strings.Replace(good, `"event_type":"file.uploaded"`, `"event_type":"file.stored"`, 1)},
		"local time":          {"file.uploaded", strings.Replace(good, "09:43:30.163Z", "09:43:30.163+01:00", 1)},
		// The fields the portal always sends are required, so consumers
		// can rely on them.
		"missing source":              {"file.uploaded", strings.Replace(good, `,"source":"http://127.0.0.1:8080"`, "", 1)},
		"missing file.expires_at":     {"file.uploaded", strings.Replace(good, `"expires_at":"2026-11-30T09:43:30.163Z",`, "", 1)},
		"missing file.metadata":       {"file.uploaded", strings.Replace(good, `"metadata":{},`, "", 1)},
		"missing file.download_url":   {"file.uploaded", strings.Replace(good, `,"download_url":"http://127.0.0.1:8080/api/v1/files/01a207ca-0673-7e8a-93d4-b765bcb0528a/content"`, "", 1)},
		"file.deleted without reason": {"file.deleted", strings.Replace(deleted, `"reason":"expired",`, "", 1)},
		"file.deleted without source": {"file.deleted", strings.Replace(deleted, `,"source":"http://127.0.0.1:8080"`, "", 1)},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			if c.payload == good || c.payload == deleted {
				t.Fatal("the case changes nothing")
			}
			if err := validatePayload(t, c.typ, []byte(c.payload)); err == nil {
				t.Fatalf("payload accepted:\n%s", c.payload)
			}
		})
	}
	// The same requirements hold for file.expiring.
	expiring := strings.Replace(good, `"file.uploaded"`, `"file.expiring"`, 1)
	if err := validatePayload(t, "file.expiring", []byte(expiring)); err != nil {
		t.Fatalf("good file.expiring payload rejected: %v", err)
	}
	if err := validatePayload(t, "file.expiring", []byte(strings.Replace(expiring, `"metadata":{},`, "", 1))); err == nil {
		t.Fatal("file.expiring without file.metadata accepted")
	}
}
