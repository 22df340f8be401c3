package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/doorito/portal/internal/keyset"
	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/tus"
	"github.com/google/uuid"
)

// File statuses.
const (
	StatusStored  = "stored"
	StatusDeleted = "deleted"
)

// File is a finalized upload.
type File struct {
	ID            string            `json:"id"`
	UploadID      string            `json:"upload_id"`
	Filename      string            `json:"filename"`
	ContentType   string            `json:"content_type"`
	SizeBytes     int64             `json:"size_bytes"`
	SHA256        string            `json:"sha256"`
	Storage       Storage           `json:"storage"`
	Metadata      map[string]string `json:"metadata"`
	Status        string            `json:"status"`
	OwnerID       *string           `json:"owner_id"`
	OwnerUsername *string           `json:"owner_username"`
	StoredAt      time.Time         `json:"stored_at"`
	ExpiresAt     time.Time         `json:"expires_at"`
	DeletedAt     *time.Time        `json:"deleted_at,omitempty"`
	DeleteReason  string            `json:"delete_reason,omitempty"`
	// deleteRequest is set while the file's deletion is under way (its
	// bytes are being removed; file.deleted follows).
	deleteRequest *deleteRequest
}

// Metadata limits: tus metadata other than filename/filetype is copied into
// the file row and events, within these bounds.
const (
	maxMetaKeys     = 32
	maxMetaKeyLen   = 64
	maxMetaValueLen = 1024
	maxMetaTotal    = 8 << 10
	maxFilenameLen  = 255
)

// reservedMeta are tus metadata keys the portal interprets itself.
// ttl is not copied either: its effect is the file's expires_at.
var reservedMeta = map[string]bool{"filename": true, "filetype": true, "name": true, "type": true, ttlMetaKey: true}

// errBadMetadata explains why upload metadata was refused.
type errBadMetadata struct{ msg string }

func (e errBadMetadata) Error() string { return e.msg }

