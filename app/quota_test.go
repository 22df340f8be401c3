package app

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// tusCreateAs creates an upload and returns the status, the Location and
// the body; extra headers may defer the length or concatenate.
func tusCreateAs(tb testing.TB, a *App, token string, hdr map[string]string) (int, string, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	for k, v := range tusHdr(hdr) {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(body)
}

// meUsage is what GET /api/v1/me says of the caller's storage.
func meUsage(tb testing.TB, a *App, token string) Usage {
	tb.Helper()
	st, body := doAs(tb, token, http.MethodGet, a.URL()+"/api/v1/me", nil, nil)
	var me struct{ User User }
	if st != 200 || json.Unmarshal(body, &me) != nil || me.User.Usage == nil {
		tb.Fatalf("GET /api/v1/me: %d %s", st, body)
	}
	return *me.User.Usage
}

// An account's stored files and the declared lengths of its uploads in
// progress count against its quota; past it, an upload is refused with 413
// naming the limit, and what a deletion or a cancelled upload frees is
// usable again.
func TestQuotaCountsStoredAndInProgress(t *testing.T) {
	a := MustOpen(t, Config{UserQuota: 1 << 30})
	uma := mustUser(t, a, "uma", RoleUploader)
	tok := mustToken(t, a, uma, nil)
	if st, b := sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":100}`); st != 200 {
		t.Fatalf("set quota: %d %s", st, b)
	}
	if u := meUsage(t, a, tok); u != (Usage{Quota: 100}) {
		t.Fatalf("usage before: %+v", u)
	}
	st, first, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "60"})
	if st != 201 {
		t.Fatalf("create 60 of 100: %d", st)
	}
	if u := meUsage(t, a, tok); u.Reserved != 60 || u.Stored != 0 {
		t.Fatalf("usage with 60 reserved: %+v", u)
	}
	st, _, body := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "50"})
	if st != http.StatusRequestEntityTooLarge || !strings.Contains(body, "ERR_QUOTA_EXCEEDED") ||
		!strings.Contains(body, "uma's storage quota is 100 bytes") {
		t.Fatalf("create 50 more: %d %q, want 413 naming uma's quota", st, body)
	}
	fillAs(t, tok, first, randomBytes(t, 60))
	if u := meUsage(t, a, tok); u.Reserved != 0 || u.Stored != 60 {
		t.Fatalf("usage with 60 stored: %+v", u)
	}
	st, second, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "40"})
	if st != 201 {
		t.Fatalf("create 40 to fill the quota: %d", st)
	}
	if st, _, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "1"}); st != 413 {
		t.Fatalf("create 1 past a full quota: %d", st)
	}
	// A cancelled upload and a deleted file give their bytes back.
	if st, _ := doAs(t, tok, http.MethodDelete, second, nil, tusHdr(nil)); st != 204 {
		t.Fatalf("tus DELETE: %d", st)
	}
	f := fileOfUpload(t, a, first)
	if st, _ := doAs(t, tok, http.MethodDelete, a.URL()+"/api/v1/files/"+f.ID, nil, nil); st != 204 {
		t.Fatalf("delete file: %d", st)
	}
	if u := meUsage(t, a, tok); u != (Usage{Quota: 100}) {
		t.Fatalf("usage after the deletions: %+v", u)
	}
	// Back to the portal's default.
	if st, b := sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":null}`); st != 200 {
		t.Fatalf("reset quota: %d %s", st, b)
	}
	if u := meUsage(t, a, tok); u.Quota != 1<<30 {
		t.Fatalf("default quota: %+v", u)
	}
	if st, b := sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":-1}`); st != 400 {
		t.Fatalf("negative quota: %d %s", st, b)
	}
	checkCounters(t, a)
}

