package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/tus"
)

// FileQuery selects files for ListFiles.
type FileQuery struct {
	Status string // "", "stored" or "deleted"
	// Owner keeps one user's files, by username (it narrows an admin's
	// list; an uploader only ever sees their own).
	Owner string
	// Expiring keeps stored files that expire within the expiry notice
	// window.
	Expiring bool
	Cursor   string
	Limit    int
}

// ListFiles lists the files id may see, newest first.
func (o *Ops) ListFiles(ctx context.Context, id access.Identity, q FileQuery) (FilePage, error) {
	reach, err := o.check(id, access.FileRead)
	if err != nil {
		return FilePage{}, err
	}
	if q.Status != "" && q.Status != StatusStored && q.Status != StatusDeleted {
		return FilePage{}, invalid("status", "status must be stored or deleted")
	}
	if err := parseCursorID(q.Cursor); err != nil {
		return FilePage{}, err
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return FilePage{}, err
	}
	f := FileFilter{Status: q.Status, OwnerUsername: q.Owner, Cursor: q.Cursor, Limit: limit}
	if reach == access.Own {
		f.OwnerID, f.OwnerUsername = id.UserID, ""
	}
	if q.Expiring {
		by := o.a.cfg.Now().Add(o.a.expiringWindow())
		f.ExpiringBefore = &by
	}
	return o.a.listFiles(ctx, f)
}

// GetFile returns one file id may see.
func (o *Ops) GetFile(ctx context.Context, id access.Identity, fileID string) (File, error) {
	return o.fileFor(ctx, id, access.FileRead, fileID)
}

// fileFor loads file fileID for op, as not found when id may not reach it.
func (o *Ops) fileFor(ctx context.Context, id access.Identity, op access.Op, fileID string) (File, error) {
	if _, err := o.check(id, op); err != nil {
		return File{}, err
	}
	if err := checkUUID(fileID, "file"); err != nil {
		return File{}, err
	}
	f, err := o.a.getFile(ctx, fileID)
	if err != nil {
		return File{}, opError(err, "file")
	}
	if err := o.checkOwned(id, op, ownerIDOf(f), "file"); err != nil {
		return File{}, err
	}
	return f, nil
}

// FileByUpload returns the file a finished tus upload became.
func (o *Ops) FileByUpload(ctx context.Context, id access.Identity, uploadID string) (File, error) {
	if _, err := o.check(id, access.FileRead); err != nil {
		return File{}, err
	}
	f, err := o.a.fileByUpload(ctx, uploadID)
	if err != nil {
		return File{}, opError(err, "file")
	}
	if err := o.checkOwned(id, access.FileRead, ownerIDOf(f), "file"); err != nil {
		return File{}, err
	}
	return f, nil
}

// OpenFile returns a stored file with a reader of its bytes (the caller
// closes it).
func (o *Ops) OpenFile(ctx context.Context, id access.Identity, fileID string) (File, *tus.File, error) {
	f, err := o.fileFor(ctx, id, access.FileRead, fileID)
	if err != nil {
		return File{}, nil, err
	}
	if f.Status != StatusStored || f.deleteRequest != nil {
		return File{}, nil, &OpError{Kind: KindGone, Code: "gone", Message: "the file was deleted"}
	}
	fh, err := o.a.tus.OpenFile(ctx, fileLocation(f))
	if errors.Is(err, os.ErrNotExist) {
		return File{}, nil, &OpError{Kind: KindGone, Code: "gone", Message: "the file's bytes are gone"}
	}
	if errors.Is(err, tus.ErrStorageUnreachable) {
		return File{}, nil, &OpError{Kind: KindUnavailable, Code: "storage_unavailable",
			Message: "the storage holding the file cannot be reached; try again later"}
	}
	if err != nil {
		return File{}, nil, fmt.Errorf("open file %s: %w", f.ID, err)
	}
	return f, fh, nil
}

