package app

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Every deletion of a stored file (expiry, a user's or an admin's DELETE,
// a tus DELETE of a finished upload) takes the same three steps:
//
//  1. one transaction records the request on the row: who asked and why
//     (for an expiry, with the file's file.expiring if that was not
//     committed yet, so the notice always has the lower events.seq);
//  2. the bytes are removed from where the row says they are (data file
//     and sidecars, or the S3 object, its .info and .part);
//  3. one transaction marks the row deleted and appends file.deleted.
//
// So file.deleted follows only once the bytes are gone (or provably
// absent): a consumer that hears of a deletion will not find the bytes,
// and one that reads them before has not heard of it. From step 1 on, the
// API answers the file's content with 410. If step 2 fails (a bucket that
// is down) or the process dies between the steps, the cleanup's next run
// finds the request and finishes it, with the same reason and actor.

// Reasons in file.deleted (and files.delete_reason).
const (
	ReasonExpired        = "expired"
	ReasonDeletedByUser  = "deleted_by_user"
	ReasonDeletedByAdmin = "deleted_by_admin"
)

// deleteRequest is what step 1 records: why, and who asked.
type deleteRequest struct {
	Reason string       `json:"reason"`
	Actor  PayloadActor `json:"actor"`
}

// requestDeletionTx is step 1 for f inside tx. A request made before
// stays as it was. It reports false when f is no longer stored.
func requestDeletionTx(ctx context.Context, tx *sql.Tx, f File, now time.Time, req deleteRequest) (bool, error) {
	b, _ := json.Marshal(req)
	res, err := tx.ExecContext(ctx, `UPDATE files SET delete_requested_at = COALESCE(delete_requested_at, ?),
		delete_request = COALESCE(delete_request, ?) WHERE id = ? AND status = 'stored'`, now.UnixMilli(), string(b), f.ID)
	if err != nil {
		return false, fmt.Errorf("request deletion: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// deleteFile deletes stored file id for actor: all three steps. It reports
// false, without error, when the file was already deleted. When the bytes
// cannot be removed, the request stays for the cleanup and the error is
// returned.
func (a *App) deleteFile(ctx context.Context, id string, actor PayloadActor, reason string) (File, bool, error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	var f File
	requested := false
	err := a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		f, err = scanFile(tx.QueryRowContext(ctx, "SELECT "+fileColumns+" FROM files WHERE id = ?", id))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		requested, err = requestDeletionTx(ctx, tx, f, now, deleteRequest{Reason: reason, Actor: actor})
		return err
	})
	if err != nil || !requested {
		return f, false, err
	}
	f, err = a.getFile(ctx, id) // with the request as recorded (an earlier one wins)
	if err != nil {
		return File{}, false, err
	}
	done, err := a.finishDeletions(ctx, []File{f})
	if err != nil || len(done) == 0 {
		return f, false, err
	}
	return done[0], true, nil
}

// finishDeletions does steps 2 and 3 for files whose deletion was
// requested: each one's bytes are removed, then those whose bytes are gone
// are marked deleted with their file.deleted in one transaction. It
// returns them (as deleted); the others keep their request for a later
// try, and their errors are returned.
func (a *App) finishDeletions(ctx context.Context, files []File) ([]File, error) {
	var gone []File
	var errs []error
	for _, f := range files {
		if err := a.tus.RemoveFile(ctx, fileLocation(f)); err != nil {
			errs = append(errs, fmt.Errorf("remove bytes of file %s: %w", f.ID, err))
			continue
		}
		gone = append(gone, f)
	}
	if len(gone) == 0 {
		return nil, errors.Join(errs...)
	}
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	var done []File
	err := a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		done = done[:0]
		for _, f := range gone {
			req := deleteRequest{Reason: ReasonExpired}
			if f.deleteRequest != nil {
				req = *f.deleteRequest
			}
			ok, err := a.markDeletedTx(ctx, tx, f, now, req.Actor, req.Reason)
			if err != nil {
				return err
			}
			if ok {
				f.Status, f.DeletedAt, f.DeleteReason, f.deleteRequest = StatusDeleted, &now, req.Reason, nil
				done = append(done, f)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(append(errs, fmt.Errorf("commit deletions: %w", err))...)
	}
	if len(done) > 0 {
		a.outbox.Committed()
	}
	for _, f := range done {
		a.log.Info("file deleted", "file_id", f.ID, "upload_id", f.UploadID, "reason", f.DeleteReason)
	}
	return done, errors.Join(errs...)
}

// markDeletedTx is step 3 for stored file f inside tx: the row is marked
// deleted (its bytes gone) and file.deleted appended. It reports false
// when f was no longer stored (deleted meanwhile by someone else).
func (a *App) markDeletedTx(ctx context.Context, tx *sql.Tx, f File, now time.Time, actor PayloadActor, reason string) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE files SET status = 'deleted', deleted_at = ?, delete_reason = ?,
		purged_at = ?, delete_requested_at = NULL, delete_request = NULL WHERE id = ? AND status = 'stored'`,
		now.UnixMilli(), reason, now.UnixMilli(), f.ID)
	if err != nil {
		return false, fmt.Errorf("mark deleted: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if err := countDeletedTx(ctx, tx, f); err != nil {
		return false, fmt.Errorf("mark deleted: %w", err)
	}
	if err := a.appendFileEvent(ctx, tx, EventFileDeleted, now, f, actor, reason); err != nil {
		return false, err
	}
	return true, nil
}

// expireBatch deletes up to one batch of stored files that expired or
// whose deletion was requested before (and cut short): step 1 for the
// expired ones in one transaction (with their file.expiring if it was not
// given), then steps 2 and 3. It returns how many it deleted and how many
// notices it gave first.
func (a *App) expireBatch(ctx context.Context) (deleted, notices int, more bool, err error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	limit := a.batchSize()
	var files []File
	err = a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		files, err = dueForDeletion(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		notices = 0
		for i, f := range files {
			if f.deleteRequest != nil {
				continue // requested before: finish it
			}
			// The invariant: never a file.deleted for an expiry without an
			// earlier-committed file.expiring. If the notifier has not
			// given the notice (downtime, a TTL shorter than its window, a
			// schedule that has not come round), it is given here, first.
			sent, err := a.noticeTx(ctx, tx, f, now)
			if err != nil {
				return fmt.Errorf("file %s: %w", f.ID, err)
			}
			if sent {
				notices++
			}
			req := deleteRequest{Reason: ReasonExpired}
			if _, err := requestDeletionTx(ctx, tx, f, now, req); err != nil {
				return fmt.Errorf("file %s: %w", f.ID, err)
			}
			files[i].deleteRequest = &req
		}
		return nil
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("cleanup: %w", err)
	}
	if notices > 0 {
		a.outbox.Committed()
	}
	done, err := a.finishDeletions(ctx, files)
	for _, f := range done {
		if f.DeleteReason == ReasonExpired {
			a.log.Info("file expired", "file_id", f.ID, "upload_id", f.UploadID, "expires_at", rfc3339(f.ExpiresAt))
		}
	}
	a.batchDone(jobCleanup)
	if err != nil {
		return len(done), notices, false, fmt.Errorf("cleanup: %w", err)
	}
	return len(done), notices, len(files) == limit, nil
}

// dueForDeletion returns up to limit stored files that expired by now or
// whose deletion was requested, the expired ones soonest first: each set
// read in the order of its index (files_status_expires,
// files_delete_requested), so neither is sorted.
func dueForDeletion(ctx context.Context, tx *sql.Tx, now time.Time, limit int) ([]File, error) {
	expired, err := queryFiles(ctx, tx, `SELECT `+fileColumns+` FROM files
		WHERE status = 'stored' AND expires_at <= ? ORDER BY status, expires_at, id LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	// INDEXED BY: the partial index holds only these files; without
	// statistics the planner would read every stored file by status.
	requested, err := queryFiles(ctx, tx, `SELECT `+fileColumns+` FROM files INDEXED BY files_delete_requested
		WHERE status = 'stored' AND delete_requested_at IS NOT NULL ORDER BY delete_requested_at LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(expired))
	for _, f := range expired {
		seen[f.ID] = true
	}
	for _, f := range requested {
		if !seen[f.ID] {
			expired = append(expired, f)
		}
	}
	// As one query with UNION would: by expiry, then id.
	slices.SortFunc(expired, func(a, b File) int {
		return cmp.Or(a.ExpiresAt.Compare(b.ExpiresAt), strings.Compare(a.ID, b.ID))
	})
	return expired[:min(len(expired), limit)], nil
}

// removeBytes removes the bytes a deleted file of an earlier version left
// in the store (those versions marked the row before removing them) and
// records that they are gone.
func (a *App) removeBytes(ctx context.Context, f File) error {
	if err := a.tus.RemoveFile(ctx, fileLocation(f)); err != nil {
		return fmt.Errorf("remove bytes of file %s: %w", f.ID, err)
	}
	if _, err := a.db.W.ExecContext(ctx, `UPDATE files SET purged_at = ? WHERE id = ? AND status = 'deleted'`,
		a.cfg.Now().UnixMilli(), f.ID); err != nil {
		return fmt.Errorf("record removal of file %s: %w", f.ID, err)
	}
	return nil
}
