// Package tus embeds the tusd v2 resumable-upload server: a filestore with
// inline SHA-256 hashing, file locking, and a finalize hook that runs before
// the client's last request is answered.
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

// Completed describes an upload whose bytes are all on disk and hashed.
type Completed struct {
	UploadID string
	Size     int64
	SHA256   string // lower-case hex
	Key      string // path of the data file relative to the upload dir
	MetaData map[string]string
	// Request is the HTTP request that completed the upload; nil when the
	// upload is finalized by a sweep.
	Request *handler.HTTPRequest
	Context context.Context
}

// Config configures the embedded tus server.
type Config struct {
	// Dir holds the uploads (data, .info and .sha256 files). The caller
	// guarantees that no other process serves it (the portal holds a
	// kernel lock on its data directory): upload locks live in this
	// process and die with it.
	Dir string
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
	store   *HashStore
	locker  *memorylocker.MemoryLocker
	handler *handler.Handler
	// pending holds complete uploads whose finalize failed (pending.go).
	pending pendingSet
}

// New creates the upload directory and the tusd handler.
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
	s := &Server{cfg: cfg, store: NewHashStore(cfg.Dir), locker: memorylocker.New()}
	composer := handler.NewStoreComposer()
	s.store.UseIn(composer)
	composer.UseCore(finalizingCore{HashStore: s.store, s: s})
	s.store.finishFailed = s.pending.add
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

// uploadIDPattern is the form of the ids this store issues: 32 lower-case
// hex digits (the portal's pre-create hook and tusd's default alike).
var uploadIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// ValidID reports whether id has the form of an upload id this store
// issues. Anything else (NUL, slashes, dot-dot, overlong) names no upload
// and must be answered 404 before the store or the file system sees it.
func (s *Server) ValidID(id string) bool { return uploadIDPattern.MatchString(id) }

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

// Store returns the hashing store (for tests and metrics).
func (s *Server) Store() *HashStore { return s.store }

// Dir returns the upload directory.
func (s *Server) Dir() string { return s.cfg.Dir }

func (s *Server) preFinish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	if ev.Upload.IsPartial {
		return handler.HTTPResponse{}, nil
	}
	req := ev.HTTPRequest
	if err := s.finalizeLocked(ev.Context, ev.Upload.ID, &req); err != nil {
		return handler.HTTPResponse{}, s.retryable(ev.Upload.ID, err)
	}
	return handler.HTTPResponse{}, nil
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
	sum, err := up.(*hashUpload).finish(ctx)
	if err != nil {
		return Completed{}, fmt.Errorf("finish digest of %s: %w", id, err)
	}
	key, err := filepath.Rel(s.cfg.Dir, info.Storage[filestore.StorageKeyPath])
	if err != nil || strings.HasPrefix(key, "..") {
		key = id
	}
	return Completed{
		UploadID: id,
		Size:     info.Size,
		SHA256:   sum,
		Key:      filepath.ToSlash(key),
		MetaData: info.MetaData,
		Context:  ctx,
	}, nil
}

// Completed describes a complete upload (computing its digest if needed),
// holding the upload's lock meanwhile.
func (s *Server) Completed(ctx context.Context, id string) (Completed, error) {
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

// UploadIDs lists the ids of the uploads in the store (from the names of
// their .info files), reading none of them.
func (s *Server) UploadIDs() ([]string, error) {
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

// Describe reads what the store knows of the uploads ids, skipping those
// removed meanwhile (or whose data file is gone).
func (s *Server) Describe(ctx context.Context, ids []string) []Upload {
	out := make([]Upload, 0, len(ids))
	for _, id := range ids {
		if u, err := s.describe(ctx, id); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// Strays returns those of the uploads ids whose .info file is left
// without its data file: a removal cut short (the filestore removes the
// data first). Terminate removes what is left of them.
func (s *Server) Strays(ids []string) []string {
	var out []string
	for _, id := range ids {
		if _, err := os.Stat(filepath.Join(s.cfg.Dir, id)); errors.Is(err, os.ErrNotExist) {
			out = append(out, id)
		}
	}
	return out
}

// describe reads what the store knows of one upload. ModifiedAt is the
// later of the .info and data files' modification times.
func (s *Server) describe(ctx context.Context, id string) (Upload, error) {
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
// last byte and the hook). It returns how many it finalized.
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
	return s.finalizeLocked(ctx, id, nil)
}

// Terminate removes an upload's bytes and bookkeeping, taking its lock.
// Removing what is already gone is no error.
func (s *Server) Terminate(ctx context.Context, id string) error {
	_, err := s.TerminateIf(ctx, id, nil)
	return err
}

// TerminateIf removes an upload like Terminate when cond (nil: always)
// holds for the upload as it is once its lock is held, so a client that
// resumed it meanwhile keeps it. It reports whether it removed anything.
func (s *Server) TerminateIf(ctx context.Context, id string, cond func(Upload) bool) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := s.lock(lctx, id)
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	up, err := s.store.GetUpload(ctx, id)
	if errors.Is(err, handler.ErrNotFound) {
		// The data file is gone; a termination cut short (the filestore
		// removes the data first) may have left the .info and .sha256.
		return false, s.removeSidecars(id)
	}
	if err != nil {
		return false, err
	}
	if cond != nil {
		u, err := s.describe(ctx, id)
		if err != nil {
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

// removeSidecars removes an upload's .info and .sha256 files if present.
func (s *Server) removeSidecars(id string) error {
	var errs []error
	for _, ext := range []string{".info", ".sha256"} {
		if err := os.Remove(filepath.Join(s.cfg.Dir, id+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Open returns a reader of an upload's stored bytes.
func (s *Server) Open(ctx context.Context, id string) (*os.File, error) {
	return os.Open(filepath.Join(s.cfg.Dir, id))
}
