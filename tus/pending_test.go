package tus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// finalizer is a Finalize whose answer the test sets.
type finalizer struct {
	mu    sync.Mutex
	fail  error
	calls int
	done  map[string]string // upload id -> sha256 recorded
}

func (f *finalizer) finalize(c Completed) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return f.fail
	}
	if f.done == nil {
		f.done = map[string]string{}
	}
	f.done[c.UploadID] = c.SHA256
	return nil
}

func (f *finalizer) set(err error) (calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
	return f.calls
}

func (f *finalizer) recorded(id string) (string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done[id], f.calls
}

func tusRequest(t *testing.T, method, url string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// A complete upload whose finalize failed does not look finished to its
// client: HEAD and a PATCH at the full offset finalize it again first and
// fail with a retryable status until that works (tusd alone would answer
// 200 with every byte there, and tus-js-client would call it a success).
func TestFinalizeRetriedOnNextRequest(t *testing.T) {
	fin := &finalizer{}
	s, err := New(Config{Dir: t.TempDir(), BasePath: "/files/", Finalize: fin.finalize, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/files/", s))
	defer srv.Close()
	data := []byte("0123456789")
	create := func() string {
		resp := tusRequest(t, http.MethodPost, srv.URL+"/files/", map[string]string{"Upload-Length": strconv.Itoa(len(data))}, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	patch := func(url string, off int) int {
		return tusRequest(t, http.MethodPatch, url, map[string]string{"Upload-Offset": strconv.Itoa(off),
			"Content-Type": "application/offset+octet-stream"}, data[off:]).StatusCode
	}
	head := func(url string) (int, string) {
		resp := tusRequest(t, http.MethodHead, url, nil, nil)
		return resp.StatusCode, resp.Header.Get("Upload-Offset")
	}

	for _, tc := range []struct {
		name string
		fail error
		want int
	}{
		{"database error", errors.New("commit: disk I/O error"), http.StatusServiceUnavailable},
		{"storage full", fmt.Errorf("%w: commit: database or disk is full", ErrStorageFull), http.StatusInsufficientStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fin.set(tc.fail)
			url := create()
			id := url[len(url)-32:]
			if st := patch(url, 0); st != tc.want {
				t.Fatalf("final PATCH with a failing finalize: %d, want %d", st, tc.want)
			}
			if st, _ := head(url); st != tc.want {
				t.Fatalf("HEAD while finalize fails: %d, want %d", st, tc.want)
			}
			if st := patch(url, len(data)); st != tc.want {
				t.Fatalf("PATCH at the full offset while finalize fails: %d, want %d", st, tc.want)
			}
			before := fin.set(nil)
			st, off := head(url)
			sha, calls := fin.recorded(id)
			if st != http.StatusOK || off != strconv.Itoa(len(data)) || sha != sum(data) || calls != before+1 {
				t.Fatalf("HEAD once finalize works: %d offset %s; recorded sha256 %q after %d more calls", st, off, sha, calls-before)
			}
			if st := patch(url, len(data)); st != http.StatusNoContent {
				t.Fatalf("PATCH at the full offset once recorded: %d", st)
			}
			if _, after := fin.recorded(id); after != calls {
				t.Fatalf("finalized %d more times after it worked", after-calls)
			}
		})
	}

	// A sweep that fails leaves the upload pending too.
	fin.set(errors.New("still down"))
	url := create()
	patch(url, 0)
	id := url[len(url)-32:]
	if n, err := s.Sweep(context.Background(), []string{id}); n != 0 || err == nil {
		t.Fatalf("sweep with a failing finalize: %d, %v", n, err)
	}
	if st, _ := head(url); st != http.StatusServiceUnavailable {
		t.Fatalf("HEAD after a failed sweep: %d", st)
	}
	fin.set(nil)
	if n, err := s.Sweep(context.Background(), []string{id}); n != 1 || err != nil {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if s.pending.has(id) {
		t.Fatal("still pending after the sweep finalized it")
	}
	// Removed meanwhile: 404, and forgotten.
	s.pending.add(id)
	if err := s.Terminate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if st, _ := head(url); st != http.StatusNotFound || s.pending.has(id) {
		t.Fatalf("HEAD of a removed pending upload: %d (pending %v)", st, s.pending.has(id))
	}
}
