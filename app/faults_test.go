package app

import (
	"bytes"
	"context"
	"errors"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A second portal on the same data directory is refused at start; the CLI
// helpers keep working beside the running one.
func TestDataDirServedOnce(t *testing.T) {
	dir := t.TempDir()
	MustOpen(t, Config{DataDir: dir})

	second, err := New(Config{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Open(context.Background())
	if !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second portal on %s: %v, want ErrDataDirInUse", dir, err)
	}

	ctx := context.Background()
	if err := Backup(ctx, dir, filepath.Join(t.TempDir(), "copy.db")); err != nil {
		t.Errorf("backup beside a running portal: %v", err)
	}
	if _, err := AddUser(ctx, dir, "cli-user", RoleUploader, "a-long-enough-password"); err != nil {
		t.Errorf("user add beside a running portal: %v", err)
	}
	if _, _, err := CreateToken(ctx, dir, "cli-user", "cli", time.Hour, nil); err != nil {
		t.Errorf("token create beside a running portal: %v", err)
	}
}

// A crashed portal that comes back with the same PID (PID 1 in a container)
// must not find its own old upload locks held. Before, tusd's file locker
// wrote the PID into <id>.lock and a live PID meant a held lock: every
// request on the upload waited 20 s and failed with ERR_LOCK_TIMEOUT.
func TestLockFileWithLivePIDDoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	a := MustOpen(t, Config{DataDir: dir})
	url := tusCreate(t, a.URL(), 100, map[string]string{"filename": "x.bin"})
	if st, _ := tusPatch(t, url, 0, make([]byte, 40)); st != http.StatusNoContent {
		t.Fatalf("PATCH: %d", st)
	}
	a.Close()

	// What a killed old portal left: a lock naming a live process (this one).
	lock := filepath.Join(dir, "uploads", uploadID(url)+".lock")
	if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	b := MustOpen(t, Config{DataDir: dir})
	url = b.URL() + "/files/" + uploadID(url)
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale lock file still there after start: %v", err)
	}
	start := time.Now()
	req, _ := http.NewRequest(http.MethodHead, url, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	resp := authDo(t, req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "40" {
		t.Fatalf("HEAD after restart: %d, offset %q", resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("HEAD took %s: it waited for a lock", d)
	}
}

// Upload ids that the store never issues answer 404 before the file system
// sees them, with no path in the answer.
func TestMalformedUploadIDs(t *testing.T) {
	dir := t.TempDir()
	a := MustOpen(t, Config{DataDir: dir, AnonymousUploads: true})
	bad := map[string]string{
		"NUL":          "a%00b",
		"dot-dot":      "..%2f..%2fportal.db",
		"slash":        "0123456789abcdef0123456789abcdef%2Fx",
		"too long":     strings.Repeat("a", 300),
		"upper case":   "0123456789ABCDEF0123456789ABCDEF",
		"short hex":    "0123456789abcdef",
		"two segments": "0123456789abcdef0123456789abcdef/0123456789abcdef0123456789abcdef",
		"not hex":      "0123456789abcdef0123456789abcdeg",
		"info suffix":  "0123456789abcdef0123456789abcdef.info",
	}
	before := dirNames(t, filepath.Join(dir, "uploads"))
	for name, id := range bad {
		for _, method := range []string{http.MethodHead, http.MethodPatch, http.MethodDelete, http.MethodGet} {
			for _, who := range []string{"admin", "anonymous"} {
				t.Run(name+"/"+method+"/"+who, func(t *testing.T) {
					req, err := http.NewRequest(method, a.URL()+"/files/"+id, bytes.NewReader([]byte("abc")))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("Tus-Resumable", "1.0.0")
					req.Header.Set("Upload-Offset", "0")
					req.Header.Set("Content-Type", "application/offset+octet-stream")
					if who == "admin" {
						req.Header.Set("Authorization", "Bearer "+mustAdminToken(t, a))
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusNotFound {
						t.Errorf("%s /files/%s as %s: %d, want 404", method, id, who, resp.StatusCode)
					}
				})
			}
		}
	}
	if after := dirNames(t, filepath.Join(dir, "uploads")); after != before {
		t.Errorf("upload dir changed: %q -> %q", before, after)
	}
}

func dirNames(tb testing.TB, dir string) string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

// A credential that is present and wrong is refused with 401, also where
// anonymous requests are welcome.
func TestBadCredentialRefusedWithAnonymousUploads(t *testing.T) {
	a := MustOpen(t, Config{AnonymousUploads: true})
	u := mustUser(t, a, "bert", RoleUploader)
	cases := map[string]func(*http.Request){
		"Basic, wrong password": func(r *http.Request) { r.SetBasicAuth(u.Username, "wrong") },
		"Basic, right password": func(r *http.Request) { r.SetBasicAuth(u.Username, userPassword(u.Username)) },
		"unknown bearer token":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer dpt_nope") },
		"unknown scheme":        func(r *http.Request) { r.Header.Set("Authorization", "Digest x") },
		"unknown session": func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "no-such-session"})
		},
	}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
			req.Header.Set("Tus-Resumable", "1.0.0")
			req.Header.Set("Upload-Length", "10")
			set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("POST /files/ with %s: %d, want 401", name, resp.StatusCode)
			}
		})
	}
	// Without any credential the anonymous upload is still welcome.
	st, _ := doAs(t, "", http.MethodPost, a.URL()+"/files/", nil, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
	if st != http.StatusCreated {
		t.Errorf("anonymous POST /files/: %d, want 201", st)
	}
	if n := countRows(t, a, "uploads"); n != 1 {
		t.Errorf("%d uploads recorded, want only the anonymous one", n)
	}
}

