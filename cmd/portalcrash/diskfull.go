package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The disk-full scenario puts the portal's data directory on a small
// tmpfs and fills it at three moments:
//
//   - patch: a PATCH's bytes find no room half-way;
//   - finalize: the last PATCH's bytes fit, but the transaction that
//     records the file and its file.uploaded event cannot commit (SQLite's
//     WAL must grow); the portal is then killed and restarted on the full
//     disk;
//   - commit: other event commits on a full disk: the record of a webhook
//     attempt (which the receiver answered 500, so a retry must follow)
//     and a deletion's file.deleted.
//
// Each time the client must get a retryable error (5xx, not a 4xx that
// tells it to give up), no file row may exist without its bytes nor an
// event without its file, the database must pass PRAGMA integrity_check,
// and once the filler is removed the client must finish the upload with
// the right SHA-256, the event must be committed once and delivered.

// diskFullConfig configures the scenario.
type diskFullConfig struct {
	Bin, Dir string
	Size     string // tmpfs size (mount's size= option); default 64m
	Log      func(format string, args ...any)
}

// diskFullResult is what each moment showed.
type diskFullResult struct {
	Moments []*moment
}

// moment is one fill: what happened, step by step, and what was wrong.
type moment struct {
	Name     string   `json:"name"`
	Steps    []string `json:"steps"`
	Problems []string `json:"problems"`
}

func (m *moment) step(format string, args ...any) {
	m.Steps = append(m.Steps, fmt.Sprintf(format, args...))
}
func (m *moment) problem(format string, args ...any) {
	m.Problems = append(m.Problems, fmt.Sprintf(format, args...))
}

// OK reports whether every moment passed.
func (r *diskFullResult) OK() bool {
	for _, m := range r.Moments {
		if len(m.Problems) > 0 {
			return false
		}
	}
	return len(r.Moments) > 0
}

func (r *diskFullResult) print(w io.Writer) {
	for _, m := range r.Moments {
		verdict := "PASS"
		if len(m.Problems) > 0 {
			verdict = fmt.Sprintf("FAIL (%d problems)", len(m.Problems))
		}
		fmt.Fprintf(w, "portalcrash diskfull, full during %s: %s\n", m.Name, verdict)
		for _, s := range m.Steps {
			fmt.Fprintln(w, "   ", s)
		}
		for _, p := range m.Problems {
			fmt.Fprintln(w, "    PROBLEM:", p)
		}
	}
}

// errNotRoot says the scenario cannot mount its tmpfs here.
var errNotRoot = errors.New("mounting a tmpfs needs root (or a user namespace: unshare --user --map-root-user --mount)")

// runDiskFull runs the three moments, each on a fresh tmpfs and portal.
func runDiskFull(ctx context.Context, c diskFullConfig) (*diskFullResult, error) {
	if os.Geteuid() != 0 {
		return nil, errNotRoot
	}
	if c.Size == "" {
		c.Size = "64m"
	}
	if c.Dir != "" {
		if err := os.MkdirAll(c.Dir, 0o750); err != nil {
			return nil, err
		}
	}
	base, err := os.MkdirTemp(c.Dir, "portalcrash-diskfull-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(base)
	res := &diskFullResult{}
	for _, m := range []struct {
		name string
		run  func(*dfEnv, context.Context)
	}{
		{"patch", (*dfEnv).fullDuringPatch},
		{"finalize", (*dfEnv).fullDuringFinalize},
		{"commit", (*dfEnv).fullDuringCommit},
	} {
		mo := &moment{Name: m.name}
		res.Moments = append(res.Moments, mo)
		c.Log("diskfull: %s", m.name)
		if err := runMoment(ctx, c, filepath.Join(base, m.name), mo, m.run); err != nil {
			mo.problem("%v", err)
		}
	}
	return res, nil
}

// dfEnv is one moment's world: a tmpfs, a portal on it, a receiver.
type dfEnv struct {
	m      *moment
	mnt    string // the tmpfs
	filler string
	portal *portal
	recv   *receiver
	token  string
	tus    *tusClient
}

// runMoment mounts a tmpfs, starts a portal with its data directory there,
// runs fn, and takes everything down again.
func runMoment(ctx context.Context, c diskFullConfig, dir string, m *moment, fn func(*dfEnv, context.Context)) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	e := &dfEnv{m: m, mnt: filepath.Join(dir, "mnt")}
	e.filler = filepath.Join(e.mnt, "filler")
	if err := os.MkdirAll(e.mnt, 0o750); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+c.Size, "tmpfs", e.mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("mount tmpfs: %v: %s", err, bytes.TrimSpace(out))
	}
	defer func() {
		if out, err := exec.Command("umount", "-l", e.mnt).CombinedOutput(); err != nil {
			m.problem("umount %s: %v: %s", e.mnt, err, bytes.TrimSpace(out))
		}
	}()
	var err error
	e.portal, err = newPortal(c.Bin, filepath.Join(e.mnt, "data"), filepath.Join(dir, "portal.log"),
		"--delivery-retry-schedule", "500ms,1s,2s,4s", "--sweep-interval", "1h",
		// The disk is filled on purpose: no reserve, so writes meet the full disk.
		"--min-free-space", "0")
	if err != nil {
		return err
	}
	if e.recv, err = startReceiver(1, 0, 0); err != nil {
		return err
	}
	defer e.recv.close()
	if err := e.portal.start(ctx); err != nil {
		return err
	}
	defer e.portal.stop()
	if e.token, err = adminToken(ctx, e.portal.url()); err != nil {
		return err
	}
	secret, err := createEndpoint(ctx, e.portal.url(), e.token, e.recv.url(endpoints[0]))
	if err != nil {
		return err
	}
	if err := e.recv.addEndpoint(endpoints[0], secret); err != nil {
		return err
	}
	e.tus = &tusClient{hc: newHTTPClient(), base: e.portal.url(), token: e.token, act: newActivity()}
	fn(e, ctx)
	if lf, err := e.portal.logFacts(); err == nil && lf.Panics > 0 {
		m.problem("the portal's log shows %d panics", lf.Panics)
	}
	return nil
}

