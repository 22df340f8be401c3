package app

import (
	"database/sql"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/internal/sqlplan"
	"github.com/doorito/portal/webui"
)

// The dashboard's history on real data: uploads through tus, deliveries to
// a receiver that answers 204 and one that answers 500. The hours, the
// endpoints' figures and the pages say what happened; a bad period is a
// 400 page, never a 500.
func TestDashboardHistory(t *testing.T) {
	a := MustOpen(t, whConfig())
	good, goodEP := whReceiverEndpoint(t, a)
	bad, badEP := whReceiverEndpoint(t, a)
	bad.answer(http.StatusInternalServerError)
	tok := mustAdminToken(t, a)
	sizes := []int{3000, 1000, 5000}
	var total int64
	for i, n := range sizes {
		uploadAs(t, a, tok, "h"+strconv.Itoa(i)+".bin", randomBytes(t, n))
		total += int64(n)
	}
	for range sizes {
		good.next(10 * time.Second)
	}
	// Every delivery final (the failing one after its retries).
	deadline := time.Now().Add(15 * time.Second)
	for {
		tot, err := a.outbox.Totals(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if tot.Backlog == 0 && tot.Failed == int64(len(sizes)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not final: %+v", tot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	o, admin := a.ops, access.Identity{UserID: "a", Role: RoleAdmin}
	for _, period := range DashboardPeriods {
		h, err := o.DashboardHistory(t.Context(), admin, period)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Hours) != int(period/time.Hour) {
			t.Fatalf("%v: %d hours", period, len(h.Hours))
		}
		if last := h.Hours[len(h.Hours)-1].Hour; !last.Equal(time.Now().UTC().Truncate(time.Hour)) && !last.Equal(time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)) {
			t.Errorf("%v: the last hour is %v", period, last)
		}
		var sum webui.HourStat
		for i, s := range h.Hours {
			if i > 0 && !s.Hour.Equal(h.Hours[i-1].Hour.Add(time.Hour)) {
				t.Fatalf("hour %d: %v after %v", i, s.Hour, h.Hours[i-1].Hour)
			}
			sum.Files += s.Files
			sum.Bytes += s.Bytes
			sum.Succeeded += s.Succeeded
			sum.Failed += s.Failed
			sum.Attempts.Success += s.Attempts.Success
			sum.Attempts.HTTPError += s.Attempts.HTTPError
		}
		// whConfig retries three times: four attempts per failed delivery.
		want := webui.HourStat{Files: int64(len(sizes)), Bytes: total, Succeeded: 3, Failed: 3,
			Attempts: webui.Outcomes{Success: 3, HTTPError: 12}}
		if sum != want {
			t.Errorf("%v: sums %+v, want %+v", period, sum, want)
		}
		if len(h.Endpoints) != 2 {
			t.Fatalf("%d endpoints", len(h.Endpoints))
		}
		for _, ep := range h.Endpoints {
			for name, f := range map[string]webui.EndpointFigures{"day": ep.Day, "week": ep.Week} {
				switch ep.ID {
				case goodEP.ID:
					if f.SuccessRate == nil || *f.SuccessRate != 1 || f.P95 == nil || *f.P95 <= 0 || f.Attempts != 3 {
						t.Errorf("good endpoint's %s: %+v", name, f)
					}
				case badEP.ID:
					if f.SuccessRate == nil || *f.SuccessRate != 0 || f.P95 != nil || f.Attempts != 12 {
						t.Errorf("failing endpoint's %s: %+v", name, f)
					}
				}
			}
			if (ep.ID == badEP.ID) != (ep.FailingSince != nil) {
				t.Errorf("endpoint %s failing since %v", ep.URL, ep.FailingSince)
			}
			if len(ep.Hours) != len(h.Hours) {
				t.Errorf("endpoint %s: %d hours", ep.URL, len(ep.Hours))
			}
		}

		// The page draws it: a slot per hour in each chart, the maximum.
		param := map[time.Duration]string{24 * time.Hour: "24h", 7 * 24 * time.Hour: "7d"}[period]
		body := ada.mustGet("/ui/dashboard?period=" + param)
		for _, id := range []string{"chart-uploads", "chart-bytes", "chart-deliveries"} {
			re := regexp.MustCompile(`<svg [^>]*id="` + id + `"[^>]*data-hours="(\d+)"`)
			if m := re.FindStringSubmatch(body); m == nil || m[1] != strconv.Itoa(len(h.Hours)) {
				t.Errorf("%s %s: %v", param, id, m)
			}
		}
		mustContain(t, body, `data-endpoint="`+badEP.ID+`"`, `class="failing-since"`, "(UTC)", "p95, 24 h")
	}

	// Bad periods: a 400 page that says what is wrong; the API of the
	// same operation refuses what is not a period.
	for _, q := range []string{"period=", "period=1y", "period=7D", "period=24h&period=7d", "period=%00", "period=" + strings.Repeat("9", 5000)} {
		p := ada.get("/ui/dashboard?" + q)
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, "The period must be 24h or 7d") {
			t.Errorf("?%s: %d", q, p.status)
		}
	}
	if _, err := o.DashboardHistory(t.Context(), admin, time.Hour); err == nil {
		t.Error("a period of one hour was accepted")
	}
	// An uploader may not see it.
	mustUser(t, a, "up", RoleUploader)
	if p := uiLogin(t, a, "up").get("/ui/dashboard"); p.status == http.StatusOK {
		t.Errorf("uploader's dashboard: %d", p.status)
	}
}