// A deferred-length upload reserves what it received, and is stopped when
// what it sends or declares would pass the quota.
func TestQuotaDeferredLength(t *testing.T) {
	a := MustOpen(t, Config{})
	uma := mustUser(t, a, "uma", RoleUploader)
	tok := mustToken(t, a, uma, nil)
	sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":50}`)
	st, up, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Defer-Length": "1"})
	if st != 201 {
		t.Fatalf("create deferred: %d", st)
	}
	patch := func(offset int, data []byte, length string) (int, string) {
		h := tusHdr(map[string]string{"Upload-Offset": strconv.Itoa(offset), "Content-Type": "application/offset+octet-stream"})
		if length != "" {
			h["Upload-Length"] = length
		}
		st, body := doAs(t, tok, http.MethodPatch, up, bytes.NewReader(data), h)
		return st, string(body)
	}
	if st, body := patch(0, randomBytes(t, 70), ""); st != 413 || !strings.Contains(body, "quota") {
		t.Fatalf("PATCH of 70 bytes past a quota of 50: %d %s", st, body)
	}
	if st, _ := patch(0, randomBytes(t, 30), ""); st != 204 {
		t.Fatalf("PATCH of 30: %d", st)
	}
	if u := meUsage(t, a, tok); u.Reserved != 30 {
		t.Fatalf("usage after 30 deferred bytes: %+v", u)
	}
	if st, body := patch(30, randomBytes(t, 1), "200"); st != 413 {
		t.Fatalf("declaring 200 with a quota of 50: %d %s", st, body)
	}
	if st, _ := patch(30, randomBytes(t, 10), "40"); st != 204 {
		t.Fatalf("declaring 40 and finishing: %d", st)
	}
	if u := meUsage(t, a, tok); u.Reserved != 0 || u.Stored != 40 {
		t.Fatalf("usage after the deferred upload finished: %+v", u)
	}
	checkCounters(t, a)
}

// Anonymous uploads share one quota; a concatenation counts like any
// upload, beside its partials.
func TestQuotaAnonymousAndConcatenation(t *testing.T) {
	a := MustOpen(t, Config{AnonymousUploads: true, AnonymousQuota: 50})
	if st, _, _ := tusCreateAs(t, a, "", map[string]string{"Upload-Length": "30"}); st != 201 {
		t.Fatalf("anonymous 30 of 50: %d", st)
	}
	if st, _, body := tusCreateAs(t, a, "", map[string]string{"Upload-Length": "30"}); st != 413 ||
		!strings.Contains(body, "anonymous uploads") {
		t.Fatalf("another anonymous 30: %d %s", st, body)
	}
	uma := mustUser(t, a, "uma", RoleUploader)
	tok := mustToken(t, a, uma, nil)
	sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":30}`)
	var parts []string
	for range 2 {
		_, p, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "10", "Upload-Concat": "partial"})
		fillAs(t, tok, p, randomBytes(t, 10))
		parts = append(parts, strings.TrimPrefix(p, a.URL()))
	}
	st, _, body := tusCreateAs(t, a, tok, map[string]string{"Upload-Concat": "final;" + strings.Join(parts, " ")})
	if st != 413 {
		t.Fatalf("a final of 20 beside 20 of partials, quota 30: %d %s", st, body)
	}
	sendJSON(t, "", http.MethodPatch, a.URL()+"/api/v1/users/"+uma.ID, `{"quota_bytes":40}`)
	if st, _, body := tusCreateAs(t, a, tok, map[string]string{"Upload-Concat": "final;" + strings.Join(parts, " ")}); st != 201 {
		t.Fatalf("the final with a quota of 40: %d %s", st, body)
	}
	if u := meUsage(t, a, tok); u.Stored != 20 || u.Reserved != 20 {
		t.Fatalf("usage: %+v, want the final stored and the partials reserved", u)
	}
	checkCounters(t, a)
}

// Below the free-space reserve new uploads and PATCHes get 507 and /readyz
// says why.
func TestFreeSpaceReserve(t *testing.T) {
	a := MustOpen(t, Config{MinFreeSpace: 1 << 62})
	st, _, body := tusCreateAs(t, a, mustAdminToken(t, a), map[string]string{"Upload-Length": "1"})
	if st != http.StatusInsufficientStorage || !strings.Contains(body, "keeps") {
		t.Fatalf("create below the reserve: %d %s", st, body)
	}
	var ready struct{ Checks map[string]string }
	if st := getJSON(t, a.URL()+"/readyz", &ready); st != 503 || !strings.Contains(ready.Checks["storage"], "free") {
		t.Fatalf("/readyz below the reserve: %d %v", st, ready.Checks)
	}
}

