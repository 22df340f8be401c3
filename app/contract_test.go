package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	vErrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
	"github.com/pb33f/libopenapi/datamodel"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// The contract test: every request the package's tests send to /api/ on
// a test portal, and the portal's answer, are validated against the
// OpenAPI document the portal serves (app/api/v1/openapi.json) by
// pb33f's libopenapi-validator, with formats asserted and in strict mode
// (a property, query parameter or header the document does not declare is
// a mismatch). MustOpen wraps every portal's handler with it, so a
// mismatch fails the test that made the request. Webhook deliveries that
// the tests' receivers get are validated against the document's webhooks.
//
// The rules, for each /api/ exchange:
//   - the answer must be one the document describes for that request
//     (status, content type, body, headers);
//   - a request the document calls invalid must be refused (4xx);
//   - a route the document does not have must answer the JSON 404.

// contract is the compiled document and what it has validated.
var contract struct {
	once sync.Once
	err  error
	v    validator.Validator
	// plain is v without strict mode, for the document itself (whose
	// schema does not list every key of an OpenAPI document).
	plain validator.Validator
	doc   *v3.Document

	mu        sync.Mutex
	requests  int
	responses int
	webhooks  int
	late      []string // mismatches reported after their test ended
}

// loadContract compiles the embedded document once. Its references to
// the event schemas (../../schemas/…) resolve against the files beside it.
func loadContract() (validator.Validator, *v3.Document, error) {
	contract.once.Do(func() {
		cfg := datamodel.NewDocumentConfiguration()
		cfg.BasePath = filepath.Join("api", "v1")
		cfg.SpecFilePath = "openapi.json"
		cfg.AllowFileReferences = true
		// libopenapi logs failed look-ups of the relative schema references
		// while the validator warms its caches, then resolves them all the
		// same (TestContractWebhooks proves the schemas are enforced).
		cfg.Logger = slog.New(slog.DiscardHandler)
		doc, err := libopenapi.NewDocumentWithConfiguration(OpenAPIDocument(), cfg)
		if err != nil {
			contract.err = fmt.Errorf("parse the OpenAPI document: %w", err)
			return
		}
		m, err := doc.BuildV3Model()
		if err != nil {
			contract.err = fmt.Errorf("build the OpenAPI model: %w", err)
			return
		}
		contract.doc = &m.Model
		contract.v = validator.NewValidatorFromV3Model(&m.Model, config.WithFormatAssertions(), config.WithStrictMode(),
			// metadata maps have the client's keys; the session cookie is a
			// security scheme, which strict mode does not count as declared.
			// Query parameters the document does not declare are ignored by
			// the portal (a client's cache-buster, say), not refused.
			config.WithStrictIgnorePaths("$.body.metadata.*", "$.body.**.metadata.*", "$.cookies."+sessionCookie, "$.query.*"),
			// what browsers add to every request (the cross-origin check reads it)
			config.WithStrictIgnoredHeadersExtra("sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user"))
		contract.v.SetDocument(doc)
		contract.plain = validator.NewValidatorFromV3Model(&m.Model, config.WithFormatAssertions())
		if ok, errs := contract.v.ValidateDocument(); !ok {
			contract.err = fmt.Errorf("the OpenAPI document is invalid: %s", describe(errs))
		}
	})
	return contract.v, contract.doc, contract.err
}

// describe formats validation errors, one per line.
func describe(errs []*vErrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  - %s", e.Message)
		if e.Reason != "" && e.Reason != e.Message {
			fmt.Fprintf(&b, ": %s", e.Reason)
		}
		for _, se := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s: %s", se.FieldPath, se.Reason)
		}
	}
	return b.String()
}

// contractChecker validates the API traffic of one test portal and
// reports mismatches to its test.
type contractChecker struct {
	tb   testing.TB
	v    validator.Validator
	next http.Handler

	mu   sync.Mutex
	done bool // the test has ended: report to TestMain instead
}

