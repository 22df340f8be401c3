package app

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/webui"
	"github.com/google/uuid"
)

// The web UI (package webui) renders pages; this file is its adapter: it
// fills webui.Backend with functions over the App's stores, applying the
// same access rules as the JSON API (uploaders see their own files, admin
// pages need the admin role).

// defaultExpiringWindow is the files page's "expiring soon" when no
// expiry notice window is configured.
const defaultExpiringWindow = 24 * time.Hour

// newWebUI builds the web UI over this App.
func (a *App) newWebUI() *webui.UI {
	return webui.MustNew(webui.Config{
		Version:     a.cfg.Version,
		Backend:     a.uiBackend(),
		CrossOrigin: a.auth.cop,
		Logger:      a.log.With("component", "webui"),
		Now:         a.cfg.Now,
	})
}

// uiLoginPage serves GET /login: the web UI's sign-in form.
func (a *App) uiLoginPage(ui *webui.UI) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ui.RenderLogin(w, r, http.StatusOK, "")
	})
}

func (a *App) uiBackend() webui.Backend {
	return webui.Backend{
		CurrentUser:    func(r *http.Request) *webui.User { return uiUser(requestUser(r)) },
		Limits:         a.uiLimits,
		ListFiles:      a.uiListFiles,
		GetFile:        a.uiGetFile,
		FileByUpload:   a.uiFileByUpload,
		DeleteFile:     a.uiDeleteFile,
		FileEvents:     a.uiFileEvents,
		ListEvents:     a.uiListEvents,
		GetEvent:       a.uiGetEvent,
		RetryDelivery:  a.uiRetryDelivery,
		ListDeliveries: a.uiListDeliveries,
		EventTypes:     append(slices.Clone(subscribableEventTypes), EventPortalTest),
		DeliveryStatus: []string{outbox.StatusPending, outbox.StatusDelivering, outbox.StatusSucceeded,
			outbox.StatusFailed, outbox.StatusCancelled},
		ListEndpoints:   a.uiListEndpoints,
		GetEndpoint:     a.uiGetEndpoint,
		CreateEndpoint:  a.uiCreateEndpoint,
		UpdateEndpoint:  a.uiUpdateEndpoint,
		SetEndpointOn:   a.uiSetEndpointOn,
		RotateSecret:    a.uiRotateSecret,
		TestEndpoint:    a.uiTestEndpoint,
		ReplayEndpoint:  a.uiReplayEndpoint,
		DeleteEndpoint:  a.uiDeleteEndpoint,
		EndpointEvents:  subscribableEventTypes,
		DashboardCounts: a.uiDashboard,
		ListUsers:       a.uiListUsers,
		CreateUser:      a.uiCreateUser,
		UpdateUser:      a.uiUpdateUser,
		DeleteUser:      a.uiDeleteUser,
		ListTokens:      a.uiListTokens,
		CreateToken:     a.uiCreateToken,
		RevokeToken:     a.uiRevokeToken,
	}
}

// uiError turns the App's errors into ones the pages show as they are.
func uiError(err error) error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		if e.Status == http.StatusNotFound {
			return webui.ErrNotFound
		}
		return &webui.Error{Status: e.Status, Message: e.Message}
	case errors.Is(err, ErrNotFound), errors.Is(err, outbox.ErrNotFound):
		return webui.ErrNotFound
	case errors.Is(err, ErrLastAdmin), errors.Is(err, ErrUserExists):
		return &webui.Error{Status: http.StatusConflict, Message: err.Error()}
	}
	var ve *outbox.ValidationError
	var ce *outbox.ConflictError
	switch {
	case errors.As(err, &ve):
		return &webui.Error{Status: http.StatusBadRequest, Message: err.Error()}
	case errors.As(err, &ce):
		return &webui.Error{Status: http.StatusConflict, Message: err.Error()}
	}
	return err
}

