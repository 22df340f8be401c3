package tus

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

// hashState is what is saved beside an upload after every write: the
// SHA-256 digest state of the first Offset bytes, and once the upload is
// complete, the final hex digest.
type hashState struct {
	Offset int64  `json:"offset"`
	State  []byte `json:"state"`
	Sum    string `json:"sum,omitempty"`
}

// HashStore wraps tusd's filestore and computes the SHA-256 of every upload
// while its bytes arrive. The digest state is persisted in a sidecar file
// (<id>.sha256) after each write, so hashing continues across PATCH requests
// and restarts without reading the stored bytes again. When the saved state
// does not cover the bytes on disk (a write that failed half-way, a crash
// between the write and the save), the missing range is read back from the
// file; when it cannot be trusted at all, the whole file is hashed.
type HashStore struct {
	inner filestore.FileStore
	dir   string

	// bytesRehashed counts bytes read back from disk to repair a digest.
	bytesRehashed atomic.Int64
}

// NewHashStore returns a HashStore over a filestore rooted at dir.
func NewHashStore(dir string) *HashStore {
	return &HashStore{inner: filestore.New(dir), dir: dir}
}

// UseIn registers the store and all its extensions with composer.
func (s *HashStore) UseIn(composer *handler.StoreComposer) {
	composer.UseCore(s)
	composer.UseTerminater(s)
	composer.UseConcater(s)
	composer.UseLengthDeferrer(s)
	composer.UseContentServer(s)
}

// BytesRehashed reports how many stored bytes were read back to repair or
// compute a digest since the store was created. In the normal path it is 0.
func (s *HashStore) BytesRehashed() int64 { return s.bytesRehashed.Load() }

// hashUpload is an upload whose writes also feed a SHA-256 digest.
type hashUpload struct {
	handler.Upload
	store *HashStore
	id    string
}

