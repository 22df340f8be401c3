package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// apiDeleteFile serves DELETE /api/v1/files/{id} (the owner or an admin):
// the row is marked deleted with its file.deleted (reason deleted_by_user,
// or deleted_by_admin for an admin deleting someone else's file), then the
// bytes are removed. Deleting a deleted file answers 204 again and emits
// nothing; an unknown file is 404.
func (a *App) apiDeleteFile(w http.ResponseWriter, r *http.Request) error {
	f, err := a.fileFromPath(r)
	if err != nil {
		return err
	}
	if err := a.deleteByRequest(r, f); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteByRequest deletes a stored file for the request's user (a file
// already deleted is left as it is): the file.deleted event names them,
// and the bytes go at once. The deletion finishes even if the client goes
// away.
func (a *App) deleteByRequest(r *http.Request, f File) error {
	if f.Status != StatusStored {
		return nil
	}
	ctx := context.WithoutCancel(r.Context())
	u := requestUser(r)
	_, done, err := a.deleteFile(ctx, f.ID, userActor(u), deleteReason(u, f))
	if err != nil {
		return err
	}
	if done {
		if err := a.removeBytes(ctx, f.UploadID); err != nil {
			// Committed already; the cleanup's next run removes them.
			a.log.Warn("delete file: bytes left for the cleanup", "file_id", f.ID, "err", err)
		}
	}
	return nil
}

// fileChange is the body of PATCH /api/v1/files/{id}: exactly one of
// expires_at (RFC 3339) and ttl (the file's lifetime from stored_at:
// whole seconds, as a number or a string, or a Go duration like "48h").
type fileChange struct {
	ExpiresAt *string         `json:"expires_at"`
	TTL       json.RawMessage `json:"ttl"`
}

const maxPatchBody = 16 << 10

// apiPatchFile serves PATCH /api/v1/files/{id} (admins): it sets a stored
// file's expiry and re-arms its file.expiring notice, so the notifier
// tells consumers the new expiry when it comes within the window. Admins
// are not held to --file-ttl-max; an expiry in the past makes the next
// cleanup delete the file (after its notice).
func (a *App) apiPatchFile(w http.ResponseWriter, r *http.Request) error {
	f, err := a.fileFromPath(r)
	if err != nil {
		return err
	}
	if !requestUser(r).IsAdmin() {
		return errDenied("changing a file's expiry needs the admin role")
	}
	var ch fileChange
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPatchBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ch); err != nil {
		return errBadRequest("invalid JSON body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBadRequest("invalid JSON body: more than one value")
	}
	expires, err := ch.expiresAt(f)
	if err != nil {
		return errBadRequest(err.Error())
	}
	if f.Status != StatusStored {
		return errFileDeleted()
	}
	res, err := a.db.W.ExecContext(r.Context(), `UPDATE files SET expires_at = ?, expiring_notified_at = NULL
		WHERE id = ? AND status = 'stored'`, expires.UnixMilli(), f.ID)
	if err != nil {
		return fmt.Errorf("change expiry of %s: %w", f.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errFileDeleted() // deleted meanwhile
	}
	a.log.Info("file expiry changed", "file_id", f.ID, "from", rfc3339(f.ExpiresAt), "to", rfc3339(expires),
		"user_id", requestUser(r).ID)
	f, err = a.getFile(r.Context(), f.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

func errFileDeleted() *Error {
	return &Error{Status: http.StatusConflict, Code: "file_deleted", Message: "the file was deleted"}
}

// expiresAt validates the change and returns the new expiry of f.
func (ch fileChange) expiresAt(f File) (time.Time, error) {
	hasTTL := len(ch.TTL) > 0 && !bytes.Equal(ch.TTL, []byte("null"))
	if (ch.ExpiresAt != nil) == hasTTL {
		return time.Time{}, errors.New(`send exactly one of "expires_at" and "ttl"`)
	}
	if ch.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *ch.ExpiresAt)
		if err != nil {
			return time.Time{}, errors.New("expires_at must be an RFC 3339 time like 2026-12-01T09:00:00Z")
		}
		t = t.UTC().Truncate(time.Millisecond)
		if t.Before(f.StoredAt) {
			return time.Time{}, errors.New("expires_at must not be before the file was stored")
		}
		return t, nil
	}
	s := string(ch.TTL)
	if ch.TTL[0] == '"' {
		if err := json.Unmarshal(ch.TTL, &s); err != nil {
			return time.Time{}, errors.New("ttl must be whole seconds or a duration like 48h")
		}
	}
	d, err := parseTTL(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("ttl: %v (whole seconds or a duration like 48h)", err)
	}
	return f.StoredAt.Add(d), nil
}