func uiBadRequest(msg string) error { return &webui.Error{Status: http.StatusBadRequest, Message: msg} }

func uiUser(u *User) *webui.User {
	if u == nil {
		return nil
	}
	return &webui.User{ID: u.ID, Username: u.Username, Role: u.Role, Disabled: u.Disabled, CreatedAt: u.CreatedAt}
}

func (a *App) uiLimits() webui.Limits {
	return webui.Limits{MaxUploadSize: a.cfg.MaxUploadSize, DefaultTTL: a.cfg.FileTTL, MaxTTL: a.cfg.FileTTLMax,
		ExpiringWithin: a.expiringWindow()}
}

// expiringWindow is what "expiring soon" means on the pages: the expiry
// notice window.
func (a *App) expiringWindow() time.Duration {
	if a.cfg.ExpiryNotifyBefore > 0 {
		return a.cfg.ExpiryNotifyBefore
	}
	return defaultExpiringWindow
}

func uiFile(f File) webui.File {
	owner := ""
	if f.OwnerUsername != nil {
		owner = *f.OwnerUsername
	}
	return webui.File{ID: f.ID, UploadID: f.UploadID, Filename: f.Filename, ContentType: f.ContentType,
		SizeBytes: f.SizeBytes, SHA256: f.SHA256, Status: f.Status, Owner: owner, Metadata: f.Metadata,
		StoredAt: f.StoredAt, ExpiresAt: f.ExpiresAt, DeletedAt: f.DeletedAt, DeleteReason: f.DeleteReason}
}

// uiListFiles lists files for the files page: uploaders see their own,
// admins everyone's, optionally one owner's; "expiring" keeps stored
// files whose expiry falls within the window.
func (a *App) uiListFiles(r *http.Request, q webui.FileQuery) (webui.FilePage, error) {
	u := requestUser(r)
	if u == nil {
		return webui.FilePage{}, webui.ErrNotFound
	}
	if q.Status != "" && q.Status != StatusStored && q.Status != StatusDeleted {
		return webui.FilePage{}, uiBadRequest("Status must be stored or deleted.")
	}
	if q.Cursor != "" {
		if _, err := uuid.Parse(q.Cursor); err != nil {
			return webui.FilePage{}, uiBadRequest("That page link is not valid.")
		}
	}
	f := FileFilter{Status: q.Status, Cursor: q.Cursor, Limit: q.Limit}
	if !u.IsAdmin() {
		f.OwnerID = u.ID
	} else {
		f.OwnerUsername = q.Owner
	}
	if q.Expiring {
		by := a.cfg.Now().Add(a.expiringWindow())
		f.ExpiringBefore = &by
	}
	files, err := a.listFiles(r.Context(), f)
	if err != nil {
		return webui.FilePage{}, err
	}
	page := webui.FilePage{Items: make([]webui.File, 0, len(files.Items)), NextCursor: files.NextCursor}
	for _, f := range files.Items {
		page.Items = append(page.Items, uiFile(f))
	}
	return page, nil
}

// uiGetFile returns a file its user may see; anything else is not found.
func (a *App) uiGetFile(r *http.Request, id string) (webui.File, error) {
	if _, err := uuid.Parse(id); err != nil {
		return webui.File{}, webui.ErrNotFound
	}
	f, err := a.getFile(r.Context(), id)
	if err != nil {
		return webui.File{}, uiError(err)
	}
	if !mayAccessFile(requestUser(r), f) {
		return webui.File{}, webui.ErrNotFound
	}
	return uiFile(f), nil
}

// uiFileByUpload returns the file a finished tus upload became.
func (a *App) uiFileByUpload(r *http.Request, uploadID string) (webui.File, error) {
	f, err := scanFile(a.db.R.QueryRowContext(r.Context(), "SELECT "+fileColumns+" FROM files WHERE upload_id = ?", uploadID))
	if errors.Is(err, sql.ErrNoRows) {
		return webui.File{}, webui.ErrNotFound
	}
	if err != nil {
		return webui.File{}, fmt.Errorf("file of upload: %w", err)
	}
	if !mayAccessFile(requestUser(r), f) {
		return webui.File{}, webui.ErrNotFound
	}
	return uiFile(f), nil
}

