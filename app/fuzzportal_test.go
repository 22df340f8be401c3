package app

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
)

// fuzzPortal is the real portal a fuzz target sends its inputs to. A
// FuzzXxx function runs once per process before f.Fuzz (and each fuzzing
// worker is a process of its own), so every target starts one portal and
// every input of that process reuses it.
//
// The fuzzer names the portal's objects with placeholders ({endpoint},
// {user}, {token}, {file}, {upload}, {event}, {delivery}) and picks who
// sends a request from fuzzCreds.
type fuzzPortal struct {
	a        *App
	findings *fuzzFindings
	client   *http.Client
	logs     *fuzzLog
	creds    []fuzzCred

	mu      sync.Mutex
	ids     map[string]string // placeholder -> id
	session string            // the admin's session cookie (the "admin session" client)
}

// fuzzCred is one way a fuzzed request is sent: a header and its value.
type fuzzCred struct {
	who           string
	header, value string
}

// fuzzUserPassword is the password of the fuzz portal's uploader "fuzzer".
const fuzzUserPassword = "fuzz-password-1"

// newFuzzPortal starts the portal of a fuzz target with its fixtures. It
// allows webhooks only to 127.0.0.1 (so the policy refuses the rest), caps
// uploads at 1 MiB, does not rate-limit sign-ins and runs no background
// job that would change the database while a request is checked.
func newFuzzPortal(f *testing.F, cfg Config) *fuzzPortal {
	f.Helper()
	logs := &fuzzLog{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))
	cfg.wrapHandler = func(h http.Handler) http.Handler { return h } // the fuzz targets check answers themselves
	cfg.AuthRateLimit = -1
	cfg.MaxUploadSize = cmp.Or(cfg.MaxUploadSize, 1<<20)
	cfg.EndpointAllowCIDRs = []string{"127.0.0.1/32"}
	cfg.DeliveryTimeout = time.Second
	cfg.DeliverySchedule = []time.Duration{time.Hour}
	// Nothing changes the database behind a request's back: the expiry
	// jobs would add events and delete files a fuzzed ttl let expire, the
	// sweep finalize uploads, the dispatcher disable endpoints.
	cfg.ExpirySchedule, cfg.CleanupSchedule = "0 0 1 1 *", "0 0 1 1 *"
	cfg.SweepInterval = 24 * time.Hour
	cfg.EndpointDisableAfter = -1
	a := MustOpen(f, cfg)
	p := &fuzzPortal{a: a, findings: fuzzFindingsOf(f), logs: logs, ids: map[string]string{},
		client: &http.Client{Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	ctx := context.Background()
	admin, _, err := userByName(ctx, a.db.R, "admin")
	if err != nil {
		f.Fatal(err)
	}
	fuzzer := mustUser(f, a, "fuzzer", RoleUploader)
	if err := setPassword(ctx, a, fuzzer, fuzzUserPassword); err != nil {
		f.Fatal(err)
	}
	_, scoped, err := insertToken(ctx, a.db.W, admin, "scoped", []access.Scope{access.ScopeFilesRead}, a.cfg.Now(), nil)
	if err != nil {
		f.Fatal(err)
	}
	p.creds = []fuzzCred{
		{"admin", "Authorization", "Bearer " + mustAdminToken(f, a)},
		{"uploader", "Authorization", "Bearer " + mustToken(f, a, fuzzer, nil)},
		{"admin session", "Cookie", ""}, // refresh starts the session
		{"nobody", "", ""},
		{"bad token", "Authorization", "Bearer " + TokenPrefix + "nope"},
		{"basic", "Authorization", "Basic " + basicAuth("fuzzer", fuzzUserPassword)},
		{"scoped admin token", "Authorization", "Bearer " + scoped},
		{"bad session", "Cookie", sessionCookie + "=" + sessionPrefix + "nope"},
	}
	p.refresh(f)
	return p
}

func basicAuth(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))
}

// setPassword gives u a known password (mustUser's is derived from the name).
func setPassword(ctx context.Context, a *App, u User, pw string) error {
	_, hash, err := newUser(u.Username, u.Role, pw, a.passwordCost(), a.cfg.Now())
	if err != nil {
		return err
	}
	_, err = a.db.W.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE id = ?", hash, u.ID)
	return err
}

