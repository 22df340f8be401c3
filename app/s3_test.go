package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doorito/portal/internal/s3test"
	"github.com/doorito/portal/tus"
)

const testBucket, testPrefix = "portal", "files/"

// startS3 starts a real S3 server (versitygw) on 127.0.0.1 with the test
// bucket, points the AWS SDK's default chain at it, and returns the
// storage settings of a portal that uses it.
func startS3(tb testing.TB) (*s3test.Server, *tus.S3Config) {
	tb.Helper()
	srv := s3test.Start(tb)
	srv.SetEnv(tb)
	srv.CreateBucket(tb, testBucket)
	return srv, &tus.S3Config{Bucket: testBucket, Prefix: testPrefix, Endpoint: srv.URL, PathStyle: true, PartSize: 5 << 20}
}

// backends runs fn on local storage and on S3 (srv is nil for local).
func backends(t *testing.T, fn func(t *testing.T, cfg Config, srv *s3test.Server)) {
	t.Run("local", func(t *testing.T) { fn(t, Config{}, nil) })
	t.Run("s3", func(t *testing.T) {
		srv, s3 := startS3(t)
		fn(t, Config{S3: s3}, srv)
	})
}

// The lifecycle of files on both backends: an upload of several parts is
// hashed with nothing read back and recorded where it is; its bytes are
// served with ranges; a user's deletion, an expiry and an abandoned
// upload remove the bytes (the object, its sidecars, the open multipart
// upload) before file.deleted.
func TestLifecycleOnBothBackends(t *testing.T) {
	backends(t, func(t *testing.T, cfg Config, srv *s3test.Server) {
		clock := newTestClock()
		cfg.IncompleteTTL = time.Hour
		a := openExpiry(t, clock, cfg)
		data := randomBytes(t, 12<<20+7)
		url := MustUpload(t, a.URL(), data, 5<<20, map[string]string{"filename": "big.bin"})
		f, ok := fileByUpload(t, a, url)
		if !ok || f.SHA256 != sha256Hex(data) || f.SizeBytes != int64(len(data)) {
			t.Fatalf("file %+v", f)
		}
		if n := a.tus.BytesRehashed(); n != 0 {
			t.Errorf("%d bytes read back to hash, want 0", n)
		}
		ev := mustTypes(t, a, f, EventFileUploaded)[0]
		if ev.File.Storage != f.Storage {
			t.Errorf("event storage %+v, file storage %+v", ev.File.Storage, f.Storage)
		}
		if srv != nil {
			want := Storage{Backend: "s3", Bucket: testBucket, Key: testPrefix + tus.BaseID(f.UploadID)}
			if f.Storage != want {
				t.Fatalf("storage %+v, want %+v", f.Storage, want)
			}
			if got, ok := srv.Object(t, testBucket, f.Storage.Key); !ok || !bytes.Equal(got, data) {
				t.Fatalf("the object in the bucket is not the bytes sent (%v)", ok)
			}
		} else if f.Storage.Backend != "local" {
			t.Fatalf("storage %+v", f.Storage)
		}

		req, _ := http.NewRequest(http.MethodGet, a.URL()+"/api/v1/files/"+f.ID+"/content", nil)
		req.Header.Set("Range", "bytes=6000000-6000099")
		resp := authDo(t, req)
		if got := readAll(t, resp); resp.StatusCode != http.StatusPartialContent || got != string(data[6000000:6000100]) {
			t.Fatalf("ranged download: %s, %d bytes", resp.Status, len(got))
		}

		// A user's deletion: bytes first, then file.deleted.
		if st, b := doAs(t, mustAdminToken(t, a), http.MethodDelete, a.URL()+"/api/v1/files/"+f.ID, nil, nil); st != 204 {
			t.Fatalf("delete: %d %s", st, b)
		}
		mustTypes(t, a, f, EventFileUploaded, EventFileDeleted)
		checkGone(t, srv, a, f)

		// An expiry.
		g := mustStore(t, a, randomBytes(t, 6<<20), map[string]string{"ttl": "1h"})
		// An abandoned upload with one part in the bucket.
		abandoned := tusCreate(t, a.URL(), 11<<20, nil)
		if st, _ := tusPatch(t, abandoned, 0, randomBytes(t, 6<<20)); st != http.StatusNoContent {
			t.Fatalf("PATCH of the upload to abandon: %d", st)
		}
		clock.Advance(2 * time.Hour)
		if r := mustRunCleanup(t, a); r.Expired != 1 || r.Abandoned != 1 {
			t.Fatalf("cleanup did %+v", r)
		}
		mustTypes(t, a, g, EventFileUploaded, EventFileExpiring, EventFileDeleted)
		checkGone(t, srv, a, g)
		if srv != nil {
			if mp := srv.MultipartUploads(t, testBucket, testPrefix); len(mp) != 0 {
				t.Errorf("multipart uploads left open: %v", mp)
			}
			if keys := srv.Keys(t, testBucket, testPrefix+tus.BaseID(uploadID(abandoned))); len(keys) != 0 {
				t.Errorf("the abandoned upload left %v", keys)
			}
		}
		var me struct{ User User }
		getJSON(t, a.URL()+"/api/v1/me", &me)
		if u := me.User.Usage; u == nil || u.Stored != 0 || u.Reserved != 0 {
			t.Errorf("usage after everything went: %+v", u)
		}
		checkCounters(t, a)
	})
}

