package app

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/webui"
)

// The web UI (package webui) renders pages; this file is its adapter: it
// fills webui.Backend with calls to the operations (ops.go), as the JSON
// API does, and converts their results and errors for the pages.

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

// uiBackend is the pages' view of the operations: each function decodes
// nothing, calls one operation with the request's identity and converts
// its result for the pages.
func (a *App) uiBackend() webui.Backend {
	o, id := a.ops, requestIdentity
	b := webui.Backend{
		CurrentUser: func(r *http.Request) *webui.User { return uiUser(requestUser(r)) },
		May: func(r *http.Request, op string) bool {
			_, err := o.policy.Check(id(r), access.Op(op))
			return err == nil
		},
	}
	a.uiFiles(&b)
	a.uiEvents(&b)
	a.uiEndpoints(&b)
	a.uiAccounts(&b)
	return b
}

// uiFiles fills the file pages' functions.
func (a *App) uiFiles(b *webui.Backend) {
	o, id := a.ops, requestIdentity
	b.Limits = a.uiLimits
	b.ListFiles = func(r *http.Request, q webui.FileQuery) (webui.FilePage, error) {
		page, err := o.ListFiles(r.Context(), id(r), FileQuery(q))
		return webui.FilePage{Items: mapSlice(page.Items, uiFile), NextCursor: page.NextCursor}, uiError(err)
	}
	b.GetFile = func(r *http.Request, fileID string) (webui.File, error) {
		f, err := o.GetFile(r.Context(), id(r), fileID)
		return uiFile(f), uiError(err)
	}
	b.FileByUpload = func(r *http.Request, uploadID string) (webui.File, error) {
		f, err := o.FileByUpload(r.Context(), id(r), uploadID)
		return uiFile(f), uiError(err)
	}
	b.DeleteFile = func(r *http.Request, fileID string) error {
		return uiError(o.DeleteFile(r.Context(), id(r), fileID))
	}
	b.FileEvents = func(r *http.Request, fileID string) ([]webui.Event, error) {
		evs, err := o.FileEvents(r.Context(), id(r), fileID)
		return mapSlice(evs, uiEvent), uiError(err)
	}
}

// uiEvents fills the event, delivery and dashboard pages' functions.
func (a *App) uiEvents(b *webui.Backend) {
	o, id := a.ops, requestIdentity
	b.ListEvents = func(r *http.Request, q webui.EventQuery) (webui.EventPage, error) {
		evs, next, err := o.ListEventDetails(r.Context(), id(r),
			EventQuery{Type: q.Type, FileID: q.FileID, Cursor: q.Cursor, Limit: q.Limit})
		return webui.EventPage{Items: mapSlice(evs, uiEvent), NextCursor: next}, uiError(err)
	}
	b.GetEvent = func(r *http.Request, eventID string) (webui.Event, error) {
		ev, err := o.GetEvent(r.Context(), id(r), eventID)
		return uiEvent(ev), uiError(err)
	}
	b.RetryDelivery = func(r *http.Request, deliveryID string) error {
		_, err := o.RetryDelivery(r.Context(), id(r), deliveryID)
		return uiError(err)
	}
	b.ListDeliveries = func(r *http.Request, q webui.EventQuery) ([]webui.Delivery, string, error) {
		page, err := o.ListDeliveries(r.Context(), id(r), outbox.DeliveryFilter{EndpointID: q.Endpoint,
			Status: q.Status, EventType: q.Type, Cursor: q.Cursor, Limit: q.Limit})
		return mapSlice(page.Items, uiDelivery), page.NextCursor, uiError(err)
	}
	b.EventTypes = append(slices.Clone(subscribableEventTypes), EventPortalTest)
	b.DeliveryStatus = []string{outbox.StatusPending, outbox.StatusDelivering, outbox.StatusSucceeded,
		outbox.StatusFailed, outbox.StatusCancelled}
	b.DashboardCounts = func(r *http.Request) (webui.Dashboard, error) {
		d, err := o.Dashboard(r.Context(), id(r))
		return d, uiError(err)
	}
	b.DashboardHistory = func(r *http.Request, period time.Duration) (webui.History, error) {
		h, err := o.DashboardHistory(r.Context(), id(r), period)
		return h, uiError(err)
	}
}

