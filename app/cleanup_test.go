package app

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A crash between the steps of a deletion: the next run finishes it,
// whichever step was done, and file.deleted comes only after the bytes
// are gone.
func TestCleanupFinishesInterruptedDeletion(t *testing.T) {
	clock := newTestClock()
	dir := t.TempDir()
	a := openExpiry(t, clock, Config{DataDir: dir})

	// Step 1 committed (the request, with its notice), then the process
	// died: f's bytes are all there, g's data file was removed (a crash
	// inside the removal).
	f := mustStore(t, a, randomBytes(t, 1000), map[string]string{"ttl": "1h"})
	g := mustStore(t, a, randomBytes(t, 1000), map[string]string{"ttl": "1h"})
	clock.Advance(2 * time.Hour)
	for _, x := range []File{f, g} {
		err := a.inTx(context.Background(), func(ctx context.Context, tx *sql.Tx) error {
			if _, err := a.noticeTx(context.Background(), tx, x, clock.Now()); err != nil {
				return err
			}
			_, err := requestDeletionTx(context.Background(), tx, x, clock.Now(), deleteRequest{Reason: ReasonExpired})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(a.UploadDir(), g.UploadID)); err != nil {
		t.Fatal(err)
	}
	// Requested, not deleted: no file.deleted, and the content is gone.
	mustTypes(t, a, f, EventFileUploaded, EventFileExpiring)
	if resp := authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content"); resp.StatusCode != http.StatusGone {
		t.Fatalf("content of a file being deleted: %s", resp.Status)
	}
	a.Close()

	b := openExpiry(t, clock, Config{DataDir: dir})
	if r := mustRunCleanup(t, b); r != (cleanupResult{Expired: 2}) {
		t.Fatalf("cleanup after the crash did %+v, want the 2 deletions finished", r)
	}
	for _, x := range []File{f, g} {
		if left := uploadFiles(b, x.UploadID); len(left) != 0 {
			t.Fatalf("upload %s: left %v", x.UploadID, left)
		}
		mustTypes(t, b, x, EventFileUploaded, EventFileExpiring, EventFileDeleted)
		if got := mustFile(t, b, x.ID); got.Status != StatusDeleted || got.DeleteReason != ReasonExpired {
			t.Fatalf("row %+v", got)
		}
	}

	// Bytes removed (step 2), then the process died before step 3: the
	// next run records the deletion.
	h := mustStore(t, b, randomBytes(t, 1000), map[string]string{"ttl": "1h"})
	clock.Advance(2 * time.Hour)
	if err := b.tus.Terminate(context.Background(), h.UploadID); err != nil {
		t.Fatal(err)
	}
	if r := mustRunCleanup(t, b); r != (cleanupResult{Expired: 1, Notices: 1}) {
		t.Fatalf("cleanup did %+v", r)
	}
	mustTypes(t, b, h, EventFileUploaded, EventFileExpiring, EventFileDeleted)
	if r := mustRunCleanup(t, b); r != (cleanupResult{}) {
		t.Fatalf("another cleanup did %+v", r)
	}
	checkCounters(t, b)
}

// tusRequest sends a tus request as the admin and returns the response.
func tusRequest(tb testing.TB, method, url string, hdr map[string]string, body []byte) *http.Response {
	tb.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := authDo(tb, req)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func ownerRecorded(tb testing.TB, a *App, uploadID string) bool {
	tb.Helper()
	var n int
	if err := a.db.R.QueryRow("SELECT COUNT(*) FROM uploads WHERE id = ?", uploadID).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n == 1
}

func TestCleanupRemovesAbandonedUploads(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{IncompleteTTL: 24 * time.Hour})
	old := clock.Now().Add(-25 * time.Hour)

	stale := tusCreate(t, a.URL(), 100, nil)
	tusPatch(t, stale, 0, make([]byte, 40))
	fresh := tusCreate(t, a.URL(), 100, nil)
	tusPatch(t, fresh, 0, make([]byte, 40))
	deferred := tusRequest(t, http.MethodPost, a.URL()+"/files/", map[string]string{"Upload-Defer-Length": "1"}, nil).
		Header.Get("Location")

	// A concatenation: two finished parts, the final upload stored. The
	// parts are not needed once the final upload has its bytes.
	p1, p2 := randomBytes(t, 300), randomBytes(t, 200)
	var parts []string
	for _, p := range [][]byte{p1, p2} {
		resp := tusRequest(t, http.MethodPost, a.URL()+"/files/", map[string]string{
			"Upload-Length": strconv.Itoa(len(p)), "Upload-Concat": "partial"}, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create part: %s", resp.Status)
		}
		url := resp.Header.Get("Location")
		if st, _ := tusPatch(t, url, 0, p); st != http.StatusNoContent {
			t.Fatalf("part PATCH: %d", st)
		}
		parts = append(parts, url)
	}
	resp := tusRequest(t, http.MethodPost, a.URL()+"/files/", map[string]string{
		"Upload-Concat": "final;" + parts[0] + " " + parts[1]}, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create final: %s", resp.Status)
	}
	final, ok := fileByUpload(t, a, resp.Header.Get("Location"))
	if !ok || final.SHA256 != sha256Hex(append(append([]byte{}, p1...), p2...)) {
		t.Fatalf("final upload not stored: %+v", final)
	}
	// A part nobody finished.
	unfinished := tusRequest(t, http.MethodPost, a.URL()+"/files/", map[string]string{
		"Upload-Length": "50", "Upload-Concat": "partial"}, nil).Header.Get("Location")
	stored := mustStore(t, a, randomBytes(t, 100), nil)

	for _, u := range []string{stale, deferred, parts[0], parts[1], unfinished, final.UploadID, stored.UploadID} {
		ageUpload(t, a, uploadID(u), old)
	}
	r := mustRunCleanup(t, a)
	if r != (cleanupResult{Abandoned: 5}) {
		t.Fatalf("cleanup did %+v, want 5 abandoned uploads removed", r)
	}
	for _, u := range []string{stale, deferred, parts[0], parts[1], unfinished} {
		if left := uploadFiles(a, uploadID(u)); len(left) != 0 {
			t.Errorf("upload %s: left %v", uploadID(u), left)
		}
		if ownerRecorded(t, a, uploadID(u)) {
			t.Errorf("upload %s: owner record left", uploadID(u))
		}
		if st := tusRequest(t, http.MethodHead, u, nil, nil).StatusCode; st != http.StatusNotFound {
			t.Errorf("HEAD of removed upload: %d", st)
		}
	}
	if left := uploadFiles(a, uploadID(fresh)); len(left) != 3 {
		t.Errorf("fresh incomplete upload touched: %v", left)
	}
	for _, f := range []File{final, stored} {
		if left := uploadFiles(a, f.UploadID); len(left) != 3 || !ownerRecorded(t, a, f.UploadID) {
			t.Errorf("stored file %s touched: %v", f.ID, left)
		}
		if resp := authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content"); resp.StatusCode != 200 {
			t.Errorf("content of %s: %s", f.ID, resp.Status)
		}
		mustTypes(t, a, f, EventFileUploaded)
	}
	if r := mustRunCleanup(t, a); r != (cleanupResult{}) {
		t.Fatalf("second cleanup did %+v", r)
	}
	checkCounters(t, a)
}

