package tus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/doorito/portal/internal/s3test"
)

// One portal per prefix: the first writes a claim naming its instance id;
// another instance on the same prefix is refused (and its uploads answered
// 503); the same instance restarting, and another prefix, are fine.
func TestS3Claim(t *testing.T) {
	e := newS3Env(t)
	ctx := context.Background()
	e.start(t, e.config("portal-a"))
	claim, ok := e.srv.Object(t, e.bucket, e.prefix+"portal-claim.json")
	if !ok || !strings.Contains(string(claim), `"instance_id":"portal-a"`) {
		t.Fatalf("claim object: %q (exists %v)", claim, ok)
	}

	b, err := New(e.config("portal-b"))
	if err != nil {
		t.Fatal(err)
	}
	err = b.Check(ctx)
	if !errors.Is(err, ErrStorageMisconfigured) || errors.Is(err, ErrStorageUnreachable) ||
		!strings.Contains(err.Error(), `belongs to portal instance "portal-a"`) || !strings.Contains(err.Error(), `prefix "uploads/"`) {
		t.Fatalf("second instance on the prefix: %v", err)
	}
	pb := serve(t, b)
	if resp, body := tusReq(t, http.MethodPost, pb.url, map[string]string{"Upload-Length": "10"}, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upload to the refused portal: %d %s", resp.StatusCode, body)
	}

	e.start(t, e.config("portal-a")) // restarted: its own claim
	other := e.config("portal-c")
	other.S3.Prefix = "elsewhere"
	e.start(t, other)
	if _, ok := e.srv.Object(t, e.bucket, "elsewhere/portal-claim.json"); !ok {
		t.Fatal("no claim under the other prefix")
	}
}

// Portals that start at the same moment on a new prefix: exactly one
// wins (the claim is written with If-None-Match: *).
func TestS3ClaimRace(t *testing.T) {
	e := newS3Env(t)
	for round := range 5 {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		servers := make([]*Server, len(errs))
		for i := range errs {
			cfg := e.config(fmt.Sprintf("portal-%d", i))
			cfg.S3.Prefix = fmt.Sprintf("race-%d/", round)
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			servers[i] = s
		}
		for i, s := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = s.Check(context.Background()) }()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else if !errors.Is(err, ErrStorageMisconfigured) {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d portals claimed the prefix: %v", round, won, errs)
		}
	}
}

// A wrong bucket, wrong credentials, missing credentials or an endpoint
// that is not S3 fail the check at once with one line that says what is
// wrong (and no secret); a service that does not answer is told apart:
// the portal keeps running and retries.
func TestS3StartupErrors(t *testing.T) {
	e := newS3Env(t)
	notS3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<html>nothing here</html>"))
	}))
	defer notS3.Close()
	okToAll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>hello</html>"))
	}))
	defer okToAll.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name        string
		env         func(t *testing.T)
		cfg         func(c *S3Config)
		want        string
		unreachable bool
	}{
		{name: "no such bucket", cfg: func(c *S3Config) { c.Bucket = "no-such-bucket" }, want: `bucket "no-such-bucket" at ` + e.srv.URL + " does not exist"},
		{name: "wrong secret", env: func(t *testing.T) { s3test.SetEnv(t, s3test.AccessKey, "wrong-secret-key") }, want: "the secret access key does not match"},
		{name: "unknown access key", env: func(t *testing.T) { s3test.SetEnv(t, "nobody-knows-me", "wrong-secret-key") }, want: "the access key id is not known to " + e.srv.URL},
		{name: "no credentials", env: func(t *testing.T) {
			s3test.SetEnv(t, "", "")
			t.Setenv("AWS_ACCESS_KEY_ID", "")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		}, want: "no AWS credentials"},
		{name: "endpoint not S3", cfg: func(c *S3Config) { c.Endpoint = notS3.URL }, want: notS3.URL + " does not answer like an S3 service"},
		{name: "endpoint answering 200 to everything", cfg: func(c *S3Config) { c.Endpoint = okToAll.URL }, want: okToAll.URL + " does not answer like an S3 service"},
		{name: "unreachable", cfg: func(c *S3Config) { c.Endpoint = closed }, want: closed + " is unreachable", unreachable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				tc.env(t)
			}
			cfg := e.config("portal-a")
			if tc.cfg != nil {
				tc.cfg(cfg.S3)
			}
			s, err := New(cfg) // no request yet
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = s.Check(context.Background())
			if err == nil {
				t.Fatal("check passed")
			}
			msg := err.Error()
			t.Logf("%s (%v)", msg, time.Since(start).Round(time.Millisecond))
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q, want one line with %q", msg, tc.want)
			}
			if strings.Contains(msg, "wrong-secret-key") || strings.Contains(msg, s3test.SecretKey) {
				t.Fatalf("message names a secret: %q", msg)
			}
			if errors.Is(err, ErrStorageUnreachable) != tc.unreachable || errors.Is(err, ErrStorageMisconfigured) == tc.unreachable {
				t.Fatalf("unreachable = %v, want %v", errors.Is(err, ErrStorageUnreachable), tc.unreachable)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("the check took %v", time.Since(start))
			}
		})
	}
}

