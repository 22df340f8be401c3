package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/doorito/portal/tus"
	"github.com/tus/tusd/v2/pkg/handler"
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

// runCleanup deletes expired files (and finishes deletions cut short),
// removes the bytes of deleted files still in the store, and removes incomplete uploads (and parts of
// concatenations) untouched for Config.IncompleteTTL. It carries on past
// a failure and returns every error; what failed is retried next run.
func (a *App) runCleanup(ctx context.Context) (cleanupResult, error) {
	var r cleanupResult
	var errs []error
	for {
		expired, notices, more, err := a.expireBatch(ctx)
		r.Expired += expired
		r.Notices += notices
		if err != nil {
			errs = append(errs, err)
			break
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

// sweepStore removes bytes that deleted files of earlier versions left in
// the store, and removes incomplete uploads, and
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
			if err := a.releaseUpload(ctx, tus.BaseID(u.ID)); err != nil {
				errs = append(errs, fmt.Errorf("cleanup: release upload %s: %w", u.ID, err))
			}
			a.log.Info("abandoned upload removed", "upload_id", u.ID, "partial", u.IsPartial,
				"offset", u.Offset, "size", u.Size, "modified_at", u.ModifiedAt.UTC())
		}
	}
	errs = append(errs, a.forgetVanished(ctx, open, described))
	for _, f := range deleted {
		if err := a.removeBytes(ctx, f); err != nil {
			errs = append(errs, err)
			continue
		}
		leftovers++
		a.log.Info("leftovers of a deletion removed", "file_id", f.ID, "upload_id", f.UploadID)
	}
	return leftovers, abandoned, errors.Join(errs...)
}

// forgetVanished releases the recorded uploads in progress that the store
// does not have (a removal cut short leaves an .info without data, which
// the store then removes; an upload gone altogether is forgotten). Only
// uploads created longer than Config.IncompleteTTL ago count, and only
// while the store answers: an upload whose record is written just before
// tus creates it, or a bucket that is down, must not look vanished.
func (a *App) forgetVanished(ctx context.Context, open []string, described []tus.Upload) error {
	if err := a.tus.Check(ctx); err != nil {
		return nil // retried by the next cleanup
	}
	present := make(map[string]bool, len(described))
	for _, u := range described {
		present[tus.BaseID(u.ID)] = true
	}
	cutoff := a.cfg.Now().Add(-a.cfg.IncompleteTTL).UnixMilli()
	var errs []error
	for _, id := range open {
		if present[id] {
			continue
		}
		var created int64
		if err := a.db.R.QueryRowContext(ctx, "SELECT created_at FROM uploads WHERE id = ?", id).Scan(&created); err != nil ||
			created >= cutoff {
			continue
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

// unpurged lists deleted files whose bytes may still be in the store.
func (a *App) unpurged(ctx context.Context) ([]File, error) {
	// INDEXED BY: the partial index holds only these files; without
	// statistics the planner would read every deleted file by status.
	return queryFiles(ctx, a.db.R, `SELECT `+fileColumns+` FROM files INDEXED BY files_unpurged
		WHERE status = 'deleted' AND purged_at IS NULL ORDER BY deleted_at LIMIT ?`, a.batchSize())
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
	// Step 1 here; tusd removes the bytes, and afterTerminate commits
	// file.deleted once it answered 204 (or the cleanup does).
	who := principalFrom(ev.Context).identity()
	reason := deleteReason(who, f)
	err = a.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := requestDeletionTx(ctx, tx, f, a.cfg.Now().UTC().Truncate(time.Millisecond),
			deleteRequest{Reason: reason, Actor: identityActor(who)})
		return err
	})
	if err != nil {
		return handler.HTTPResponse{}, fmt.Errorf("terminate %s: %w", ev.Upload.ID, err)
	}
	a.ops.record(ctx, who, "file.delete", "file_id", f.ID, "upload_id", f.UploadID, "reason", reason, "via_tus", true)
	return handler.HTTPResponse{}, nil
}
