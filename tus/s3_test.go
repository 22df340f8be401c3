package tus

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
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
			p = e.start(t, e.config("portal-a"))
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

// The digest state file is where the local backend keeps it, named by the
// object id.
func TestS3StateBesideUploads(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	url := p.create(6*mib, "x")
	p.mustPatch(url, 0, random(t, 5*mib))
	if _, err := os.Stat(filepath.Join(e.dir, BaseID(idOf(url))+".sha256")); err != nil {
		t.Fatal(err)
	}
	_ = context.Background()
}
