package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"
)

// apiListFiles serves GET /api/v1/files?status=&owner=&expiring=&limit=&cursor=.
func (a *App) apiListFiles(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	expiring, err := queryBool(q, "expiring")
	if err != nil {
		return err
	}
	page, err := a.ops.ListFiles(r.Context(), requestIdentity(r), FileQuery{Status: q.Get("status"),
		Owner: q.Get("owner"), Expiring: expiring, Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// apiGetFile serves GET /api/v1/files/{id}.
func (a *App) apiGetFile(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "file")
	if err != nil {
		return err
	}
	f, err := a.ops.GetFile(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// apiFileContent serves GET /api/v1/files/{id}/content: the stored bytes,
// with range requests, under the file's name.
func (a *App) apiFileContent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "file")
	if err != nil {
		return err
	}
	f, fh, err := a.ops.OpenFile(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	defer fh.Close()
	w.Header().Set("Content-Type", f.ContentType)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	w.Header().Set("Digest", "sha-256="+f.SHA256)
	http.ServeContent(&rangeRefusal{ResponseWriter: w}, r, "", f.StoredAt, fh)
	return nil
}

// rangeRefusal gives http.ServeContent's refusal of a Range (416, with a
// plain-text body) the API's JSON error body.
type rangeRefusal struct {
	http.ResponseWriter
	refused bool
}

func (rr *rangeRefusal) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable {
		rr.ResponseWriter.WriteHeader(code)
		return
	}
	rr.refused = true
	writeJSON(rr.ResponseWriter, code, map[string]*Error{"error": {Status: code, Code: "bad_range",
		Message: "the Range header asks for no bytes of this file"}})
}

func (rr *rangeRefusal) Write(b []byte) (int, error) {
	if rr.refused {
		return len(b), nil // ServeContent's text; the JSON is written
	}
	return rr.ResponseWriter.Write(b)
}

// apiDeleteFile serves DELETE /api/v1/files/{id}: 204, also for a file
// deleted before.
func (a *App) apiDeleteFile(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "file")
	if err != nil {
		return err
	}
	if err := a.ops.DeleteFile(r.Context(), requestIdentity(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// fileChange is the body of PATCH /api/v1/files/{id}: exactly one of
// expires_at (RFC 3339) and ttl (the file's lifetime from stored_at:
// whole seconds, as a number or a string, or a Go duration like "48h").
type fileChange struct {
	ExpiresAt *string         `json:"expires_at"`
	TTL       json.RawMessage `json:"ttl"`
}

// expiryChange decodes the change.
func (ch fileChange) expiryChange() (ExpiryChange, error) {
	var out ExpiryChange
	if ch.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *ch.ExpiresAt)
		if err != nil {
			return out, errBadRequest("expires_at must be an RFC 3339 time like 2026-12-01T09:00:00Z")
		}
		out.ExpiresAt = &t
	}
	if len(ch.TTL) > 0 && !bytes.Equal(ch.TTL, []byte("null")) {
		s := string(ch.TTL)
		if ch.TTL[0] == '"' {
			if err := json.Unmarshal(ch.TTL, &s); err != nil {
				return out, errBadRequest("ttl must be whole seconds or a duration like 48h")
			}
		}
		d, err := parseTTL(s)
		if err != nil {
			return out, errBadRequest(fmt.Sprintf("ttl: %v (whole seconds or a duration like 48h)", err))
		}
		out.TTL = &d
	}
	return out, nil
}

// apiPatchFile serves PATCH /api/v1/files/{id} (admins): the file's expiry.
func (a *App) apiPatchFile(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "file")
	if err != nil {
		return err
	}
	var ch fileChange
	if err := decodeJSON(w, r, &ch, false); err != nil {
		return err
	}
	change, err := ch.expiryChange()
	if err != nil {
		return err
	}
	f, err := a.ops.SetFileExpiry(r.Context(), requestIdentity(r), id, change)
	if errors.Is(err, ErrNotFound) {
		return errNotFound("file")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}