// uiEndpoints fills the webhook endpoint pages' functions.
func (a *App) uiEndpoints(b *webui.Backend) {
	o, id := a.ops, requestIdentity
	b.ListEndpoints = func(r *http.Request) ([]webui.Endpoint, error) {
		eps, err := o.ListEndpoints(r.Context(), id(r))
		if err != nil {
			return nil, uiError(err)
		}
		out := make([]webui.Endpoint, 0, len(eps))
		for _, ep := range eps {
			e, err := a.uiEndpoint(r, ep)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	b.GetEndpoint = func(r *http.Request, endpointID string) (webui.Endpoint, error) {
		ep, err := o.GetEndpoint(r.Context(), id(r), endpointID)
		if err != nil {
			return webui.Endpoint{}, uiError(err)
		}
		return a.uiEndpoint(r, ep)
	}
	b.CreateEndpoint = func(r *http.Request, in webui.EndpointInput) (webui.Endpoint, string, error) {
		ep, secret, err := o.CreateEndpoint(r.Context(), id(r),
			EndpointInput{URL: in.URL, Description: in.Description, EventTypes: in.EventTypes})
		if err != nil {
			return webui.Endpoint{}, "", uiError(err)
		}
		e, err := a.uiEndpoint(r, ep)
		return e, secret, err
	}
	b.UpdateEndpoint = func(r *http.Request, endpointID string, in webui.EndpointInput) error {
		types := in.EventTypes
		if types == nil {
			types = []string{}
		}
		_, err := o.UpdateEndpoint(r.Context(), id(r), endpointID,
			EndpointChange{URL: &in.URL, Description: &in.Description, EventTypes: &types})
		return uiError(err)
	}
	b.SetEndpointOn = func(r *http.Request, endpointID string, enabled bool, reason string) error {
		_, err := o.UpdateEndpoint(r.Context(), id(r), endpointID, EndpointChange{Enabled: &enabled, DisabledReason: reason})
		return uiError(err)
	}
	b.RotateSecret = func(r *http.Request, endpointID string) (string, error) {
		secret, _, err := o.RotateSecret(r.Context(), id(r), endpointID, nil)
		return secret, uiError(err)
	}
	b.TestEndpoint = func(r *http.Request, endpointID string) error {
		_, _, err := o.TestEndpoint(r.Context(), id(r), endpointID)
		return uiError(err)
	}
	b.ReplayEndpoint = func(r *http.Request, endpointID string, since *time.Time) (int, error) {
		n, err := o.ReplayEndpoint(r.Context(), id(r), endpointID, ReplayInput{FailedOnly: since == nil, Since: since})
		return n, uiError(err)
	}
	b.DeleteEndpoint = func(r *http.Request, endpointID string) error {
		return uiError(o.DeleteEndpoint(r.Context(), id(r), endpointID))
	}
	b.EndpointEvents = subscribableEventTypes
}

// uiAccounts fills the user and token pages' functions.
func (a *App) uiAccounts(b *webui.Backend) {
	o, id := a.ops, requestIdentity
	b.ListUsers = func(r *http.Request) ([]webui.User, error) {
		us, err := o.ListUsers(r.Context(), id(r))
		return mapSlice(us, func(u User) webui.User { return *uiUser(&u) }), uiError(err)
	}
	b.CreateUser = func(r *http.Request, username, role, password string) (webui.User, error) {
		u, err := o.CreateUser(r.Context(), id(r), NewUser{Username: username, Role: role, Password: password})
		if err != nil {
			return webui.User{}, uiError(err)
		}
		return *uiUser(&u), nil
	}
	b.UpdateUser = func(r *http.Request, userID string, role *string, disabled *bool, password, quota *string) error {
		ch := UserChange{Role: role, Disabled: disabled, Password: password}
		if quota != nil {
			ch.Quota.Set = true
			if q := strings.TrimSpace(*quota); q != "default" {
				n, err := ParseSize(q)
				if err != nil {
					return &webui.Error{Status: http.StatusBadRequest,
						Message: "The quota must be bytes or a size like 5GiB (0: no limit; default: the portal's)."}
				}
				ch.Quota.Value = &n
			}
		}
		_, err := o.UpdateUser(r.Context(), id(r), userID, ch)
		return uiError(err)
	}
	b.DeleteUser = func(r *http.Request, userID string) error {
		return uiError(o.DeleteUser(r.Context(), id(r), userID))
	}
	b.ListTokens = func(r *http.Request) ([]webui.Token, error) {
		ts, err := o.ListTokens(r.Context(), id(r))
		return mapSlice(ts, uiToken), uiError(err)
	}
	b.CreateToken = func(r *http.Request, name string, ttl time.Duration, scopes []string) (webui.Token, string, error) {
		t, secret, err := o.CreateToken(r.Context(), id(r), NewToken{Name: name, TTL: ttl, Scopes: scopes})
		return uiToken(t), secret, uiError(err)
	}
	b.TokenScopes = mapSlice(access.Scopes(), func(s access.Scope) string { return string(s) })
	b.RevokeToken = func(r *http.Request, tokenID string) error {
		return uiError(o.RevokeToken(r.Context(), id(r), tokenID))
	}
}

// mapSlice converts each element of s.
func mapSlice[S, T any](s []S, f func(S) T) []T {
	out := make([]T, 0, len(s))
	for _, v := range s {
		out = append(out, f(v))
	}
	return out
}

// uiError turns an operation's error into one the pages show as it is:
// not found, or a status with the operation's message. Other errors (a
// failing database) pass through; the pages log them and show a generic
// failure.
func uiError(err error) error {
	var oe *OpError
	if !errors.As(opError(err, ""), &oe) {
		return err
	}
	if oe.Kind == KindNotFound {
		return webui.ErrNotFound
	}
	return &webui.Error{Status: oe.Status(), Message: oe.Message}
}

func uiUser(u *User) *webui.User {
	if u == nil {
		return nil
	}
	out := &webui.User{ID: u.ID, Username: u.Username, Role: u.Role, Disabled: u.Disabled, CreatedAt: u.CreatedAt}
	if u.Usage != nil {
		out.StoredBytes, out.ReservedBytes, out.QuotaBytes = u.Usage.Stored, u.Usage.Reserved, u.Usage.Quota
	}
	return out
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

func uiEvent(ev EventDetail) webui.Event {
	return webui.Event{ID: ev.ID, Type: ev.Type, FileID: ev.FileID, CreatedAt: ev.CreatedAt, Payload: ev.Payload,
		Deliveries: mapSlice(ev.Deliveries, uiDelivery)}
}

func uiToken(t Token) webui.Token {
	return webui.Token{ID: t.ID, Name: t.Name, Username: t.Username, Scopes: t.Scopes, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

// uiEndpoint converts an endpoint and adds its figures of the last week.
func (a *App) uiEndpoint(r *http.Request, ep outbox.Endpoint) (webui.Endpoint, error) {
	st, err := a.ops.EndpointStats(r.Context(), requestIdentity(r), ep.ID)
	if err != nil {
		return webui.Endpoint{}, uiError(err)
	}
	return endpointView(ep, st), nil
}

// endpointView is an endpoint with its figures, as the pages show it.
func endpointView(ep outbox.Endpoint, st outbox.EndpointStats) webui.Endpoint {
	out := webui.Endpoint{ID: ep.ID, URL: ep.URL, Description: ep.Description, EventTypes: ep.EventTypes,
		Enabled: ep.Enabled, CreatedAt: ep.CreatedAt, UpdatedAt: ep.UpdatedAt,
		Succeeded: st.Succeeded, Failed: st.Failed, Pending: st.Pending}
	if ep.DisabledReason != nil {
		out.DisabledReason = *ep.DisabledReason
	}
	if at := st.LastFailure; at != nil {
		out.LastError = at.Error
		if at.StatusCode != nil {
			out.LastError = lastErrorText(*at.StatusCode, at.Error, at.ResponseBody)
		}
		out.LastErrorAt = &at.AttemptedAt
	}
	return out
}