// checkGone checks that a deleted file's bytes are gone from where they
// were: on S3 the object and every sidecar under its key.
func checkGone(tb testing.TB, srv *s3test.Server, a *App, f File) {
	tb.Helper()
	if srv == nil {
		if left := uploadFiles(a, f.UploadID); len(left) != 0 {
			tb.Errorf("file %s left %v", f.ID, left)
		}
		return
	}
	if keys := srv.Keys(tb, testBucket, f.Storage.Key); len(keys) != 0 {
		tb.Errorf("file %s left %v in the bucket", f.ID, keys)
	}
}

// A bucket that goes down: uploads get a retryable 503 and keep what they
// had, /readyz says why, a deletion is recorded but not announced, the
// cleanup changes nothing; when the bucket is back, the upload resumes to
// the right sum and the deletion finishes with its file.deleted.
func TestS3Outage(t *testing.T) {
	srv, s3 := startS3(t)
	clock := newTestClock()
	a := openExpiry(t, clock, Config{S3: s3})
	tok := mustAdminToken(t, a)
	f := mustStore(t, a, randomBytes(t, 1000), nil)
	data := randomBytes(t, 7<<20)
	url := tusCreate(t, a.URL(), len(data), map[string]string{"filename": "during.bin"})
	if st, off := tusPatch(t, url, 0, data[:5<<20]); st != 204 || off != 5<<20 {
		t.Fatalf("first PATCH: %d %d", st, off)
	}

	srv.Stop()
	if st, _ := tusPatch(t, url, 5<<20, data[5<<20:]); st != http.StatusServiceUnavailable {
		t.Fatalf("PATCH while the bucket is down: %d, want 503", st)
	}
	var ready struct{ Checks map[string]string }
	if st := getJSON(t, a.URL()+"/readyz", &ready); st != 503 || !strings.Contains(ready.Checks["storage"], "error") {
		t.Fatalf("/readyz while the bucket is down: %d %v", st, ready.Checks)
	}
	st, body := doAs(t, tok, http.MethodDelete, a.URL()+"/api/v1/files/"+f.ID, nil, nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), "storage_unavailable") {
		t.Fatalf("DELETE while the bucket is down: %d %s", st, body)
	}
	mustTypes(t, a, f, EventFileUploaded) // no file.deleted for bytes that are still there
	if resp := authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content"); resp.StatusCode != http.StatusGone {
		t.Fatalf("content of a file being deleted: %s", resp.Status)
	}
	if _, err := a.runCleanup(context.Background()); err == nil {
		t.Fatal("cleanup while the bucket is down reported no error")
	}
	mustTypes(t, a, f, EventFileUploaded)

	srv.Restart()
	waitFor(t, "the bucket to answer", func() bool { return getJSON(t, a.URL()+"/readyz", nil) == 200 })
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	resp := authDo(t, req)
	resp.Body.Close()
	off := resp.Header.Get("Upload-Offset")
	if resp.StatusCode != 200 || off != "5242880" {
		t.Fatalf("HEAD after the outage: %d, offset %q", resp.StatusCode, off)
	}
	if st, o := tusPatch(t, url, 5<<20, data[5<<20:]); st != 204 || o != len(data) {
		t.Fatalf("resumed PATCH: %d %d", st, o)
	}
	g, ok := fileByUpload(t, a, url)
	if !ok || g.SHA256 != sha256Hex(data) {
		t.Fatalf("the resumed upload's file: %+v", g)
	}
	if got, ok := srv.Object(t, testBucket, g.Storage.Key); !ok || !bytes.Equal(got, data) {
		t.Fatal("the object is not the bytes sent")
	}
	if r := mustRunCleanup(t, a); r.Expired != 1 {
		t.Fatalf("cleanup after the outage did %+v, want the requested deletion finished", r)
	}
	mustTypes(t, a, f, EventFileUploaded, EventFileDeleted)
	checkGone(t, srv, a, f)
	checkCounters(t, a)
}