// DeleteFile deletes a stored file: the row is marked deleted with its
// file.deleted (reason deleted_by_user, or deleted_by_admin for an admin
// deleting someone else's file), then the bytes go. Deleting a deleted
// file changes nothing and is no error. It finishes even if ctx is
// cancelled (the client went away).
func (o *Ops) DeleteFile(ctx context.Context, id access.Identity, fileID string) error {
	f, err := o.fileFor(ctx, id, access.FileDelete, fileID)
	if err != nil || f.Status != StatusStored {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	reason := deleteReason(id, f)
	_, done, err := o.a.deleteFile(ctx, f.ID, identityActor(id), reason)
	if errors.Is(err, tus.ErrStorageUnreachable) {
		// Requested: the cleanup finishes it when the storage answers.
		o.record(ctx, id, "file.delete", "file_id", f.ID, "upload_id", f.UploadID, "reason", reason, "finished", false)
		return &OpError{Kind: KindUnavailable, Code: "storage_unavailable",
			Message: "the deletion is recorded; the storage cannot be reached now, and the file is removed when it can"}
	}
	if err != nil || !done {
		return err
	}
	o.record(ctx, id, "file.delete", "file_id", f.ID, "upload_id", f.UploadID, "reason", reason)
	return nil
}

// deleteReason is file.deleted's reason when id deletes f: an admin
// deleting someone else's (or an anonymous) file is deleted_by_admin.
func deleteReason(id access.Identity, f File) string {
	if id.Role == access.RoleAdmin && ownerIDOf(f) != id.UserID {
		return ReasonDeletedByAdmin
	}
	return ReasonDeletedByUser
}

// ExpiryChange sets a file's expiry: exactly one of an absolute time and
// a lifetime counted from when the file was stored.
type ExpiryChange struct {
	ExpiresAt *time.Time
	TTL       *time.Duration
}

// SetFileExpiry changes a stored file's expiry and re-arms its
// file.expiring notice, so consumers hear of the new expiry when it comes
// within the notice window. Admins are not held to --file-ttl-max; an
// expiry in the past makes the next cleanup delete the file (after its
// notice).
func (o *Ops) SetFileExpiry(ctx context.Context, id access.Identity, fileID string, ch ExpiryChange) (File, error) {
	f, err := o.fileFor(ctx, id, access.FileExpiry, fileID)
	if err != nil {
		return File{}, err
	}
	var expires time.Time
	switch {
	case (ch.ExpiresAt != nil) == (ch.TTL != nil):
		return File{}, invalid("", `send exactly one of "expires_at" and "ttl"`)
	case ch.ExpiresAt != nil:
		expires = ch.ExpiresAt.UTC().Truncate(time.Millisecond)
		if expires.Before(f.StoredAt) {
			return File{}, invalid("expires_at", "expires_at must not be before the file was stored")
		}
		if expires.Year() > 9999 {
			// RFC 3339 (and so every JSON answer naming the file) ends there.
			return File{}, invalid("expires_at", "expires_at must be before the year 10000")
		}
	default:
		if *ch.TTL <= 0 {
			return File{}, invalid("ttl", "ttl must be positive (whole seconds or a duration like 48h)")
		}
		expires = f.StoredAt.Add(*ch.TTL)
	}
	if f.Status != StatusStored {
		return File{}, errFileDeleted()
	}
	changed, err := o.a.setExpiry(ctx, f.ID, expires)
	if err != nil {
		return File{}, err
	}
	if !changed {
		return File{}, errFileDeleted() // deleted meanwhile
	}
	o.record(ctx, id, "file.expiry", "file_id", f.ID, "from", rfc3339(f.ExpiresAt), "to", rfc3339(expires))
	return o.a.getFile(ctx, f.ID)
}

func errFileDeleted() *OpError { return conflict("file_deleted", "the file was deleted") }

// FileEvents lists a file's events, newest first (at most 100), each with
// its deliveries.
func (o *Ops) FileEvents(ctx context.Context, id access.Identity, fileID string) ([]EventDetail, error) {
	f, err := o.fileFor(ctx, id, access.FileRead, fileID)
	if err != nil {
		return nil, err
	}
	page, err := o.a.outbox.List(ctx, outbox.EventFilter{FileID: f.ID, Limit: 100})
	if err != nil {
		return nil, err
	}
	return o.withDeliveries(ctx, page.Items)
}
