package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	extra := 0
	for k, v := range meta {
		total += len(k) + len(v)
		if reservedMeta[k] {
			continue
		}
		extra++
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
	if total > maxMetaTotal+2*maxFilenameLen {
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
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(strings.TrimSpace(name))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	if name == "." || name == "/" || name == ".." || name == "" {
		return "upload"
	}
	for len(name) > maxFilenameLen {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
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
		Storage:     Storage{Backend: "local", Bucket: a.cfg.Bucket, Key: c.Key},
		Metadata:    extraMetadata(c.MetaData),
		Status:      StatusStored,
		StoredAt:    now,
		ExpiresAt:   now.Add(a.fileTTL(c.MetaData)),
	}
	meta, _ := json.Marshal(f.Metadata)
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("finalize %s: %w", c.UploadID, err)
	}
	defer tx.Rollback()
	// The owner recorded when the upload was created: the same whether a
	// request or the sweep finalizes it.
	owner, err := ownerOfUpload(ctx, tx, c.UploadID)
	if err != nil {
		return fmt.Errorf("finalize %s: %w", c.UploadID, err)
	}
	f.OwnerID, f.OwnerUsername = owner.UserID, owner.Username
	res, err := tx.ExecContext(ctx, `INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256,
		storage_backend, storage_bucket, storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id) DO NOTHING`,
		f.ID, f.UploadID, f.Filename, f.ContentType, f.SizeBytes, f.SHA256,
		f.Storage.Backend, f.Storage.Bucket, f.Storage.Key, string(meta), f.Status, f.OwnerID, f.OwnerUsername,
		f.StoredAt.UnixMilli(), f.ExpiresAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("finalize %s: insert file: %w", c.UploadID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil // finalized before
	}
	if err := a.appendFileEvent(ctx, tx, EventFileUploaded, now, f, fileOwnerActor(f), ""); err != nil {
		return fmt.Errorf("finalize %s: %w", c.UploadID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("finalize %s: commit: %w", c.UploadID, err)
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
	unrecorded, _, err := a.storeUploads(ctx)
	if err != nil {
		a.log.Error("sweep", "err", err)
		return
	}
	n, err := a.tus.Sweep(ctx, unrecorded)
	if n > 0 {
		metricSweepFinalized.Add(float64(n))
		a.log.Info("sweep finalized uploads", "count", n)
	}
	if err != nil {
		a.log.Error("sweep", "err", err)
	}
}

const fileColumns = `id, upload_id, filename, content_type, size_bytes, sha256, storage_backend, storage_bucket,
	storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at, deleted_at, delete_reason`

func scanFile(s interface{ Scan(...any) error }) (File, error) {
	var f File
	var meta string
	var stored, expires int64
	var deleted sql.NullInt64
	var reason sql.NullString
	err := s.Scan(&f.ID, &f.UploadID, &f.Filename, &f.ContentType, &f.SizeBytes, &f.SHA256,
		&f.Storage.Backend, &f.Storage.Bucket, &f.Storage.Key, &meta, &f.Status, &f.OwnerID, &f.OwnerUsername,
		&stored, &expires, &deleted, &reason)
	if err != nil {
		return File{}, err
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

// FileFilter selects files for listFiles.
type FileFilter struct {
	Status string
	// OwnerID, when set, keeps only that user's files.
	OwnerID string
	Cursor  string
	Limit   int
}

// FilePage is one page of files, newest first.
type FilePage struct {
	Items      []File `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// listFiles returns files matching f, newest first. The cursor is the last
// id of the previous page (UUIDv7 ids sort by creation time).
func (a *App) listFiles(ctx context.Context, f FileFilter) (FilePage, error) {
	q := "SELECT " + fileColumns + " FROM files WHERE 1=1"
	var args []any
	if f.Status != "" {
		q += " AND status = ?"
		args = append(args, f.Status)
	}
	if f.OwnerID != "" {
		q += " AND owner_id = ?"
		args = append(args, f.OwnerID)
	}
	if f.Cursor != "" {
		q += " AND id < ?"
		args = append(args, f.Cursor)
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, f.Limit+1)
	rows, err := a.db.R.QueryContext(ctx, q, args...)
	if err != nil {
		return FilePage{}, fmt.Errorf("list files: %w", err)
	}
	defer rows.Close()
	page := FilePage{Items: []File{}}
	for rows.Next() {
		file, err := scanFile(rows)
		if err != nil {
			return FilePage{}, fmt.Errorf("list files: %w", err)
		}
		page.Items = append(page.Items, file)
	}
	if err := rows.Err(); err != nil {
		return FilePage{}, fmt.Errorf("list files: %w", err)
	}
	if len(page.Items) > f.Limit {
		page.Items = page.Items[:f.Limit]
		page.NextCursor = page.Items[f.Limit-1].ID
	}
	return page, nil
}

// parseLimit reads a page size, 1 to 500, default 50.
func parseLimit(s string) (int, error) {
	if s == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 500 {
		return 0, errors.New("limit must be a whole number from 1 to 500")
	}
	return n, nil
}