// checkMetadata validates client metadata at upload creation, so a bad
// upload is refused with a 400 before any byte is sent.
func checkMetadata(meta map[string]string) error {
	total := 0
	extra, extraTotal := 0, 0
	for k, v := range meta {
		total += len(k) + len(v)
		if reservedMeta[k] {
			continue
		}
		extra++
		extraTotal += len(k) + len(v)
		if len(k) > maxMetaKeyLen || len(v) > maxMetaValueLen {
			return errBadMetadata{fmt.Sprintf("metadata %q: keys may have %d bytes and values %d", truncate(k, 64), maxMetaKeyLen, maxMetaValueLen)}
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return errBadMetadata{fmt.Sprintf("metadata %q: not valid UTF-8", truncate(k, 64))}
		}
	}
	if extra > maxMetaKeys {
		return errBadMetadata{fmt.Sprintf("metadata: at most %d keys besides filename and filetype", maxMetaKeys)}
	}
	// The keys besides the reserved ones are what finalize records
	// (extraMetadata): bounded alike, so nothing accepted here is dropped.
	if total > maxMetaTotal+2*maxFilenameLen || extraTotal > maxMetaTotal {
		return errBadMetadata{fmt.Sprintf("metadata: at most %d bytes in all", maxMetaTotal)}
	}
	if err := checkTTLMeta(meta); err != nil {
		return err
	}
	if ct := contentTypeOf(meta); ct != "" {
		if _, _, err := mime.ParseMediaType(ct); err != nil {
			return errBadMetadata{fmt.Sprintf("metadata filetype %q is not a media type", truncate(ct, 64))}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func contentTypeOf(meta map[string]string) string {
	if v := meta["filetype"]; v != "" {
		return v
	}
	return meta["type"]
}

// cleanFilename keeps a display name safe to show and to put in a
// Content-Disposition header: the base name only, no control characters,
// bounded length, never empty.
func cleanFilename(name string) string {
	// Control characters go first and the name is trimmed last, so what
	// they hid or the cut left ("\x00 a", "a/ b", "..<spaces>x") is not
	// left with surrounding space or as "..": cleaning again changes nothing.
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ReplaceAll(name, "\\", "/"))
	name = path.Base(strings.TrimSpace(name))
	for len(name) > maxFilenameLen {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	name = strings.TrimSpace(name)
	if name == "." || name == "/" || name == ".." || name == "" {
		return "upload"
	}
	return name
}

// cleanContentType returns a parsed, normalized media type or the default.
func cleanContentType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "application/octet-stream"
	}
	return mime.FormatMediaType(mt, params)
}

// extraMetadata is the client metadata besides the keys the portal
// interprets, bounded as at creation (finalize never fails on metadata).
func extraMetadata(meta map[string]string) map[string]string {
	out := map[string]string{}
	total := 0
	for k, v := range meta {
		if reservedMeta[k] || len(out) >= maxMetaKeys || len(k) > maxMetaKeyLen || len(v) > maxMetaValueLen {
			continue
		}
		if total+len(k)+len(v) > maxMetaTotal {
			continue
		}
		total += len(k) + len(v)
		out[k] = v
	}
	return out
}

// finalize records a completed upload as a stored file and writes its
// file.uploaded event in one transaction. It is idempotent: a second call
// for the same upload finds the row and adds nothing.
func (a *App) finalize(c tus.Completed) error {
	start := time.Now()
	err := a.finalizeTx(c, start)
	if err != nil {
		metricFinalizeFailures.Inc()
		return storageFull(err)
	}
	metricFinalizeDuration.Observe(time.Since(start).Seconds())
	return nil
}

func (a *App) finalizeTx(c tus.Completed, start time.Time) error {
	ctx := context.WithoutCancel(orBackground(c.Context))
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	f := File{
		ID:          uuid.Must(uuid.NewV7()).String(),
		UploadID:    c.UploadID,
		Filename:    cleanFilename(firstNonEmpty(c.MetaData["filename"], c.MetaData["name"])),
		ContentType: cleanContentType(contentTypeOf(c.MetaData)),
		SizeBytes:   c.Size,
		SHA256:      c.SHA256,
		Storage:     a.storageOf(c),
		Metadata:    extraMetadata(c.MetaData),
		Status:      StatusStored,
		StoredAt:    now,
		ExpiresAt:   now.Add(a.fileTTL(c.MetaData)),
	}
	meta, _ := json.Marshal(f.Metadata)
	stored := false
	err := a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		stored = false // (a job may run twice: see committer.commit)
		// The owner recorded when the upload was created: the same whether
		// a request or the sweep finalizes it.
		owner, err := ownerOfUpload(ctx, tx, tus.BaseID(c.UploadID))
		if err != nil {
			return err
		}
		f.OwnerID, f.OwnerUsername = owner.UserID, owner.Username
		res, err := tx.ExecContext(ctx, `INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256,
			storage_backend, storage_bucket, storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id) DO NOTHING`,
			f.ID, f.UploadID, f.Filename, f.ContentType, f.SizeBytes, f.SHA256,
			f.Storage.Backend, f.Storage.Bucket, f.Storage.Key, string(meta), f.Status, f.OwnerID, f.OwnerUsername,
			f.StoredAt.UnixMilli(), f.ExpiresAt.UnixMilli())
		if err != nil {
			return fmt.Errorf("insert file: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // finalized before
		}
		if err := a.finishUpload(ctx, tx, f, now); err != nil {
			return err
		}
		stored = true
		return a.appendFileEvent(ctx, tx, EventFileUploaded, now, f, fileOwnerActor(f), "")
	})
	if err != nil {
		return fmt.Errorf("finalize %s: %w", c.UploadID, err)
	}
	if !stored {
		return nil
	}
	a.outbox.Committed()
	a.log.Info("file stored", "file_id", f.ID, "upload_id", f.UploadID, "size", f.SizeBytes,
		"sha256", f.SHA256, "owner_id", ownerIDOf(f), "duration", time.Since(start))
	return nil
}