// The dashboard's and the file page's queries read indexes or small
// tables, never all files, uploads or hours, and sort nothing in a
// temporary B-tree: their plans on a filled database (with the planner's
// statistics) are checked. The outbox's history queries have the same
// test in outbox (TestHistoryQueryPlans).
func TestDashboardQueryPlans(t *testing.T) {
	a := MustOpen(t, Config{})
	tok := mustAdminToken(t, a)
	f := uploadAs(t, a, tok, "plan.bin", randomBytes(t, 100))
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := a.db.W.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// 20000 files copied from the real one (a tenth deleted), 2000 uploads
	// (a few open) and two years of hours.
	exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
		INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256, storage_backend, storage_bucket,
			storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at)
		SELECT printf('%08x-0000-7000-8000-000000000000', i), 'u' || i, filename, content_type, size_bytes, sha256,
			storage_backend, storage_bucket, storage_key, metadata, CASE WHEN i % 10 = 0 THEN 'deleted' ELSE 'stored' END,
			owner_id, owner_username, stored_at - i * 60000, expires_at - i * 60000
		FROM files, n WHERE files.id = ?`, f.ID)
	exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
		INSERT INTO uploads (id, created_at, length, done_at) SELECT 'x' || i, i, 10, CASE WHEN i % 100 = 0 THEN NULL ELSE i END FROM n`)
	exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 17520)
		INSERT OR IGNORE INTO file_hours (hour, files, bytes) SELECT ? - i, 1, 1 FROM n`, time.Now().UnixMilli()/3600000)
	exec("ANALYZE")
	plans := mustPlans(t, a)
	now := time.Now()
	hour := now.UnixMilli() / 3600000
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"SELECT status, files, bytes FROM file_totals", nil}, // fileCounts
		{sqlUsers, nil},
		{sqlUploadsInProgress, nil},
		{sqlFileHours, []any{hour - 7*24 + 1, hour}},
		{"SELECT " + fileColumns + " FROM files WHERE id = ?", []any{f.ID}}, // getFile, the file page
	} {
		plan := plans(q.sql, q.args...)
		t.Logf("%s\n\t%s", q.sql, strings.Join(plan, "; "))
		if bad := badPlan(plan); bad != "" {
			t.Errorf("%s\nplan: %s", q.sql, bad)
		}
	}
}

// smallTables are tables the dashboard may read whole: a row per status,
// per person, per endpoint.
var smallTables = map[string]bool{"file_totals": true, "users": true, "endpoints": true, "outbox_counters": true}

// boundedIndexes are partial indexes that hold only a bounded set of rows
// (uploads_open: the uploads in progress), so reading one whole is no scan
// of its table.
var boundedIndexes = []string{"INDEX uploads_open"}

// badPlan returns the plan if it scans a table that grows (files,
// uploads, hours, events...) or sorts in a temporary B-tree, else "".
func badPlan(plan []string) string {
	for _, line := range plan {
		if strings.Contains(line, "TEMP B-TREE") {
			return strings.Join(plan, "; ")
		}
		if rest, ok := strings.CutPrefix(line, "SCAN "); ok {
			table, _, _ := strings.Cut(rest, " ")
			bounded := false
			for _, ix := range boundedIndexes {
				bounded = bounded || strings.HasSuffix(line, ix)
			}
			// A subquery's rows ("SCAN (subquery-1)") are what its own
			// lines read.
			sub := strings.HasPrefix(table, "(")
			if !smallTables[table] && table != "CONSTANT" && !sub && !bounded {
				return strings.Join(plan, "; ")
			}
		}
	}
	return ""
}

// mustPlans returns a function that explains a query on a fresh read-only
// connection to a's database (one that reads the planner's statistics).
func mustPlans(tb testing.TB, a *App) func(q string, args ...any) []string {
	tb.Helper()
	var seq int
	var name, file string
	if err := a.db.R.QueryRow("PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		tb.Fatal(err)
	}
	r, err := sql.Open("sqlite", "file:"+file+"?_pragma=query_only(1)")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return func(q string, args ...any) []string {
		tb.Helper()
		out, err := sqlplan.Explain(r, q, args...)
		if err != nil {
			tb.Fatal(err)
		}
		return out
	}
}
