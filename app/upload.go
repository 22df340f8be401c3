package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/internal/keyset"
	"github.com/doorito/portal/tus"
	"github.com/tus/tusd/v2/pkg/handler"
)

// Uploads in progress are rows of the uploads table from their creation:
// who created each (the owner checks and the finalizer's actor come from
// here, never from client metadata), how long it will be, and what it
// reserves of its owner's storage quota. The sweep and the cleanup find
// the uploads they look after here, not by listing the store.

// preCreate checks a new upload's metadata before tus creates it, so bad
// metadata is refused with a 400 before any byte is sent. It then picks
// the upload's id and records it (see recordUpload).
func (a *App) preCreate(ev handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	if err := checkMetadata(ev.Upload.MetaData); err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_BAD_METADATA", err.Error(), http.StatusBadRequest)
	}
	id, err := a.recordUpload(ev.Context, ev.Upload)
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, storageFull(err)
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{ID: id}, nil
}

// uploadOwner is who created a tus upload.
type uploadOwner struct {
	UserID   *string
	Username *string
}

// key is the owner's key in the usage table ("" for anonymous uploads).
func (o uploadOwner) key() string {
	if o.UserID == nil {
		return ""
	}
	return *o.UserID
}

// ownerOfUpload returns the recorded creator of an upload; an upload
// without a record (created before accounts existed) is anonymous.
func ownerOfUpload(ctx context.Context, q queryer, uploadID string) (uploadOwner, error) {
	var o uploadOwner
	err := q.QueryRowContext(ctx, "SELECT user_id, username FROM uploads WHERE id = ?", uploadID).
		Scan(&o.UserID, &o.Username)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return uploadOwner{}, fmt.Errorf("upload owner: %w", err)
	}
	return o, nil
}

// newUploadID returns an upload id like tusd's own: 32 random hex digits.
func newUploadID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// quotaMessage says which limit an upload of need more bytes passes.
func quotaMessage(who string, need int64, u Usage) string {
	return fmt.Sprintf("%s's storage quota is %s: %s stored, %s reserved by uploads in progress, %s more asked",
		who, fmtBytes(u.Quota), fmtBytes(u.Stored), fmtBytes(u.Reserved), fmtBytes(need))
}

// errQuota is what tus answers an upload beyond its owner's storage
// quota: 413, naming the limit.
func errQuota(who string, need int64, u Usage) error {
	return handler.NewError("ERR_QUOTA_EXCEEDED", quotaMessage(who, need, u), http.StatusRequestEntityTooLarge)
}

// errQuotaOp is the same refusal as a JSON error (a PATCH the guard stops).
func errQuotaOp(who string, need int64, u Usage) *OpError {
	return &OpError{Kind: KindTooLarge, Code: "quota_exceeded", Message: quotaMessage(who, need, u)}
}

// recordUpload is called by the pre-create hook: it picks the new upload's
// id and records it with its creator and declared length before the
// upload exists, so every later request and the finalizer (also the
// sweep, which has no request) find the owner. The declared length is
// reserved from the owner's quota in the same transaction; beyond the
// quota the upload is refused with 413.
func (a *App) recordUpload(ctx context.Context, info handler.FileInfo) (string, error) {
	p := principalFrom(ctx)
	if _, err := a.ops.policy.Check(p.identity(), access.UploadCreate); err != nil || p.bad {
		return "", handler.NewError("ERR_UNAUTHORIZED", "authentication required", http.StatusUnauthorized)
	}
	id := newUploadID()
	o := uploadOwner{}
	who := "anonymous uploads"
	if p.user != nil {
		o = uploadOwner{UserID: &p.user.ID, Username: &p.user.Username}
		who = p.user.Username
	}
	var length *int64
	reserve := int64(0)
	if !info.SizeIsDeferred {
		length, reserve = &info.Size, info.Size
	}
	err := a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := a.reserve(ctx, tx, o.key(), who, reserve); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO uploads (id, user_id, username, created_at, length, partial)
			VALUES (?, ?, ?, ?, ?, ?)`, id, o.UserID, o.Username, a.cfg.Now().UnixMilli(), length, info.IsPartial)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("record upload: %w", err)
	}
	return id, nil
}

// reserve adds n bytes to the reserved storage of userKey, or refuses
// with errQuota when that would pass its quota.
func (a *App) reserve(ctx context.Context, tx *sql.Tx, userKey, who string, n int64) error {
	u, err := a.usage(ctx, tx, userKey)
	if err != nil {
		return err
	}
	if n > 0 && u.Quota > 0 && u.Stored+u.Reserved+n > u.Quota {
		return errQuota(who, n, u)
	}
	return addUsage(ctx, tx, userKey, 0, n)
}

// addUsage changes an account's stored and reserved bytes.
func addUsage(ctx context.Context, tx *sql.Tx, userKey string, stored, reserved int64) error {
	if stored == 0 && reserved == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO usage (user_key, stored, reserved) VALUES (?, ?, ?)
		ON CONFLICT (user_key) DO UPDATE SET stored = stored + excluded.stored, reserved = reserved + excluded.reserved`,
		userKey, stored, reserved)
	return err
}

// Usage is what an account holds against its quota, in bytes.
type Usage struct {
	Stored   int64 `json:"stored_bytes"`
	Reserved int64 `json:"reserved_bytes"`
	// Quota is the limit (0: none).
	Quota int64 `json:"quota_bytes"`
}

