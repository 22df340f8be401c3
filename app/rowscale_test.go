package app

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// insertFileRow writes a file row straight into a's database (no bytes):
// the triggers of migration 0009 see it as they see a finalize.
func insertFileRow(tb testing.TB, a *App, status string, expires time.Time) string {
	tb.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	up := strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
	now := time.Now().UnixMilli()
	if _, err := a.db.W.Exec(`INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256,
		storage_backend, storage_bucket, storage_key, status, stored_at, expires_at)
		VALUES (?, ?, 'f.bin', 'application/octet-stream', 1, ?, 'local', 'uploads', ?, ?, ?, ?)`,
		id, up, strings.Repeat("0", 64), up, status, now, expires.UnixMilli()); err != nil {
		tb.Fatal(err)
	}
	return id
}

// checkExpiryHours compares file_expiry_hours with the stored files it
// counts, and expiringCount with COUNT(*) at a few times.
func checkExpiryHours(tb testing.TB, a *App, step string) {
	tb.Helper()
	read := func(q string) map[int64]int64 {
		rows, err := a.db.R.Query(q)
		if err != nil {
			tb.Fatal(err)
		}
		defer rows.Close()
		out := map[int64]int64{}
		for rows.Next() {
			var h, n int64
			if err := rows.Scan(&h, &n); err != nil {
				tb.Fatal(err)
			}
			out[h] = n
		}
		return out
	}
	kept := read("SELECT hour, files FROM file_expiry_hours")
	want := read("SELECT expires_at / 3600000, COUNT(*) FROM files WHERE status = 'stored' GROUP BY 1")
	if fmt.Sprint(kept) != fmt.Sprint(want) {
		tb.Errorf("%s: file_expiry_hours is %v, the stored files say %v", step, kept, want)
	}
	now := time.Now()
	for _, d := range []time.Duration{-2 * time.Hour, 0, 30 * time.Minute, 90 * time.Minute, 24 * time.Hour, 100 * time.Hour} {
		by := now.Add(d)
		n, err := a.expiringCount(context.Background(), by)
		if err != nil {
			tb.Fatal(err)
		}
		var c int64
		if err := a.db.R.QueryRow("SELECT COUNT(*) FROM files WHERE status = 'stored' AND expires_at <= ?", by.UnixMilli()).Scan(&c); err != nil {
			tb.Fatal(err)
		}
		if n != c {
			tb.Errorf("%s: %d files expire by now%+v, expiringCount says %d", step, c, d, n)
		}
	}
}

// The stored files by expiry hour follow every change of a file: stored,
// its expiry moved (within and across hours), deleted, its row removed,
// and a deleted file's row that changes.
func TestFileExpiryHoursKept(t *testing.T) {
	a := MustOpen(t, Config{})
	now := time.Now()
	var ids []string
	for i := range 12 {
		ids = append(ids, insertFileRow(t, a, StatusStored, now.Add(time.Duration(i*17)*time.Minute-time.Hour)))
	}
	deleted := insertFileRow(t, a, StatusDeleted, now.Add(time.Hour))
	checkExpiryHours(t, a, "stored")
	for _, step := range []struct{ name, q string }{
		{"expiry moved by minutes", "UPDATE files SET expires_at = expires_at + 60000 WHERE id = '" + ids[0] + "'"},
		{"expiry moved by days", "UPDATE files SET expires_at = expires_at + 3 * 86400000 WHERE id = '" + ids[1] + "'"},
		{"deleted", "UPDATE files SET status = 'deleted', deleted_at = 1 WHERE id IN ('" + ids[2] + "', '" + ids[3] + "')"},
		{"deleted and moved", "UPDATE files SET status = 'deleted', expires_at = 1 WHERE id = '" + ids[4] + "'"},
		{"a deleted file changed", "UPDATE files SET expires_at = expires_at + 86400000 WHERE id = '" + deleted + "'"},
		{"row removed", "DELETE FROM files WHERE id = '" + ids[5] + "'"},
		{"all of one hour removed", "DELETE FROM files WHERE status = 'stored' AND expires_at / 3600000 = (SELECT expires_at / 3600000 FROM files WHERE id = '" + ids[6] + "')"},
		{"notified (no change)", "UPDATE files SET expiring_notified_at = 1"},
	} {
		if _, err := a.db.W.Exec(step.q); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		checkExpiryHours(t, a, step.name)
	}
	var n int
	if err := a.db.R.QueryRow("SELECT COUNT(*) FROM file_expiry_hours").Scan(&n); err != nil || n == 0 {
		t.Fatalf("file_expiry_hours has %d rows (%v)", n, err)
	}
}

// With expiring=true the file list is soonest expiry first, and its
// pages (cursor: the last file's id) walk every expiring file once.
func TestExpiringListSoonestFirst(t *testing.T) {
	a := MustOpen(t, Config{ExpiryNotifyBefore: 24 * time.Hour})
	now := time.Now()
	want := map[string]time.Time{}
	// Inserted newest last but expiring in a shuffled order, some in the
	// same millisecond (the id breaks the tie).
	for i, h := range []int{5, 1, 23, 1, 7, 12, 3, 20, 2, 1, 9, 30, 48, -1} {
		exp := now.Add(time.Duration(h) * time.Hour).Truncate(time.Millisecond)
		id := insertFileRow(t, a, StatusStored, exp)
		if h <= 24 {
			want[id] = exp
		}
		if i%4 == 0 {
			insertFileRow(t, a, StatusDeleted, exp) // never listed
		}
	}
	var got []File
	cursor := ""
	for pages := 0; ; pages++ {
		var page FilePage
		if st := getJSON(t, a.URL()+"/api/v1/files?expiring=true&limit=4&cursor="+url.QueryEscape(cursor), &page); st != 200 {
			t.Fatalf("list: %d", st)
		}
		got = append(got, page.Items...)
		if page.NextCursor == "" || pages > 10 {
			break
		}
		cursor = page.NextCursor
	}
	if len(got) != len(want) {
		t.Fatalf("%d expiring files listed, want %d", len(got), len(want))
	}
	sorted := slices.IsSortedFunc(got, func(x, y File) int {
		if c := x.ExpiresAt.Compare(y.ExpiresAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	if !sorted {
		t.Errorf("not soonest expiry first: %v", got)
	}
	for _, f := range got {
		if _, ok := want[f.ID]; !ok || f.Status != StatusStored {
			t.Errorf("listed %s (%s, expires %s), not an expiring stored file", f.ID, f.Status, f.ExpiresAt)
		}
		delete(want, f.ID)
	}
}