func TestDeleteFileAPI(t *testing.T) {
	clock := newTestClock()
	a := openExpiry(t, clock, Config{})
	bob := mustUser(t, a, "bob", RoleUploader)
	carol := mustUser(t, a, "carol", RoleUploader)
	bobTok, carolTok := mustToken(t, a, bob, nil), mustToken(t, a, carol, nil)
	f := mustStoreAs(t, a, bobTok, randomBytes(t, 500), map[string]string{"filename": "b.txt"})
	url := a.URL() + "/api/v1/files/" + f.ID

	if st, _ := doAs(t, carolTok, http.MethodDelete, url, nil, nil); st != http.StatusNotFound {
		t.Fatalf("DELETE of someone else's file: %d", st)
	}
	if st, _ := doAs(t, "", http.MethodDelete, url, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("anonymous DELETE: %d", st)
	}
	mustTypes(t, a, f, EventFileUploaded)

	clock.Advance(time.Minute)
	if st, b := doAs(t, bobTok, http.MethodDelete, url, nil, nil); st != http.StatusNoContent {
		t.Fatalf("owner DELETE: %d %s", st, b)
	}
	evs := mustTypes(t, a, f, EventFileUploaded, EventFileDeleted) // no notice for a user's deletion
	del := evs[1]
	if del.Reason != ReasonDeletedByUser || del.Actor.UserID == nil || *del.Actor.UserID != bob.ID ||
		*del.Actor.Username != "bob" || del.OccurredAt != rfc3339(clock.Now()) {
		t.Fatalf("file.deleted: %+v", del)
	}
	if left := uploadFiles(a, f.UploadID); len(left) != 0 {
		t.Fatalf("bytes left: %v", left)
	}
	if st, _ := doAs(t, bobTok, http.MethodGet, url+"/content", nil, nil); st != http.StatusGone {
		t.Fatalf("content of a deleted file: %d", st)
	}
	if g := mustFile(t, a, f.ID); g.Status != StatusDeleted || g.DeleteReason != ReasonDeletedByUser {
		t.Fatalf("row: %+v", g)
	}
	// Idempotent: a repeated DELETE answers 204 and emits nothing.
	if st, _ := doAs(t, bobTok, http.MethodDelete, url, nil, nil); st != http.StatusNoContent {
		t.Fatalf("repeated DELETE: %d", st)
	}
	mustTypes(t, a, f, EventFileUploaded, EventFileDeleted)
	// A deleted file is never expired or noticed again.
	clock.Advance(30 * 24 * time.Hour)
	mustRunExpiry(t, a)
	mustRunCleanup(t, a)
	mustTypes(t, a, f, EventFileUploaded, EventFileDeleted)

	for path, want := range map[string]int{"01a207ca-0673-7e8a-93d4-b765bcb0528a": 404, "not-a-uuid": 400} {
		if st, _ := doAs(t, mustAdminToken(t, a), http.MethodDelete, a.URL()+"/api/v1/files/"+path, nil, nil); st != want {
			t.Errorf("DELETE %s: %d, want %d", path, st, want)
		}
	}

	// An admin deleting someone else's file.
	g := mustStoreAs(t, a, bobTok, randomBytes(t, 500), nil)
	if st, _ := doAs(t, mustAdminToken(t, a), http.MethodDelete, a.URL()+"/api/v1/files/"+g.ID, nil, nil); st != 204 {
		t.Fatalf("admin DELETE: %d", st)
	}
	if del := mustTypes(t, a, g, EventFileUploaded, EventFileDeleted)[1]; del.Reason != ReasonDeletedByAdmin ||
		del.Actor.Username == nil || *del.Actor.Username != "admin" {
		t.Fatalf("admin's file.deleted: %+v", del)
	}

	// A tus DELETE of a finished upload deletes the file the same way.
	h := mustStoreAs(t, a, bobTok, randomBytes(t, 500), nil)
	st, b := doAs(t, bobTok, http.MethodDelete, a.URL()+"/files/"+h.UploadID, nil, map[string]string{"Tus-Resumable": "1.0.0"})
	if st != http.StatusNoContent {
		t.Fatalf("tus DELETE: %d %s", st, b)
	}
	if del := mustTypes(t, a, h, EventFileUploaded, EventFileDeleted)[1]; del.Reason != ReasonDeletedByUser ||
		del.Actor.UserID == nil || *del.Actor.UserID != bob.ID {
		t.Fatalf("tus DELETE's file.deleted: %+v", del)
	}
	if left := uploadFiles(a, h.UploadID); len(left) != 0 || mustFile(t, a, h.ID).Status != StatusDeleted {
		t.Fatalf("after tus DELETE: %v %+v", left, mustFile(t, a, h.ID))
	}
}

