// Package tus embeds the tusd v2 resumable-upload server: a filestore (or
// an S3 bucket, through tusd's s3store) with inline SHA-256 hashing,
// in-process upload locks, and a finalize hook that runs before the
// client's last request is answered.
package tus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
)

// Completed describes an upload whose bytes are all stored and hashed.
type Completed struct {
	// UploadID is the tus upload id; BaseID(UploadID) is the id the
	// pre-create hook chose (on S3 the upload id adds the service's
	// multipart upload id).
	UploadID string
	Size     int64
	SHA256   string // lower-case hex
	// Backend, Bucket and Key say where the bytes are: "local", "", the
	// path of the data file relative to the upload dir; or "s3", the
	// bucket, the data object's key (what a runner would GetObject).
	Backend  string
	Bucket   string
	Key      string
	MetaData map[string]string
	// Request is the HTTP request that completed the upload; nil when the
	// upload is finalized by a sweep.
	Request *handler.HTTPRequest
	Context context.Context
}

// Location is where the upload's bytes are (Backend, Bucket, Key): what
// the file's record keeps, for OpenFile and RemoveFile.
func (c Completed) Location() Location {
	return Location{Backend: c.Backend, Bucket: c.Bucket, Key: c.Key}
}

// Config configures the embedded tus server.
type Config struct {
	// Dir holds the uploads (data, .info and .sha256 files); with S3, the
	// digest states (.sha256) and the parts in transit. The caller
	// guarantees that no other process serves it (the portal holds a
	// kernel lock on its data directory): upload locks live in this
	// process and die with it.
	Dir string
	// S3, when set, stores the uploads in an S3 bucket instead of Dir.
	S3 *S3Config
	// BasePath is the path the handler is mounted at ("/files/"), or an
	// absolute URL ("https://portal.example/files/") when the portal runs
	// behind a proxy with a known public URL.
	BasePath string
	// MaxSize is the largest upload accepted, in bytes; 0 means no limit.
	MaxSize int64
	// CORSOrigins lists browser origins allowed to upload; empty allows none
	// but the portal's own pages, "*" allows every origin.
	CORSOrigins []string
	// RespectForwardedHeaders trusts X-Forwarded-Host/-Proto and Forwarded.
	RespectForwardedHeaders bool
	// EnableIETFDraft switches on the IETF resumable-upload draft protocol.
	EnableIETFDraft bool
	// Logger receives tusd's logs.
	Logger *slog.Logger
	// Finalize is called once the bytes of a complete, non-partial upload
	// are durable; it must be idempotent. An error fails the request.
	Finalize func(Completed) error
	// PreCreate, when set, may reject a new upload or change its metadata.
	PreCreate func(handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error)
	// PreTerminate, when set, may refuse a DELETE.
	PreTerminate func(handler.HookEvent) (handler.HTTPResponse, error)
}

// Server is the tus endpoint.
type Server struct {
	cfg     Config
	store   store
	local   *HashStore // the local backend, or nil
	s3      *s3Store   // the S3 backend, or nil
	locker  *memorylocker.MemoryLocker
	handler *handler.Handler
	// pending holds complete uploads whose finalize failed (pending.go).
	pending pendingSet
}

// store is what the server needs of a backend.
type store interface {
	handler.DataStore
	handler.TerminaterDataStore
	UseIn(*handler.StoreComposer)
}

// hashedUpload is an upload of either backend: finish completes it (on S3,
// the multipart upload too, if still open) and returns its hex SHA-256.
type hashedUpload interface {
	handler.Upload
	finish(ctx context.Context) (string, error)
}

