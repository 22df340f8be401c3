package tus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Uneven PATCHes, parts of 5 MiB, tails parked in .part objects, and a
// restart of the portal in the middle: the sum is right, the event points
// at the data object, and nothing is read back from the bucket to hash.
func TestS3ResumableAcrossRestart(t *testing.T) {
	e := newS3Env(t)
	data := random(t, 17*mib+12345)
	p := e.start(t, e.config("portal-a"))
	url := p.create(int64(len(data)), "big.bin")
	chunks := []int{7 * mib, 3 * mib, 1, 6*mib - 1} // then the rest
	var off int
	for i, n := range chunks {
		p.mustPatch(url, int64(off), data[off:off+n])
		off += n
		if i == 1 {
			// A new Server on the same directory and bucket: the portal restarted.
			p.ts.Close()
			p = e.start(t, e.config("portal-a"))
			url = p.url + idOf(url)
		}
		if got := p.offset(url); got != int64(off) {
			t.Fatalf("HEAD after %d bytes: offset %d", off, got)
		}
	}
	p.mustPatch(url, int64(off), data[off:])
	e.checkStored(t, idOf(url), data)
	noReadBack(t, p.s)
	if parts := e.srv.MultipartUploads(t, e.bucket, e.prefix); len(parts) != 0 {
		t.Fatalf("multipart uploads left: %v", parts)
	}
}

// A whole small upload in the creation request.
func TestS3CreationWithUpload(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	data := random(t, 300_000)
	resp, body := tusReq(t, http.MethodPost, p.url, map[string]string{
		"Upload-Length": "300000", "Content-Type": "application/offset+octet-stream",
	}, bytes.NewReader(data))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Upload-Offset") != "300000" {
		t.Fatalf("create with upload: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	e.checkStored(t, idOf(resp.Header.Get("Location")), data)
	noReadBack(t, p.s)
}

// An upload whose length is declared with its last PATCH.
func TestS3DeferLength(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	data := random(t, 6*mib+77)
	url := p.create(-1, "deferred.bin")
	p.mustPatch(url, 0, data[:6*mib])
	resp, body := p.patch(url, 6*mib, data[6*mib:], map[string]string{"Upload-Length": "6291533"})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("last PATCH: %d %s", resp.StatusCode, body)
	}
	e.checkStored(t, idOf(url), data)
	noReadBack(t, p.s)
}

// A zero-byte upload is complete at creation.
func TestS3EmptyUpload(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	url := p.create(0, "empty")
	e.checkStored(t, idOf(url), nil)
	noReadBack(t, p.s)
}

// keysOf lists an upload's objects (data, .info, .part) in the bucket.
func (e *s3Env) keysOf(t *testing.T, id string) []string {
	return e.srv.Keys(t, e.bucket, e.prefix+BaseID(id))
}