// The bucket goes down in the middle of a PATCH: the client gets a
// retryable 503 (so do HEADs meanwhile, and the readiness check fails),
// the parts the bucket accepted before stay, and once it is back the
// upload resumes from them to the right sum.
func TestS3Outage(t *testing.T) {
	e := newS3Env(t)
	p := e.start(t, e.config("portal-a"))
	ctx := context.Background()
	data := random(t, 20*mib)
	url := p.create(int64(len(data)), "outage.bin")
	objectID, multipartID := splitID(idOf(url))

	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPatch, url, pr)
	req.ContentLength = int64(len(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	go func() {
		pw.Write(data[:11*mib])
		// Wait for two parts in the bucket, then take it down mid-request.
		deadline := time.Now().Add(10 * time.Second)
		for len(e.listParts(t, objectID, multipartID)) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		e.srv.Stop()
		pw.Write(data[11*mib:])
		pw.Close()
	}()
	res := <-done
	if res.err != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "ERR_STORAGE_UNAVAILABLE") {
		t.Fatalf("PATCH during the outage: %d %q %v; want 503", res.status, res.body, res.err)
	}
	if resp, _ := tusReq(t, http.MethodHead, url, nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HEAD during the outage: %d", resp.StatusCode)
	}
	if err := p.s.Check(ctx); !errors.Is(err, ErrStorageUnreachable) {
		t.Fatalf("check during the outage: %v", err)
	}

	e.srv.Restart()
	if err := p.s.Check(ctx); err != nil {
		t.Fatalf("check after the outage: %v", err)
	}
	off := p.offset(url)
	if off < 10*mib || off%(5*mib) != 0 || off >= int64(len(data)) {
		t.Fatalf("offset after the outage: %d; want the whole parts accepted before it", off)
	}
	p.mustPatch(url, off, data[off:])
	e.checkStored(t, idOf(url), data)
	// A part the bucket stored as it went down, without answering, makes the
	// digest lag by that part: then exactly the bytes after the state are read back.
	t.Logf("offset after the outage %d MiB; read back %d bytes", off/mib, p.s.BytesRehashed())
	if n := p.s.BytesRehashed(); n != 0 && n != int64(len(data))-off+5*mib {
		t.Fatalf("read back %d bytes", n)
	}
}

// listParts lists the parts of a multipart upload in the bucket.
func (e *s3Env) listParts(t *testing.T, objectID, multipartID string) []int64 {
	out, err := e.srv.Client().ListParts(context.Background(), &s3.ListPartsInput{
		Bucket: aws.String(e.bucket), Key: aws.String(e.prefix + objectID), UploadId: aws.String(multipartID),
	})
	if err != nil {
		return nil
	}
	var sizes []int64
	for _, p := range out.Parts {
		sizes = append(sizes, aws.ToInt64(p.Size))
	}
	return sizes
}