// New creates the upload directory and the tusd handler. It makes no
// request to a bucket: Check does.
func New(cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tus: upload dir is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("tus: create upload dir: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := removeStaleLocks(cfg.Dir); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, locker: memorylocker.New()}
	if cfg.S3 != nil {
		st, err := newS3Store(*cfg.S3, cfg.Dir, cfg.Logger)
		if err != nil {
			return nil, err
		}
		s.s3, s.store = st, st
	} else {
		s.local = NewHashStore(cfg.Dir)
		s.store = s.local
	}
	composer := handler.NewStoreComposer()
	s.store.UseIn(composer)
	composer.UseCore(finalizingCore{store: s.store, s: s})
	if s.local != nil {
		s.local.finishFailed = s.pending.add
	}
	s.locker.UseIn(composer)

	cors, err := corsConfig(cfg.CORSOrigins)
	if err != nil {
		return nil, err
	}
	h, err := handler.NewHandler(handler.Config{
		StoreComposer:              composer,
		BasePath:                   cfg.BasePath,
		MaxSize:                    cfg.MaxSize,
		Cors:                       cors,
		RespectForwardedHeaders:    cfg.RespectForwardedHeaders,
		EnableExperimentalProtocol: cfg.EnableIETFDraft,
		Logger:                     newExpLogger(cfg.Logger),
		PreUploadCreateCallback:    cfg.PreCreate,
		PreUploadTerminateCallback: cfg.PreTerminate,
		PreFinishResponseCallback:  s.preFinish,
		AcquireLockTimeout:         20 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("tus: %w", err)
	}
	s.handler = h
	return s, nil
}

// removeStaleLocks removes the <id>.lock files that portals before 0.3
// left: tusd's file locker wrote the holder's PID into them, so after a
// crash a restarted portal with the same PID (PID 1 in a container) took
// them for held locks. Locks are in-process now; the files mean nothing.
func removeStaleLocks(dir string) error {
	matches, err := filepath.Glob(filepath.Join(dir, "*.lock"))
	if err != nil {
		return fmt.Errorf("tus: look for stale locks: %w", err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("tus: remove stale lock: %w", err)
		}
	}
	return nil
}

// uploadIDPattern is the form of the ids the local store issues: 32
// lower-case hex digits (the portal's pre-create hook and tusd's default
// alike). The S3 store's add "+" and the service's multipart upload id.
var uploadIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidID reports whether id has the form of an upload id the configured
// store issues. Anything else (NUL, slashes, dot-dot, overlong) names no
// upload and must be answered 404 before the store or the file system
// sees it.
func (s *Server) ValidID(id string) bool {
	if s.s3 != nil {
		return s3UploadIDPattern.MatchString(id)
	}
	return uploadIDPattern.MatchString(id)
}

// BaseID returns the part of an upload id that the pre-create hook chose
// (FileInfoChanges.ID): the id itself on local storage, the object id
// before the "+" on S3. Every Server method that takes an upload id also
// takes its base id.
func BaseID(id string) string {
	base, _ := splitID(id)
	return base
}

// Backend names the configured backend: "local" or "s3".
func (s *Server) Backend() string {
	if s.s3 != nil {
		return backendS3
	}
	return backendLocal
}

// corsConfig builds tusd's CORS settings from a list of allowed origins.
func corsConfig(origins []string) (*handler.CorsConfig, error) {
	c := handler.DefaultCorsConfig
	if len(origins) == 0 {
		c.Disable = true
		return &c, nil
	}
	var parts []string
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if o == "*" {
			parts = []string{".*"}
			break
		}
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return nil, fmt.Errorf("tus: CORS origin %q must start with http:// or https://", o)
		}
		parts = append(parts, regexp.QuoteMeta(o))
	}
	c.AllowOrigin = regexp.MustCompile("^(" + strings.Join(parts, "|") + ")$")
	return &c, nil
}

// ServeHTTP serves tus requests; mount it with the base path stripped.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(&plainErrors{ResponseWriter: w}, r)
}

// internalErrorBody replaces the body of every 500 tusd sends: tusd puts
// the store's error text there, and a file system error names paths under
// the data directory. tusd logs the original at error level.
const internalErrorBody = "ERR_INTERNAL_SERVER_ERROR: internal error; the portal's log has the details\n"

// plainErrors is the response writer tusd gets: it swaps the body of a
// 500 for internalErrorBody. It keeps Unwrap, so http.ResponseController
// (tusd sets read deadlines with it) still reaches the connection.
type plainErrors struct {
	http.ResponseWriter
	swapped bool
}

