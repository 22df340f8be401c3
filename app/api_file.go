package app

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"

	"github.com/google/uuid"
)

// apiListFiles serves GET /api/v1/files?status=&limit=&cursor=.
func (a *App) apiListFiles(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return errBadRequest(err.Error())
	}
	status := q.Get("status")
	if status != "" && status != StatusStored && status != StatusDeleted {
		return errBadRequest("status must be stored or deleted")
	}
	cursor := q.Get("cursor")
	if cursor != "" {
		if _, err := uuid.Parse(cursor); err != nil {
			return errBadRequest("invalid cursor")
		}
	}
	filter := FileFilter{Status: status, Cursor: cursor, Limit: limit}
	u := requestUser(r)
	if u == nil {
		return errNoAuth("authentication required")
	}
	if !u.IsAdmin() {
		filter.OwnerID = u.ID // uploaders list their own files
	}
	page, err := a.listFiles(r.Context(), filter)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// fileFromPath loads the file named by the {id} path value.
func (a *App) fileFromPath(r *http.Request) (File, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return File{}, errBadRequest("file id must be a UUID")
	}
	f, err := a.getFile(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return File{}, errNotFound("file")
	}
	if err == nil && !mayAccessFile(requestUser(r), f) {
		return File{}, errNotFound("file") // someone else's file: as if it did not exist
	}
	return f, err
}

// apiGetFile serves GET /api/v1/files/{id}.
func (a *App) apiGetFile(w http.ResponseWriter, r *http.Request) error {
	f, err := a.fileFromPath(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// apiFileContent serves GET /api/v1/files/{id}/content: the stored bytes,
// with range requests, under the file's name.
func (a *App) apiFileContent(w http.ResponseWriter, r *http.Request) error {
	f, err := a.fileFromPath(r)
	if err != nil {
		return err
	}
	if f.Status != StatusStored {
		return &Error{Status: http.StatusGone, Code: "gone", Message: "the file was deleted"}
	}
	fh, err := a.tus.Open(r.Context(), f.UploadID)
	if errors.Is(err, os.ErrNotExist) {
		return &Error{Status: http.StatusGone, Code: "gone", Message: "the file's bytes are gone"}
	}
	if err != nil {
		return fmt.Errorf("open file %s: %w", f.ID, err)
	}
	defer fh.Close()
	w.Header().Set("Content-Type", f.ContentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Digest", "sha-256="+f.SHA256)
	http.ServeContent(w, r, "", f.StoredAt, fh)
	return nil
}
