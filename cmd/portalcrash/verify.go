package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the portal's database, read directly
)

// dbFile is a row of the files table.
type dbFile struct {
	ID, UploadID, SHA256, Status string
	Size                         int64
	StoredAt                     time.Time // taken when finalize began, before its commit
}

// dbState is what the database holds at the end of a run.
type dbState struct {
	files      map[string]dbFile   // by upload id
	uploaded   map[string][]string // file id -> its file.uploaded event ids
	orphans    []string            // events whose file is not in files
	events     map[string]string   // event id -> file id, file.uploaded only
	deliveries map[string]dbDelivery
	integrity  string
}

type dbDelivery struct {
	EventID, Endpoint, Status string
	Attempts                  int
}

// openDB opens the portal's database for reading beside the running portal.
func openDB(dataDir string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	return sql.Open("sqlite", "file:"+filepath.Join(dataDir, "portal.db")+"?"+q.Encode())
}

func readDB(ctx context.Context, dataDir string) (dbState, error) {
	st := dbState{files: map[string]dbFile{}, uploaded: map[string][]string{}, events: map[string]string{},
		deliveries: map[string]dbDelivery{}}
	db, err := openDB(dataDir)
	if err != nil {
		return st, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id, upload_id, sha256, status, size_bytes, stored_at FROM files")
	if err != nil {
		return st, fmt.Errorf("read files: %w", err)
	}
	for rows.Next() {
		var f dbFile
		var stored int64
		if err := rows.Scan(&f.ID, &f.UploadID, &f.SHA256, &f.Status, &f.Size, &stored); err != nil {
			rows.Close()
			return st, err
		}
		f.StoredAt = time.UnixMilli(stored)
		st.files[f.UploadID] = f
	}
	rows.Close()
	byID := map[string]bool{}
	for _, f := range st.files {
		byID[f.ID] = true
	}
	rows, err = db.QueryContext(ctx, "SELECT id, type, COALESCE(file_id, '') FROM events")
	if err != nil {
		return st, fmt.Errorf("read events: %w", err)
	}
	for rows.Next() {
		var id, typ, fileID string
		if err := rows.Scan(&id, &typ, &fileID); err != nil {
			rows.Close()
			return st, err
		}
		if !byID[fileID] {
			st.orphans = append(st.orphans, id)
		}
		if typ == "file.uploaded" {
			st.uploaded[fileID] = append(st.uploaded[fileID], id)
			st.events[id] = fileID
		}
	}
	rows.Close()
	rows, err = db.QueryContext(ctx, "SELECT id, event_id, endpoint_id, status, attempts FROM deliveries")
	if err != nil {
		return st, fmt.Errorf("read deliveries: %w", err)
	}
	for rows.Next() {
		var id string
		var d dbDelivery
		if err := rows.Scan(&id, &d.EventID, &d.Endpoint, &d.Status, &d.Attempts); err != nil {
			rows.Close()
			return st, err
		}
		st.deliveries[id] = d
	}
	rows.Close()
	var checks []string
	rows, err = db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return st, fmt.Errorf("integrity check: %w", err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		checks = append(checks, s)
	}
	rows.Close()
	st.integrity = strings.Join(checks, "; ")
	return st, rows.Err()
}

// settled reports whether every delivery has succeeded and the receiver
// answered 2xx to each at least once.
func settled(st dbState, hits []hit) bool {
	ok := map[string]bool{}
	for _, h := range hits {
		if h.Verified && h.Status < 300 {
			ok[h.DeliveryID] = true
		}
	}
	for id, d := range st.deliveries {
		if d.Status != "succeeded" || !ok[id] {
			return false
		}
	}
	return true
}

// verify waits (bounded by s.Settle) until the deliveries have settled,
// then checks everything the durability promise and the delivery contract
// say, and returns the run's figures.
func (r *run) verify(ctx context.Context) *Figures {
	f := &Figures{Scenario: r.s.Name, Seed: r.s.Seed, Uploads: len(r.ups), Clients: r.s.Clients, Bytes: r.totalBytes()}
	r.countClients(f)
	r.countKills(f)
	f.restarts(r.portal.restarts)
	deadline := time.Now().Add(r.s.Settle)
	var st dbState
	var err error
	for {
		st, err = readDB(ctx, r.portal.dataDir)
		if err == nil && settled(st, r.recv.snapshot()) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		f.problem("read the database: %v", err)
		return f
	}
	r.checkFiles(ctx, f, st)
	r.checkEvents(f, st)
	r.checkDeliveries(f, st, r.recv.snapshot())
	f.Integrity = st.integrity
	if st.integrity != "ok" {
		f.problem("PRAGMA integrity_check: %s", st.integrity)
	}
	if lf, err := r.portal.logFacts(); err != nil {
		f.problem("read the portal's log: %v", err)
	} else {
		f.SweepFinalized, f.LogErrors, f.Panics = lf.SweepFinalized, lf.Errors, lf.Panics
		if lf.Panics > 0 {
			f.problem("the portal's log shows %d panics", lf.Panics)
		}
	}
	return f
}

func (r *run) countClients(f *Figures) {
	for _, u := range r.ups {
		f.Creates += u.creates
		f.Patches += u.patches
		f.Heads += u.heads
		f.ClientFailures += u.failures
		switch u.ackedBy {
		case "204":
			f.Acked204++
		case "201":
			f.Acked201++
		case "head":
			f.AckedHead++
		default:
			f.Unfinished++
			f.problem("upload %d (%s) unfinished: %v", u.n, human(u.size), u.err)
		}
	}
}

func (r *run) countKills(f *Figures) {
	f.Kills = len(r.kills)
	for _, k := range r.kills {
		if k.Finalizing > 0 {
			f.KillsFinalize++
		}
		if k.Delivering > 0 {
			f.KillsDelivery++
		}
		if k.TimedOut {
			f.KillsMissed++
		}
	}
}

// checkFiles: every acknowledged upload is a stored file of the right size
// and SHA-256, and the bytes read back through the API are the bytes sent.
func (r *run) checkFiles(ctx context.Context, f *Figures, st dbState) {
	f.Files = len(st.files)
	acked := map[string]bool{}
	for _, u := range r.ups {
		if u.ackedBy == "" {
			continue
		}
		acked[u.uploadID()] = true
		row, ok := st.files[u.uploadID()]
		switch {
		case !ok || row.Status != "stored" || row.Size != u.size:
			f.Lost++
			f.problem("LOST: upload %d (%s, acknowledged by %s) has file row %+v", u.n, u.uploadID(), u.ackedBy, row)
			continue
		case row.SHA256 != u.sha:
			f.Mismatched++
			f.problem("MISMATCH: upload %d: file row sha256 %s, sent %s", u.n, row.SHA256, u.sha)
			continue
		case row.StoredAt.After(u.ackedAt):
			// Finalize began after the client had its answer: the
			// answer came before the record (a later sweep made it).
			f.AckedEarly++
			f.problem("EARLY: upload %d acknowledged by %s at %s, finalized at %s", u.n, u.ackedBy,
				u.ackedAt.Format("15:04:05.000"), row.StoredAt.Format("15:04:05.000"))
		}
		got, n, err := r.readBack(ctx, row.ID)
		switch {
		case err != nil:
			f.Mismatched++
			f.problem("MISMATCH: upload %d: read back: %v", u.n, err)
		case got != u.sha || n != u.size:
			f.Mismatched++
			f.problem("MISMATCH: upload %d: read back %d bytes with sha256 %s, sent %d with %s", u.n, n, got, u.size, u.sha)
		}
	}
	// Files the clients never saw acknowledged (a creation whose 201 was
	// lost, then sent again): not promised, but their bytes must match
	// their row all the same.
	for id, row := range st.files {
		if acked[id] {
			continue
		}
		f.UnackedFiles++
		got, n, err := r.readBack(ctx, row.ID)
		if err != nil || got != row.SHA256 || n != row.Size {
			f.Mismatched++
			f.problem("MISMATCH: unacknowledged file %s: read back %d bytes, %s (%v), row says %d, %s", row.ID, n, got, err, row.Size, row.SHA256)
		}
	}
}

// readBack fetches a file's bytes through the API and hashes them.
func (r *run) readBack(ctx context.Context, fileID string) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.portal.url()+"/api/v1/files/"+fileID+"/content", nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := newHTTPClient().Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("GET content: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// checkEvents: exactly one file.uploaded per file, no event without its
// file.
func (r *run) checkEvents(f *Figures, st dbState) {
	f.Events = len(st.events)
	for _, row := range st.files {
		if n := len(st.uploaded[row.ID]); n != 1 {
			f.FilesWithoutOneEvent++
			f.problem("file %s (upload %s) has %d file.uploaded events, want 1", row.ID, row.UploadID, n)
		}
	}
	f.EventsWithoutFile = len(st.orphans)
	if len(st.orphans) > 0 {
		f.problem("%d events name no file in the database (e.g. %s)", len(st.orphans), st.orphans[0])
	}
}

// checkDeliveries: every event reached every endpoint at least once,
// signed; duplicates are counted (at-least-once delivery allows them).
func (r *run) checkDeliveries(f *Figures, st dbState, hits []hit) {
	f.Deliveries = len(st.deliveries)
	f.Requests = len(hits)
	copies := map[string]int{}     // delivery id -> 2xx answers
	eventOf := map[string]string{} // delivery id -> webhook-id
	for _, h := range hits {
		if !h.Verified {
			f.RejectedSignatures++
			continue
		}
		if prev, ok := eventOf[h.DeliveryID]; ok && prev != h.WebhookID {
			f.problem("delivery %s came with webhook-id %s and %s", h.DeliveryID, prev, h.WebhookID)
		}
		eventOf[h.DeliveryID] = h.WebhookID
		if h.Status >= 300 {
			f.Answered500++
			continue
		}
		copies[h.DeliveryID]++
		if fileID, ok := st.events[h.WebhookID]; ok && fileID != h.FileID {
			f.problem("event %s: payload names file %s, the database %s", h.WebhookID, h.FileID, fileID)
		}
	}
	if f.RejectedSignatures > 0 {
		f.problem("%d webhook requests failed Standard Webhooks verification", f.RejectedSignatures)
	}
	shaOf := map[string]string{}
	for _, row := range st.files {
		shaOf[row.ID] = row.SHA256
	}
	for _, h := range hits {
		if h.Verified && h.Type == "file.uploaded" && h.SHA256 != shaOf[h.FileID] {
			f.problem("event %s: payload sha256 %s, file row %s", h.WebhookID, h.SHA256, shaOf[h.FileID])
			break
		}
	}
	perEvent := map[string]int{}
	unsettled := 0
	for id, d := range st.deliveries {
		perEvent[d.EventID]++
		if d.Status != "succeeded" {
			if unsettled++; unsettled <= 5 {
				f.problem("delivery %s (event %s) is %q at the end, want succeeded", id, d.EventID, d.Status)
			}
		}
		n := copies[id]
		if n == 0 {
			f.Undelivered++
			if f.Undelivered <= 5 {
				f.problem("delivery %s (event %s) never reached the receiver; its status: %s", id, d.EventID, d.Status)
			}
			continue
		}
		f.Duplicates += n - 1
		f.MaxCopies = max(f.MaxCopies, n)
	}
	for id := range st.events {
		if perEvent[id] != len(r.paths) {
			f.problem("event %s has %d deliveries, want one per endpoint (%d)", id, perEvent[id], len(r.paths))
		}
	}
	if f.Undelivered > 5 {
		f.problem("… %d deliveries never reached the receiver in all", f.Undelivered)
	}
}

// restarts records the start-up times of the portal's lives after the first.
func (f *Figures) restarts(ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	f.RestartMedian = s[len(s)/2].Round(time.Millisecond).String()
	f.RestartMax = s[len(s)-1].Round(time.Millisecond).String()
}