// fill writes the filler file until the file system is full, then gives
// back leave bytes (rounded to pages by the file system).
func (e *dfEnv) fill(leave int64) error {
	f, err := os.OpenFile(e.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for _, n := range []int{1 << 20, 4 << 10, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					return fmt.Errorf("fill: %w", err)
				}
				break
			}
		}
	}
	if leave > 0 {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		return f.Truncate(max(st.Size()-leave, 0))
	}
	return nil
}

// unfill removes the filler.
func (e *dfEnv) unfill() error { return os.Remove(e.filler) }

// answer is an HTTP answer as the client saw it.
type answer struct {
	Status int
	Header http.Header
	Body   string
	Err    error
}

func (a answer) String() string {
	if a.Err != nil {
		return "error: " + a.Err.Error()
	}
	s := strconv.Itoa(a.Status)
	if a.Body != "" {
		s += " " + truncate(a.Body, 120)
	}
	return s
}

// request sends one request (tus headers when tus is set) and reads the
// answer.
func (e *dfEnv) request(ctx context.Context, method, url string, hdr map[string]string, body []byte) answer {
	req, err := e.tus.newRequest(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{Err: err}
	}
	req.ContentLength = int64(len(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, text, err := e.tus.do(req)
	if err != nil {
		return answer{Err: err}
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: text}
}

// newUpload creates an upload of c's size and returns the client's view.
func (e *dfEnv) newUpload(ctx context.Context, n int, size int64) (*upload, answer) {
	u := &upload{content: content{seed: 7, n: n, size: size}, chunk: size}
	u.sha = u.sum()
	a := e.request(ctx, http.MethodPost, e.portal.url()+"/files/", map[string]string{
		"Upload-Length": strconv.FormatInt(size, 10), "Upload-Metadata": "filename ZGlza2Z1bGwuYmlu"}, nil)
	if a.Status == http.StatusCreated {
		u.url = resolve(e.portal.url(), a.Header.Get("Location"))
	}
	return u, a
}

func resolve(base, loc string) string {
	if strings.HasPrefix(loc, "http://") {
		return loc
	}
	return base + loc
}

// begin creates an upload of size bytes (n picks its content) and sends
// its first bytes while there is room; ok is false (and the problem
// noted) when either fails.
func (e *dfEnv) begin(ctx context.Context, n int, size, first int64) (*upload, bool) {
	u, a := e.newUpload(ctx, n, size)
	if a.Status != http.StatusCreated {
		e.m.problem("create: %s", a)
		return nil, false
	}
	if a := e.patch(ctx, u, 0, first); a.Status != http.StatusNoContent {
		e.m.problem("PATCH of the first %d bytes: %s", first, a)
		return nil, false
	}
	return u, true
}

// fillOK fills the disk, leaving leave bytes, and notes a failure.
func (e *dfEnv) fillOK(leave int64) bool {
	if err := e.fill(leave); err != nil {
		e.m.problem("%v", err)
		return false
	}
	return true
}

// unfillOK removes the filler and notes a failure.
func (e *dfEnv) unfillOK() bool {
	if err := e.unfill(); err != nil {
		e.m.problem("%v", err)
		return false
	}
	return true
}

// patch sends n bytes of u from off.
func (e *dfEnv) patch(ctx context.Context, u *upload, off, n int64) answer {
	b, _ := io.ReadAll(u.reader(off, n))
	return e.request(ctx, http.MethodPatch, u.url, map[string]string{
		"Upload-Offset": strconv.FormatInt(off, 10), "Content-Type": "application/offset+octet-stream"}, b)
}

// head asks for u's offset.
func (e *dfEnv) head(ctx context.Context, u *upload) (answer, int64) {
	a := e.request(ctx, http.MethodHead, u.url, nil, nil)
	off, err := strconv.ParseInt(a.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		off = -1
	}
	return a, off
}

// retryable checks that an answer given while the disk was full tells a
// client to try again: a 5xx, and for tus requests 507, the one that says
// why (tus-js-client retries any 5xx). It must name no path of the data
// directory.
func (e *dfEnv) retryable(what string, a answer) {
	e.m.step("%s while full: %s", what, a)
	tus := !strings.Contains(what, "/api/")
	switch {
	case a.Err != nil:
		e.m.problem("%s: no answer: %v", what, a.Err)
	case a.Status < 500:
		e.m.problem("%s: %d is not a retryable answer for a full disk (want 507)", what, a.Status)
	case tus && a.Status != http.StatusInsufficientStorage:
		e.m.problem("%s: %d, want 507 Insufficient Storage", what, a.Status)
	}
	if strings.Contains(a.Body, e.mnt) {
		e.m.problem("%s: the answer names the data directory: %s", what, a.Body)
	}
}

// invariants checks the database against the store: no file row without
// its bytes, no event without its file, exactly one file.uploaded per
// file, integrity_check ok. It returns the state it read.
func (e *dfEnv) invariants(ctx context.Context, when string) dbState {
	st, err := readDB(ctx, e.portal.dataDir)
	if err != nil {
		e.m.problem("%s: read the database: %v", when, err)
		return st
	}
	if st.integrity != "ok" {
		e.m.problem("%s: PRAGMA integrity_check: %s", when, st.integrity)
	}
	for _, f := range st.files {
		if n := len(st.uploaded[f.ID]); n != 1 {
			e.m.problem("%s: file %s has %d file.uploaded events", when, f.ID, n)
		}
		if f.Status != "stored" {
			continue
		}
		fi, err := os.Stat(filepath.Join(e.portal.dataDir, "uploads", f.UploadID))
		if err != nil || fi.Size() != f.Size {
			e.m.problem("%s: file row %s (upload %s) without its bytes: %v", when, f.ID, f.UploadID, err)
		}
	}
	if len(st.orphans) > 0 {
		e.m.problem("%s: %d events without their file", when, len(st.orphans))
	}
	e.m.step("%s: %d file rows, %d file.uploaded events, %d deliveries, integrity_check %s",
		when, len(st.files), len(st.events), len(st.deliveries), st.integrity)
	return st
}

// resume finishes u as a tus client would after the failure (HEAD, then
// PATCH from the offset) and checks the file: recorded when the client
// learns it complete, with the right SHA-256, its bytes read back, one
// file.uploaded event, delivered.
func (e *dfEnv) resume(ctx context.Context, u *upload) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u.head, u.ackedBy, u.err = true, "", nil
	e.tus.send(ctx, u)
	if u.ackedBy == "" {
		e.m.problem("after freeing space the upload did not finish: %v", u.err)
		return
	}
	e.m.step("after freeing space the client finished the upload (acknowledged by %s, %d HEAD, %d PATCH)", u.ackedBy, u.heads, u.patches)
	// The moment the client takes the upload as done, the file must be
	// there: no waiting for a sweep.
	st := e.invariants(ctx, "once the client is done")
	row, ok := st.files[u.uploadID()]
	switch {
	case !ok:
		e.m.problem("the client was told the upload is complete, but there is no file row")
		return
	case row.SHA256 != u.sha || row.Size != u.size:
		e.m.problem("file row: %d bytes, sha256 %s; sent %d bytes, %s", row.Size, row.SHA256, u.size, u.sha)
	}
	r := &run{portal: e.portal, token: e.token}
	got, n, err := r.readBack(ctx, row.ID)
	if err != nil || got != u.sha || n != u.size {
		e.m.problem("read back %d bytes, %s (%v); sent %d, %s", n, got, err, u.size, u.sha)
	} else {
		e.m.step("file row and bytes read back match the %s sent (sha256 %s…)", human(u.size), u.sha[:12])
	}
	e.delivered(ctx, row.ID, "file.uploaded")
}

// delivered waits until the receiver has had an event of type typ about
// the file, answered 2xx, and its delivery row says succeeded.
func (e *dfEnv) delivered(ctx context.Context, fileID, typ string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var delivery string
		for _, h := range e.recv.snapshot() {
			if h.Verified && h.Status < 300 && h.FileID == fileID && h.Type == typ {
				delivery = h.DeliveryID
			}
		}
		st, err := readDB(ctx, e.portal.dataDir)
		if err == nil && delivery != "" && st.deliveries[delivery].Status == "succeeded" {
			e.m.step("%s delivered and recorded as succeeded", typ)
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			status := ""
			if err == nil {
				for _, d := range st.deliveries {
					status += " " + d.Status
				}
			}
			e.m.problem("%s of file %s not delivered within 20 s (receiver got it: %v; delivery statuses:%s)",
				typ, fileID, delivery != "", status)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fullDuringPatch: 16 MiB sent in one PATCH with about 3 MiB free.
func (e *dfEnv) fullDuringPatch(ctx context.Context) {
	const size = 16 << 20
	u, ok := e.begin(ctx, 1, size, 1<<20)
	if !ok || !e.fillOK(3<<20) {
		return
	}
	e.m.step("filled the tmpfs, 3 MiB left; PATCH of the remaining 15 MiB")
	e.retryable("PATCH", e.patch(ctx, u, 1<<20, size-1<<20))
	a, off := e.head(ctx, u)
	e.m.step("HEAD while full: %d, Upload-Offset %d", a.Status, off)
	if a.Status != http.StatusOK || off < 1<<20 || off >= size {
		e.m.problem("HEAD while full: %s, offset %d: want 200 with the bytes that fitted", a, off)
	}
	_, a = e.newUpload(ctx, 2, 1<<20)
	e.retryable("a new upload (POST)", a)
	e.invariants(ctx, "while full")
	if e.unfillOK() {
		e.resume(ctx, u)
	}
}

// fullDuringFinalize: the last PATCH's 50 bytes land in a page the data
// file already has, so they fit on a full disk; the finalize transaction
// (file row + file.uploaded) then needs room in the WAL and gets none.
// The portal is killed and restarted on the still full disk before the
// space comes back.
func (e *dfEnv) fullDuringFinalize(ctx context.Context) {
	const size = 1<<20 + 100
	u, ok := e.begin(ctx, 3, size, size-50)
	if !ok || !e.fillOK(0) {
		return
	}
	e.m.step("filled the tmpfs to the last byte; final PATCH of 50 bytes")
	e.retryable("final PATCH", e.patch(ctx, u, size-50, 50))
	a, _ := e.head(ctx, u)
	e.retryable("HEAD", a)
	st := e.invariants(ctx, "while full")
	if _, ok := st.files[u.uploadID()]; ok {
		e.m.problem("the file was recorded on a full disk: the moment was missed")
	}
	e.portal.kill()
	if err := e.portal.start(ctx); err != nil {
		e.m.problem("restart on the full disk: %v", err)
		return
	}
	a, _ = e.head(ctx, u)
	e.retryable("after kill -9 and a restart on the full disk, HEAD", a)
	e.invariants(ctx, "after the restart, still full")
	if e.unfillOK() {
		e.resume(ctx, u)
	}
}

// fullDuringCommit: an upload completes with room to spare; its delivery is
// held at the receiver while the disk fills, then answered 500, so the
// portal must record a failed attempt (and schedule the retry) on the full
// disk. A DELETE of the file (its file.deleted commit) comes next. Once
// the space is back the retry must come and succeed, and the deletion
// must go through with one file.deleted. Then the same again with a kill
// -9 and a restart on the full disk before the space comes back: the
// restart must queue the interrupted delivery again once it can write.
func (e *dfEnv) fullDuringCommit(ctx context.Context) {
	fileID, ok := e.failedRecord(ctx, 4)
	if !ok {
		return
	}
	del := e.request(ctx, http.MethodDelete, e.portal.url()+"/api/v1/files/"+fileID, nil, nil)
	e.retryable("DELETE /api/v1/files/{id} (file.deleted commit)", del)
	st := e.invariants(ctx, "after the DELETE, still full")
	for _, f := range st.files {
		if f.ID == fileID && f.Status != "stored" {
			e.m.problem("after the failed DELETE the file is %q, want stored", f.Status)
		}
	}
	if !e.unfillOK() {
		return
	}
	e.m.step("freed the space")
	e.delivered(ctx, fileID, "file.uploaded")
	del = e.request(ctx, http.MethodDelete, e.portal.url()+"/api/v1/files/"+fileID, nil, nil)
	e.m.step("DELETE again: %s", del)
	if del.Status != http.StatusNoContent {
		e.m.problem("DELETE after freeing space: %s", del)
	}
	st = e.invariants(ctx, "after the DELETE")
	for _, f := range st.files {
		if f.ID == fileID && f.Status != "deleted" {
			e.m.problem("after the DELETE the file is %q, want deleted", f.Status)
		}
	}
	e.countDeleted(ctx, fileID)
	e.delivered(ctx, fileID, "file.deleted")

	if fileID, ok = e.failedRecord(ctx, 5); !ok {
		return
	}
	e.portal.kill()
	if err := e.portal.start(ctx); err != nil {
		e.m.problem("restart on the full disk: %v", err)
		return
	}
	e.m.step("killed the portal (-9) and started it again on the full disk")
	e.invariants(ctx, "after the restart, still full")
	if !e.unfillOK() {
		return
	}
	e.m.step("freed the space")
	e.delivered(ctx, fileID, "file.uploaded")
}

// failedRecord stores an upload (n picks its content) with room to spare,
// holds its delivery at the receiver, fills the disk, and lets the
// receiver answer 500: the portal cannot record the failed attempt. It
// returns the file's id, and whether all went as planned.
func (e *dfEnv) failedRecord(ctx context.Context, n int) (string, bool) {
	const size = 10 << 10
	gate := make(chan struct{})
	e.recv.gate.Store(&gate)
	defer func() {
		if e.recv.gate.Load() != nil {
			e.recv.gate.Store(nil)
			close(gate)
		}
	}()
	e.recv.failNext.Store(1)
	u, ok := e.begin(ctx, n, size, size)
	if !ok {
		return "", false
	}
	for deadline := time.Now().Add(10 * time.Second); e.recv.inflight.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.m.problem("the delivery of file.uploaded never reached the receiver")
			return "", false
		}
	}
	e.m.step("upload stored (204); its delivery is held at the receiver")
	if !e.fillOK(0) {
		return "", false
	}
	e.recv.gate.Store(nil)
	close(gate)
	e.m.step("filled the tmpfs to the last byte; the receiver answers the held delivery 500")
	// Give the portal time to try to record the attempt.
	time.Sleep(time.Second)
	st := e.invariants(ctx, "while full")
	row, ok := st.files[u.uploadID()]
	if !ok {
		e.m.problem("no file row for the upload acknowledged before the disk filled")
		return "", false
	}
	for _, d := range st.deliveries {
		// The dispatcher holds a claimed delivery in memory (the row stays
		// pending) until its attempt is recorded: an attempt on the row
		// means the record went through on the full disk.
		if st.events[d.EventID] == row.ID && (d.Attempts != 0 || d.Status != "pending") {
			e.m.problem("the delivery is %q with %d attempts on the full disk: its record did not fail, the moment was missed", d.Status, d.Attempts)
		}
	}
	return row.ID, true
}

// countDeleted checks that the file has exactly one file.deleted event.
func (e *dfEnv) countDeleted(ctx context.Context, fileID string) {
	db, err := openDB(e.portal.dataDir)
	if err != nil {
		e.m.problem("%v", err)
		return
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM events WHERE type = 'file.deleted' AND file_id = ?", fileID).Scan(&n); err != nil {
		e.m.problem("count file.deleted: %v", err)
	} else if n != 1 {
		e.m.problem("%d file.deleted events, want 1", n)
	}
}
