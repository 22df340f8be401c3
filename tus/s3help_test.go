package tus

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/doorito/portal/internal/s3test"
	"github.com/tus/tusd/v2/pkg/handler"
)

const mib = 1 << 20

// quiet is the logger of test portals (tusd logs a failed finalize as an
// error, which some tests cause on purpose).
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// s3Env is a real S3 server (versitygw on 127.0.0.1) with a bucket, and
// the local directory the portal keeps beside it.
type s3Env struct {
	srv    *s3test.Server
	bucket string
	prefix string
	dir    string

	mu        sync.Mutex
	finalized []Completed
	finalize  func(Completed) error // nil: record and succeed
	chosen    map[string]bool       // ids the pre-create hook chose
}

func newS3Env(t *testing.T) *s3Env {
	t.Helper()
	srv := s3test.Start(t)
	srv.SetEnv(t)
	e := &s3Env{srv: srv, bucket: "portal-test", prefix: "uploads/", dir: t.TempDir(), chosen: map[string]bool{}}
	srv.CreateBucket(t, e.bucket)
	return e
}

// s3Config is the S3 configuration of a portal with instance id instance.
func (e *s3Env) s3Config(instance string) *S3Config {
	return &S3Config{
		Bucket: e.bucket, Prefix: e.prefix, Endpoint: e.srv.URL, PathStyle: true,
		InstanceID: instance, PartSize: 5 * mib,
	}
}

// config is a tus configuration on the env's bucket and directory.
func (e *s3Env) config(instance string) Config {
	return Config{
		Dir: e.dir, BasePath: "/files/", S3: e.s3Config(instance), Logger: quiet,
		// The id is the portal's choice, as app's pre-create hook makes it.
		PreCreate: func(handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
			b := make([]byte, 16)
			rand.Read(b)
			id := hex.EncodeToString(b)
			e.mu.Lock()
			e.chosen[id] = true
			e.mu.Unlock()
			return handler.HTTPResponse{}, handler.FileInfoChanges{ID: id}, nil
		},
		Finalize: func(c Completed) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.finalize != nil {
				if err := e.finalize(c); err != nil {
					return err
				}
			}
			c.Context, c.Request = nil, nil
			e.finalized = append(e.finalized, c)
			return nil
		},
	}
}

func (e *s3Env) completions() []Completed {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Completed(nil), e.finalized...)
}

// portal is a tus.Server behind an HTTP server on 127.0.0.1.
type portal struct {
	t   *testing.T
	s   *Server
	ts  *httptest.Server
	url string // the tus endpoint, ending in /files/
}

// start starts a portal on cfg (Check must pass).
func (e *s3Env) start(t *testing.T, cfg Config) *portal {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
	return serve(t, s)
}

func serve(t *testing.T, s *Server) *portal {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/files/", http.StripPrefix("/files/", s))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &portal{t: t, s: s, ts: ts, url: ts.URL + "/files/"}
}

