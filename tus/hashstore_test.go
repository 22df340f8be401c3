package tus

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func newUpload(t *testing.T, s *HashStore, size int64) handler.Upload {
	t.Helper()
	up, err := s.NewUpload(context.Background(), handler.FileInfo{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func finishSum(t *testing.T, s *HashStore, up handler.Upload) string {
	t.Helper()
	info, _ := up.GetInfo(context.Background())
	u, err := s.GetUpload(context.Background(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.FinishUpload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := u.(*hashUpload).finish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// write appends chunk through a fresh GetUpload, as tusd does per PATCH.
func write(t *testing.T, s *HashStore, id string, offset int64, r io.Reader) (int64, error) {
	t.Helper()
	u, err := s.GetUpload(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u.WriteChunk(context.Background(), offset, r)
}

func TestHashAcrossWritesReadsNothingBack(t *testing.T) {
	s := NewHashStore(t.TempDir())
	data := random(t, 3<<20+5)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	// Uneven chunks, each through a new upload handle (a new PATCH request,
	// or a restarted portal: the state lives on disk).
	var off int64
	for _, n := range []int64{1, 700_000, 1 << 20, 17, int64(len(data))} {
		end := min(off+n, int64(len(data)))
		w, err := write(t, s, info.ID, off, bytes.NewReader(data[off:end]))
		if err != nil || w != end-off {
			t.Fatalf("write at %d: %d, %v", off, w, err)
		}
		off = end
		if off == int64(len(data)) {
			break
		}
	}
	if got := finishSum(t, s, up); got != sum(data) {
		t.Fatalf("sha256 = %s, want %s", got, sum(data))
	}
	if n := s.BytesRehashed(); n != 0 {
		t.Fatalf("re-read %d bytes, want 0", n)
	}
}

// failingReader returns n bytes of data and then an error, like a client
// whose connection drops mid-request.
type failingReader struct {
	r *bytes.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("connection reset")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

func TestHashAfterDroppedConnection(t *testing.T) {
	s := NewHashStore(t.TempDir())
	data := random(t, 1<<20)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	n, err := write(t, s, info.ID, 0, &failingReader{r: bytes.NewReader(data), n: 300_001})
	if err == nil || n != 300_001 {
		t.Fatalf("write = %d, %v; want 300001 and an error", n, err)
	}
	if _, err := write(t, s, info.ID, n, bytes.NewReader(data[n:])); err != nil {
		t.Fatal(err)
	}
	if got := finishSum(t, s, up); got != sum(data) {
		t.Fatalf("sha256 = %s, want %s", got, sum(data))
	}
	if r := s.BytesRehashed(); r != 0 {
		t.Fatalf("re-read %d bytes after a clean partial write, want 0", r)
	}
}

// The saved state lags the file when a write reached the disk but its state
// was not saved (a crash between the two, or a write error after which the
// digest saw more than the file got): the missing range is read back.
func TestHashRepairsLaggingState(t *testing.T) {
	dir := t.TempDir()
	s := NewHashStore(dir)
	data := random(t, 1<<20)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	if _, err := write(t, s, info.ID, 0, bytes.NewReader(data[:400_000])); err != nil {
		t.Fatal(err)
	}
	saved, _ := os.ReadFile(filepath.Join(dir, info.ID+".sha256"))
	if _, err := write(t, s, info.ID, 400_000, bytes.NewReader(data[400_000:700_000])); err != nil {
		t.Fatal(err)
	}
	// Roll the state back to 400,000 bytes as if the second save was lost.
	os.WriteFile(filepath.Join(dir, info.ID+".sha256"), saved, 0o644)
	if _, err := write(t, s, info.ID, 700_000, bytes.NewReader(data[700_000:])); err != nil {
		t.Fatal(err)
	}
	if got := finishSum(t, s, up); got != sum(data) {
		t.Fatalf("sha256 = %s, want %s", got, sum(data))
	}
	if r := s.BytesRehashed(); r != 300_000 {
		t.Fatalf("re-read %d bytes, want exactly the 300000 the state missed", r)
	}
}

// A state that cannot be trusted (torn, corrupt, or ahead of the file)
// makes finish hash the whole file.
func TestHashFallsBackToWholeFile(t *testing.T) {
	for name, corrupt := range map[string]func(path string){
		"garbage": func(p string) { os.WriteFile(p, []byte("{not json"), 0o644) },
		"missing": func(p string) { os.Remove(p) },
		"ahead":   func(p string) { os.WriteFile(p, []byte(`{"offset":99999999,"state":""}`), 0o644) },
		"bad digest state": func(p string) {
			os.WriteFile(p, []byte(`{"offset":10,"state":"AAAA"}`), 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := NewHashStore(dir)
			data := random(t, 500_000)
			up := newUpload(t, s, int64(len(data)))
			info, _ := up.GetInfo(context.Background())
			if _, err := write(t, s, info.ID, 0, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			corrupt(filepath.Join(dir, info.ID+".sha256"))
			if got := finishSum(t, s, up); got != sum(data) {
				t.Fatalf("sha256 = %s, want %s", got, sum(data))
			}
			if r := s.BytesRehashed(); r != int64(len(data)) {
				t.Fatalf("re-read %d bytes, want the whole file (%d)", r, len(data))
			}
		})
	}
}

func TestConcatHashesPartials(t *testing.T) {
	s := NewHashStore(t.TempDir())
	a, b := random(t, 300_000), random(t, 123_457)
	var partials []handler.Upload
	for _, d := range [][]byte{a, b} {
		up, err := s.NewUpload(context.Background(), handler.FileInfo{Size: int64(len(d)), IsPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(context.Background(), 0, bytes.NewReader(d)); err != nil {
			t.Fatal(err)
		}
		partials = append(partials, up)
	}
	final, err := s.NewUpload(context.Background(), handler.FileInfo{Size: int64(len(a) + len(b)), IsFinal: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AsConcatableUpload(final).ConcatUploads(context.Background(), partials); err != nil {
		t.Fatal(err)
	}
	want := sum(append(append([]byte{}, a...), b...))
	if got := finishSum(t, s, final); got != want {
		t.Fatalf("sha256 = %s, want %s", got, want)
	}
	if r := s.BytesRehashed(); r != 0 {
		t.Fatalf("re-read %d bytes, want 0", r)
	}
}

func TestTerminateRemovesState(t *testing.T) {
	dir := t.TempDir()
	s := NewHashStore(dir)
	up := newUpload(t, s, 10)
	info, _ := up.GetInfo(context.Background())
	if err := s.AsTerminatableUpload(up).Terminate(context.Background()); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, info.ID+"*"))
	if len(left) != 0 {
		t.Fatalf("files left after terminate: %v", left)
	}
}

// A store opened on a copy of its directory works on the copy: tusd's
// filestore records each data file's full path in .info, so without the
// relocation the copy's uploads would write to the original's files.
func TestStoreOnCopiedDirWritesToTheCopy(t *testing.T) {
	orig := t.TempDir()
	s := NewHashStore(orig)
	data := random(t, 3000)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	if _, err := write(t, s, info.ID, 0, bytes.NewReader(data[:1000])); err != nil {
		t.Fatal(err)
	}
	moved := t.TempDir()
	for _, name := range []string{info.ID, info.ID + ".info", info.ID + ".sha256"} {
		b, err := os.ReadFile(filepath.Join(orig, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(moved, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewHashStore(moved)
	if _, err := write(t, c, info.ID, 1000, bytes.NewReader(data[1000:])); err != nil {
		t.Fatal(err)
	}
	u, err := c.GetUpload(context.Background(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := finishSum(t, c, u); got != sum(data) {
		t.Errorf("sum on the copy %s, want %s", got, sum(data))
	}
	if b, _ := os.ReadFile(filepath.Join(moved, info.ID)); !bytes.Equal(b, data) {
		t.Errorf("the copy holds %d bytes, want all %d", len(b), len(data))
	}
	if b, _ := os.ReadFile(filepath.Join(orig, info.ID)); len(b) != 1000 {
		t.Errorf("the original's data file changed: %d bytes, want 1000", len(b))
	}
}

// Through tusd, a finished partial upload is flushed but not hashed (read
// back) on its own: the final upload hashes its bytes as it copies them.
func TestConcatOverHTTPReadsNothingBack(t *testing.T) {
	var got []Completed
	s, err := New(Config{Dir: t.TempDir(), BasePath: "/files/", Logger: quiet, Finalize: func(c Completed) error {
		got = append(got, c)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, s)
	_, all := p.concat([]int{300_000, 123_457})
	if len(got) != 1 || got[0].SHA256 != sum(all) {
		t.Fatalf("finalized %+v, want one with sha256 %s", got, sum(all))
	}
	if n := s.BytesRehashed(); n != 0 {
		t.Fatalf("read back %d bytes, want 0", n)
	}
}