// refresh (re)creates the fixtures the placeholders name when a fuzzed
// request deleted them: a user with a token, an endpoint on 127.0.0.1, a
// stored file with its file.uploaded event and the event's delivery.
func (p *fuzzPortal) refresh(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	db := p.a.db.R
	exists := func(q string, args ...any) bool {
		var n int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		return n > 0
	}
	p.prune(tb)
	// A fuzzed sign-in or sign-out with the admin's cookie ends the session.
	if !exists("SELECT COUNT(*) FROM sessions WHERE hash = ?", secretHash(p.session)) {
		admin, _, err := userByName(ctx, db, "admin")
		if err != nil {
			tb.Fatal(err)
		}
		if p.session, _, err = p.a.createSession(ctx, admin); err != nil {
			tb.Fatal(err)
		}
		for i := range p.creds {
			if p.creds[i].who == "admin session" {
				p.creds[i].value = sessionCookie + "=" + p.session
			}
		}
	}
	if !exists("SELECT COUNT(*) FROM users WHERE id = ?", p.ids["{user}"]) {
		u := mustUser(tb, p.a, fmt.Sprintf("target-%d", time.Now().UnixNano()), RoleUploader)
		p.ids["{user}"], p.ids["{token}"] = u.ID, ""
	}
	if !exists("SELECT COUNT(*) FROM tokens WHERE id = ? AND revoked_at IS NULL", p.ids["{token}"]) {
		u, err := userByID(ctx, db, p.ids["{user}"])
		if err != nil {
			tb.Fatal(err)
		}
		t, _, err := insertToken(ctx, p.a.db.W, u, "target", nil, p.a.cfg.Now(), nil)
		if err != nil {
			tb.Fatal(err)
		}
		p.ids["{token}"] = t.ID
	}
	if !exists("SELECT COUNT(*) FROM endpoints WHERE id = ? AND deleted_at IS NULL", p.ids["{endpoint}"]) {
		ep, _, err := p.a.outbox.CreateEndpoint(ctx, outbox.EndpointParams{URL: "http://127.0.0.1:9/hook"})
		if err != nil {
			tb.Fatal(err)
		}
		p.ids["{endpoint}"] = ep.ID
	}
	if !exists("SELECT COUNT(*) FROM files WHERE id = ? AND status = 'stored'", p.ids["{file}"]) {
		up := MustUpload(tb, p.a.URL(), []byte("fuzz fixture"), 64, map[string]string{"filename": "fixture.txt"})
		f, ok := fileByUpload(tb, p.a, up)
		if !ok {
			tb.Fatal("the fixture upload has no file")
		}
		p.ids["{file}"], p.ids["{upload}"] = f.ID, f.UploadID
		evs := eventsOf(tb, p.a, f.ID)
		if len(evs) == 0 {
			tb.Fatal("the fixture file has no event")
		}
		p.ids["{event}"] = evs[0].ID
		// (No delivery when a fuzzed request disabled every endpoint:
		// the previous one stays.)
		if ds := whEvent(tb, p.a, evs[0].ID).Deliveries; len(ds) > 0 {
			p.ids["{delivery}"] = ds[0].ID
		}
	}
}

// fuzzKeep is how many users, endpoints and tokens that fuzzed requests
// created are kept: the pages that list them (a refused form shows one) would
// slow the fuzzer down as thousands pile up.
const fuzzKeep = 50

