package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/doorito/portal/internal/keyset"
	"github.com/doorito/portal/tus"
	"github.com/tus/tusd/v2/pkg/handler"
)

// Every deletion of a stored file (expiry, a user's or an admin's DELETE,
// a tus DELETE of a finished upload) takes the same two steps:
//
//  1. one transaction marks the row deleted and appends file.deleted (for
//     an expiry, after the file's file.expiring if that was not committed
//     yet, so the notice always has the lower events.seq);
//  2. the bytes are removed through the tus store (data, .info, .sha256).
//
// The row is the record of intent. Once step 1 commits, the API treats the
// file as gone (its content answers 410) and the event is out; if the
// process dies before step 2 finishes, the cleanup's next run finds a
// deleted row whose upload is still in the store and removes the bytes.
// The reverse order would, after a crash, leave a stored row without bytes
// that nothing marks deleted when the file has not expired (a user's
// DELETE), and files would vanish without their event.

// Reasons in file.deleted (and files.delete_reason).
const (
	ReasonExpired        = "expired"
	ReasonDeletedByUser  = "deleted_by_user"
	ReasonDeletedByAdmin = "deleted_by_admin"
)

// cleanupResult is what one cleanup run did.
type cleanupResult struct {
	Expired   int // expired files marked deleted (with their file.deleted)
	Notices   int // file.expiring notices cleanup committed first
	Leftovers int // deleted files whose bytes an earlier step left behind
	Abandoned int // incomplete or partial uploads removed
	Pruned    int // events past the history retention removed
}

func (r cleanupResult) total() int { return r.Expired + r.Leftovers + r.Abandoned }

// cleanupJob is one scheduled run of the cleanup: counted and logged.
func (a *App) cleanupJob(ctx context.Context) {
	start := time.Now()
	a.jobs.cleanup.runs.Add(1)
	defer countPanic(&a.jobs.cleanup)
	r, err := a.runCleanup(ctx)
	a.endJob(ctx, jobCleanup, &a.jobs.cleanup, start, r.total(), err, "expired", r.Expired,
		"late_notices", r.Notices, "leftovers", r.Leftovers, "abandoned", r.Abandoned, "events_pruned", r.Pruned)
}

