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
	"storage":{"backend":"local","bucket":"uploads","key":"k"}},"actor":{"user_id":null,"username":null}}`
	if err := validatePayload(t, "file.uploaded", []byte(good)); err != nil {
		t.Fatalf("good payload rejected: %v", err)
	}
	bad := map[string]string{
		"missing actor":       strings.Replace(good, `,"actor":{"user_id":null,"username":null}`, "", 1),
		"upper-case sha256":   strings.Replace(good, "b94d27b9", "B94D27B9", 1),
		"event_id not uuid7":  strings.Replace(good, "01a207ca-0674-7570", "01a207ca-0674-4570", 1),
		"negative size":       strings.Replace(good, `"size_bytes":1`, `"size_bytes":-1`, 1),
		"missing storage key": strings.Replace(good, `,"key":"k"`, "", 1),
		"wrong type":          strings.Replace(good, `"event_type":"file.uploaded"`, `"event_type":"file.stored"`, 1),
		"local time":          strings.Replace(good, "09:43:30.163Z", "09:43:30.163+01:00", 1),
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			if err := validatePayload(t, "file.uploaded", []byte(p)); err == nil {
				t.Fatalf("payload accepted:\n%s", p)
			}
		})
	}
}