// tusd's own download (GET /files/{id}) names the file as the API does,
// not with the client's raw filename.
func TestTusDownloadCleansFilename(t *testing.T) {
	a := MustOpen(t, Config{})
	data := []byte("hello")
	for _, raw := range []string{"../../etc/passwd", "a\x01b\".txt", `..\..\win.ini`, "plain.txt"} {
		url := MustUpload(t, a.URL(), data, len(data), map[string]string{"filename": raw, "filetype": "text/plain"})
		f, ok := fileByUpload(t, a, url)
		if !ok {
			t.Fatalf("no file for %q", raw)
		}
		resp := authGet(t, url)
		resp.Body.Close()
		tusDisp := resp.Header.Get("Content-Disposition")
		resp = authGet(t, a.URL()+"/api/v1/files/"+f.ID+"/content")
		resp.Body.Close()
		apiDisp := resp.Header.Get("Content-Disposition")
		_, tp, err1 := mime.ParseMediaType(tusDisp)
		_, ap, err2 := mime.ParseMediaType(apiDisp)
		if err1 != nil || err2 != nil || tp["filename"] != ap["filename"] || tp["filename"] != f.Filename {
			t.Errorf("filename %q: tus %q, API %q, file row %q", raw, tusDisp, apiDisp, f.Filename)
		}
	}
}

// A concatenation names each partial once, at most maxConcatParts of them.
func TestConcatenationLimits(t *testing.T) {
	a := MustOpen(t, Config{})
	partial := func() string {
		req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", bytes.NewReader([]byte("0123456789")))
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", "10")
		req.Header.Set("Upload-Concat", "partial")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		resp := authDo(t, req)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create partial: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	concat := func(parts ...string) int {
		req, _ := http.NewRequest(http.MethodPost, a.URL()+"/files/", nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Concat", "final;"+strings.Join(parts, " "))
		resp := authDo(t, req)
		resp.Body.Close()
		return resp.StatusCode
	}
	p1, p2 := partial(), partial()
	if st := concat(p1, p1); st != http.StatusBadRequest {
		t.Errorf("a partial named twice: %d, want 400", st)
	}
	many := make([]string, maxConcatParts+1)
	for i := range many {
		many[i] = "/files/" + strings.Repeat("0", 31) + strconv.Itoa(i%10)
	}
	if st := concat(many...); st != http.StatusBadRequest {
		t.Errorf("%d partials: %d, want 400", len(many), st)
	}
	if st := concat(p1, "/files/a%00b"); st != http.StatusNotFound {
		t.Errorf("malformed partial id: %d, want 404", st)
	}
	if n := countRows(t, a, "uploads"); n != 2 {
		t.Errorf("%d uploads recorded after the refusals, want the 2 partials", n)
	}
	if st := concat(p1, p2); st != http.StatusCreated {
		t.Fatalf("concatenation of two partials: %d", st)
	}
	if n := countRows(t, a, "files"); n != 1 {
		t.Errorf("%d files after the concatenation's 201, want 1", n)
	}
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