// appendFileEvent writes an event of type typ about f inside tx.
func (a *App) appendFileEvent(ctx context.Context, tx *sql.Tx, typ string, at time.Time, f File, actor PayloadActor, reason string) error {
	id := uuid.Must(uuid.NewV7()).String()
	p := a.newPayload(typ, id, at, f, actor)
	p.Reason = reason
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := a.outbox.Append(ctx, tx, outbox.Event{ID: id, Type: typ, FileID: f.ID, Payload: body, CreatedAt: at}); err != nil {
		return err
	}
	// Counted when appended; a rolled-back transaction over-counts, which
	// only happens on failures that are logged and counted themselves.
	metricEventsWritten.WithLabelValues(typ).Inc()
	return nil
}

func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sweep finalizes completed uploads that have no file row.
func (a *App) sweep(ctx context.Context) {
	open, err := a.openUploads(ctx)
	if err != nil {
		a.log.Error("sweep", "err", err)
		return
	}
	n, err := a.tus.Sweep(ctx, open)
	if n > 0 {
		metricSweepFinalized.Add(float64(n))
		a.log.Info("sweep finalized uploads", "count", n)
	}
	if err != nil {
		a.log.Error("sweep", "err", err)
	}
}

const fileColumns = `id, upload_id, filename, content_type, size_bytes, sha256, storage_backend, storage_bucket,
	storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at, deleted_at, delete_reason,
	delete_requested_at, delete_request`

func scanFile(s keyset.Scanner) (File, error) {
	var f File
	var meta string
	var stored, expires int64
	var deleted, requested sql.NullInt64
	var reason, request sql.NullString
	err := s.Scan(&f.ID, &f.UploadID, &f.Filename, &f.ContentType, &f.SizeBytes, &f.SHA256,
		&f.Storage.Backend, &f.Storage.Bucket, &f.Storage.Key, &meta, &f.Status, &f.OwnerID, &f.OwnerUsername,
		&stored, &expires, &deleted, &reason, &requested, &request)
	if err != nil {
		return File{}, err
	}
	if requested.Valid {
		f.deleteRequest = &deleteRequest{}
		json.Unmarshal([]byte(request.String), f.deleteRequest)
	}
	if err := json.Unmarshal([]byte(meta), &f.Metadata); err != nil || f.Metadata == nil {
		f.Metadata = map[string]string{}
	}
	f.StoredAt = time.UnixMilli(stored).UTC()
	f.ExpiresAt = time.UnixMilli(expires).UTC()
	if deleted.Valid {
		t := time.UnixMilli(deleted.Int64).UTC()
		f.DeletedAt = &t
	}
	f.DeleteReason = reason.String
	return f, nil
}

// ErrNotFound is returned for a record that does not exist.
var ErrNotFound = errors.New("not found")

// getFile returns one file by id.
func (a *App) getFile(ctx context.Context, id string) (File, error) {
	f, err := scanFile(a.db.R.QueryRowContext(ctx, "SELECT "+fileColumns+" FROM files WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, ErrNotFound
	}
	return f, err
}

// storageOf is the storage pointer of a completed upload: the backend,
// bucket and key the store reports; a local file's bucket is the
// --storage-bucket label (the file system has none).
func (a *App) storageOf(c tus.Completed) Storage {
	st := Storage{Backend: c.Backend, Bucket: c.Bucket, Key: c.Key}
	if st.Backend == "" {
		st.Backend = "local"
	}
	if st.Backend == "local" {
		st.Bucket = a.cfg.Bucket
	}
	return st
}

// fileLocation is where a file's record says its bytes are, as the store
// takes it (a local file has no bucket: the label is not one).
func fileLocation(f File) tus.Location {
	loc := tus.Location{Backend: f.Storage.Backend, Bucket: f.Storage.Bucket, Key: f.Storage.Key}
	if loc.Backend == "local" {
		loc.Bucket = ""
	}
	return loc
}

// fileByUpload returns the file a tus upload became.
func (a *App) fileByUpload(ctx context.Context, uploadID string) (File, error) {
	f, err := scanFile(a.db.R.QueryRowContext(ctx, "SELECT "+fileColumns+" FROM files WHERE upload_id = ?", uploadID))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, ErrNotFound
	}
	return f, err
}

