package app

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorito/portal/internal/rowfill"
	"github.com/doorito/portal/internal/sqlplan"
)

// The query-plan test: the portal runs its hot paths (the /metrics
// scrape, the dashboard, the file and delivery list pages with every
// filter through the API and the UI, an expiry-notifier run, a cleanup
// run, the finalizing sweep and the dispatcher's claim) on a database
// filled like a portal after four weeks (internal/rowfill), through a
// driver that records every statement with its arguments; then every
// statement that reads a big table is EXPLAINed, with the planner's
// statistics of ANALYZE and without any (as a portal that never ran
// ANALYZE has), and none may scan a big table or sort in a temporary
// B-tree. It asserts plans, not timing.

// bigTables grow with the files: a full scan of one costs in proportion.
var bigTables = []string{"files", "uploads", "events", "deliveries", "delivery_attempts"}

// planFiles is the test registry's size: enough rows for ANALYZE's
// statistics to have the proportions of millions.
const planFiles = 20_000

// recorded is a statement the portal ran and the arguments of one run.
type recorded struct {
	query string
	args  []driver.NamedValue
}

// recorder collects the statements run through the "sqlite-plans" driver
// while on.
type recorder struct {
	mu   sync.Mutex
	on   bool
	seen map[string]recorded
}

func (r *recorder) add(q string, args []driver.NamedValue) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return
	}
	if _, ok := r.seen[q]; !ok || len(args) > 0 {
		r.seen[q] = recorded{q, slices.Clone(args)}
	}
}

func (r *recorder) start() {
	r.mu.Lock()
	r.on, r.seen = true, map[string]recorded{}
	r.mu.Unlock()
}

func (r *recorder) stop() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	out := make([]recorded, 0, len(r.seen))
	for _, q := range r.seen {
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b recorded) int { return strings.Compare(a.query, b.query) })
	return out
}

var (
	planRecorder     = &recorder{}
	planDriverOnce   sync.Once
	planDriverName   = "sqlite-plans"
	planDriverTarget driver.Driver
)

// registerPlanDriver registers "sqlite-plans": modernc's driver, with
// every statement prepared and run recorded by planRecorder.
func registerPlanDriver(tb testing.TB) {
	planDriverOnce.Do(func() {
		db, err := sql.Open("sqlite", ":memory:")
		if err != nil {
			tb.Fatal(err)
		}
		planDriverTarget = db.Driver()
		db.Close()
		sql.Register(planDriverName, planDriver{})
	})
}

type planDriver struct{}

func (planDriver) Open(name string) (driver.Conn, error) {
	c, err := planDriverTarget.Open(name)
	if err != nil {
		return nil, err
	}
	return &planConn{c}, nil
}

// planConn offers only Prepare (no Queryer or Execer), so database/sql
// prepares every statement and runs it through planStmt.
type planConn struct{ driver.Conn }

func (c *planConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *planConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	s, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &planStmt{Stmt: s, q: q}, nil
}

