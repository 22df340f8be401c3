package tus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveFile serves OpenFile(loc) with http.ServeContent, as the app's
// download endpoint does.
func serveFile(t *testing.T, s *Server, loc Location) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := s.OpenFile(r.Context(), loc)
		if errors.Is(err, os.ErrNotExist) {
			http.Error(w, "gone", http.StatusGone)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "", f.ModTime(), f)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, url, rng string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// A stored file is served from the bucket with ranges (across parts, from
// the end, several at once) and its size and time; removed, it is gone.
func TestS3DownloadRanges(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	data := random(t, 11*mib+7)
	url := p.create(int64(len(data)), "dl.bin")
	p.mustPatch(url, 0, data)
	c := e.checkStored(t, idOf(url), data)
	loc := c.Location()
	ts := serveFile(t, p.s, loc)

	if st, body, h := get(t, ts.URL, ""); st != 200 || !bytes.Equal(body, data) || h.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("whole file: %d, %d bytes, %v", st, len(body), h)
	}
	for _, tc := range []struct {
		rng      string
		from, to int // the bytes wanted: data[from:to]
	}{
		{"bytes=100-199", 100, 200},
		{"bytes=5242870-5242889", 5*mib - 10, 5*mib + 10}, // across the first part's end
		{"bytes=-500", len(data) - 500, len(data)},
		{"bytes=11534336-", 11 * mib, len(data)},
	} {
		st, body, h := get(t, ts.URL, tc.rng)
		if st != http.StatusPartialContent || !bytes.Equal(body, data[tc.from:tc.to]) {
			t.Fatalf("%s: %d, %d bytes (%v), want 206 with data[%d:%d]", tc.rng, st, len(body), h.Get("Content-Range"), tc.from, tc.to)
		}
	}
	st, body, h := get(t, ts.URL, "bytes=0-9,1048576-1048585")
	if st != http.StatusPartialContent || !bytes.Contains(body, data[:10]) || !bytes.Contains(body, data[mib:mib+10]) {
		t.Fatalf("two ranges: %d %s", st, h.Get("Content-Type"))
	}
	if st, _, _ := get(t, ts.URL, "bytes=99999999-"); st != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", st)
	}
	f, err := p.s.OpenFile(context.Background(), loc)
	if err != nil || f.Size() != int64(len(data)) || time.Since(f.ModTime()) > time.Minute {
		t.Fatalf("OpenFile: %v, size %d, modified %v", err, f.Size(), f.ModTime())
	}
	f.Close()

	if err := p.s.RemoveFile(context.Background(), loc); err != nil {
		t.Fatal(err)
	}
	if keys := e.keysOf(t, c.Key[len(e.prefix):]); len(keys) != 0 {
		t.Fatalf("left after RemoveFile: %v", keys)
	}
	if st, _, _ := get(t, ts.URL, ""); st != http.StatusGone {
		t.Fatalf("removed file: %d", st)
	}
	if err := p.s.RemoveFile(context.Background(), loc); err != nil {
		t.Fatalf("removing a removed file: %v", err)
	}
}

// Files recorded before a change of bucket, prefix or backend are read and
// removed where they were stored.
func TestS3FilesStoredElsewhere(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	ctx := context.Background()
	e.srv.CreateBucket(t, "old-bucket")
	old := random(t, 1000)
	e.srv.PutObject(t, "old-bucket", "before/0123456789abcdef0123456789abcdef", old)
	e.srv.PutObject(t, "old-bucket", "before/0123456789abcdef0123456789abcdef.info", []byte("{}"))
	local := random(t, 2000)
	if err := os.WriteFile(filepath.Join(e.dir, "fedcba9876543210fedcba9876543210"), local, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		loc  Location
		want []byte
	}{
		{Location{Backend: "s3", Bucket: "old-bucket", Key: "before/0123456789abcdef0123456789abcdef"}, old},
		{Location{Backend: "local", Key: "fedcba9876543210fedcba9876543210"}, local},
	} {
		st, body, _ := get(t, serveFile(t, p.s, tc.loc).URL, "bytes=10-19")
		if st != http.StatusPartialContent || !bytes.Equal(body, tc.want[10:20]) {
			t.Fatalf("%+v: %d %d bytes", tc.loc, st, len(body))
		}
		if err := p.s.RemoveFile(ctx, tc.loc); err != nil {
			t.Fatal(err)
		}
		if _, err := p.s.OpenFile(ctx, tc.loc); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%+v after RemoveFile: %v", tc.loc, err)
		}
	}
	if keys := e.srv.Keys(t, "old-bucket", ""); len(keys) != 0 {
		t.Fatalf("left in the old bucket: %v", keys)
	}
	if _, err := p.s.OpenFile(ctx, Location{Backend: "local", Key: "../../etc/passwd"}); err == nil {
		t.Fatal("a local key outside the upload dir was opened")
	}
}

// A download from a bucket that went down is an error that says so.
func TestS3DownloadOutage(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	url := p.create(10, "o")
	p.mustPatch(url, 0, []byte("0123456789"))
	c := e.completions()[0]
	e.srv.Stop()
	_, err := p.s.OpenFile(context.Background(), c.Location())
	if !errors.Is(err, ErrStorageUnreachable) {
		t.Fatalf("OpenFile while the bucket is down: %v", err)
	}
}
