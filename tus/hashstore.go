package tus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

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
	// lastFinish is the timing of the last upload finished by a PATCH.
	lastFinish atomic.Pointer[FinishTiming]
	// writers counts the writes in progress (they share a memory budget
	// of blocks); syncSlots bounds the background flushes (pipehash.go).
	writers   atomic.Int64
	blocks    blockPools
	syncSlots chan struct{}
	syncMu    sync.Mutex
	syncing   map[string]chan struct{} // data file -> its running flush
	dirSyncs  dirSyncs                 // shared syncs of the upload directory
	// finishFailed, when set, is told the id of a complete upload (not a
	// partial) whose FinishUpload failed: its finalize never ran.
	finishFailed func(id string)
}

// FinishTiming describes the finish of an upload completed by a PATCH: when
// its last byte reached the file and how long flushing its data to stable
// storage took. The benchmarks read it to split finalize latency.
type FinishTiming struct {
	UploadID string
	// LastByte is when the request's last byte was written to the file.
	LastByte time.Time
	// Sync is the time spent in fsync of the data file and its directory.
	Sync time.Duration
}

// LastFinish returns the timing of the most recent upload finished by a
// PATCH (the zero value before the first).
func (s *HashStore) LastFinish() FinishTiming {
	if t := s.lastFinish.Load(); t != nil {
		return *t
	}
	return FinishTiming{}
}

// NewHashStore returns a HashStore over a filestore rooted at dir.
func NewHashStore(dir string) *HashStore {
	return &HashStore{inner: filestore.New(dir), dir: dir, syncSlots: make(chan struct{}, maxBackgroundSyncs)}
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

	// state is the upload's digest state file.
	state stateFile
	// written counts the bytes this handle wrote itself, past the offset
	// the filestore read when the handle was opened.
	written int64
	// lastByte is when the last WriteChunk on this handle read its last
	// byte; sync is how long finish spent flushing the data (both for
	// FinishTiming).
	lastByte time.Time
	sync     time.Duration
}

// GetInfo returns the upload's info with the bytes this handle wrote.
func (u *hashUpload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.Upload.GetInfo(ctx)
	info.Offset += u.written
	return info, err
}

// dataPath is the upload's data file.
func (u *hashUpload) dataPath(info handler.FileInfo) string {
	if p := info.Storage[filestore.StorageKeyPath]; p != "" {
		return p
	}
	return filepath.Join(u.store.dir, u.id)
}

// ErrStorageFull answers a write that found no space left (or a quota of
// the file system exhausted): 507, which tus clients retry.
var ErrStorageFull = handler.NewError("ERR_INSUFFICIENT_STORAGE",
	"no space left in the portal's storage; try again later", http.StatusInsufficientStorage)

// storageError turns a full file system into ErrStorageFull and leaves
// every other error as it is.
func storageError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrStorageFull
	}
	return err
}

// NewUpload creates the upload in the filestore and an empty digest state.
func (s *HashStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.inner.NewUpload(ctx, info)
	if err != nil {
		return nil, storageError(err)
	}
	info, err = up.GetInfo(ctx)
	if err != nil {
		return nil, err
	}
	u := &hashUpload{Upload: up, store: s, id: info.ID, state: newStateFile(s.statePath(info.ID))}
	if !info.IsPartial {
		if err := u.saveState(hashState{Offset: 0, State: marshalDigest(sha256.New())}); err != nil {
			return nil, storageError(err)
		}
	}
	return u, nil
}

// GetUpload opens an existing upload.
func (s *HashStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.inner.GetUpload(ctx, id)
	if err == nil {
		info, ierr := up.GetInfo(ctx)
		if ierr != nil || info.Storage[filestore.StorageKeyPath] == s.binPath(id) {
			return &hashUpload{Upload: up, store: s, id: id, state: newStateFile(s.statePath(id))}, ierr
		}
	}
	// The .info names its data file somewhere else (or nowhere that
	// exists): the data directory was moved or restored elsewhere.
	moved, rerr := s.relocate(id)
	if rerr != nil {
		return nil, rerr
	}
	if !moved {
		return nil, err
	}
	if up, err = s.inner.GetUpload(ctx, id); err != nil {
		return nil, err
	}
	return &hashUpload{Upload: up, store: s, id: id, state: newStateFile(s.statePath(id))}, nil
}

// binPath is where an upload's data lives: <dir>/<id>.
func (s *HashStore) binPath(id string) string { return filepath.Join(s.dir, id) }