func (c *planConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *planConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

type planStmt struct {
	driver.Stmt
	q string
}

func (s *planStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	planRecorder.add(s.q, args)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s *planStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	planRecorder.add(s.q, args)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}

// planProblem is a statement whose plan scans a big table or sorts in a
// temporary B-tree.
type planProblem struct {
	query, plan string
}

// aliasRE finds the aliases big tables get in a statement.
var aliasRE = regexp.MustCompile(`(?i)\b(files|uploads|events|deliveries|delivery_attempts)\s+(?:AS\s+)?([a-z_][a-z0-9_]*)`)

// sqlKeywords are words that follow a table name without being its alias.
var sqlKeywords = map[string]bool{"where": true, "join": true, "on": true, "set": true, "order": true, "group": true,
	"limit": true, "left": true, "inner": true, "cross": true, "union": true, "values": true, "using": true,
	"indexed": true, "not": true, "natural": true, "except": true, "intersect": true, "as": true, "returning": true}

// bigNames are the names a statement's plan may give its big tables.
func bigNames(q string) map[string]bool {
	names := map[string]bool{}
	for _, t := range bigTables {
		names[t] = true
	}
	for _, m := range aliasRE.FindAllStringSubmatch(q, -1) {
		if a := strings.ToLower(m[2]); !sqlKeywords[a] {
			names[a] = true
		}
	}
	return names
}

// reads reports whether q reads (or changes) a big table.
func readsBig(q string) bool {
	for _, t := range bigTables {
		if regexp.MustCompile(`(?i)\b(FROM|JOIN|UPDATE|INTO)\s+` + t + `\b`).MatchString(q) {
			return true
		}
	}
	return false
}

var (
	whereRE = regexp.MustCompile(`(?i)\bWHERE\b`)
	limitRE = regexp.MustCompile(`(?i)\bLIMIT\s+(\?|\d+)\s*$`)
)

// checkPlans EXPLAINs each statement on a new connection to path and
// returns those whose plan scans a big table or uses a temporary B-tree.
// A scan is allowed for a statement without WHERE that ends in LIMIT
// (the first page of an unfiltered list walks an index in order and
// stops), and of a partial index.
func checkPlans(tb testing.TB, path string, stmts []recorded) []planProblem {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A partial index holds a job's work (uploads in progress, files not
	// yet notified, bytes not yet removed), not the history: reading all
	// of it is not a scan of its table.
	partial := map[string]bool{}
	rows, err := db.Query("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql LIKE '% WHERE %'")
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			tb.Fatal(err)
		}
		partial[name] = true
	}
	rows.Close()
	var problems []planProblem
	for _, s := range stmts {
		args := make([]any, len(s.args))
		for i, a := range s.args {
			if a.Name != "" {
				args[i] = sql.Named(a.Name, a.Value)
			} else {
				args[i] = a.Value
			}
		}
		lines, err := sqlplan.Explain(db, s.query, args...)
		if err != nil {
			tb.Error(err)
			continue
		}
		names := bigNames(s.query)
		scanOK := !whereRE.MatchString(s.query) && limitRE.MatchString(strings.TrimSpace(s.query))
		for _, l := range lines {
			bad := strings.Contains(l, "USE TEMP B-TREE")
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "SCAN" && names[strings.ToLower(f[1])] && !scanOK &&
				!partial[f[len(f)-1]] {
				bad = true
			}
			if bad {
				problems = append(problems, planProblem{s.query, strings.Join(lines, "\n")})
				break
			}
		}
	}
	return problems
}

// TestHotQueryPlans fills a database (internal/rowfill), runs the hot
// paths of a portal on it and checks the plan of every statement they ran.
func TestHotQueryPlans(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a database of 20k files")
	}
	ctx := context.Background()
	dir := t.TempDir()
	path := dbPath(dir)
	db, err := OpenDB(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rowfill.Fill(ctx, path, planFiles, t.Logf); err != nil {
		t.Fatal(err)
	}
	stmts := runHotPaths(t, dir)

	var big []recorded
	for _, s := range stmts {
		if readsBig(s.query) {
			big = append(big, s)
		}
	}
	t.Logf("%d statements ran, %d read a big table", len(stmts), len(big))
	report := func(what string, problems []planProblem) {
		for _, p := range problems {
			t.Errorf("%s: a hot statement scans a big table or sorts in a temporary B-tree:\n%s\nplan:\n%s",
				what, strings.Join(strings.Fields(p.query), " "), p.plan)
		}
	}
	report("without statistics", checkPlans(t, path, big))
	analyze(t, path)
	report("with ANALYZE", checkPlans(t, path, big))

	// The check can fail: without the index of a filter, its list page
	// sorts every match (or scans).
	execSQL(t, path, "DROP INDEX deliveries_type")
	if p := checkPlans(t, path, big); len(p) == 0 {
		t.Error("with deliveries_type dropped, no plan scans or sorts: the check cannot fail")
	} else {
		t.Logf("with deliveries_type dropped, %d statements scan or sort, as they should, e.g.\n%s\n%s",
			len(p), strings.Join(strings.Fields(p[0].query), " "), p[0].plan)
	}
}