// A portal that starts while the bucket is down keeps answering: uploads
// get 503, and once the bucket is back a request claims the prefix and
// uploads go through.
func TestS3StartWhileUnreachable(t *testing.T) {
	e := newS3Env(t)
	e.srv.Stop()
	s, err := New(e.config("portal-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); !errors.Is(err, ErrStorageUnreachable) {
		t.Fatalf("check: %v", err)
	}
	p := serve(t, s)
	if resp, _ := tusReq(t, http.MethodPost, p.url, map[string]string{"Upload-Length": "3"}, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upload while unreachable: %d", resp.StatusCode)
	}
	e.srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := tusReq(t, http.MethodPost, p.url, map[string]string{"Upload-Length": "3"}, nil)
		if resp.StatusCode == http.StatusCreated {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("upload after the bucket came back: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := e.srv.Object(t, e.bucket, e.prefix+"portal-claim.json"); !ok {
		t.Fatal("no claim")
	}
}

// Server-side encryption is asked for on every object the portal creates:
// the multipart upload (its parts inherit it), the .info and .part
// objects and the claim.
func TestS3SSE(t *testing.T) {
	e := newS3Env(t)
	proxy := newFaultProxy(t, e.srv.URL)
	cfg := e.config("portal-a")
	cfg.S3.Endpoint, cfg.S3.SSE, cfg.S3.SSEKMSKeyID = proxy.URL, "sse-kms", "portal-key"
	p := e.start(t, cfg)
	data := random(t, 7*mib)
	url := p.create(int64(len(data)+10), "enc")
	p.mustPatch(url, 0, data) // a part and a .part
	p.mustPatch(url, int64(len(data)), []byte("0123456789"))
	e.checkStored(t, idOf(url), append(data, "0123456789"...))
	creates := map[string]bool{}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	for _, r := range proxy.seen {
		create := ""
		switch {
		case r.Method == http.MethodPost && r.URL.Query().Has("uploads"):
			create = "multipart upload"
		case r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "":
			create = "object " + r.URL.Path[strings.LastIndex(r.URL.Path, "."):]
		}
		if create == "" {
			if r.Header.Get("X-Amz-Server-Side-Encryption") != "" {
				t.Errorf("%s %s asks for encryption", r.Method, r.URL)
			}
			continue
		}
		creates[create] = true
		if r.Header.Get("X-Amz-Server-Side-Encryption") != "aws:kms" || r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id") != "portal-key" {
			t.Errorf("%s %s: encryption headers %q %q", r.Method, r.URL, r.Header.Get("X-Amz-Server-Side-Encryption"), r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"))
		}
	}
	for _, want := range []string{"multipart upload", "object .info", "object .part", "object .json"} {
		if !creates[want] {
			t.Errorf("no %s created (saw %v)", want, creates)
		}
	}
}

// Configurations that cannot work are refused before any request.
func TestS3ConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		cfg  S3Config
		want string
	}{
		{S3Config{InstanceID: "a"}, "a bucket is required"},
		{S3Config{Bucket: "b"}, "an instance id"},
		{S3Config{Bucket: "b", InstanceID: "a", Endpoint: "ftp://x"}, "must be an http:// or https:// URL"},
		{S3Config{Bucket: "b", InstanceID: "a", Endpoint: "https://key:secret@s3.example"}, "without credentials"},
		{S3Config{Bucket: "b", InstanceID: "a", SSE: "rot13"}, "is not one of AES256"},
		{S3Config{Bucket: "b", InstanceID: "a", SSE: "AES256", SSEKMSKeyID: "k"}, "needs SSE-KMS"},
		{S3Config{Bucket: "b", InstanceID: "a", PartSize: 1 << 20}, "below the 5 MiB"},
	} {
		_, err := New(Config{Dir: dir, S3: &tc.cfg, Finalize: func(Completed) error { return nil }})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c, err := S3Config{Bucket: "b", InstanceID: "a", Prefix: "/p", SSE: "sse-s3"}.normalize(dir)
	if err != nil || c.Prefix != "p/" || c.SSE != "AES256" || c.PartSize != 16<<20 || c.TempDir != filepath.Join(dir, "s3-parts") {
		t.Fatalf("normalized: %+v %v", c, err)
	}
}

func TestValidIDAndBaseID(t *testing.T) {
	local, err := New(Config{Dir: t.TempDir(), Finalize: func(Completed) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	s3s, err := New(Config{Dir: t.TempDir(), S3: &S3Config{Bucket: "b", InstanceID: "a"}, Finalize: func(Completed) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	hex := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		id          string
		local, onS3 bool
	}{
		{hex, true, false},
		{hex + "+b8a3fe5d-5232-43fc-b962-402606e7354a", false, true},                       // versitygw, MinIO
		{hex + "+VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA", false, true}, // AWS
		{hex + "+2~1ScrHx8aPhLpJ6wOZJBoqSaZ7x9nNuE", false, true},                          // Ceph RGW
		{hex + "+", false, false},
		{hex + "+a/b", false, false},
		{hex + "+a+b", false, false},
		{hex + "+" + strings.Repeat("a", 401), false, false},
		{"../" + hex, false, false},
		{strings.ToUpper(hex) + "+abc", false, false},
	} {
		if got := local.ValidID(tc.id); got != tc.local {
			t.Errorf("local ValidID(%q) = %v", tc.id, got)
		}
		if got := s3s.ValidID(tc.id); got != tc.onS3 {
			t.Errorf("s3 ValidID(%q) = %v", tc.id, got)
		}
	}
	if BaseID(hex+"+abc") != hex || BaseID(hex) != hex || local.Backend() != "local" || s3s.Backend() != "s3" {
		t.Fatal("BaseID or Backend")
	}
}

// An S3 service whose certificate comes from a private CA: without the CA
// the check says which variable to set; with SSL_CERT_FILE naming it (the
// SDK's own transport reads the system roots, which that variable sets)
// uploads work. Go loads the roots once per process, so that half runs in
// a child process of the test binary.
func TestS3CustomCA(t *testing.T) {
	srv, caFile := s3test.StartTLS(t)
	srv.SetEnv(t)
	srv.CreateBucket(t, "portal-test")
	cfg := Config{Dir: t.TempDir(), Logger: quiet, Finalize: func(Completed) error { return nil },
		S3: &S3Config{Bucket: "portal-test", Endpoint: srv.URL, PathStyle: true, InstanceID: "portal-a"}}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check(context.Background())
	if !errors.Is(err, ErrStorageMisconfigured) || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Fatalf("check without the CA: %v", err)
	}
	t.Log(err)

	cmd := exec.Command(os.Args[0], "-test.run=^TestS3CustomCAChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile, "PORTAL_TEST_S3_ENDPOINT="+srv.URL)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestS3CustomCAChild") {
		t.Fatalf("child with SSL_CERT_FILE: %v\n%s", err, out)
	}
}

// TestS3CustomCAChild is TestS3CustomCA's child: it runs only there.
func TestS3CustomCAChild(t *testing.T) {
	endpoint := os.Getenv("PORTAL_TEST_S3_ENDPOINT")
	if endpoint == "" || os.Getenv("SSL_CERT_FILE") == "" {
		t.Skip("run by TestS3CustomCA")
	}
	var got []Completed
	s, err := New(Config{Dir: t.TempDir(), BasePath: "/files/", Logger: quiet, Finalize: func(c Completed) error { got = append(got, c); return nil },
		S3: &S3Config{Bucket: "portal-test", Endpoint: endpoint, PathStyle: true, InstanceID: "portal-a", PartSize: 5 * mib}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := serve(t, s)
	data := random(t, 6*mib)
	url := p.create(int64(len(data)), "tls")
	p.mustPatch(url, 0, data)
	if len(got) != 1 || got[0].SHA256 != sum(data) {
		t.Fatalf("finalized %+v", got)
	}
}
