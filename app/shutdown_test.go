//go:build !race

// This test is left out of `go test -race` (make test-race): it triggers a
// data race inside tusd v2.10.1, not in the portal — handler/context.go:65-66
// (the request context's cancel func reads httpContext.body) against
// handler/unrouted_handler.go:922 and body_reader.go:40 (writeChunk sets the
// body reader) when the server shuts down during a PATCH. See
// docs/upstream-tusd-race.md. Every other test runs with -race.

package app

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// An open PATCH during shutdown keeps what it received and answers 503; the
// client resumes from that offset on the restarted portal and the file's
// hash covers bytes from both runs.
func TestShutdownSavesOpenPatch(t *testing.T) {
	dir := t.TempDir()
	a := MustOpen(t, Config{DataDir: dir, ShutdownTimeout: 10 * time.Second})
	data := randomBytes(t, 2<<20)
	url := tusCreate(t, a.URL(), len(data), map[string]string{"filename": "big.bin"})

	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPatch, url, pr)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+mustAdminToken(t, a))
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("PATCH: %v", err)
			done <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp
	}()
	const sent = 700_000
	if _, err := pw.Write(data[:sent]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the server read what was sent
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()

	var resp *http.Response
	select {
	case resp = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("PATCH not answered during shutdown")
	}
	pw.CloseWithError(io.ErrClosedPipe)
	if resp == nil {
		t.FailNow()
	}
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("PATCH during shutdown answered %d, want 503", resp.StatusCode)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}

	b := MustOpen(t, Config{DataDir: dir, Listen: a.Addr()})
	head, _ := http.NewRequest(http.MethodHead, url, nil)
	head.Header.Set("Tus-Resumable", "1.0.0")
	hr := authDo(t, head)
	hr.Body.Close()
	off, _ := strconv.Atoi(hr.Header.Get("Upload-Offset"))
	if off != sent {
		t.Fatalf("offset after restart %d, want %d (every byte received is kept)", off, sent)
	}
	if st, newOff := tusPatch(t, url, off, data[off:]); st != http.StatusNoContent || newOff != len(data) {
		t.Fatalf("resume: %d at %d", st, newOff)
	}
	f, ok := fileByUpload(t, b, url)
	if !ok || f.SHA256 != sha256Hex(data) {
		t.Fatalf("after resume: %+v", f)
	}
	if n := b.tus.Store().BytesRehashed(); n != 0 {
		t.Errorf("re-read %d bytes across the restart, want 0", n)
	}
}