// A DELETE removes the object's sidecars and aborts the multipart upload
// of an unfinished upload; Terminate does the same for the app, by base
// id, and removing what is gone is no error.
func TestS3Terminate(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	ctx := context.Background()
	url := p.create(12*mib, "x")
	p.mustPatch(url, 0, random(t, 7*mib)) // a 5 MiB part and a 2 MiB .part
	id := idOf(url)
	if keys := e.keysOf(t, id); len(keys) != 2 || len(e.srv.MultipartUploads(t, e.bucket, e.prefix)) != 1 {
		t.Fatalf("before: keys %v, multipart uploads %v", keys, e.srv.MultipartUploads(t, e.bucket, e.prefix))
	}
	if resp, body := tusReq(t, http.MethodDelete, url, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	if keys, mpu := e.keysOf(t, id), e.srv.MultipartUploads(t, e.bucket, e.prefix); len(keys) != 0 || len(mpu) != 0 {
		t.Fatalf("after DELETE: keys %v, multipart uploads %v", keys, mpu)
	}
	if _, err := os.Stat(filepath.Join(e.dir, BaseID(id)+".sha256")); !os.IsNotExist(err) {
		t.Fatalf("digest state after DELETE: %v", err)
	}
	if got := p.offset(url); got != -1 {
		t.Fatalf("HEAD after DELETE: offset %d", got)
	}

	// A complete upload, removed by the app by its base id.
	data := random(t, 100)
	done := p.create(100, "y")
	p.mustPatch(done, 0, data)
	base := BaseID(idOf(done))
	removed, err := p.s.TerminateIf(ctx, base, func(u Upload) bool { return !u.Complete() })
	if err != nil || removed || len(e.keysOf(t, base)) != 2 {
		t.Fatalf("TerminateIf(false): %v %v, keys %v", removed, err, e.keysOf(t, base))
	}
	if err := p.s.Terminate(ctx, base); err != nil || len(e.keysOf(t, base)) != 0 {
		t.Fatalf("Terminate: %v, keys %v", err, e.keysOf(t, base))
	}
	for _, gone := range []string{base, idOf(done), "0123456789abcdef0123456789abcdef"} {
		if err := p.s.Terminate(ctx, gone); err != nil {
			t.Fatalf("Terminate(%s) of what is gone: %v", gone, err)
		}
	}
}

// An upload whose object is gone but whose .info is left (a removal cut
// short, or a lifecycle rule that aborted the multipart upload) is a
// stray; Terminate removes the rest.
func TestS3Strays(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	ctx := context.Background()
	var ids []string
	for range 2 {
		url := p.create(10, "z")
		p.mustPatch(url, 0, []byte("0123456789"))
		ids = append(ids, BaseID(idOf(url)))
	}
	if _, err := e.srv.Client().DeleteObject(ctx, deleteInput(e.bucket, e.prefix+ids[0])); err != nil {
		t.Fatal(err)
	}
	if got := p.s.Strays(ids); len(got) != 1 || got[0] != ids[0] {
		t.Fatalf("strays %v, want [%s]", got, ids[0])
	}
	if got := p.s.Describe(ctx, ids); len(got) != 1 || BaseID(got[0].ID) != ids[1] {
		t.Fatalf("Describe %+v, want only %s", got, ids[1])
	}
	if err := p.s.Terminate(ctx, ids[0]); err != nil || len(e.keysOf(t, ids[0])) != 0 {
		t.Fatalf("Terminate stray: %v, keys %v", err, e.keysOf(t, ids[0]))
	}
	if got := p.s.Strays(ids); len(got) != 0 {
		t.Fatalf("strays after Terminate: %v", got)
	}
}

// When the saved digest state lags the bucket (the part was accepted but
// its state not saved: a crash between the two) the sum is repaired once
// the object is complete, by reading back exactly the bytes after the
// state; a state that cannot be used makes it read the whole object.
func TestS3RepairsDigest(t *testing.T) {
	data := random(t, 15*mib+1000)
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, path string, after1 []byte)
		reread int64
	}{
		{"lagging a part", func(t *testing.T, path string, after1 []byte) { os.WriteFile(path, after1, 0o644) }, 10*mib + 1000},
		{"missing", func(t *testing.T, path string, _ []byte) { os.Remove(path) }, int64(len(data))},
		{"garbage", func(t *testing.T, path string, _ []byte) { os.WriteFile(path, []byte("not a state"), 0o644) }, int64(len(data))},
		{"claiming bytes its digest did not see", func(t *testing.T, path string, _ []byte) {
			writeStates(t, path, hashState{Offset: 12 * mib, State: marshalDigest(sha256New())})
		}, int64(len(data))},
		{"beyond the object", func(t *testing.T, path string, _ []byte) {
			h := sha256New()
			h.Write(make([]byte, 16*mib))
			writeStates(t, path, hashState{Offset: 16 * mib, State: marshalDigest(h)})
		}, int64(len(data))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newS3Env(t)
			p := e.start(t, e.config("portal-a"))
			url := p.create(int64(len(data)), "r")
			path := filepath.Join(e.dir, BaseID(idOf(url))+".sha256")
			p.mustPatch(url, 0, data[:5*mib])
			after1, _ := os.ReadFile(path)
			p.mustPatch(url, 5*mib, data[5*mib:10*mib])
			tc.spoil(t, path, after1)
			p.mustPatch(url, 10*mib, data[10*mib:15*mib])
			p.mustPatch(url, 15*mib, data[15*mib:])
			e.checkStored(t, idOf(url), data)
			if got := p.s.BytesRehashed(); got != tc.reread {
				t.Fatalf("read back %d bytes, want %d", got, tc.reread)
			}
			if r := p.s.S3Reads(); r.Data != tc.reread {
				t.Fatalf("%d bytes of data objects read, want %d", r.Data, tc.reread)
			}
		})
	}
}

// The sweep finalizes a complete upload whose finalize failed, and one
// whose multipart upload was never completed (a crash after the last
// part), from the saved state: nothing read back.
func TestS3Sweep(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	ctx := context.Background()
	fail := true
	e.finalize = func(Completed) error {
		if fail {
			return errors.New("database is down")
		}
		return nil
	}
	data := random(t, 6*mib)
	url := p.create(int64(len(data)), "f")
	p.mustPatch(url, 0, data[:5*mib])
	if resp, _ := p.patch(url, 5*mib, data[5*mib:], nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("last PATCH with a failing finalize: %d", resp.StatusCode)
	}
	fail = false

	// All bytes in the multipart upload, never completed.
	open := random(t, 5*mib+10)
	up, err := p.s.store.NewUpload(ctx, handler.FileInfo{Size: int64(len(open))})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := up.GetInfo(ctx)
	if n, err := up.WriteChunk(ctx, 0, bytes.NewReader(open)); err != nil || n != int64(len(open)) {
		t.Fatalf("write: %d %v", n, err)
	}
	if _, ok := e.srv.Object(t, e.bucket, e.prefix+BaseID(info.ID)); ok {
		t.Fatal("the object exists before its multipart upload was completed")
	}
	n, err := p.s.Sweep(ctx, []string{BaseID(idOf(url)), BaseID(info.ID)})
	if err != nil || n != 2 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	cs := e.completions()
	if len(cs) != 2 || cs[0].SHA256 != sum(data) || cs[1].SHA256 != sum(open) || cs[1].UploadID != info.ID {
		t.Fatalf("finalized %+v", cs)
	}
	if got, ok := e.srv.Object(t, e.bucket, cs[1].Key); !ok || !bytes.Equal(got, open) {
		t.Fatalf("object of the swept upload: %d bytes", len(got))
	}
	noReadBack(t, p.s)
	c, err := p.s.Completed(ctx, BaseID(info.ID))
	if err != nil || c.SHA256 != sum(open) || c.Key != cs[1].Key {
		t.Fatalf("Completed: %+v %v", c, err)
	}
}