func (p *plainErrors) WriteHeader(code int) {
	if code == http.StatusInternalServerError {
		p.swapped = true
		p.Header().Set("Content-Length", strconv.Itoa(len(internalErrorBody)))
		p.Header().Set("Content-Type", "text/plain; charset=utf-8")
		p.ResponseWriter.WriteHeader(code)
		io.WriteString(p.ResponseWriter, internalErrorBody)
		return
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *plainErrors) Write(b []byte) (int, error) {
	if p.swapped {
		return len(b), nil // the original body is dropped
	}
	return p.ResponseWriter.Write(b)
}

func (p *plainErrors) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// Metrics returns tusd's counters (for its Prometheus collector).
func (s *Server) Metrics() handler.Metrics { return s.handler.Metrics }

// Store returns the local hashing store (for tests and the benchmarks), or
// nil on S3.
func (s *Server) Store() *HashStore { return s.local }

// BytesRehashed reports how many stored bytes were read back to repair or
// compute a digest (on S3: to repair a digest state that lagged the
// bucket, or to hash a concatenation). On the normal path it is 0.
func (s *Server) BytesRehashed() int64 {
	if s.s3 != nil {
		return s.s3.bytesRehashed.Load()
	}
	return s.local.BytesRehashed()
}

// Dir returns the upload directory.
func (s *Server) Dir() string { return s.cfg.Dir }

func (s *Server) preFinish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	if ev.Upload.IsPartial {
		return handler.HTTPResponse{}, nil
	}
	req := ev.HTTPRequest
	if err := s.finalizeLocked(ev.Context, ev.Upload.ID, &ev.Upload, &req); err != nil {
		return handler.HTTPResponse{}, s.retryable(ev.Upload.ID, err)
	}
	return handler.HTTPResponse{}, nil
}

// statePath is the digest state file of an upload.
func (s *Server) statePath(id string) string {
	if s.s3 != nil {
		return s.s3.statePath(BaseID(id))
	}
	return s.local.statePath(id)
}

// savedCompletion describes a complete upload from its info and the sum
// saved when it was finished, asking the store nothing.
func (s *Server) savedCompletion(ctx context.Context, info handler.FileInfo) (Completed, bool) {
	if info.SizeIsDeferred || info.Offset != info.Size {
		return Completed{}, false
	}
	f := newStateFile(s.statePath(info.ID))
	st, ok := f.load(info.Size)
	if !ok || st.Offset != info.Size || st.Sum == "" {
		return Completed{}, false
	}
	return s.completed(ctx, info, st.Sum), true
}

// complete returns the finished upload's description; the caller holds the
// upload's lock (tusd does during the pre-finish hook).
func (s *Server) complete(ctx context.Context, id string) (Completed, error) {
	up, err := s.store.GetUpload(ctx, id)
	if err != nil {
		return Completed{}, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return Completed{}, err
	}
	if info.SizeIsDeferred || info.Offset != info.Size {
		return Completed{}, fmt.Errorf("upload %s is not complete (%d of %d bytes)", id, info.Offset, info.Size)
	}
	sum, err := up.(hashedUpload).finish(ctx)
	if err != nil {
		return Completed{}, fmt.Errorf("finish digest of %s: %w", id, err)
	}
	return s.completed(ctx, info, sum), nil
}

func (s *Server) completed(ctx context.Context, info handler.FileInfo, sum string) Completed {
	loc := s.location(info)
	return Completed{
		UploadID: info.ID,
		Size:     info.Size,
		SHA256:   sum,
		Backend:  loc.Backend,
		Bucket:   loc.Bucket,
		Key:      loc.Key,
		MetaData: info.MetaData,
		Context:  ctx,
	}
}

// location is where a complete upload's bytes are.
func (s *Server) location(info handler.FileInfo) Location {
	if s.s3 != nil {
		return s.s3.location(info)
	}
	key, err := filepath.Rel(s.cfg.Dir, info.Storage[filestore.StorageKeyPath])
	if err != nil || strings.HasPrefix(key, "..") {
		key = info.ID
	}
	return Location{Backend: backendLocal, Key: filepath.ToSlash(key)}
}

// resolve returns the upload id of the upload named by id or its base id.
func (s *Server) resolve(ctx context.Context, id string) (string, error) {
	if s.s3 != nil {
		return s.s3.resolve(ctx, id)
	}
	return id, nil
}