// runCleanup deletes expired files, removes the bytes of deleted files
// still in the store, and removes incomplete uploads (and parts of
// concatenations) untouched for Config.IncompleteTTL. It carries on past
// a failure and returns every error; what failed is retried next run.
func (a *App) runCleanup(ctx context.Context) (cleanupResult, error) {
	var r cleanupResult
	var errs []error
	for {
		uploads, notices, more, err := a.expireBatch(ctx)
		r.Expired += len(uploads)
		r.Notices += notices
		if err != nil {
			errs = append(errs, err)
			break
		}
		for _, id := range uploads {
			if err := a.removeBytes(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
		if !more {
			break
		}
	}
	if ctx.Err() != nil {
		return r, errors.Join(append(errs, ctx.Err())...)
	}
	leftovers, abandoned, err := a.sweepStore(ctx)
	r.Leftovers, r.Abandoned = leftovers, abandoned
	if err != nil {
		errs = append(errs, err)
	}
	r.Pruned, err = a.pruneHistory(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// pruneHistory removes the events older than the history retention that
// describe a deleted file (or no file: test events) and have no delivery
// left to make, with their deliveries and attempts. The events of stored
// files stay whatever their age, so a file's history is whole while the
// file exists.
func (a *App) pruneHistory(ctx context.Context) (int, error) {
	if a.cfg.HistoryRetention < 0 {
		return 0, nil
	}
	n, err := a.outbox.PruneEvents(ctx, a.cfg.Now().Add(-a.cfg.HistoryRetention), a.batchSize(), a.filesGone)
	if err != nil {
		return n, fmt.Errorf("cleanup: prune history: %w", err)
	}
	return n, nil
}

// filesGone reports which of fileIDs are deleted.
func (a *App) filesGone(ctx context.Context, fileIDs []string) (map[string]bool, error) {
	list, _ := json.Marshal(fileIDs)
	rows, err := a.db.R.QueryContext(ctx, `SELECT id FROM files WHERE status = 'deleted'
		AND id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	gone := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		gone[id] = true
	}
	return gone, rows.Err()
}

// expireBatch marks up to one batch of expired stored files deleted, in
// one transaction with their events, and returns their upload ids (whose
// bytes the caller removes next).
func (a *App) expireBatch(ctx context.Context) (uploads []string, notices int, more bool, err error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	limit := a.batchSize()
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, false, fmt.Errorf("cleanup: begin: %w", err)
	}
	defer tx.Rollback()
	files, err := queryFiles(ctx, tx, `SELECT `+fileColumns+` FROM files
		WHERE status = 'stored' AND expires_at <= ? ORDER BY expires_at, id LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return nil, 0, false, fmt.Errorf("cleanup: %w", err)
	}
	var expired []File
	for _, f := range files {
		// The invariant: never a file.deleted for an expiry without an
		// earlier-committed file.expiring. If the notifier has not given
		// the notice (downtime, a TTL shorter than its window, a schedule
		// that has not come round), it is given here, first.
		sent, err := a.noticeTx(ctx, tx, f, now)
		if err != nil {
			return nil, 0, false, fmt.Errorf("cleanup: file %s: %w", f.ID, err)
		}
		if sent {
			notices++
		}
		done, err := a.markDeletedTx(ctx, tx, f, now, PayloadActor{}, ReasonExpired)
		if err != nil {
			return nil, 0, false, fmt.Errorf("cleanup: file %s: %w", f.ID, err)
		}
		if done {
			uploads = append(uploads, f.UploadID)
			expired = append(expired, f)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, false, fmt.Errorf("cleanup: commit: %w", err)
	}
	if len(uploads) > 0 || notices > 0 {
		a.outbox.Committed()
		for _, f := range expired {
			a.log.Info("file expired", "file_id", f.ID, "upload_id", f.UploadID, "expires_at", rfc3339(f.ExpiresAt))
		}
	}
	a.batchDone(jobCleanup)
	return uploads, notices, len(uploads) == limit, nil
}

// markDeletedTx marks stored file f deleted and appends its file.deleted
// inside tx. It reports false when f was no longer stored (deleted
// meanwhile by someone else).
func (a *App) markDeletedTx(ctx context.Context, tx *sql.Tx, f File, now time.Time, actor PayloadActor, reason string) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE files SET status = 'deleted', deleted_at = ?, delete_reason = ?
		WHERE id = ? AND status = 'stored'`, now.UnixMilli(), reason, f.ID)
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

// deleteFile is step 1 of a user's or admin's deletion of file id: the
// row and its file.deleted (reason and actor from the request), committed.
// It reports false, without error, when the file was already deleted; the
// caller removes the bytes (step 2).
func (a *App) deleteFile(ctx context.Context, id string, actor PayloadActor, reason string) (File, bool, error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return File{}, false, fmt.Errorf("delete file %s: %w", id, err)
	}
	defer tx.Rollback()
	f, err := scanFile(tx.QueryRowContext(ctx, "SELECT "+fileColumns+" FROM files WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return File{}, false, ErrNotFound
	}
	if err != nil {
		return File{}, false, fmt.Errorf("delete file %s: %w", id, err)
	}
	done, err := a.markDeletedTx(ctx, tx, f, now, actor, reason)
	if err != nil || !done {
		return f, false, err
	}
	if err := tx.Commit(); err != nil {
		return File{}, false, fmt.Errorf("delete file %s: commit: %w", id, err)
	}
	a.outbox.Committed()
	a.log.Info("file deleted", "file_id", f.ID, "upload_id", f.UploadID, "reason", reason, "user_id", actor.UserID)
	f.Status, f.DeletedAt, f.DeleteReason = StatusDeleted, &now, reason
	return f, true, nil
}

// removeBytes is step 2: it removes a deleted file's upload from the
// store (nothing to do if it is gone already) and records that its bytes
// are gone.
func (a *App) removeBytes(ctx context.Context, uploadID string) error {
	if err := a.tus.Terminate(ctx, uploadID); err != nil {
		return fmt.Errorf("remove bytes of upload %s: %w", uploadID, err)
	}
	if _, err := a.db.W.ExecContext(ctx, `UPDATE files SET purged_at = ? WHERE upload_id = ? AND status = 'deleted'`,
		a.cfg.Now().UnixMilli(), uploadID); err != nil {
		return fmt.Errorf("record removal of upload %s: %w", uploadID, err)
	}
	return nil
}

// sweepStore finishes deletions whose bytes are still in the store (step 2
// after a crash or a failed removal) and removes incomplete uploads, and
// parts of concatenations (finished or not), not modified for
// Config.IncompleteTTL; their reservations go back to their owners.
// Complete uploads without a file row are left to the finalizing sweep.
// Both lists come from the database; the store is only asked about those
// uploads. Modification times are the files' (real) times, compared with
// the injected clock.
func (a *App) sweepStore(ctx context.Context) (leftovers, abandoned int, err error) {
	open, err := a.openUploads(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("cleanup: %w", err)
	}
	deleted, err := a.unpurged(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("cleanup: %w", err)
	}
	cutoff := a.cfg.Now().Add(-a.cfg.IncompleteTTL)
	stale := func(u tus.Upload) bool {
		return (u.IsPartial || !u.Complete()) && !u.ModifiedAt.IsZero() && u.ModifiedAt.Before(cutoff)
	}
	var errs []error
	described := a.tus.Describe(ctx, open)
	for _, u := range described {
		if ctx.Err() != nil {
			return leftovers, abandoned, ctx.Err()
		}
		if !stale(u) {
			continue // in progress, or complete and left to the finalizing sweep
		}
		// Checked again under the upload's lock: a client may resume it.
		removed, err := a.tus.TerminateIf(ctx, u.ID, stale)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleanup: remove abandoned upload %s: %w", u.ID, err))
			continue
		}
		if removed {
			abandoned++
			if err := a.releaseUpload(ctx, u.ID); err != nil {
				errs = append(errs, fmt.Errorf("cleanup: release upload %s: %w", u.ID, err))
			}
			a.log.Info("abandoned upload removed", "upload_id", u.ID, "partial", u.IsPartial,
				"offset", u.Offset, "size", u.Size, "modified_at", u.ModifiedAt.UTC())
		}
	}
	errs = append(errs, a.forgetVanished(ctx, open, described))
	for _, id := range deleted {
		if err := a.removeBytes(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		leftovers++
		a.log.Info("leftovers of a deletion removed", "upload_id", id)
	}
	return leftovers, abandoned, errors.Join(errs...)
}

// forgetVanished releases the recorded uploads in progress that the store
// no longer has (a removal cut short leaves an .info without data, which
// the store then removes; an upload gone altogether is forgotten), after
// checking again that no file row names them.
func (a *App) forgetVanished(ctx context.Context, open []string, described []tus.Upload) error {
	present := make(map[string]bool, len(described))
	for _, u := range described {
		present[u.ID] = true
	}
	var errs []error
	for _, id := range open {
		if present[id] {
			continue
		}
		if _, err := a.fileByUpload(ctx, id); err == nil {
			continue // finalized meanwhile
		}
		if err := a.tus.Terminate(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("cleanup: remove what is left of upload %s: %w", id, err))
			continue
		}
		if err := a.releaseUpload(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("cleanup: release upload %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// unpurged lists the uploads of deleted files whose bytes may still be in
// the store.
func (a *App) unpurged(ctx context.Context) ([]string, error) {
	rows, err := a.db.R.QueryContext(ctx, `SELECT upload_id FROM files WHERE status = 'deleted' AND purged_at IS NULL
		ORDER BY deleted_at LIMIT ?`, a.batchSize())
	return keyset.All(rows, err, keyset.String)
}

// preTerminate runs before tus terminates an upload (a client's DELETE on
// /files/{id}, already authorized). A finished upload is a stored file: it
// is deleted through the same path as DELETE /api/v1/files/{id} (row and
// file.deleted first; tus then removes the bytes, which it has locked).
func (a *App) preTerminate(ev handler.HookEvent) (handler.HTTPResponse, error) {
	ctx := context.WithoutCancel(orBackground(ev.Context))
	var id string
	err := a.db.R.QueryRowContext(ctx, "SELECT id FROM files WHERE upload_id = ?", ev.Upload.ID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return handler.HTTPResponse{}, nil // an upload, not a file yet
	}
	if err != nil {
		return handler.HTTPResponse{}, fmt.Errorf("terminate %s: %w", ev.Upload.ID, err)
	}
	f, err := a.getFile(ctx, id)
	if err != nil {
		return handler.HTTPResponse{}, fmt.Errorf("terminate %s: %w", ev.Upload.ID, err)
	}
	who := principalFrom(ev.Context).identity()
	reason := deleteReason(who, f)
	if _, done, err := a.deleteFile(ctx, id, identityActor(who), reason); err != nil {
		return handler.HTTPResponse{}, err
	} else if done {
		a.ops.record(ctx, who, "file.delete", "file_id", f.ID, "upload_id", f.UploadID, "reason", reason, "via_tus", true)
	}
	return handler.HTTPResponse{}, nil
}
