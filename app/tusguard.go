package app

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/tus"
)

// The tus endpoint's guard: tusd has no per-upload authorization, so the
// portal records who created each upload and asks the access policy before
// tusd sees a request.

// guardUploads wraps the tus handler (mounted with /files/ stripped):
// tusd has no per-upload authorization, so this checks who may create an
// upload and who may touch an existing one; it also keeps the free-space
// reserve and the accounting of uploads the tus protocol changes.
func (a *App) guardUploads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		// tusd honours the override, so the check must too.
		if o := r.Header.Get("X-HTTP-Method-Override"); method == http.MethodPost && o != "" {
			method = o
		}
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r) // CORS preflight carries no credentials
			return
		}
		if e := a.authorizeUpload(r, method); e != nil {
			a.deny(w, r, e)
			return
		}
		if method == http.MethodPost || method == http.MethodPatch {
			if e := a.checkFreeSpace(); e != nil {
				a.deny(w, r, e)
				return
			}
		}
		id := strings.Trim(r.URL.Path, "/")
		switch method {
		case http.MethodGet:
			next.ServeHTTP(&cleanDisposition{ResponseWriter: w}, r)
		case http.MethodPatch:
			a.patchUpload(w, r, id, next)
		case http.MethodDelete:
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			if rec.status == http.StatusNoContent {
				a.afterTerminate(context.WithoutCancel(r.Context()), id)
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// afterTerminate records a client's tus DELETE: an upload in progress
// gives its reservation back; a finished upload's file had its deletion
// requested by preTerminate, and with its bytes gone now, file.deleted is
// committed.
func (a *App) afterTerminate(ctx context.Context, uploadID string) {
	if err := a.releaseUpload(ctx, tus.BaseID(uploadID)); err != nil {
		a.log.Warn("terminate: release upload", "upload_id", uploadID, "err", err)
	}
	f, err := a.fileByUpload(ctx, uploadID)
	if err != nil || f.deleteRequest == nil {
		return
	}
	if _, err := a.finishDeletions(ctx, []File{f}); err != nil {
		a.log.Warn("terminate: the cleanup finishes the deletion", "file_id", f.ID, "err", err)
	}
}

// patchUpload passes a PATCH to tus. For an upload whose length is
// deferred, what it brings is checked against its owner's quota first (the
// length it declares, or the body it sends), and the bytes it stored are
// reserved after.
func (a *App) patchUpload(w http.ResponseWriter, r *http.Request, id string, next http.Handler) {
	up, err := a.uploadRecord(r.Context(), tus.BaseID(id))
	if err != nil || up.length != nil {
		next.ServeHTTP(w, r) // a known length was reserved at creation
		return
	}
	declared, _ := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	need := declared - up.received
	if declared == 0 {
		need = r.ContentLength
	}
	if need > 0 {
		if e := a.fitsQuota(r.Context(), up, need); e != nil {
			a.writeError(w, r, e)
			return
		}
	}
	rec := &statusRecorder{ResponseWriter: w}
	next.ServeHTTP(rec, r)
	offset, err := strconv.ParseInt(rec.Header().Get("Upload-Offset"), 10, 64)
	if err != nil || rec.status >= 300 && rec.status != http.StatusServiceUnavailable {
		return
	}
	if err := a.recordReceived(context.WithoutCancel(r.Context()), up, offset, declared); err != nil {
		a.log.Warn("record received bytes", "upload_id", id, "err", err)
	}
}

// checkFreeSpace refuses new bytes when the data directory's free space is
// below the reserve: 507, which tus clients retry.
func (a *App) checkFreeSpace() *Error {
	free, err := freeSpace(a.cfg.DataDir)
	if err != nil || a.cfg.MinFreeSpace <= 0 || free >= a.cfg.MinFreeSpace {
		return nil
	}
	return &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage",
		Message: fmt.Sprintf("the portal keeps %s of its storage free and has %s left; try again later",
			fmtBytes(a.cfg.MinFreeSpace), fmtBytes(free))}
}

// cleanDisposition rewrites the Content-Disposition tusd sends with a
// download (it quotes the client's raw filename, "../../x" included) to the
// cleaned name the API serves. It keeps Unwrap for http.ResponseController.
type cleanDisposition struct {
	http.ResponseWriter
	done bool
}

func (c *cleanDisposition) WriteHeader(code int) {
	if !c.done {
		c.done = true
		if v := c.Header().Get("Content-Disposition"); v != "" {
			c.Header().Set("Content-Disposition", cleanTusDisposition(v))
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *cleanDisposition) Write(b []byte) (int, error) {
	if !c.done {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

func (c *cleanDisposition) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// cleanTusDisposition turns tusd's `inline;filename="<Go-quoted name>"`
// into the disposition with the name cleanFilename makes of it.
func cleanTusDisposition(v string) string {
	disp, quoted, found := strings.Cut(v, ";filename=")
	if disp != "inline" {
		disp = "attachment"
	}
	if !found {
		return disp
	}
	name, err := strconv.Unquote(quoted)
	if err != nil {
		return disp
	}
	return mime.FormatMediaType(disp, map[string]string{"filename": cleanFilename(name)})
}

// authorizeUpload applies the policy to a tus request: creation
// (UploadCreate), HEAD/PATCH/DELETE (UploadWrite) or GET (UploadRead) of
// an upload the policy lets the client reach.
func (a *App) authorizeUpload(r *http.Request, method string) *Error {
	p := principalFrom(r.Context())
	if p.user != nil || p.bad || !a.cfg.AnonymousUploads {
		if e := a.needUser(r, p); e != nil {
			return e
		}
	}
	id := strings.Trim(r.URL.Path, "/")
	if id == "" {
		if method != http.MethodPost {
			return nil // tusd answers 405
		}
		if _, err := a.ops.policy.Check(p.identity(), access.UploadCreate); err != nil {
			return apiError(opError(err, ""))
		}
		if e := checkCreation(r, a.cfg.IETFDraft); e != nil {
			return e
		}
		return a.authorizeConcat(r, p)
	}
	if !a.tus.ValidID(id) {
		// Not an id this store issues: nothing to look up, on disk or off.
		return errNotFound("upload")
	}
	op := access.UploadWrite
	if method == http.MethodGet {
		op = access.UploadRead
	}
	return a.authorizeUploadID(r, p, id, op)
}

// checkCreation refuses what tusd v2.10.1 mishandles in a creation:
//   - under the IETF draft, a Content-Type or Content-Disposition that does
//     not parse: tusd passes mime's error on, which it answers with a 500;
//   - more bytes than the Upload-Length declares: tusd creates the upload,
//     then answers 413 without its Location, an upload its client never
//     learns of (complete if it declared 0 bytes, so the sweep would make
//     it a file).
func checkCreation(r *http.Request, ietfDraft bool) *Error {
	if ietfDraft && slices.Contains([]string{"3", "4", "5", "6"}, r.Header.Get("Upload-Draft-Interop-Version")) {
		for _, h := range []string{"Content-Type", "Content-Disposition"} {
			if v := r.Header.Get(h); v != "" {
				if _, _, err := mime.ParseMediaType(v); err != nil {
					return errBadRequest(h + " does not parse: " + err.Error())
				}
			}
		}
	}
	if r.Header.Get("Content-Type") != "application/offset+octet-stream" || r.ContentLength <= 0 {
		return nil
	}
	n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
	if err != nil || r.ContentLength <= n {
		return nil // tusd refuses a bad Upload-Length itself
	}
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
		Message: fmt.Sprintf("the request carries %d bytes, more than its Upload-Length of %d", r.ContentLength, n)}
}

// maxConcatParts bounds the partial uploads one concatenation may name.
const maxConcatParts = 100

// authorizeConcat checks the partial uploads a concatenation names: each a
// valid id, named once (a partial named a thousand times would make a file
// a thousand times its size), at most maxConcatParts, and each owned by the
// client.
func (a *App) authorizeConcat(r *http.Request, p principal) *Error {
	parts := concatParts(r.Header.Get("Upload-Concat"), a.tusBasePath())
	if len(parts) > maxConcatParts {
		return errBadRequest(fmt.Sprintf("a concatenation may name at most %d partial uploads", maxConcatParts))
	}
	seen := make(map[string]bool, len(parts))
	for _, part := range parts {
		if !a.tus.ValidID(part) {
			return errNotFound("partial upload")
		}
		if seen[part] {
			return errBadRequest("a partial upload may appear only once in a concatenation")
		}
		seen[part] = true
		if e := a.authorizeUploadID(r, p, part, access.UploadWrite); e != nil {
			return e
		}
	}
	return nil
}

func (a *App) authorizeUploadID(r *http.Request, p principal, id string, op access.Op) *Error {
	o, err := ownerOfUpload(r.Context(), a.db.R, tus.BaseID(id))
	if err != nil {
		a.log.Error("upload owner", "upload_id", id, "err", err)
		return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	owner := ""
	if o.UserID != nil {
		owner = *o.UserID
	}
	err = a.ops.policy.CheckOwned(p.identity(), op, owner)
	if errors.Is(err, access.ErrHidden) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "upload not found"}
	}
	if err != nil {
		return apiError(opError(err, "upload"))
	}
	return nil
}

// tusBasePath is the base path tusd was configured with (it resolves
// Upload-Concat URLs against it).
func (a *App) tusBasePath() string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL + "/files/"
	}
	return "/files/"
}

// concatParts returns the upload ids of an Upload-Concat: final;... header,
// extracted the way tusd does.
func concatParts(header, basePath string) []string {
	list, ok := strings.CutPrefix(header, "final;")
	if !ok {
		return nil
	}
	var ids []string
	for _, v := range strings.Split(list, " ") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		_, id, found := strings.Cut(v, basePath)
		if !found {
			continue // tusd refuses it
		}
		ids = append(ids, strings.Trim(id, "/"))
	}
	return ids
}