func uiEvent(ev outbox.Event) webui.Event {
	return webui.Event{ID: ev.ID, Type: ev.Type, FileID: ev.FileID, CreatedAt: ev.CreatedAt, Payload: ev.Payload}
}

// uiFileEvents lists a file's events, newest first (the caller checked
// the file is visible).
func (a *App) uiFileEvents(r *http.Request, fileID string) ([]webui.Event, error) {
	page, err := a.outbox.List(r.Context(), outbox.EventFilter{FileID: fileID, Limit: 100})
	if err != nil {
		return nil, err
	}
	out := make([]webui.Event, 0, len(page.Items))
	for _, ev := range page.Items {
		e, err := a.uiWithDeliveries(r.Context(), uiEvent(ev))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (a *App) uiListEvents(r *http.Request, q webui.EventQuery) (webui.EventPage, error) {
	if q.FileID != "" {
		if _, err := uuid.Parse(q.FileID); err != nil {
			return webui.EventPage{}, uiBadRequest("The file id must be a UUID.")
		}
	}
	page, err := a.outbox.List(r.Context(), outbox.EventFilter{Type: q.Type, FileID: q.FileID, Cursor: q.Cursor, Limit: q.Limit})
	if errors.Is(err, outbox.ErrBadCursor) {
		return webui.EventPage{}, uiBadRequest("That page link is not valid.")
	}
	if err != nil {
		return webui.EventPage{}, err
	}
	out := webui.EventPage{Items: make([]webui.Event, 0, len(page.Items)), NextCursor: page.NextCursor}
	for _, ev := range page.Items {
		e, err := a.uiWithDeliveries(r.Context(), uiEvent(ev))
		if err != nil {
			return webui.EventPage{}, err
		}
		out.Items = append(out.Items, e)
	}
	return out, nil
}

func (a *App) uiGetEvent(r *http.Request, id string) (webui.Event, error) {
	if _, err := uuid.Parse(id); err != nil {
		return webui.Event{}, webui.ErrNotFound
	}
	ev, err := a.outbox.Get(r.Context(), id)
	if err != nil {
		return webui.Event{}, uiError(err)
	}
	return a.uiWithDeliveries(r.Context(), uiEvent(ev))
}

// uiDashboard counts what the admin overview shows.
func (a *App) uiDashboard(r *http.Request) (webui.Dashboard, error) {
	ctx := r.Context()
	var d webui.Dashboard
	rows, err := a.db.R.QueryContext(ctx, "SELECT status, COUNT(*), COALESCE(SUM(size_bytes), 0) FROM files GROUP BY status")
	if err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n, size int64
		if err := rows.Scan(&status, &n, &size); err != nil {
			return d, fmt.Errorf("dashboard: %w", err)
		}
		switch status {
		case StatusStored:
			d.FilesStored, d.BytesStored = n, size
		case StatusDeleted:
			d.FilesDeleted = n
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	counts := []struct {
		dst   *int64
		query string
		args  []any
	}{
		{&d.ExpiringSoon, "SELECT COUNT(*) FROM files WHERE status = ? AND expires_at <= ?",
			[]any{StatusStored, a.cfg.Now().Add(a.expiringWindow()).UnixMilli()}},
	}
	for _, c := range counts {
		if err := a.db.R.QueryRowContext(ctx, c.query, c.args...).Scan(c.dst); err != nil {
			return d, fmt.Errorf("dashboard: %w", err)
		}
	}
	if err := a.db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM users").Scan(&d.Users); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	// Only uploads without a file row can be in progress.
	unrecorded, _, err := a.storeUploads(ctx)
	if err != nil {
		return d, fmt.Errorf("dashboard: uploads: %w", err)
	}
	for _, up := range a.tus.Describe(ctx, unrecorded) {
		if !up.Complete() {
			d.UploadsInProgress++
		}
	}
	if d.Delivery, err = a.uiDeliveryStats(ctx); err != nil {
		return d, err
	}
	t, err := a.outbox.Totals(ctx)
	if err != nil {
		return d, err
	}
	d.Events = t.Events
	d.Jobs = a.uiJobs()
	return d, nil
}

func (a *App) uiListUsers(r *http.Request) ([]webui.User, error) {
	us, err := listUsers(r.Context(), a.db.R)
	if err != nil {
		return nil, err
	}
	out := make([]webui.User, 0, len(us))
	for i := range us {
		out = append(out, *uiUser(&us[i]))
	}
	return out, nil
}

func (a *App) uiCreateUser(r *http.Request, username, role, password string) (webui.User, error) {
	u, hash, err := newUser(username, role, password, a.passwordCost(), a.cfg.Now())
	if err != nil {
		return webui.User{}, uiBadRequest(err.Error())
	}
	if err := insertUser(r.Context(), a.db.W, u, hash); err != nil {
		return webui.User{}, uiError(err)
	}
	a.log.Info("user created", "user_id", u.ID, "username", u.Username, "role", u.Role, "by", requestUser(r).ID)
	return *uiUser(&u), nil
}

func (a *App) uiUpdateUser(r *http.Request, id string, role *string, disabled *bool, password *string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	u, err := a.updateUser(r.Context(), id, UserChange{Role: role, Disabled: disabled, Password: password})
	if err != nil {
		return uiError(err)
	}
	a.log.Info("user updated", "user_id", u.ID, "role", u.Role, "disabled", u.Disabled,
		"password_changed", password != nil, "by", requestUser(r).ID)
	return nil
}

func (a *App) uiDeleteUser(r *http.Request, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	if err := a.deleteUser(r.Context(), id); err != nil {
		return uiError(err)
	}
	a.log.Info("user deleted", "user_id", id, "by", requestUser(r).ID)
	return nil
}

// tokenOwner is whose tokens r's user manages: their own, or (admins)
// everyone's ("").
func tokenOwner(r *http.Request) string {
	u := requestUser(r)
	if u.IsAdmin() {
		return ""
	}
	return u.ID
}

func uiToken(t Token) webui.Token {
	return webui.Token{ID: t.ID, Name: t.Name, Username: t.Username, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
		LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

func (a *App) uiListTokens(r *http.Request) ([]webui.Token, error) {
	ts, err := listTokens(r.Context(), a.db.R, tokenOwner(r))
	if err != nil {
		return nil, err
	}
	out := make([]webui.Token, 0, len(ts))
	for _, t := range ts {
		out = append(out, uiToken(t))
	}
	return out, nil
}

// uiCreateToken issues a token for the signed-in user (an admin's token
// is their own too).
func (a *App) uiCreateToken(r *http.Request, name string, ttl time.Duration) (webui.Token, string, error) {
	if err := checkTokenName(name); err != nil {
		return webui.Token{}, "", uiBadRequest(err.Error())
	}
	u := requestUser(r)
	now := a.cfg.Now()
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	t, secret, err := insertToken(r.Context(), a.db.W, *u, name, now, exp)
	if err != nil {
		return webui.Token{}, "", err
	}
	a.log.Info("token created", "token_id", t.ID, "user_id", u.ID, "name", t.Name)
	return uiToken(t), secret, nil
}

func (a *App) uiRevokeToken(r *http.Request, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	if err := revokeToken(r.Context(), a.db.W, id, tokenOwner(r), a.cfg.Now()); err != nil {
		return uiError(err)
	}
	a.log.Info("token revoked", "token_id", id, "by", requestUser(r).ID)
	return nil
}