// Each user's usage against quota is in the API, the UI and the metrics.
func TestUsageVisible(t *testing.T) {
	a := MustOpen(t, Config{UserQuota: 1000})
	uma := mustUser(t, a, "uma", RoleUploader)
	tok := mustToken(t, a, uma, nil)
	_, up, _ := tusCreateAs(t, a, tok, map[string]string{"Upload-Length": "7"})
	fillAs(t, tok, up, []byte("seven!!"))
	var users struct{ Items []User }
	getJSON(t, a.URL()+"/api/v1/users", &users)
	found := false
	for _, u := range users.Items {
		if u.ID == uma.ID {
			found = u.Usage != nil && *u.Usage == Usage{Stored: 7, Quota: 1000}
		}
	}
	if !found {
		t.Errorf("GET /api/v1/users: uma's usage missing or wrong: %+v", users.Items)
	}
	resp := authGet(t, a.URL()+"/metrics")
	metrics := readAll(t, resp)
	for _, want := range []string{`portal_storage_used_bytes{user="uma"} 7`, `portal_storage_quota_bytes{user="uma"} 1000`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	mustUser(t, a, "ada", RoleAdmin)
	ada := uiLogin(t, a, "ada")
	page := ada.mustGet("/ui/users")
	mustContain(t, page, "7 B", "of 1000 B")
	if p := ada.post("/ui/users/"+uma.ID, url.Values{"quota": {"2KiB"}}); p.status != http.StatusSeeOther {
		t.Fatalf("set quota in the UI: %d", p.status)
	}
	if u := meUsage(t, a, tok); u.Quota != 2048 {
		t.Fatalf("quota after the UI set it: %+v", u)
	}
	if p := ada.post("/ui/users/"+uma.ID, url.Values{"quota": {"lots"}}); p.status != http.StatusBadRequest {
		t.Fatalf("a bad quota in the UI: %d", p.status)
	}
}

// checkCounters compares the counters kept in transactions with the
// counts they stand for.
func checkCounters(tb testing.TB, a *App) {
	tb.Helper()
	type pair struct{ got, want string }
	q := func(query string) string {
		rows, err := a.db.R.Query(query)
		if err != nil {
			tb.Fatal(err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		var out []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			out = append(out, strings.Trim(strings.ReplaceAll(strings.TrimSpace(fmtRow(vals)), "  ", " "), " "))
		}
		return strings.Join(out, "; ")
	}
	for name, p := range map[string]pair{
		"stored per account": {q(`SELECT user_key, stored FROM usage WHERE stored <> 0 ORDER BY 1`),
			q(`SELECT COALESCE(owner_id, ''), SUM(size_bytes) FROM files WHERE status = 'stored' GROUP BY 1 ORDER BY 1`)},
		"reserved per account": {q(`SELECT user_key, reserved FROM usage WHERE reserved <> 0 ORDER BY 1`),
			q(`SELECT COALESCE(user_id, ''), SUM(COALESCE(length, received)) FROM uploads WHERE done_at IS NULL GROUP BY 1 HAVING SUM(COALESCE(length, received)) <> 0 ORDER BY 1`)},
		"file totals": {q(`SELECT status, files, bytes FROM file_totals WHERE files <> 0 ORDER BY 1`),
			q(`SELECT status, COUNT(*), SUM(size_bytes) FROM files GROUP BY 1 ORDER BY 1`)},
		"files per hour": {q(`SELECT hour, files, bytes FROM file_hours ORDER BY 1`),
			q(`SELECT stored_at / 3600000, COUNT(*), SUM(size_bytes) FROM files GROUP BY 1 ORDER BY 1`)},
	} {
		if p.got != p.want {
			tb.Errorf("%s: kept %q, counted %q", name, p.got, p.want)
		}
	}
}

func fmtRow(vals []any) string {
	var b strings.Builder
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			b.WriteString(string(v))
		case string:
			b.WriteString(v)
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case nil:
			b.WriteString("NULL")
		}
		b.WriteString(" ")
	}
	return b.String()
}