// Completed describes a complete upload (computing its digest if needed,
// and on S3 completing its multipart upload if still open), holding the
// upload's lock meanwhile.
func (s *Server) Completed(ctx context.Context, id string) (Completed, error) {
	id, err := s.resolve(ctx, id)
	if err != nil {
		return Completed{}, err
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := s.lock(lctx, id)
	if err != nil {
		return Completed{}, err
	}
	defer l.Unlock()
	return s.complete(ctx, id)
}

// Upload is what the store knows of one upload.
type Upload struct {
	// ID is the tus upload id (BaseID gives the one the pre-create hook chose).
	ID         string
	Size       int64
	Offset     int64
	IsPartial  bool
	IsFinal    bool
	Deferred   bool
	MetaData   map[string]string
	ModifiedAt time.Time
}

// Complete reports whether all the upload's bytes have arrived.
func (u Upload) Complete() bool { return !u.Deferred && u.Offset == u.Size }

// errNotListed answers UploadIDs on S3: the bucket is never listed.
var errNotListed = errors.New("tus: the S3 backend does not list its uploads; name them from the database")

// UploadIDs lists the ids of the uploads in the local store (from the
// names of their .info files), reading none of them. The S3 backend does
// not list the bucket: it returns an error.
func (s *Server) UploadIDs() ([]string, error) {
	if s.s3 != nil {
		return nil, errNotListed
	}
	matches, err := filepath.Glob(filepath.Join(s.cfg.Dir, "*.info"))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = strings.TrimSuffix(filepath.Base(m), ".info")
	}
	return ids, nil
}