// usage reads an account's usage and quota (userKey "" is the anonymous
// uploads' shared account).
func (a *App) usage(ctx context.Context, q queryer, userKey string) (Usage, error) {
	var u Usage
	err := q.QueryRowContext(ctx, "SELECT stored, reserved FROM usage WHERE user_key = ?", userKey).Scan(&u.Stored, &u.Reserved)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("usage: %w", err)
	}
	u.Quota = a.cfg.AnonymousQuota
	if userKey != "" {
		var quota sql.NullInt64
		err := q.QueryRowContext(ctx, "SELECT quota_bytes FROM users WHERE id = ?", userKey).Scan(&quota)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return u, fmt.Errorf("usage: %w", err)
		}
		u.Quota = a.cfg.UserQuota
		if quota.Valid {
			u.Quota = quota.Int64
		}
	}
	return u, nil
}

// uploadRow is an upload's record.
type uploadRow struct {
	id       string
	owner    uploadOwner
	length   *int64
	received int64
}

// uploadRecord reads an upload's record.
func (a *App) uploadRecord(ctx context.Context, id string) (uploadRow, error) {
	up := uploadRow{id: id}
	err := a.db.R.QueryRowContext(ctx, `SELECT user_id, username, length, received FROM uploads WHERE id = ?`, id).
		Scan(&up.owner.UserID, &up.owner.Username, &up.length, &up.received)
	return up, err
}

// fitsQuota is nil when need more bytes for up fit its owner's quota.
func (a *App) fitsQuota(ctx context.Context, up uploadRow, need int64) *Error {
	u, err := a.usage(ctx, a.db.R, up.owner.key())
	if err != nil || u.Quota == 0 || u.Stored+u.Reserved+need <= u.Quota {
		return nil
	}
	who := "anonymous uploads"
	if up.owner.Username != nil {
		who = *up.owner.Username
	}
	return apiError(errQuotaOp(who, need, u))
}

// recordReceived reserves the bytes a deferred-length upload holds now
// (offset), or its length once declared.
func (a *App) recordReceived(ctx context.Context, up uploadRow, offset, declared int64) error {
	return a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var length *int64
		now := offset
		if declared > 0 {
			length, now = &declared, declared
		}
		var before int64
		err := tx.QueryRowContext(ctx, `SELECT COALESCE(length, received) FROM uploads WHERE id = ? AND done_at IS NULL`,
			up.id).Scan(&before)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // finished meanwhile: the finalizer settled it
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE uploads SET received = ?, length = COALESCE(?, length) WHERE id = ?`,
			offset, length, up.id); err != nil {
			return err
		}
		return addUsage(ctx, tx, up.owner.key(), 0, now-before)
	})
}

// withUsage adds what u holds against its quota.
func (a *App) withUsage(ctx context.Context, u *User) error {
	usage, err := a.usage(ctx, a.db.R, u.ID)
	if err != nil {
		return err
	}
	u.Usage = &usage
	return nil
}

// finishUpload, in a finalize transaction, marks the upload done, moves its
// reservation into its owner's stored bytes and counts the new file.
func (a *App) finishUpload(ctx context.Context, tx *sql.Tx, f File, now time.Time) error {
	reserved, err := doneUpload(ctx, tx, tus.BaseID(f.UploadID), now)
	if err != nil {
		return err
	}
	if err := addUsage(ctx, tx, ownerIDOf(f), f.SizeBytes, -reserved); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE file_totals SET files = files + 1, bytes = bytes + ? WHERE status = ?`,
		f.SizeBytes, StatusStored); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO file_hours (hour, files, bytes) VALUES (?, 1, ?)
		ON CONFLICT (hour) DO UPDATE SET files = files + 1, bytes = bytes + excluded.bytes`,
		now.UnixMilli()/3600000, f.SizeBytes)
	return err
}

// doneUpload marks an upload done and returns what it had reserved (0 if
// it had no record or was done already).
func doneUpload(ctx context.Context, tx *sql.Tx, uploadID string, now time.Time) (int64, error) {
	var reserved int64
	err := tx.QueryRowContext(ctx, `UPDATE uploads SET done_at = ? WHERE id = ? AND done_at IS NULL
		RETURNING COALESCE(length, received)`, now.UnixMilli(), uploadID).Scan(&reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return reserved, err
}

// releaseUpload forgets an upload removed without becoming a file
// (abandoned, or cancelled by its client): its record goes and its
// reservation goes back. An upload that became a file keeps its record.
func (a *App) releaseUpload(ctx context.Context, uploadID string) error {
	return a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var o uploadOwner
		var reserved int64
		err := tx.QueryRowContext(ctx, `DELETE FROM uploads WHERE id = ? AND done_at IS NULL
			RETURNING user_id, username, COALESCE(length, received)`, uploadID).Scan(&o.UserID, &o.Username, &reserved)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		return addUsage(ctx, tx, o.key(), 0, -reserved)
	})
}

// countDeletedTx, in the transaction that marks f deleted, takes its bytes
// off its owner's usage and moves it between the totals.
func countDeletedTx(ctx context.Context, tx *sql.Tx, f File) error {
	if err := addUsage(ctx, tx, ownerIDOf(f), -f.SizeBytes, 0); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE file_totals SET
		files = files + CASE status WHEN 'stored' THEN -1 ELSE 1 END,
		bytes = bytes + CASE status WHEN 'stored' THEN -? ELSE ? END`, f.SizeBytes, f.SizeBytes)
	return err
}

// openUploads lists the uploads in progress: recorded and neither a file
// nor removed yet.
func (a *App) openUploads(ctx context.Context) ([]string, error) {
	rows, err := a.db.R.QueryContext(ctx, "SELECT id FROM uploads WHERE done_at IS NULL ORDER BY created_at")
	return keyset.All(rows, err, keyset.String)
}

// inTx runs fn in a write transaction and commits it (see DB.Tx).
func (a *App) inTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return a.db.Tx(ctx, fn)
}

// ParseSize reads a byte count: a whole number, optionally with a unit
// (KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return n * mult, nil
}

// fmtBytes writes a byte count for people: 1.5 GiB.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