// A concatenation on S3 is hashed by reading the final object back once
// (counted): with partials under 5 MiB (s3store downloads and uploads
// them) and with larger ones (copied part by part in the bucket).
func TestS3Concat(t *testing.T) {
	for name, sizes := range map[string][]int{"small partials": {300_000, 123_457}, "partials of 5 MiB and more": {5 * mib, 6*mib + 3}} {
		t.Run(name, func(t *testing.T) {
			e := newS3Env(t)
			p := e.start(t, e.config("portal-a"))
			id, all := p.concat(sizes)
			e.checkStored(t, id, all) // once: the partials are not finalized
			if got := p.s.BytesRehashed(); got != int64(len(all)) {
				t.Fatalf("read back %d bytes, want the final object's %d", got, len(all))
			}
			if mpu := e.srv.MultipartUploads(t, e.bucket, e.prefix); len(mpu) != 0 {
				t.Fatalf("multipart uploads left: %v", mpu)
			}
		})
	}
}

// tus-js-client keeps and reuses the URL of an S3 upload, whose id holds a
// "+": chunks, an abort, and a resume from the URL alone.
func TestS3TusJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("..", "testdata", "node", "node_modules", "tus-js-client"))
	}
	if err != nil {
		if os.Getenv("PORTAL_REQUIRE_TOOLS") != "" {
			t.Fatalf("tus-js-client is not available (%v); run make testdata/node/node_modules", err)
		}
		t.Skipf("tus-js-client not available: %v (make test runs it)", err)
	}
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	data := random(t, 12*mib+5)
	file := filepath.Join(t.TempDir(), "data")
	os.WriteFile(file, data, 0o644)
	out, err := exec.Command(node, filepath.Join("testdata", "tusjs-resume.cjs"), p.url, file, strconv.Itoa(6*mib)).CombinedOutput()
	if err != nil {
		t.Fatalf("tus-js-client: %v: %s", err, out)
	}
	var res struct{ URL string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	id := idOf(res.URL)
	if !strings.Contains(id, "+") || !p.s.ValidID(id) {
		t.Fatalf("upload URL %s", res.URL)
	}
	e.checkStored(t, id, data)
	noReadBack(t, p.s)
}

// The IETF resumable-upload draft on S3: one request, and an upload
// completed by a second.
func TestS3IETFDraft(t *testing.T) {
	e := newS3Env(t)
	cfg := e.config("portal-a")
	cfg.EnableIETFDraft = true
	p := e.start(t, cfg)
	draft := func(method, url, complete string, offset int64, body []byte) *http.Response {
		hdr := map[string]string{"Upload-Draft-Interop-Version": "6", "Upload-Complete": complete}
		if method == http.MethodPatch {
			hdr["Upload-Offset"] = strconv.FormatInt(offset, 10)
			hdr["Content-Type"] = "application/partial-upload"
		}
		resp, body2 := tusReq(t, method, url, hdr, bytes.NewReader(body))
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, body2)
		}
		return resp
	}
	small := random(t, 1000)
	resp := draft(http.MethodPost, p.url, "?1", 0, small)
	e.checkStored(t, idOf(resp.Header.Get("Location")), small)

	e.finalized = nil
	data := random(t, 6*mib+3)
	resp = draft(http.MethodPost, p.url, "?0", 0, data[:5*mib+1])
	url := p.abs(resp.Header.Get("Location"))
	draft(http.MethodPatch, url, "?1", 5*mib+1, data[5*mib+1:])
	e.checkStored(t, idOf(url), data)
	noReadBack(t, p.s)
}

// A client whose connection drops in the middle of a PATCH: what arrived
// is kept (whole parts, and the tail parked in a .part object), the
// offset says so, and the resumed upload gets the right sum with nothing
// read back to hash.
func TestS3ClientDrops(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	data := random(t, 20*mib)
	url := p.create(int64(len(data)), "drop.bin")
	const sent = 7*mib + 12345
	conn, err := net.Dial("tcp", p.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH /files/%s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n", idOf(url), p.ts.Listener.Addr(), len(data))
	conn.Write(data[:sent])
	time.Sleep(200 * time.Millisecond)
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for p.offset(url) != sent {
		if time.Now().After(deadline) {
			t.Fatalf("offset %d after the client dropped, want the %d bytes sent", p.offset(url), sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.mustPatch(url, sent, data[sent:])
	e.checkStored(t, idOf(url), data)
	noReadBack(t, p.s)
}
