package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorito/portal/internal/keyset"
	"github.com/doorito/portal/internal/sqlplan"
)

// movingClock is a test clock that starts at start and moves only when
// the test says so.
type movingClock struct {
	start time.Time
	off   atomic.Int64
}

func (c *movingClock) now() time.Time          { return c.start.Add(time.Duration(c.off.Load())) }
func (c *movingClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// runUntil runs a dispatcher with cfg, moving the clock a second at a
// time, until done reports true (or fails the test after 30 s).
func runUntil(t *testing.T, o *Outbox, cfg DispatcherConfig, clock *movingClock, done func() bool) {
	t.Helper()
	d := NewDispatcher(o, cfg)
	ctx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { d.Run(ctx); close(finished) }()
	defer func() { stop(); <-finished }()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("deliveries did not settle within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
		clock.advance(time.Second)
	}
}

// The hourly history equals what a direct count of the attempts gives,
// after a run with successes, HTTP errors, timeouts, retries, a replay and
// an hour boundary; the dashboard's read methods and totals agree with it.
func TestHistoryMatchesAttempts(t *testing.T) {
	o, _ := mustOutbox(t)
	clock := &movingClock{start: time.Date(2026, 11, 23, 9, 59, 50, 0, time.UTC)}
	o.now = clock.now
	ctx := context.Background()

	var mu sync.Mutex
	flakySeen := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then a closed connection cancels r.Context()
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/err":
			http.Error(w, "broken", http.StatusInternalServerError)
		case "/slow":
			<-r.Context().Done() // until the sender gives up
		case "/flaky": // fails each delivery's first attempt
			id := r.Header.Get("X-Webhook-Delivery")
			mu.Lock()
			seen := flakySeen[id]
			flakySeen[id] = true
			mu.Unlock()
			if !seen {
				http.Error(w, "try again", http.StatusBadGateway)
			}
		}
	}))
	t.Cleanup(srv.Close)
	eps := map[string]string{}
	for _, p := range []string{"/ok", "/err", "/slow", "/flaky"} {
		ep, _, err := o.CreateEndpoint(ctx, EndpointParams{URL: srv.URL + p})
		if err != nil {
			t.Fatal(err)
		}
		eps[p] = ep.ID
	}
	const events = 6
	for range events {
		appendEvent(t, o, "file.uploaded")
		clock.advance(time.Second)
	}
	cfg := DispatcherConfig{Timeout: 300 * time.Millisecond, Schedule: []time.Duration{2 * time.Second, 3 * time.Second},
		Jitter: -1, PollInterval: 10 * time.Millisecond, Policy: NetPolicy{AllowPrivate: true}}
	finished := func() bool {
		var open int
		o.r.QueryRow("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')").Scan(&open)
		return open == 0
	}
	runUntil(t, o, cfg, clock, finished)
	// Replay the healthy endpoint's deliveries: sent again, counted again
	// as attempts and deliveries, but not as first-schedule latencies.
	if n, err := o.Replay(ctx, eps["/ok"], ReplayFilter{Since: clock.start}); err != nil || n != events {
		t.Fatalf("replay = %d, %v", n, err)
	}
	runUntil(t, o, cfg, clock, finished)

	// The run crossed an hour, and every kind of outcome happened.
	type key struct {
		hour     int64
		endpoint string
	}
	direct := map[key]*HourStat{}
	at := func(hour int64, ep string) *HourStat {
		k := key{hour, ep}
		if direct[k] == nil {
			direct[k] = &HourStat{Hour: time.UnixMilli(hour).UTC()}
		}
		return direct[k]
	}
	rows, err := o.r.Query(`SELECT t.attempted_at, d.endpoint_id, t.outcome, t.status_code, t.attempted_at + t.duration_ms - ev.created_at,
		COALESCE(t.id = (SELECT MIN(t2.id) FROM delivery_attempts t2 WHERE t2.delivery_id = d.id AND t2.outcome = 'success'), 0),
		COALESCE(t.id = (SELECT MAX(t2.id) FROM delivery_attempts t2 WHERE t2.delivery_id = d.id) AND d.status = 'failed', 0)
		FROM delivery_attempts t JOIN deliveries d ON d.id = t.delivery_id JOIN events ev ON ev.id = d.event_id`)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for rows.Next() {
		var attempted, latency int64
		var ep, outcome string
		var code sql.NullInt64
		var firstSuccess, lastFailed bool
		if err := rows.Scan(&attempted, &ep, &outcome, &code, &latency, &firstSuccess, &lastFailed); err != nil {
			t.Fatal(err)
		}
		outcomes[outcome]++
		s := at(time.UnixMilli(attempted).UTC().Truncate(time.Hour).UnixMilli(), ep)
		s.Attempts.count(outcome)
		if outcome == OutcomeSuccess {
			s.Succeeded++
		}
		if lastFailed {
			s.Failed++
		}
		if firstSuccess {
			s.Latency.Count++
			s.Latency.SumMS += latency
			i := 0
			for i < len(LatencyBuckets) && latency > LatencyBuckets[i].Milliseconds() {
				i++
			}
			s.Latency.Buckets[i]++
		}
	}
	rows.Close()
	hours := map[int64]bool{}
	for k := range direct {
		hours[k.hour] = true
	}
	if len(hours) != 2 || outcomes[OutcomeSuccess] != 3*events || outcomes[OutcomeHTTPError] != 4*events ||
		outcomes[OutcomeTimeout] != 3*events {
		t.Fatalf("the run should cross an hour with successes, HTTP errors and timeouts: %d hours, %v", len(hours), outcomes)
	}

	// The rollups, row for row.
	rolled := map[key]*HourStat{}
	rows, err = o.r.Query("SELECT hour, endpoint_id, " + strings.NewReplacer("SUM(", "(").Replace(historyColumns) +
		" FROM delivery_hourly")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var hour int64
		var ep string
		var s HourStat
		dest := []any{&hour, &ep, &s.Attempts.Success, &s.Attempts.HTTPError, &s.Attempts.NetworkError, &s.Attempts.Timeout,
			&s.Attempts.Refused, &s.Succeeded, &s.Failed, &s.Latency.Count, &s.Latency.SumMS}
		for i := range s.Latency.Buckets {
			dest = append(dest, &s.Latency.Buckets[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		s.Hour = time.UnixMilli(hour).UTC()
		rolled[key{hour, ep}] = &s
	}
	rows.Close()
	if len(rolled) != len(direct) {
		t.Errorf("%d rollup rows, %d (hour, endpoint) pairs in the attempts", len(rolled), len(direct))
	}
	for k, want := range direct {
		if got := rolled[k]; got == nil || *got != *want {
			t.Errorf("hour %s endpoint %s:\n rollup %+v\n direct %+v", time.UnixMilli(k.hour).UTC(), k.endpoint, got, want)
		}
	}

	// DeliveryHistory sums the endpoints per hour, with empty hours.
	first := clock.start.Truncate(time.Hour)
	hist, err := o.DeliveryHistory(ctx, first.Add(-time.Hour), first.Add(3*time.Hour))
	if err != nil || len(hist) != 4 {
		t.Fatalf("history = %d hours, %v", len(hist), err)
	}
	for _, h := range hist {
		var want HourStat
		for k, s := range direct {
			if k.hour == h.Hour.UnixMilli() {
				want.add(*s)
			}
		}
		want.Hour = h.Hour
		if h != want {
			t.Errorf("history %s: %+v, want %+v", h.Hour, h, want)
		}
	}

	// EndpointHealth: success rate, final states, p95, failing since.
	health, err := o.EndpointHealth(ctx, first)
	if err != nil || len(health) != 4 {
		t.Fatalf("health = %+v, %v", health, err)
	}
	for _, h := range health {
		var want HourStat
		for k, s := range direct {
			if k.endpoint == h.EndpointID {
				want.add(*s)
			}
		}
		if h.Attempts != want.Attempts || h.Succeeded != want.Succeeded || h.Failed != want.Failed || h.Latency != want.Latency {
			t.Errorf("health of %s: %+v, want %+v", h.URL, h, want)
		}
		var sum HourStat
		for _, p := range h.Hours {
			sum.add(p)
		}
		if sum.Attempts != want.Attempts || len(h.Hours) != int(clock.now().Sub(first)/time.Hour)+1 {
			t.Errorf("health of %s: %d hourly points summing to %+v", h.URL, len(h.Hours), sum.Attempts)
		}
		switch {
		case strings.HasSuffix(h.URL, "/ok"):
			if h.SuccessRate == nil || *h.SuccessRate != 1 || h.Succeeded != 2*events || h.Latency.Count != events ||
				h.P95MS == nil || h.FailingSince != nil {
				t.Errorf("healthy endpoint: %+v", h)
			}
		case strings.HasSuffix(h.URL, "/err"), strings.HasSuffix(h.URL, "/slow"):
			if h.SuccessRate == nil || *h.SuccessRate != 0 || h.Failed != events || h.P95MS != nil || h.FailingSince == nil {
				t.Errorf("failing endpoint: %+v", h)
			}
		case strings.HasSuffix(h.URL, "/flaky"):
			if h.SuccessRate == nil || *h.SuccessRate != 0.5 || h.Succeeded != events || h.FailingSince != nil {
				t.Errorf("flaky endpoint: %+v", h)
			}
		}
	}

	// The dashboard's totals and endpoint figures agree with direct counts.
	tot, err := o.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wantTot Totals
	o.r.QueryRow(`SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')),
		(SELECT COUNT(*) FROM deliveries WHERE status = 'failed')`).Scan(&wantTot.Events, &wantTot.Backlog, &wantTot.Failed)
	if tot != wantTot || tot.Failed != 2*events {
		t.Errorf("totals %+v, direct %+v", tot, wantTot)
	}
	for p, id := range eps {
		st, err := o.EndpointStats(ctx, id, first)
		if err != nil {
			t.Fatal(err)
		}
		var ok, failed int
		var lastFailure sql.NullInt64
		// The last failure is the one recorded last (attempts of one batch
		// are recorded in the order they ended, not by attempted_at).
		o.r.QueryRow(`SELECT COALESCE(SUM(t.outcome = 'success'), 0), COALESCE(SUM(t.outcome <> 'success'), 0),
			(SELECT t2.attempted_at FROM delivery_attempts t2 JOIN deliveries d2 ON d2.id = t2.delivery_id
				WHERE d2.endpoint_id = ?1 AND t2.outcome <> 'success' ORDER BY t2.rowid DESC LIMIT 1)
			FROM delivery_attempts t JOIN deliveries d ON d.id = t.delivery_id WHERE d.endpoint_id = ?1`, id).Scan(&ok, &failed, &lastFailure)
		if st.Succeeded != ok || st.Failed != failed || st.Pending != 0 || (st.LastFailure != nil) != lastFailure.Valid ||
			st.LastFailure != nil && st.LastFailure.AttemptedAt.UnixMilli() != lastFailure.Int64 {
			t.Errorf("%s: stats %+v, direct %d ok, %d failed, last failure %v", p, st, ok, failed, lastFailure)
		}
	}
}

func TestLatencyQuantile(t *testing.T) {
	var h LatencyHistogram
	if _, ok := h.Quantile(0.95); ok {
		t.Error("an empty histogram has a quantile")
	}
	for range 90 {
		h.observe(5 * time.Millisecond) // bucket 0 (<= 10 ms)
	}
	for range 10 {
		h.observe(200 * time.Millisecond) // bucket 4 (100-250 ms)
	}
	if p, _ := h.Quantile(0.5); p <= 0 || p > 10 {
		t.Errorf("p50 = %v ms, want within the first bucket", p)
	}
	if p, _ := h.Quantile(0.95); p != 175 {
		t.Errorf("p95 = %v ms, want 175 (halfway through 100-250 ms)", p)
	}
	h.observe(48 * time.Hour)
	if p, _ := h.Quantile(1); p != float64((24 * time.Hour).Milliseconds()) {
		t.Errorf("p100 = %v, want the open bucket's lower bound", p)
	}
	if h.Count != 101 || h.SumMS != 90*5+10*200+48*3600*1000 {
		t.Errorf("count %d sum %d", h.Count, h.SumMS)
	}
}

// The queries of the dashboard, the totals and /metrics use indexes (no
// full scan of deliveries, attempts, events or the history, no temporary
// B-tree) on a filled database with the planner's statistics.
func TestHistoryQueryPlans(t *testing.T) {
	o, _ := mustOutbox(t)
	var ids []string
	for range 8 {
		ids = append(ids, mustEndpoint(t, o).ID)
	}
	for range 300 {
		appendEvent(t, o, "file.uploaded")
	}
	// A long history: finished deliveries with attempts, and a year of
	// hourly rollups per endpoint.
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := o.w.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE deliveries SET status = 'succeeded', attempts = 1, tries = 1, next_attempt_at = NULL
		WHERE rowid % 50 <> 0`)
	exec(`UPDATE events SET file_id = 'file-' || (seq % 100)`) // a few events per file
	exec(`INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url, status_code, outcome)
		SELECT id, created_at, 3, 'https://example.com/hook', 204, 'success' FROM deliveries`)
	base := hourOf(o.clock())
	for i, id := range ids {
		exec(`WITH RECURSIVE h(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM h WHERE n < 8760)
			INSERT INTO delivery_hourly (hour, endpoint_id, success) SELECT ? - n * 3600000, ?, ? FROM h`, base, id, i)
	}
	exec("ANALYZE")
	// A fresh connection reads the statistics.
	r, err := sql.Open("sqlite", "file:"+dbFile(t, o)+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var evID, fileID string
	if err := r.QueryRow("SELECT id, COALESCE(file_id, '') FROM events ORDER BY seq DESC LIMIT 1").Scan(&evID, &fileID); err != nil {
		t.Fatal(err)
	}
	var dIDs []string
	rows, err := r.Query("SELECT id FROM deliveries WHERE event_id = ?", evID)
	if dIDs, err = keyset.All(rows, err, keyset.String); err != nil || len(dIDs) < 2 {
		t.Fatalf("deliveries %v: %v", dIDs, err)
	}
	since := o.clock().Add(-7 * 24 * time.Hour)
	queries := map[string][]any{
		sqlHistoryAll:       {hourOf(since), base},
		sqlHistoryEndpoint:  {ids[0], hourOf(since), base},
		sqlStatsAttempts:    {ids[0], hourOf(since)},
		sqlStatsOpen:        {ids[0]},
		sqlStatsLastFailure: {ids[0]},
		sqlTotals:           nil,
		sqlStateMetrics:     nil,
		sqlListEndpoints:    nil,
		// A file's page: its events, their deliveries and attempts.
		sqlEventDeliveries: {evID},
		sqlAttemptsOf(2):   {dIDs[0], dIDs[1]},
	}
	byFile, byFileArgs := eventsQuery(EventFilter{FileID: fileID}).SQL("seq", nil, 100)
	queries[byFile] = byFileArgs
	for q, args := range queries {
		plan := explain(t, r, q, args...)
		for _, line := range plan {
			// Endpoints are few (an administrator adds them); a constant
			// row is no table.
			full := strings.HasPrefix(line, "SCAN ") && line != "SCAN CONSTANT ROW" &&
				line != "SCAN endpoints" && !strings.HasPrefix(line, "SCAN endpoints USING ")
			if full || strings.Contains(line, "TEMP B-TREE") {
				t.Errorf("%s\nplan:\n%s", q, strings.Join(plan, "\n"))
				break
			}
		}
	}
}

// dbFile is the path of the outbox's database.
func dbFile(tb testing.TB, o *Outbox) string {
	tb.Helper()
	var seq int
	var name, file string
	if err := o.r.QueryRow("PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		tb.Fatal(err)
	}
	return file
}

// explain returns the lines of a query's plan.
func explain(tb testing.TB, db *sql.DB, q string, args ...any) []string {
	tb.Helper()
	out, err := sqlplan.Explain(db, q, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// A database made before migration 0002 upgrades with its totals and the
// endpoints' last failures filled in from what it holds, and the triggers
// keep them exact from then on.
func TestHistoryMigrationOnExistingData(t *testing.T) {
	path := t.TempDir() + "/portal.db"
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	apply := func(name string) {
		t.Helper()
		b, err := fs.ReadFile(Schema(), name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	apply("0001_outbox.sql")
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO endpoints (id, url, created_at, updated_at) VALUES ('ep1', 'https://a/', 1, 1), ('ep2', 'https://b/', 1, 1)`)
	for i, st := range []string{"pending", "delivering", "succeeded", "failed", "failed", "cancelled"} {
		exec(`INSERT INTO events (id, type, payload, created_at) VALUES (?, 'file.uploaded', x'7b7d', 1)`, fmt.Sprint("ev", i))
		exec(`INSERT INTO deliveries (id, event_id, endpoint_id, status, created_at, updated_at) VALUES (?, ?, 'ep1', ?, 1, 1)`,
			fmt.Sprint("d", i), fmt.Sprint("ev", i), st)
	}
	exec(`INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url, status_code) VALUES
		('d3', 10, 1, 'https://a/', 500), ('d2', 11, 1, 'https://a/', 204), ('d4', 12, 1, 'https://a/', NULL)`)
	apply("0002_history.sql")

	o := New(db, db)
	ctx := context.Background()
	tot, err := o.Totals(ctx)
	if err != nil || tot != (Totals{Events: 6, Backlog: 2, Failed: 2}) {
		t.Fatalf("totals after the upgrade: %+v, %v", tot, err)
	}
	st, err := o.EndpointStats(ctx, "ep1", time.UnixMilli(0))
	if err != nil || st.LastFailure == nil || st.LastFailure.AttemptedAt.UnixMilli() != 12 || st.Pending != 2 {
		t.Fatalf("ep1 after the upgrade: %+v, %v", st, err)
	}
	if st, _ := o.EndpointStats(ctx, "ep2", time.UnixMilli(0)); st.LastFailure != nil {
		t.Errorf("ep2 never failed: %+v", st.LastFailure)
	}
	// Every kind of change keeps the counters exact.
	exec(`UPDATE deliveries SET status = 'pending' WHERE id = 'd3'`)   // a failed one replayed
	exec(`UPDATE deliveries SET status = 'succeeded' WHERE id = 'd0'`) // delivered
	exec(`UPDATE deliveries SET status = 'pending' WHERE id = 'd1'`)   // recovered: still open
	exec(`UPDATE deliveries SET status = 'failed' WHERE id = 'd1'`)    // gave up
	exec(`DELETE FROM events WHERE id IN ('ev4', 'ev5')`)              // pruned, deliveries cascade
	exec(`INSERT INTO events (id, type, payload, created_at) VALUES ('ev9', 't', x'7b7d', 2)`)
	exec(`INSERT INTO deliveries (id, event_id, endpoint_id, status, created_at, updated_at) VALUES ('d9', 'ev9', 'ep2', 'pending', 2, 2)`)
	var want Totals
	db.QueryRow(`SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')),
		(SELECT COUNT(*) FROM deliveries WHERE status = 'failed')`).Scan(&want.Events, &want.Backlog, &want.Failed)
	if tot, _ := o.Totals(ctx); tot != want {
		t.Errorf("totals %+v, direct counts %+v", tot, want)
	}
}