// prune removes the newest users, endpoints and tokens beyond fuzzKeep
// that were not made by the harness (p.mu held).
func (p *fuzzPortal) prune(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	ids := func(q string, args ...any) []string {
		rows, err := p.a.db.R.QueryContext(ctx, q, args...)
		if err != nil {
			tb.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				tb.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	for _, id := range ids(`SELECT id FROM endpoints WHERE deleted_at IS NULL AND id != ? ORDER BY id LIMIT -1 OFFSET ?`,
		p.ids["{endpoint}"], fuzzKeep) {
		p.a.outbox.DeleteEndpoint(ctx, id)
	}
	for _, id := range ids(`SELECT id FROM users WHERE username NOT IN ('admin', 'fuzzer', 'victim') AND username NOT LIKE 'target-%'
		ORDER BY id LIMIT -1 OFFSET ?`, fuzzKeep) {
		p.a.deleteUser(ctx, id) // the last admin stays (deleteUser refuses)
	}
	// Tokens the harness made are named test, scoped or target.
	if _, err := p.a.db.W.ExecContext(ctx, `DELETE FROM tokens WHERE name NOT IN ('test', 'scoped', 'target')
		AND id NOT IN (SELECT id FROM tokens ORDER BY id LIMIT ?)`, fuzzKeep); err != nil {
		tb.Fatal(err)
	}
}

// subst replaces the placeholders in s with the fixtures' ids.
func (p *fuzzPortal) subst(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pairs := make([]string, 0, 2*len(p.ids))
	for k, v := range p.ids {
		pairs = append(pairs, k, v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// cred returns the credential numbered who (any number).
func (p *fuzzPortal) cred(who uint8) fuzzCred { return p.creds[int(who)%len(p.creds)] }

// fuzzAnswer is a response, read in full.
type fuzzAnswer struct {
	method, target string
	status         int
	header         http.Header
	body           []byte
}

func (a fuzzAnswer) String() string {
	return fmt.Sprintf("%s %s: %d %q", a.method, a.target, a.status, truncate(string(a.body), 500))
}

// do sends a request with the credential cred and headers hdr. ok is false
// when no client could send it (an invalid header, say): such an input
// says nothing about the portal.
func (p *fuzzPortal) do(t *testing.T, method, target string, cred fuzzCred, hdr http.Header, body []byte) (fuzzAnswer, bool) {
	t.Helper()
	req, err := http.NewRequest(method, p.a.URL()+target, bytes.NewReader(body))
	if err != nil {
		return fuzzAnswer{}, false
	}
	for k, vs := range hdr {
		for _, v := range vs {
			if !validHeader(k, v) {
				return fuzzAnswer{}, false
			}
			req.Header.Add(k, v)
		}
	}
	if cred.header != "" {
		req.Header.Set(cred.header, cred.value)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (as %s): %v\nportal errors:\n%s", method, target, cred.who, err, p.logs)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s (as %s): reading the answer: %v", method, target, cred.who, err)
	}
	return fuzzAnswer{method: method, target: target, status: resp.StatusCode, header: resp.Header, body: b}, true
}

// validHeader reports whether a client can send the header as it is.
func validHeader(name, value string) bool {
	if name == "" || strings.IndexFunc(name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) >= 0 {
		return false
	}
	return strings.IndexFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) < 0
}

// escapeFuzz percent-encodes what may not appear raw in a request target
// (space, controls, non-ASCII, '#'), keeping the fuzzer's '%', '&', '='
// and '/' as they are.
func escapeFuzz(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '#' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' ||
			c == '`' || c == '{' || c == '|' || c == '}' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// check fails t when an answer breaks the rules for outside input: never a
// 5xx; never the data directory's path in a header or body; a refusal by a
// JSON route is a JSON error with a code and a message.
func (p *fuzzPortal) check(t *testing.T, ans fuzzAnswer, jsonRoute bool) {
	t.Helper()
	if msgs := p.findings.take(); len(msgs) > 0 {
		t.Fatalf("%s:\n%s", ans, strings.Join(msgs, "\n"))
	}
	if ans.status >= 500 {
		t.Fatalf("%s\nportal errors:\n%s", ans, p.logs)
	}
	all := string(ans.body)
	for k, vs := range ans.header {
		all += "\n" + k + ": " + strings.Join(vs, " ")
	}
	if strings.Contains(all, p.a.cfg.DataDir) {
		t.Fatalf("%s: the answer names the data directory:\n%s", ans, all)
	}
	if !jsonRoute || ans.method == http.MethodHead {
		return
	}
	if ans.status < 400 {
		if strings.HasPrefix(ans.header.Get("Content-Type"), "application/json") && !json.Valid(ans.body) {
			t.Fatalf("%s: the answer is not valid JSON", ans)
		}
		return
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if ct := ans.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: refusal with Content-Type %q, want JSON", ans, ct)
	}
	if err := json.Unmarshal(ans.body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: refusal without a JSON error (%v)", ans, err)
	}
}

// state summarizes what requests may create or change: row counts and the
// fixtures' fields (not what the webhook dispatcher changes on its own).
// A refused request must leave it as it was.
func (p *fuzzPortal) state(t *testing.T) string {
	t.Helper()
	p.mu.Lock()
	ids := p.ids
	p.mu.Unlock()
	var s string
	err := p.a.db.R.QueryRow(`SELECT
		(SELECT COUNT(*) FROM users) || ' users ' ||
		(SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL) || ' tokens ' ||
		(SELECT COUNT(*) FROM sessions) || ' sessions ' ||
		(SELECT COUNT(*) FROM uploads) || ' uploads ' ||
		(SELECT COUNT(*) FROM files WHERE status = 'stored') || ' files ' ||
		(SELECT COUNT(*) FROM endpoints WHERE deleted_at IS NULL) || ' endpoints ' ||
		(SELECT COUNT(*) FROM endpoint_secrets) || ' secrets ' ||
		(SELECT COUNT(*) FROM events) || ' events ' ||
		(SELECT COUNT(*) FROM deliveries) || ' deliveries; user ' ||
		COALESCE((SELECT role || ' ' || disabled || ' ' || password_hash FROM users WHERE id = ?), '-') || '; endpoint ' ||
		COALESCE((SELECT url || ' ' || description || ' ' || event_types || ' ' || enabled FROM endpoints WHERE id = ?), '-') || '; file ' ||
		COALESCE((SELECT expires_at FROM files WHERE id = ?), '-')`,
		ids["{user}"], ids["{endpoint}"], ids["{file}"]).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzLog keeps the portal's last error log lines for failure messages.
type fuzzLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *fuzzLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	if len(l.buf) > 16<<10 {
		l.buf = l.buf[len(l.buf)-8<<10:]
	}
	return len(b), nil
}

func (l *fuzzLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// pathOf returns the path of a request target as the server reads it.
func pathOf(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	return u.Path
}

// fuzzFindings stands in for a fuzz target's *testing.F where MustOpen's
// checks (the OpenAPI contract, error bodies naming the data directory)
// report: testing forbids f.Errorf inside the target, so the findings are
// kept until the target's check reports them on its own *testing.T.
type fuzzFindings struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

var fuzzFindingsByF sync.Map // *testing.F -> *fuzzFindings

func fuzzFindingsOf(f *testing.F) *fuzzFindings {
	v, _ := fuzzFindingsByF.LoadOrStore(f, &fuzzFindings{TB: f})
	return v.(*fuzzFindings)
}

func (ff *fuzzFindings) Errorf(format string, args ...any) {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	ff.msgs = append(ff.msgs, fmt.Sprintf(format, args...))
}

func (ff *fuzzFindings) take() []string {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	msgs := ff.msgs
	ff.msgs = nil
	return msgs
}