// setExpiry sets a stored file's expiry and re-arms its file.expiring
// notice; it reports false when the file is not stored (any more).
func (a *App) setExpiry(ctx context.Context, fileID string, expires time.Time) (bool, error) {
	res, err := a.db.W.ExecContext(ctx, `UPDATE files SET expires_at = ?, expiring_notified_at = NULL
		WHERE id = ? AND status = 'stored'`, expires.UnixMilli(), fileID)
	if err != nil {
		return false, fmt.Errorf("change expiry of %s: %w", fileID, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// fileCount is how many files have one status, and their bytes.
type fileCount struct{ n, bytes int64 }

// fileCounts returns the files and their bytes by status (for /metrics and
// the dashboard), from the totals kept as files are stored and deleted.
func (a *App) fileCounts(ctx context.Context) (map[string]fileCount, error) {
	rows, err := a.db.R.QueryContext(ctx, "SELECT status, files, bytes FROM file_totals")
	if err != nil {
		return nil, fmt.Errorf("count files: %w", err)
	}
	defer rows.Close()
	out := map[string]fileCount{}
	for rows.Next() {
		var status string
		var c fileCount
		if err := rows.Scan(&status, &c.n, &c.bytes); err != nil {
			return nil, fmt.Errorf("count files: %w", err)
		}
		out[status] = c
	}
	return out, rows.Err()
}

// expiringCount counts the stored files that expire by t: those of the
// hours before t's from file_expiry_hours (kept by triggers), those of
// t's own hour from files_status_expires. It reads a row per hour, not a
// row per file.
func (a *App) expiringCount(ctx context.Context, t time.Time) (int64, error) {
	by := t.UnixMilli()
	hour := by / 3_600_000
	var n int64
	err := a.db.R.QueryRowContext(ctx, `SELECT (SELECT COALESCE(SUM(files), 0) FROM file_expiry_hours WHERE hour < ?)
		+ (SELECT COUNT(*) FROM files WHERE status = 'stored' AND expires_at >= ? AND expires_at <= ?)`,
		hour, hour*3_600_000, by).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count expiring files: %w", err)
	}
	return n, nil
}

// FileFilter selects files for listFiles.
type FileFilter struct {
	Status string
	// OwnerID, when set, keeps only that user's files; OwnerUsername
	// likewise by name.
	OwnerID       string
	OwnerUsername string
	// ExpiringBefore, when set, keeps stored files that expire by then.
	ExpiringBefore *time.Time
	Cursor         string
	Limit          int
}

// FilePage is one page of files, newest first (expiring ones: soonest
// expiry first).
type FilePage struct {
	Items      []File `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// listFiles returns files matching f, newest first, or with
// ExpiringBefore soonest expiry first. The cursor is the last id of the
// previous page (UUIDv7 ids sort by creation time).
func (a *App) listFiles(ctx context.Context, f FileFilter) (FilePage, error) {
	q := keyset.Select("SELECT "+fileColumns+" FROM files").
		Eq("status", f.Status).Eq("owner_id", f.OwnerID).Eq("owner_username", f.OwnerUsername)
	var items []File
	var next string
	var err error
	id := func(f File) string { return f.ID }
	if f.ExpiringBefore != nil {
		// Soonest expiry first, read in the order of files_status_expires
		// (status, expires_at, id): a page costs the same however many
		// files expire within the window. The cursor is still the last
		// file's id; the page after it starts after that file's place.
		q.Where("status = ? AND expires_at <= ?", StatusStored, f.ExpiringBefore.UnixMilli())
		if f.Cursor != "" {
			q.Where("(expires_at, id) > (SELECT c.expires_at, c.id FROM files c WHERE c.id = ?)", f.Cursor)
		}
		items, next, err = keyset.PageOrdered(ctx, a.db.R, q, "status, expires_at, id", f.Limit, scanFile, id)
	} else {
		var after any
		if f.Cursor != "" {
			after = f.Cursor
		}
		items, next, err = keyset.Page(ctx, a.db.R, q, "id", after, f.Limit, scanFile, id)
	}
	if err != nil {
		return FilePage{}, fmt.Errorf("list files: %w", err)
	}
	return FilePage{Items: items, NextCursor: next}, nil
}