func analyze(tb testing.TB, path string) {
	execSQL(tb, path, "ANALYZE")
}

func execSQL(tb testing.TB, path, q string) {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// runHotPaths opens a portal on dir through the recording driver and runs
// the hot paths; it returns the statements they ran.
func runHotPaths(t *testing.T, dir string) []recorded {
	registerPlanDriver(t)
	a := MustOpen(t, Config{DataDir: dir, sqlDriver: planDriverName,
		ExpirySchedule: "@every 1000h", CleanupSchedule: "@every 1000h"})
	ctx := context.Background()
	token := mustAdminToken(t, a)
	var endpoint string
	if err := a.db.R.QueryRowContext(ctx, "SELECT id FROM endpoints WHERE description = 'portalbench all'").Scan(&endpoint); err != nil {
		t.Fatal(err)
	}
	planRecorder.start()
	base := "http://" + a.Addr()
	get := func(path string) string {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		if strings.HasPrefix(path, "/api/") {
			if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
		}
		return page.NextCursor
	}
	// Each list page, and the page after it (keyset cursors).
	list := func(path string) {
		if next := get(path); next != "" {
			get(path + "&cursor=" + url.QueryEscape(next))
		}
	}
	for _, q := range []string{"", "&status=stored", "&status=deleted", "&owner=" + rowfill.HeavyUser, "&owner=user042",
		"&expiring=true", "&status=stored&owner=user042"} {
		list("/api/v1/files?limit=50" + q)
	}
	for _, q := range []string{"", "?status=deleted", "?owner=user042", "?expiring=1"} {
		get("/ui/files" + q)
	}
	for _, q := range []string{"", "&status=failed", "&status=pending", "&status=cancelled", "&status=succeeded",
		"&event_type=file.deleted", "&event_type=portal.test", "&endpoint_id=" + endpoint,
		"&endpoint_id=" + endpoint + "&status=failed", "&endpoint_id=" + endpoint + "&event_type=file.expiring"} {
		list("/api/v1/deliveries?limit=50" + q)
	}
	list("/api/v1/endpoints/" + endpoint + "/deliveries?limit=50&status=failed")
	for _, q := range []string{"", "&type=file.deleted"} {
		list("/api/v1/events?limit=50" + q)
	}
	for _, q := range []string{"", "?type=file.deleted", "?status=failed", "?endpoint=" + endpoint,
		"?status=failed&type=file.uploaded", "?endpoint=" + endpoint + "&status=pending"} {
		get("/ui/events" + q)
	}
	get("/metrics")
	get("/ui/dashboard")
	get("/ui/endpoints/" + endpoint)
	if n, err := a.runExpiry(ctx); err != nil || n != 0 {
		t.Fatalf("expiry run: %d notices, %v; the registry has none due", n, err)
	}
	if r, err := a.runCleanup(ctx); err != nil || r.total() != 0 {
		t.Fatalf("cleanup run: %+v, %v; the registry has nothing due", r, err)
	}
	a.sweep(ctx)
	// The dispatcher looks for due deliveries of each endpoint on its own
	// (outbox/claim.go: sqlDue claims, sqlNextDue finds the next wake-up).
	deadline := time.Now().Add(10 * time.Second)
	for {
		claimed, next := false, false
		planRecorder.mu.Lock()
		for q := range planRecorder.seen {
			if strings.Contains(q, "FROM deliveries WHERE endpoint_id = ? AND lane = ?") {
				claimed = true
			}
			if strings.Contains(q, "SELECT id, next_attempt_at FROM deliveries") {
				next = true
			}
		}
		planRecorder.mu.Unlock()
		if claimed && next {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dispatcher did not look for due deliveries within 10s")
		}
		a.outbox.Committed()
		time.Sleep(10 * time.Millisecond)
	}
	return planRecorder.stop()
}