// The cleanup removes the history of deleted files past the retention:
// their events with every delivery and attempt, once nothing is left to
// deliver. A stored file's events stay whatever their age, and so does an
// event with a delivery still to make.
func TestCleanupPrunesHistory(t *testing.T) {
	clock := newTestClock()
	cfg := whConfig()
	cfg.FileTTL, cfg.HistoryRetention = 240*time.Hour, 48*time.Hour
	a := openExpiry(t, clock, cfg)
	rc, _ := whReceiverEndpoint(t, a)
	gone := mustStore(t, a, randomBytes(t, 100), map[string]string{"filename": "gone.bin"})
	gone2 := mustStore(t, a, randomBytes(t, 100), map[string]string{"filename": "gone2.bin"})
	kept := mustStore(t, a, randomBytes(t, 100), map[string]string{"filename": "kept.bin"})
	for _, f := range []File{gone, gone2} {
		if code, body := whDo(t, a, "DELETE", "/api/v1/files/"+f.ID, nil); code != http.StatusNoContent {
			t.Fatalf("delete %s: %d %s", f.ID, code, body)
		}
	}
	for range 5 { // 3 uploads, 2 deletions
		rc.next(10 * time.Second)
	}
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := a.db.R.QueryRow(q, args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(q, "IN ('pending', 'delivering')") || n == 0 || time.Now().After(deadline) {
				return n
			}
			time.Sleep(20 * time.Millisecond) // the last attempts are being recorded
		}
	}
	if n := count("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering')"); n != 0 {
		t.Fatalf("%d deliveries unfinished", n)
	}
	if n := count("SELECT COUNT(*) FROM delivery_attempts"); n != 5 {
		t.Fatalf("%d attempts, want 5", n)
	}
	if r := mustRunCleanup(t, a); r.Pruned != 0 {
		t.Fatalf("pruned %d events within the retention", r.Pruned)
	}
	// gone2's file.deleted still has a delivery to make (as if retried).
	if _, err := a.db.W.Exec(`UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE event_id =
		(SELECT id FROM events WHERE file_id = ? AND type = 'file.deleted')`, clock.Now().Add(100*time.Hour).UnixMilli(), gone2.ID); err != nil {
		t.Fatal(err)
	}
	clock.Advance(49 * time.Hour)
	if r := mustRunCleanup(t, a); r.Pruned != 3 {
		t.Fatalf("pruned %d events, want gone's two and gone2's file.uploaded", r.Pruned)
	}
	for _, c := range []struct {
		file File
		want int
	}{{gone, 0}, {gone2, 1}, {kept, 1}} {
		if n := count("SELECT COUNT(*) FROM events WHERE file_id = ?", c.file.ID); n != c.want {
			t.Errorf("%s: %d events left, want %d", c.file.Filename, n, c.want)
		}
	}
	if n := count("SELECT COUNT(*) FROM deliveries"); n != 2 {
		t.Errorf("%d deliveries left, want 2 (kept's and gone2's pending one)", n)
	}
	if n := count(`SELECT COUNT(*) FROM delivery_attempts t JOIN deliveries d ON d.id = t.delivery_id`); n != count("SELECT COUNT(*) FROM delivery_attempts") || n != 2 {
		t.Errorf("%d attempts left (all must belong to a delivery), want 2", n)
	}
	// The files' records stay; the API still lists them.
	if g := mustFile(t, a, gone.ID); g.Status != StatusDeleted {
		t.Errorf("gone's record: %+v", g)
	}
}