// Describe reads what the store knows of the uploads ids (upload ids or
// base ids), skipping those removed meanwhile, those whose data is gone
// (see Strays), and, on S3, those the bucket could not be asked about.
func (s *Server) Describe(ctx context.Context, ids []string) []Upload {
	out := make([]Upload, 0, len(ids))
	for _, id := range ids {
		full, err := s.resolve(ctx, id)
		if err != nil {
			continue
		}
		if u, err := s.describe(ctx, full); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// Strays returns those of the uploads ids whose .info is left without its
// data: a removal cut short (the filestore removes the data first; on S3,
// a removal cut short, or a multipart upload aborted by the bucket's
// lifecycle rule). Terminate removes what is left of them.
func (s *Server) Strays(ids []string) []string {
	var out []string
	for _, id := range ids {
		if s.s3 != nil {
			if s.s3Stray(id) {
				out = append(out, id)
			}
			continue
		}
		if _, err := os.Stat(filepath.Join(s.cfg.Dir, id)); errors.Is(err, os.ErrNotExist) {
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) s3Stray(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full, err := s.resolve(ctx, id)
	if err != nil {
		return false
	}
	_, err = s.describe(ctx, full)
	return errors.Is(err, errStray)
}

// describe reads what the store knows of one upload. ModifiedAt is the
// latest modification time of its parts (files or objects).
func (s *Server) describe(ctx context.Context, id string) (Upload, error) {
	if s.s3 != nil {
		return s.s3.describe(ctx, id)
	}
	up, err := s.store.GetUpload(ctx, id)
	if err != nil {
		return Upload{}, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return Upload{}, err
	}
	var mod time.Time
	if st, err := os.Stat(filepath.Join(s.cfg.Dir, id+".info")); err == nil {
		mod = st.ModTime()
	}
	if st, err := os.Stat(info.Storage[filestore.StorageKeyPath]); err == nil && st.ModTime().After(mod) {
		mod = st.ModTime()
	}
	return Upload{
		ID: info.ID, Size: info.Size, Offset: info.Offset, IsPartial: info.IsPartial,
		IsFinal: info.IsFinal, Deferred: info.SizeIsDeferred, MetaData: info.MetaData, ModifiedAt: mod,
	}, nil
}

// lock takes the upload's lock, waiting up to the context's deadline.
func (s *Server) lock(ctx context.Context, id string) (handler.Lock, error) {
	l, err := s.locker.NewLock(id)
	if err != nil {
		return nil, err
	}
	if err := l.Lock(ctx, func() {}); err != nil {
		return nil, err
	}
	return l, nil
}

// Sweep finalizes those of the uploads ids (the caller's: uploads without
// a file record) that are complete and not partial: the safety net for
// uploads whose pre-finish hook failed or never ran (a crash between the
// last byte and the hook; on S3 also a multipart upload whose completion
// failed). It returns how many it finalized.
func (s *Server) Sweep(ctx context.Context, ids []string) (int, error) {
	n := 0
	var errs []error
	for _, u := range s.Describe(ctx, ids) {
		if u.IsPartial || !u.Complete() {
			continue
		}
		if err := s.sweepOne(ctx, u.ID); err != nil {
			errs = append(errs, fmt.Errorf("finalize %s: %w", u.ID, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (s *Server) sweepOne(ctx context.Context, id string) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := s.lock(lctx, id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return s.finalizeLocked(ctx, id, nil, nil)
}

// Terminate removes an upload's bytes and bookkeeping (on S3: aborts its
// multipart upload, deletes its object, .part and .info), taking its
// lock. Removing what is already gone is no error.
func (s *Server) Terminate(ctx context.Context, id string) error {
	_, err := s.TerminateIf(ctx, id, nil)
	return err
}

// TerminateIf removes an upload like Terminate when cond (nil: always)
// holds for the upload as it is once its lock is held, so a client that
// resumed it meanwhile keeps it. It reports whether it removed anything.
func (s *Server) TerminateIf(ctx context.Context, id string, cond func(Upload) bool) (bool, error) {
	full, err := s.resolve(ctx, id)
	if errors.Is(err, handler.ErrNotFound) {
		// The .info is gone: a removal cut short may have left the rest.
		return false, s.removeLeftovers(ctx, id)
	}
	if err != nil {
		return false, err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := s.lock(lctx, full)
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	up, err := s.store.GetUpload(ctx, full)
	if errors.Is(err, handler.ErrNotFound) {
		// The data file is gone; a termination cut short (the filestore
		// removes the data first) may have left the .info and .sha256.
		return false, s.removeLeftovers(ctx, full)
	}
	if err != nil {
		return false, err
	}
	if cond != nil {
		u, err := s.describe(ctx, full)
		if errors.Is(err, handler.ErrNotFound) {
			return false, s.removeLeftovers(ctx, full)
		}
		if err != nil && !errors.Is(err, errStray) {
			return false, err
		}
		if !cond(u) {
			return false, nil
		}
	}
	if err := s.store.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// removeLeftovers removes what is left of an upload whose .info or data
// is gone: on local storage its .info and .sha256 files; on S3 its object,
// .part, .info, multipart upload and digest state.
func (s *Server) removeLeftovers(ctx context.Context, id string) error {
	if s.s3 != nil {
		objectID, multipartID := splitID(id)
		return s.s3.terminate(ctx, objectID, multipartID)
	}
	var errs []error
	for _, ext := range []string{".info", ".sha256"} {
		if err := os.Remove(filepath.Join(s.cfg.Dir, id+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Open returns a reader of an upload's stored bytes on local storage.
// OpenFile serves both backends.
func (s *Server) Open(ctx context.Context, id string) (*os.File, error) {
	if s.s3 != nil {
		return nil, errors.New("tus: Open reads local storage only; use OpenFile")
	}
	return os.Open(filepath.Join(s.cfg.Dir, id))
}

// Check reports whether the storage can be used. For S3 it resolves the
// credentials, asks HeadBucket, and the first time it reaches the bucket
// makes sure the prefix's claim object names this portal (writing it if
// there is none). Its error is a *StorageError: errors.Is
// ErrStorageMisconfigured (fix the configuration: at start-up, exit with
// its one-line message) or ErrStorageUnreachable (retry: keep serving,
// /readyz failing; uploads are answered 503 until a check succeeds, and a
// request retries the check itself, at most every 2 s). For local
// storage it checks the upload directory.
func (s *Server) Check(ctx context.Context) error {
	if s.s3 != nil {
		return s.s3.check(ctx)
	}
	if _, err := os.Stat(s.cfg.Dir); err != nil {
		return &StorageError{Message: "local storage: " + err.Error(), Err: err}
	}
	return nil
}