// Started while the bucket is unreachable, the portal serves, says why it
// is not ready and answers uploads 503; once the bucket answers, it works.
// A bucket that does not exist stops the start with one line naming it.
func TestS3StartWhileUnreachable(t *testing.T) {
	srv, s3 := startS3(t)
	srv.Stop()
	a := MustOpen(t, Config{S3: s3})
	if st := getJSON(t, a.URL()+"/readyz", nil); st != 503 {
		t.Fatalf("/readyz with the bucket down: %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "10")
	resp := authDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("create while the bucket is down: %d", resp.StatusCode)
	}
	srv.Restart()
	waitFor(t, "the bucket to answer", func() bool { return getJSON(t, a.URL()+"/readyz", nil) == 200 })
	data := randomBytes(t, 100)
	MustUpload(t, a.URL(), data, 100, nil)

	wrong := *s3
	wrong.Bucket = "no-such-bucket"
	b, err := New(Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", S3: &wrong})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Open(context.Background())
	var se *SettingError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "no-such-bucket") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("start with a bucket that does not exist: %v", err)
	}
}

// The S3 credentials (they come only from the SDK's chain) appear in no log
// line at debug level, no event payload, no API answer, no page of the UI
// and not in /metrics or /readyz: through an upload, a download, a bucket
// outage (uploads answered 503, /readyz failing with the reason) and the
// recovery.
func TestS3CredentialsNeverShown(t *testing.T) {
	srv, s3 := startS3(t)
	var logs syncBuffer
	const adminPW = "Admin-Secret-Pw-4711"
	a := MustOpen(t, Config{S3: s3, AdminPassword: adminPW, AuthRateLimit: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok := mustAdminToken(t, a)
	c := sessionCookieOf(formLogin(t, a, "admin", adminPW, nil))
	if c == nil {
		t.Fatal("no session")
	}
	var seen strings.Builder
	get := func(path string) {
		_, body := doAs(t, tok, http.MethodGet, a.URL()+path, nil, nil)
		seen.Write(body)
		_, body = withCookie(t, c, http.MethodGet, a.URL()+path, "", nil)
		seen.Write(body)
	}
	f := mustStore(t, a, randomBytes(t, 6<<20), nil)
	for _, p := range []string{"/api/v1/files", "/api/v1/files/" + f.ID, "/api/v1/events", "/api/v1/deliveries",
		"/ui/dashboard", "/ui/files", "/ui/files/" + f.ID, "/ui/events", "/metrics", "/readyz"} {
		get(p)
	}
	for _, ev := range eventsOf(t, a, f.ID) {
		seen.Write(ev.Payload)
	}
	srv.Stop()
	if st, body := doAs(t, tok, http.MethodPost, a.URL()+"/files/", nil, tusHdr(map[string]string{"Upload-Length": "10"})); st != http.StatusServiceUnavailable {
		t.Errorf("upload while the bucket is down: %d %s, want 503", st, body)
	}
	get("/readyz")
	get("/api/v1/files/" + f.ID + "/content")
	srv.Restart()
	get("/readyz")
	if !strings.Contains(seen.String(), `"storage":"error: `) {
		t.Error("/readyz did not name the storage's failure during the outage (the test saw nothing of it)")
	}
	all := seen.String() + logs.String()
	for name, secret := range map[string]string{"access key id": s3test.AccessKey, "secret access key": s3test.SecretKey} {
		if strings.Contains(all, secret) {
			t.Errorf("the %s shows in a log line, an event, an API answer or a page", name)
		}
	}
}
