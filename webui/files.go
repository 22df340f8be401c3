package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ttlChoice is one option of the upload page's "keep files for".
type ttlChoice struct {
	Value   string // seconds, sent as tus metadata "ttl"; "" for the default
	Label   string
	Default bool
}

// ttlChoices offers the default and common lifetimes up to max.
func ttlChoices(def, max time.Duration) []ttlChoice {
	out := []ttlChoice{{Value: "", Label: "default (" + humanDuration(def) + ")", Default: true}}
	for _, d := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour} {
		if d == def || max > 0 && d > max {
			continue
		}
		out = append(out, ttlChoice{Value: strconv.FormatInt(int64(d/time.Second), 10), Label: humanDuration(d)})
	}
	return out
}

func (u *UI) limits() Limits {
	var l Limits
	if u.be.Limits != nil {
		l = u.be.Limits()
	}
	if l.ExpiringWithin <= 0 {
		l.ExpiringWithin = 24 * time.Hour
	}
	return l
}

func (u *UI) uploadPage(w http.ResponseWriter, r *http.Request, user *User) {
	l := u.limits()
	note := ""
	if l.MaxUploadSize > 0 {
		note = "Files up to " + formatBytes(l.MaxUploadSize) + "."
	}
	u.render(w, r, http.StatusOK, "upload", view{Title: "Upload", Nav: "upload", User: user, Data: map[string]any{
		"Limits":  l,
		"TTLs":    ttlChoices(l.DefaultTTL, l.MaxTTL),
		"Note":    note,
		"Bundled": u.assets.url("dist/upload.js") != "",
	}})
}

// uploadResult is what the upload page shows for a finished upload.
type uploadResult struct {
	ID        string    `json:"id"`
	Filename  string    `json:"filename"`
	SizeBytes int64     `json:"size_bytes"`
	SHA256    string    `json:"sha256"`
	ExpiresAt time.Time `json:"expires_at"`
	URL       string    `json:"url"`
}

// uploadLookup serves GET /ui/api/uploads/{id}: the file a finished tus
// upload became, for the upload page's list (the tus response carries
// only the upload URL).
func (u *UI) uploadLookup(w http.ResponseWriter, r *http.Request) {
	writeJSON := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	writeErr := func(status int, code, msg string) {
		writeJSON(status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
	}
	if u.be.CurrentUser(r) == nil {
		writeErr(http.StatusUnauthorized, "unauthorized", "sign in first")
		return
	}
	if u.be.FileByUpload == nil {
		writeErr(http.StatusNotFound, "not_found", "file lookup is not available")
		return
	}
	f, err := u.be.FileByUpload(r, r.PathValue("id"))
	var e *Error
	switch {
	case errors.As(err, &e):
		writeErr(e.Status, "bad_request", e.Message)
		return
	case errors.Is(err, ErrNotFound):
		writeErr(http.StatusNotFound, "not_found", "no stored file for this upload (yet)")
		return
	case err != nil:
		u.log.Error("webui: upload lookup", "err", err)
		writeErr(http.StatusInternalServerError, "internal", "internal error")
		return
	}
	writeJSON(http.StatusOK, uploadResult{ID: f.ID, Filename: f.Filename, SizeBytes: f.SizeBytes, SHA256: f.SHA256,
		ExpiresAt: f.ExpiresAt, URL: "/ui/files/" + f.ID})
}

const pageSize = 50

// pageLimit reads a page size of 1 to 500; anything else is the default.
func pageLimit(s string) int {
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 500 {
		return n
	}
	return pageSize
}

func (u *UI) filesPage(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.ListFiles == nil {
		u.renderError(w, r, http.StatusNotFound, "Listing files is not available in this build.")
		return
	}
	qs := r.URL.Query()
	q := FileQuery{Status: qs.Get("status"), Owner: qs.Get("owner"), Expiring: qs.Get("expiring") != "",
		Cursor: qs.Get("cursor"), Limit: pageLimit(qs.Get("limit"))}
	if !user.Admin() {
		q.Owner = ""
	}
	page, err := u.be.ListFiles(r, q)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	filter := url.Values{}
	for k, v := range map[string]string{"status": q.Status, "owner": q.Owner} {
		if v != "" {
			filter.Set(k, v)
		}
	}
	if q.Expiring {
		filter.Set("expiring", "1")
	}
	if q.Limit != pageSize {
		filter.Set("limit", strconv.Itoa(q.Limit))
	}
	data := map[string]any{
		"Query":    q,
		"Page":     page,
		"Window":   u.limits().ExpiringWithin,
		"Filtered": q.Status != "" || q.Owner != "" || q.Expiring,
		"FirstURL": withQuery("/ui/files", filter, ""),
		"NextURL":  "",
	}
	if page.NextCursor != "" {
		data["NextURL"] = withQuery("/ui/files", filter, page.NextCursor)
	}
	u.render(w, r, http.StatusOK, "files", view{Title: "Files", Nav: "files", User: user, Data: data})
}

// withQuery returns path with the filter and cursor as its query.
func withQuery(path string, filter url.Values, cursor string) string {
	q := url.Values{}
	for k, v := range filter {
		q[k] = v
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func (u *UI) filePage(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.GetFile == nil {
		u.renderError(w, r, http.StatusNotFound, "File details are not available in this build.")
		return
	}
	f, err := u.be.GetFile(r, r.PathValue("id"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	var events []Event
	if u.be.FileEvents != nil {
		if events, err = u.be.FileEvents(r, f.ID); err != nil {
			u.fail(w, r, err)
			return
		}
	}
	u.render(w, r, http.StatusOK, "file", view{Title: f.Filename, Nav: "files", User: user, Data: map[string]any{
		"File":      f,
		"Events":    events,
		"Timeline":  fileTimeline(f, events),
		"CanDelete": u.be.DeleteFile != nil,
	}})
}

func (u *UI) deleteFile(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.DeleteFile == nil {
		u.renderError(w, r, http.StatusNotFound, "Deleting files is not available in this build.")
		return
	}
	id := r.PathValue("id")
	if err := u.be.DeleteFile(r, id); err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, "/ui/files/"+url.PathEscape(id), "The file was deleted.")
}

// formatBytes writes n bytes in binary units.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// humanDuration writes d in the largest whole unit that fits: "7 days",
// "36 hours", "90 minutes".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case d <= 0:
		return "0 seconds"
	case d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	case d < time.Minute:
		return plural(int64(d/time.Second), "second")
	}
	return d.Round(time.Second).String()
}