// checkContract returns a wrapper for a test portal's handler that
// validates every /api/ exchange; the test fails on a mismatch.
func checkContract(tb testing.TB) func(http.Handler) http.Handler {
	tb.Helper()
	v, _, err := loadContract()
	if err != nil {
		tb.Fatal(err)
	}
	c := &contractChecker{tb: tb, v: v}
	// Registered before the portal's Close, so it runs after it: requests
	// still in flight while the portal stops are reported, not lost.
	tb.Cleanup(func() {
		c.mu.Lock()
		c.done = true
		c.mu.Unlock()
	})
	return func(next http.Handler) http.Handler {
		c.next = next
		return c
	}
}

func (c *contractChecker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		c.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		c.report(r, fmt.Sprintf("read the request body: %v", err))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &exchangeRecorder{statusRecorder: statusRecorder{ResponseWriter: w}}
	c.next.ServeHTTP(rec, r)
	if problem := c.check(r, body, rec); problem != "" {
		c.report(r, problem)
	}
}

// check validates one exchange and returns what is wrong with it, or "".
func (c *contractChecker) check(r *http.Request, body []byte, rec *exchangeRecorder) string {
	req := r.Clone(context.Background())
	if len(bytes.TrimSpace(body)) == 0 {
		// The portal takes a body of only white space as no body (decodeJSON).
		body, req.ContentLength = nil, 0
		req.Header.Del("Content-Length")
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	respBody := rec.body.Bytes()
	if r.Method == http.MethodHead {
		respBody = nil // what a handler writes to a HEAD, net/http does not send
	}
	resp := &http.Response{StatusCode: status, Header: rec.Header().Clone(), Request: req,
		Body: io.NopCloser(bytes.NewReader(respBody))}
	reqOK, reqErrs := c.v.ValidateHttpRequestSync(req)
	if !reqOK {
		reqErrs = slices.DeleteFunc(reqErrs, ignoredUndeclared)
		reqOK = len(reqErrs) == 0
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	contract.mu.Lock()
	contract.requests++
	contract.responses++
	contract.mu.Unlock()
	if !reqOK && unroutable(reqErrs) {
		return c.checkUnrouted(req, status, rec)
	}
	v := c.v
	var problems []string
	if req.URL.Path == openAPIPath {
		v = contract.plain
		if status == http.StatusOK && !bytes.Equal(rec.body.Bytes(), OpenAPIDocument()) {
			problems = append(problems, "the served document is not app/api/v1/openapi.json")
		}
	}
	respOK, respErrs := v.ValidateHttpResponse(req, resp)
	if !respOK {
		problems = append(problems, fmt.Sprintf("the document does not describe the answer %d %s:%s",
			status, truncate(rec.body.String(), 300), describe(respErrs)))
	}
	if !reqOK && status < 400 {
		problems = append(problems, fmt.Sprintf("the document refuses this request, but the portal answered %d:%s",
			status, describe(reqErrs)))
	}
	return strings.Join(problems, "\n")
}

// ignoredUndeclared reports whether e is a request header or query parameter
// the document does not declare: the portal ignores those it does not read
// (a Range on a list, say), so only the ones it reads must be declared, and
// those are checked by the operations' parameters.
func ignoredUndeclared(e *vErrors.ValidationError) bool {
	if e.ValidationType != vErrors.StrictValidationType {
		return false
	}
	// Query parameters it does not declare are ignored too (a client's
	// cache-buster, say), whatever their name ("$.query.*" in the ignore
	// paths misses names that need brackets, like ".").
	return e.ValidationSubType == vErrors.StrictSubTypeQuery ||
		e.ValidationSubType == vErrors.StrictSubTypeHeader && strings.HasPrefix(e.Message, "request header ")
}

// unroutable reports whether the request has no path or method in the
// document.
func unroutable(errs []*vErrors.ValidationError) bool {
	for _, e := range errs {
		if e.ValidationType == helpers.PathValidation || e.ValidationSubType == helpers.ValidationMissingOperation {
			return true
		}
	}
	return false
}

// checkUnrouted checks the answer to a request the document has no
// operation for: the portal must refuse it with a JSON error.
// A redirect to the cleaned path (net/http's ServeMux answers /api/./x
// with one to /api/x) is routing, not an operation: it passes.
func (c *contractChecker) checkUnrouted(req *http.Request, status int, rec *exchangeRecorder) string {
	switch status {
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		// (ServeMux escapes the cleaned path once more: "/api//%20" goes to
		// "/api/%2520", so the Location is unescaped twice to compare.)
		if loc, err := url.Parse(rec.Header().Get("Location")); err == nil && loc.Path != req.URL.Path {
			twice, _ := url.PathUnescape(loc.Path)
			if c := path.Clean(req.URL.Path); path.Clean(loc.Path) == c || path.Clean(twice) == c {
				return ""
			}
		}
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	err := json.Unmarshal(rec.body.Bytes(), &e)
	if status < 400 || err != nil || e.Error == nil || e.Error.Code == "" {
		return fmt.Sprintf("the document has no such operation, but the portal answered %d %s", status,
			truncate(rec.body.String(), 300))
	}
	return ""
}

// report fails the portal's test (or, after it ended, the run).
func (c *contractChecker) report(r *http.Request, problem string) {
	msg := fmt.Sprintf("OpenAPI contract: %s %s: %s", r.Method, r.URL.RequestURI(), problem)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		contract.mu.Lock()
		contract.late = append(contract.late, c.tb.Name()+": "+msg)
		contract.mu.Unlock()
		return
	}
	c.tb.Errorf("%s", msg)
}

// exchangeRecorder passes a response through and keeps its status (the
// request log's statusRecorder) and its body (JSON bodies only; others
// are not validated byte by byte).
type exchangeRecorder struct {
	statusRecorder
	body bytes.Buffer
}

func (e *exchangeRecorder) Write(b []byte) (int, error) {
	if strings.Contains(e.Header().Get("Content-Type"), "json") {
		e.body.Write(b)
	}
	return e.statusRecorder.Write(b)
}

// checkWebhook validates one webhook request a test receiver got against
// the document's webhook for its event type; it returns what is wrong.
func checkWebhook(r *http.Request, body []byte) string {
	v, doc, err := loadContract()
	if err != nil {
		return err.Error()
	}
	var head struct {
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "the body is not JSON: " + err.Error()
	}
	item, ok := doc.Webhooks.Get(head.EventType)
	if !ok {
		return fmt.Sprintf("the document has no webhook %q", head.EventType)
	}
	req := r.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(body))
	contract.mu.Lock()
	contract.webhooks++
	contract.mu.Unlock()
	if ok, errs := v.ValidateHttpRequestSyncWithPathItem(req, item, head.EventType); !ok {
		return fmt.Sprintf("the document's webhook %s does not describe this delivery:%s", head.EventType, describe(errs))
	}
	return ""
}

// TestMain runs the tests, then says how much API traffic the contract
// test validated (also into $PORTAL_CONTRACT_REPORT, which make test
// prints) and fails the run on mismatches found after their test ended.
func TestMain(m *testing.M) {
	code := m.Run()
	contract.mu.Lock()
	summary := fmt.Sprintf("OpenAPI contract: %d requests and %d responses of the API tests validated against app/api/v1/openapi.json; %d webhook deliveries against its webhooks\n",
		contract.requests, contract.responses, contract.webhooks)
	late := contract.late
	contract.mu.Unlock()
	summary += fmt.Sprintf("error bodies scanned for the data directory path: %d\n", errorBodiesScanned.Load())
	fmt.Print(summary)
	if path := os.Getenv("PORTAL_CONTRACT_REPORT"); path != "" && code == 0 {
		if err := os.WriteFile(path, []byte(summary), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	for _, l := range late {
		fmt.Fprintln(os.Stderr, l)
		code = 1
	}
	os.Exit(code)
}