// relocate points the upload's .info at its data file in this store.
// tusd's filestore records the data file's full path in .info when the
// upload is created and opens that path ever after, so a data directory
// that was moved, restored elsewhere or mounted at another path would have
// its uploads write to (or read from) the old place, or not be found. It
// reports whether it rewrote the .info.
func (s *HashStore) relocate(id string) (bool, error) {
	infoPath := filepath.Join(s.dir, id+".info")
	b, err := os.ReadFile(infoPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read upload info: %w", err)
	}
	var info handler.FileInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return false, fmt.Errorf("read upload info: %w", err)
	}
	want := s.binPath(id)
	if info.Storage[filestore.StorageKeyPath] == want {
		return false, nil
	}
	if info.Storage == nil {
		info.Storage = map[string]string{}
	}
	info.Storage[filestore.StorageKeyPath] = want
	if b, err = json.Marshal(info); err != nil {
		return false, err
	}
	tmp := infoPath + ".relocate"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return false, storageError(fmt.Errorf("relocate upload info: %w", err))
	}
	if err := os.Rename(tmp, infoPath); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("relocate upload info: %w", err)
	}
	return true, nil
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

// loadState returns the saved state with the highest offset not beyond
// limit (see stateFile.load).
func (u *hashUpload) loadState(limit int64) (hashState, bool) { return u.state.load(limit) }

// saveState saves st into the slot the last loaded or saved state is not in.
func (u *hashUpload) saveState(st hashState) error { return u.state.save(st) }

// digestAt returns a digest covering exactly the first offset bytes of the
// upload: from the saved state when it matches, otherwise repaired by
// reading the missing range (or the whole prefix) back from the file.
func (u *hashUpload) digestAt(ctx context.Context, offset int64) (hash.Hash, error) {
	st, ok := u.loadState(offset)
	return u.digestFrom(ctx, st, ok, offset)
}

// digestFrom is digestAt from a state already loaded (ok: st is usable).
func (u *hashUpload) digestFrom(ctx context.Context, st hashState, ok bool, offset int64) (hash.Hash, error) {
	h, from := hash.Hash(sha256.New()), int64(0)
	if ok {
		if d, good := st.digest(); good {
			h, from = d, st.Offset
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
// digest, through the write pipeline (pipehash.go). The new state is saved
// only when the digest saw exactly the bytes that reached the file;
// otherwise the old state stays and the gap is repaired from disk on the
// next write or at finish. Parts of a concatenation are not hashed (the
// final upload hashes their bytes as it copies them).
func (u *hashUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	info, err := u.GetInfo(ctx)
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
	res, werr := u.store.writeHashed(u.dataPath(info), offset, src, h)
	u.written += res.written
	u.lastByte = res.lastByte
	if res.hashed == res.written {
		if err := u.saveState(hashState{Offset: offset + res.written, State: marshalDigest(h)}); err != nil && werr == nil {
			werr = err
		}
	}
	return res.written, storageError(werr)
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
// records the final sum and flushes the upload's bytes to stable storage;
// a partial upload is only flushed.
func (u *hashUpload) FinishUpload(ctx context.Context) error {
	err := u.Upload.FinishUpload(ctx)
	var info handler.FileInfo
	if err == nil {
		info, err = u.GetInfo(ctx)
	}
	if err == nil && info.IsPartial {
		// Flushed, not hashed: the final upload hashes its bytes as it
		// copies them (hashing it here would read it all back).
		return storageError(u.store.syncFile(u.dataPath(info)))
	}
	if err == nil {
		_, err = u.finish(ctx)
	}
	if err != nil {
		if !info.IsPartial && u.store.finishFailed != nil {
			u.store.finishFailed(u.id)
		}
		return storageError(err)
	}
	u.store.lastFinish.Store(&FinishTiming{UploadID: u.id, LastByte: u.lastByte, Sync: u.sync})
	return nil
}

// finish returns the upload's hex SHA-256 and makes sure its bytes are
// durable. It is safe to call more than once.
func (u *hashUpload) finish(ctx context.Context) (string, error) {
	info, err := u.GetInfo(ctx)
	if err != nil {
		return "", err
	}
	st, ok := u.loadState(info.Offset)
	if ok && st.Sum != "" && st.Offset == info.Offset {
		return st.Sum, nil
	}
	h, err := u.digestFrom(ctx, st, ok, info.Offset)
	if err != nil {
		return "", err
	}
	start := time.Now()
	u.store.waitSync(u.dataPath(info))
	if err := u.store.syncFile(u.dataPath(info)); err != nil {
		return "", err
	}
	u.sync = time.Since(start)
	sum := hex.EncodeToString(h.Sum(nil))
	if err := u.saveState(hashState{Offset: info.Offset, State: marshalDigest(h), Sum: sum}); err != nil {
		return "", err
	}
	return sum, nil
}
