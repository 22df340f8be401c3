package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The served document is the embedded one, public, and valid OpenAPI 3.1.
func TestOpenAPIDocumentServed(t *testing.T) {
	a := MustOpen(t, Config{})
	resp, err := http.Get(a.URL() + openAPIPath) // no credentials
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %s %s", openAPIPath, resp.Status, resp.Header.Get("Content-Type"))
	}
	if string(body) != string(OpenAPIDocument()) {
		t.Fatal("the served document is not the embedded one")
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q: %v", doc.OpenAPI, err)
	}
	if _, _, err := loadContract(); err != nil {
		t.Fatal(err)
	}
}

// openAPIOperations lists the document's operations as "METHOD /path".
func openAPIOperations(t *testing.T) []string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range doc.Paths {
		for method := range item {
			if method != "parameters" && method != "summary" && method != "description" {
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// Every /api/ route the portal registers has an operation in the
// document, and every operation a route: a new route cannot go
// undocumented, nor a removed one stay documented.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	a := MustOpen(t, Config{})
	var routes []string
	for _, p := range a.auth.routePatterns {
		if p == "/api/" { // the JSON 404 for everything else
			continue
		}
		if strings.Contains(p, " /api/") {
			routes = append(routes, p)
		} else if strings.HasPrefix(p, "/api/") {
			t.Errorf("route %q has no method; the document cannot describe it", p)
		}
	}
	slices.Sort(routes)
	ops := openAPIOperations(t)
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s is not in app/api/v1/openapi.json", r)
		}
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) {
			t.Errorf("the document has %s, which the portal does not serve", op)
		}
	}
	if len(ops) < 28 {
		t.Errorf("%d operations, want every /api/v1 route", len(ops))
	}
}