// tusReq sends a tus request and returns the response with its body read.
func tusReq(t *testing.T, method, url string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != nil && hdr["Content-Type"] == "" && (method == http.MethodPatch || hdr["Content-Length"] != "") {
		req.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	if cl := hdr["Content-Length"]; cl != "" {
		req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// create creates an upload of size bytes (-1: deferred) and returns its URL.
func (p *portal) create(size int64, filename string) string {
	p.t.Helper()
	hdr := map[string]string{"Upload-Metadata": "filename " + base64.StdEncoding.EncodeToString([]byte(filename))}
	if size < 0 {
		hdr["Upload-Defer-Length"] = "1"
	} else {
		hdr["Upload-Length"] = strconv.FormatInt(size, 10)
	}
	resp, body := tusReq(p.t, http.MethodPost, p.url, hdr, nil)
	if resp.StatusCode != http.StatusCreated {
		p.t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	return p.abs(resp.Header.Get("Location"))
}

func (p *portal) abs(loc string) string {
	if strings.HasPrefix(loc, "http") {
		return loc
	}
	return p.ts.URL + loc
}

// patch sends data at offset and returns the response.
func (p *portal) patch(url string, offset int64, data []byte, extra map[string]string) (*http.Response, string) {
	p.t.Helper()
	hdr := map[string]string{"Upload-Offset": strconv.FormatInt(offset, 10)}
	for k, v := range extra {
		hdr[k] = v
	}
	return tusReq(p.t, http.MethodPatch, url, hdr, bytes.NewReader(data))
}

// mustPatch sends data at offset and expects 204 with the new offset.
func (p *portal) mustPatch(url string, offset int64, data []byte) {
	p.t.Helper()
	resp, body := p.patch(url, offset, data, nil)
	if resp.StatusCode != http.StatusNoContent {
		p.t.Fatalf("PATCH at %d: %d %s", offset, resp.StatusCode, body)
	}
	if got := resp.Header.Get("Upload-Offset"); got != strconv.FormatInt(offset+int64(len(data)), 10) {
		p.t.Fatalf("PATCH at %d of %d bytes: offset %s", offset, len(data), got)
	}
}

// offset asks HEAD for the upload's offset (-1: not 200).
func (p *portal) offset(url string) int64 {
	p.t.Helper()
	resp, _ := tusReq(p.t, http.MethodHead, url, nil, nil)
	if resp.StatusCode != http.StatusOK {
		return -1
	}
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		p.t.Fatalf("HEAD: offset %q", resp.Header.Get("Upload-Offset"))
	}
	return n
}

// idOf is the upload id at the end of an upload URL.
func idOf(url string) string { return url[strings.LastIndex(url, "/")+1:] }

// checkStored checks that exactly one upload was finalized, with data's
// sum and the pointer to an object in the bucket holding data.
func (e *s3Env) checkStored(t *testing.T, id string, data []byte) Completed {
	t.Helper()
	cs := e.completions()
	if len(cs) != 1 {
		t.Fatalf("finalized %d times, want once: %+v", len(cs), cs)
	}
	c := cs[0]
	if e.mu.Lock(); !e.chosen[BaseID(id)] {
		t.Errorf("upload %s: its object id is not the one the pre-create hook chose", id)
	}
	e.mu.Unlock()
	wantKey := e.prefix + BaseID(id)
	if c.UploadID != id || c.SHA256 != sum(data) || c.Size != int64(len(data)) ||
		c.Backend != "s3" || c.Bucket != e.bucket || c.Key != wantKey {
		t.Fatalf("finalized %+v;\nwant upload %s, sha256 %s, %d bytes at s3 %s/%s", c, id, sum(data), len(data), e.bucket, wantKey)
	}
	got, ok := e.srv.Object(t, c.Bucket, c.Key)
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("object %s: %d bytes (exists %v), want the %d sent", c.Key, len(got), ok, len(data))
	}
	return c
}

// noReadBack checks that nothing was read back from the bucket's data
// objects to hash.
func noReadBack(t *testing.T, s *Server) {
	t.Helper()
	if n, r := s.BytesRehashed(), s.S3Reads(); n != 0 || r.Data != 0 {
		t.Fatalf("read back %d bytes to hash (%d bytes of data objects read); want 0", n, r.Data)
	}
}

func fmtKeys(keys []string) string { return fmt.Sprintf("%q", keys) }

func sha256New() hash.Hash { return sha256.New() }

func deleteInput(bucket, key string) *s3.DeleteObjectInput {
	return &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
}

// writeStates writes st into both slots of a digest state file.
func writeStates(t *testing.T, path string, st hashState) {
	t.Helper()
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, b...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// concat uploads partial uploads of these sizes and concatenates them. It
// returns the final upload's id and the bytes it should hold.
func (p *portal) concat(sizes []int) (string, []byte) {
	p.t.Helper()
	var urls []string
	var all []byte
	for _, n := range sizes {
		d := random(p.t, n)
		resp, body := tusReq(p.t, http.MethodPost, p.url, map[string]string{"Upload-Length": strconv.Itoa(n), "Upload-Concat": "partial"}, nil)
		if resp.StatusCode != http.StatusCreated {
			p.t.Fatalf("create partial: %d %s", resp.StatusCode, body)
		}
		u := p.abs(resp.Header.Get("Location"))
		p.mustPatch(u, 0, d)
		urls, all = append(urls, u), append(all, d...)
	}
	resp, body := tusReq(p.t, http.MethodPost, p.url, map[string]string{"Upload-Concat": "final;" + strings.Join(urls, " ")}, nil)
	if resp.StatusCode != http.StatusCreated {
		p.t.Fatalf("concatenate: %d %s", resp.StatusCode, body)
	}
	return idOf(resp.Header.Get("Location")), all
}