// NewUpload creates the upload in the filestore and an empty digest state.
func (s *HashStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.inner.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	info, err = up.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	u := &hashUpload{Upload: up, store: s, id: info.ID}
	if !info.IsPartial {
		if err := u.saveState(hashState{Offset: 0, State: marshalDigest(sha256.New())}); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// GetUpload opens an existing upload.
func (s *HashStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.inner.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return &hashUpload{Upload: up, store: s, id: id}, nil
}

func unwrap(up handler.Upload) handler.Upload {
	if h, ok := up.(*hashUpload); ok {
		return h.Upload
	}
	return up
}

// AsTerminatableUpload unwraps the upload for the filestore and removes the
// digest sidecar with it.
func (s *HashStore) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return terminator{inner: s.inner.AsTerminatableUpload(unwrap(up)), path: s.statePath(uploadID(up))}
}

// AsLengthDeclarableUpload unwraps the upload for the filestore.
func (s *HashStore) AsLengthDeclarableUpload(up handler.Upload) handler.LengthDeclarableUpload {
	return s.inner.AsLengthDeclarableUpload(unwrap(up))
}

// AsServableUpload unwraps the upload for the filestore.
func (s *HashStore) AsServableUpload(up handler.Upload) handler.ServableUpload {
	return s.inner.AsServableUpload(unwrap(up))
}

// AsConcatableUpload returns a concatenation that hashes the partial uploads'
// bytes as it appends them to the final upload.
func (s *HashStore) AsConcatableUpload(up handler.Upload) handler.ConcatableUpload {
	h, ok := up.(*hashUpload)
	if !ok {
		return s.inner.AsConcatableUpload(up)
	}
	return h
}

func uploadID(up handler.Upload) string {
	if h, ok := up.(*hashUpload); ok {
		return h.id
	}
	info, err := up.GetInfo(context.Background())
	if err != nil {
		return ""
	}
	return info.ID
}

type terminator struct {
	inner handler.TerminatableUpload
	path  string
}

func (t terminator) Terminate(ctx context.Context) error {
	if err := t.inner.Terminate(ctx); err != nil {
		return err
	}
	if err := os.Remove(t.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (s *HashStore) statePath(id string) string {
	return filepath.Join(s.dir, id+".sha256")
}

func marshalDigest(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		// sha256's digest always marshals; anything else is a programming error.
		panic(err)
	}
	return b
}

func (u *hashUpload) loadState() (hashState, bool) {
	var st hashState
	b, err := os.ReadFile(u.store.statePath(u.id))
	if err != nil {
		return st, false
	}
	if json.Unmarshal(b, &st) != nil {
		return hashState{}, false
	}
	return st, true
}

// saveState writes the state to a temporary file and renames it into place,
// so a crash leaves either the old or the new state, never a torn one.
func (u *hashUpload) saveState(st hashState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := u.store.statePath(u.id)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	return nil
}

// digestAt returns a digest covering exactly the first offset bytes of the
// upload: from the saved state when it matches, otherwise repaired by
// reading the missing range (or the whole prefix) back from the file.
func (u *hashUpload) digestAt(ctx context.Context, offset int64) (hash.Hash, error) {
	h := sha256.New()
	from := int64(0)
	if st, ok := u.loadState(); ok && st.Offset <= offset {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.State); err == nil {
			from = st.Offset
		} else {
			h.Reset()
		}
	}
	if from == offset {
		return h, nil
	}
	if err := u.hashRange(ctx, h, from, offset); err != nil {
		return nil, err
	}
	return h, nil
}

// hashRange feeds bytes [from, to) of the stored upload into h.
func (u *hashUpload) hashRange(ctx context.Context, h hash.Hash, from, to int64) error {
	r, err := u.Upload.GetReader(ctx)
	if err != nil {
		return fmt.Errorf("reopen upload to hash: %w", err)
	}
	defer r.Close()
	if from > 0 {
		seeker, ok := r.(io.Seeker)
		if !ok {
			return errors.New("reopen upload to hash: reader cannot seek")
		}
		if _, err := seeker.Seek(from, io.SeekStart); err != nil {
			return fmt.Errorf("seek upload to hash: %w", err)
		}
	}
	n, err := io.Copy(h, io.LimitReader(r, to-from))
	u.store.bytesRehashed.Add(n)
	if err != nil {
		return fmt.Errorf("hash stored bytes: %w", err)
	}
	if n != to-from {
		return fmt.Errorf("hash stored bytes: got %d of %d bytes", n, to-from)
	}
	return nil
}

// WriteChunk appends src to the upload and feeds the same bytes to the
// digest. The new state is saved only when the digest saw exactly the bytes
// that reached the file; otherwise the old state stays and the gap is
// repaired from disk on the next write or at finish.
func (u *hashUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	info, err := u.Upload.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	if info.IsPartial {
		return u.Upload.WriteChunk(ctx, offset, src)
	}
	h, err := u.digestAt(ctx, offset)
	if err != nil {
		return 0, err
	}
	pr := newPipeHasher(h)
	n, werr := u.Upload.WriteChunk(ctx, offset, pr.tee(src))
	hashed := pr.wait()
	if hashed == n {
		if err := u.saveState(hashState{Offset: offset + n, State: marshalDigest(h)}); err != nil && werr == nil {
			werr = err
		}
	}
	return n, werr
}

// ConcatUploads appends the partial uploads to this (final) upload through
// WriteChunk, so their bytes are hashed as they are copied.
func (u *hashUpload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	var offset int64
	for _, p := range partials {
		r, err := p.GetReader(ctx)
		if err != nil {
			return err
		}
		n, err := u.WriteChunk(ctx, offset, r)
		r.Close()
		if err != nil {
			return err
		}
		offset += n
	}
	return nil
}

// FinishUpload completes the digest (repairing it from disk if needed),
// records the final sum and flushes the upload's bytes to stable storage.
func (u *hashUpload) FinishUpload(ctx context.Context) error {
	if err := u.Upload.FinishUpload(ctx); err != nil {
		return err
	}
	_, err := u.finish(ctx)
	return err
}

// finish returns the upload's hex SHA-256 and makes sure its bytes are
// durable. It is safe to call more than once.
func (u *hashUpload) finish(ctx context.Context) (string, error) {
	info, err := u.Upload.GetInfo(ctx)
	if err != nil {
		return "", err
	}
	if st, ok := u.loadState(); ok && st.Sum != "" && st.Offset == info.Offset {
		return st.Sum, nil
	}
	h, err := u.digestAt(ctx, info.Offset)
	if err != nil {
		return "", err
	}
	if err := syncFile(info.Storage[filestore.StorageKeyPath]); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err := u.saveState(hashState{Offset: info.Offset, State: marshalDigest(h), Sum: sum}); err != nil {
		return "", err
	}
	return sum, nil
}

// syncFile flushes a file and its directory entry to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync upload: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("sync upload: %w", err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync upload dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync upload dir: %w", err)
	}
	return nil
}