// The document's webhooks are every event type the portal sends, each
// referencing (not copying) the event's JSON Schema.
func TestOpenAPIWebhooksReferenceEventSchemas(t *testing.T) {
	var doc struct {
		Webhooks map[string]struct {
			Post struct {
				Parameters []struct {
					Ref string `json:"$ref"`
				} `json:"parameters"`
				RequestBody struct {
					Content map[string]struct {
						Schema json.RawMessage `json:"schema"`
					} `json:"content"`
				} `json:"requestBody"`
			} `json:"post"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal(OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	sent := append(slices.Clone(subscribableEventTypes), EventPortalTest)
	if len(doc.Webhooks) != len(sent) {
		t.Errorf("%d webhooks, want %d (%v)", len(doc.Webhooks), len(sent), sent)
	}
	for _, typ := range sent {
		wh, ok := doc.Webhooks[typ]
		if !ok {
			t.Errorf("no webhook %s", typ)
			continue
		}
		want := `{"$ref":"../../schemas/` + typ + `.json"}`
		if got := compactJSON(t, wh.Post.RequestBody.Content["application/json"].Schema); got != want {
			t.Errorf("webhook %s: schema %s, want %s", typ, got, want)
		}
		if EventSchema(typ) == nil {
			t.Errorf("webhook %s: no app/schemas/%s.json", typ, typ)
		}
		var params []string
		for _, p := range wh.Post.Parameters {
			params = append(params, p.Ref)
		}
		for _, h := range []string{"WebhookID", "WebhookTimestamp", "WebhookSignature", "WebhookDelivery"} {
			if !slices.Contains(params, "#/components/parameters/"+h) {
				t.Errorf("webhook %s lacks the %s header", typ, h)
			}
		}
	}
}

func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// recordingTB keeps what the contract checker reports instead of failing.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) reported() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.errs
	r.errs = nil
	return out
}

// The contract test fails on answers the document does not describe: a
// portal whose answers are tampered with on their way out is caught, each
// way, and an untampered one is not.
func TestContractCatchesUndescribedAnswers(t *testing.T) {
	var mu sync.Mutex
	tamper := func(w http.ResponseWriter, r *http.Request) bool { return false }
	rec := &recordingTB{TB: t}
	a := MustOpen(rec, Config{wrapHandler: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			f := tamper
			mu.Unlock()
			if !f(w, r) {
				next.ServeHTTP(w, r)
			}
		})
	}})
	tok := mustAdminToken(t, a)
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		tamper func(w http.ResponseWriter, r *http.Request) bool
		want   string
	}{
		{"as the portal answers", "GET", "/api/v1/me", "", nil, ""},
		{"an undocumented field", "GET", "/api/v1/me", "", func(w http.ResponseWriter, r *http.Request) bool {
			writeJSON(w, 200, map[string]any{"user": map[string]any{"id": "01a207ca-0673-7e8a-93d4-b765bcb0528a",
				"username": "admin", "role": "admin", "disabled": false, "created_at": "2026-11-23T09:43:30.163Z"},
				"auth": "token", "debug": true})
			return true
		}, "debug"},
		{"a missing required field", "GET", "/api/v1/users", "", func(w http.ResponseWriter, r *http.Request) bool {
			writeJSON(w, 200, map[string]any{"items": []any{map[string]any{"id": "01a207ca-0673-7e8a-93d4-b765bcb0528a"}}})
			return true
		}, "missing properties"},
		{"an undocumented status", "DELETE", "/api/v1/tokens/01a207ca-0673-7e8a-93d4-b765bcb0528a", "",
			func(w http.ResponseWriter, r *http.Request) bool {
				writeJSON(w, http.StatusTeapot, map[string]any{"error": map[string]string{"code": "teapot", "message": "no"}})
				return true
			}, "418"},
		{"an error without the error shape", "GET", "/api/v1/files/not-a-uuid", "", func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "bad id", http.StatusBadRequest)
			return true
		}, "400"},
		{"a refused request accepted", "GET", "/api/v1/files?limit=9999", "", func(w http.ResponseWriter, r *http.Request) bool {
			writeJSON(w, 200, map[string]any{"items": []any{}})
			return true
		}, "refuses this request"},
		{"a route the document lacks", "GET", "/api/v1/secret", "", func(w http.ResponseWriter, r *http.Request) bool {
			writeJSON(w, 200, map[string]any{"items": []any{}})
			return true
		}, "no such operation"},
		{"a wrong type", "GET", "/api/v1/endpoints", "", func(w http.ResponseWriter, r *http.Request) bool {
			writeJSON(w, 200, map[string]any{"items": "none"})
			return true
		}, "items"},
	}
	for _, c := range cases {
		mu.Lock()
		tamper = func(w http.ResponseWriter, r *http.Request) bool { return false }
		if c.tamper != nil {
			tamper = c.tamper
		}
		mu.Unlock()
		st, body := doAs(t, tok, c.method, a.URL()+c.path, nil, nil)
		got := rec.reported()
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("%s: %d %s: reported %q", c.name, st, body, got)
		case c.want != "" && len(got) == 0:
			t.Errorf("%s: %d %s: not reported", c.name, st, body)
		case c.want != "" && !strings.Contains(strings.Join(got, "\n"), c.want):
			t.Errorf("%s: reported %q, want it to mention %q", c.name, got, c.want)
		}
	}
}

// The contract test validates webhook deliveries against the document's
// webhooks, with the event schemas it references.
func TestContractWebhooks(t *testing.T) {
	payload := `{"event_type":"portal.test","event_id":"01a207ca-0674-7570-b834-55c3919fb17b",
	"occurred_at":"2026-11-23T09:43:30.163Z","endpoint_id":"01a207ca-0673-7e8a-93d4-b765bcb0528a",
	"actor":{"user_id":null,"username":null},"source":"http://127.0.0.1:8080","message":"hi"}`
	headers := map[string]string{"Content-Type": "application/json", "User-Agent": "doorito-portal/test",
		"webhook-id": "01a207ca-0674-7570-b834-55c3919fb17b", "webhook-timestamp": "1764236610",
		"webhook-signature":  "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,c2ln",
		"X-Webhook-Delivery": "01a207ca-0675-7570-b834-55c3919fb17b"}
	cases := []struct {
		name, body, header, value, want string
	}{
		{"a delivery as the portal sends it", payload, "", "", ""},
		{"a payload without its source", strings.Replace(payload, `,"source":"http://127.0.0.1:8080"`, "", 1), "", "", "source"},
		{"an event_id that is not a UUIDv7", strings.Replace(payload, "7570-b834", "4570-b834", 1), "", "", "event_id"},
		{"no webhook-signature", payload, "webhook-signature", "", "webhook-signature"},
		{"a malformed signature", payload, "webhook-signature", "sha256=abc", "webhook-signature"},
		{"no X-Webhook-Delivery", payload, "X-Webhook-Delivery", "", "X-Webhook-Delivery"},
		{"an event type the document lacks", strings.Replace(payload, `"portal.test"`, `"portal.other"`, 1), "", "", "no webhook"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", "http://127.0.0.1/hook", strings.NewReader(c.body))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		if c.header != "" {
			req.Header.Del(c.header)
			if c.value != "" {
				req.Header.Set(c.header, c.value)
			}
		}
		got := checkWebhook(req, []byte(c.body))
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s: reported %s", c.name, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: reported %q, want it to mention %q", c.name, got, c.want)
		}
	}
}

// The answers the other tests do not provoke, so the contract test checks
// the document's word on them too: ranges, conditional downloads, a range
// outside the file (Go's plain-text 416), and a body over the limit.
func TestContractRareAnswers(t *testing.T) {
	a := MustOpen(t, Config{})
	tok := mustAdminToken(t, a)
	f, ok := fileByUpload(t, a, MustUpload(t, a.URL(), []byte("hello"), 5, map[string]string{"filename": "h.txt"}))
	if !ok {
		t.Fatal("no file row")
	}
	content := a.URL() + "/api/v1/files/" + f.ID + "/content"
	cases := []struct {
		name   string
		method string
		url    string
		body   string
		hdr    map[string]string
		want   int
	}{
		{"a range", "GET", content, "", map[string]string{"Range": "bytes=1-2"}, http.StatusPartialContent},
		{"not modified", "GET", content, "", map[string]string{"If-Modified-Since": f.StoredAt.Add(time.Hour).UTC().Format(http.TimeFormat)},
			http.StatusNotModified},
		{"a range outside the file", "GET", content, "", map[string]string{"Range": "bytes=100-200"},
			http.StatusRequestedRangeNotSatisfiable},
		{"an endpoint body over 64 KiB", "POST", a.URL() + "/api/v1/endpoints",
			`{"url":"https://example.com/hook","description":"` + strings.Repeat("x", 70<<10) + `"}`, nil,
			http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		st, got := doAs(t, tok, c.method, c.url, body, c.hdr)
		if st != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, st, truncate(string(got), 200), c.want)
		}
	}
}
