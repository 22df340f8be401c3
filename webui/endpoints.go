package webui

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const noDelivery = "Webhook endpoints are not available in this build."

// endpointInput reads the create and edit forms. Event types come from
// checkboxes and from a free text field (comma or space separated), so
// a "file.*" pattern can be typed.
func endpointInput(r *http.Request) EndpointInput {
	in := EndpointInput{URL: strings.TrimSpace(r.PostForm.Get("url")),
		Description: strings.TrimSpace(r.PostForm.Get("description"))}
	seen := map[string]bool{}
	add := func(t string) {
		if t = strings.TrimSpace(t); t != "" && !seen[t] {
			seen[t] = true
			in.EventTypes = append(in.EventTypes, t)
		}
	}
	for _, t := range r.PostForm["event_types"] {
		add(t)
	}
	for _, t := range strings.FieldsFunc(r.PostForm.Get("event_types_other"), func(c rune) bool {
		return c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r'
	}) {
		add(t)
	}
	return in
}

func (u *UI) endpointsPage(w http.ResponseWriter, r *http.Request, user *User) {
	u.renderEndpoints(w, r, user, http.StatusOK, EndpointInput{}, "")
}

func (u *UI) renderEndpoints(w http.ResponseWriter, r *http.Request, user *User, status int, in EndpointInput, formErr string) {
	if u.be.ListEndpoints == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	eps, err := u.be.ListEndpoints(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, status, "endpoints", view{Title: "Endpoints", Nav: "endpoints", User: user, Data: map[string]any{
		"Endpoints": eps, "Form": in, "FormError": formErr, "Types": u.be.EndpointEvents,
		"CanCreate": u.be.CreateEndpoint != nil,
	}})
}

func (u *UI) createEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.CreateEndpoint == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	in := endpointInput(r)
	ep, secret, err := u.be.CreateEndpoint(r, in)
	if err != nil {
		u.renderEndpoints(w, r, user, statusOf(err), in, u.userMessage(r, err))
		return
	}
	// The secret is shown on this response only; it is never stored in
	// the clear and no later page can show it.
	u.renderEndpoint(w, r, user, http.StatusCreated, ep.ID, map[string]any{
		"Secret": secret, "SecretNote": "The endpoint was created. Copy its signing secret now: it is shown only once."})
}

func (u *UI) endpointPage(w http.ResponseWriter, r *http.Request, user *User) {
	u.renderEndpoint(w, r, user, http.StatusOK, r.PathValue("id"), nil)
}

func (u *UI) renderEndpoint(w http.ResponseWriter, r *http.Request, user *User, status int, id string, extra map[string]any) {
	if u.be.GetEndpoint == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	ep, err := u.be.GetEndpoint(r, id)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	data := map[string]any{
		"Endpoint": ep, "Types": u.be.EndpointEvents, "Back": "/ui/endpoints/" + ep.ID,
		"CanEdit": u.be.UpdateEndpoint != nil, "CanToggle": u.be.SetEndpointOn != nil,
		"CanRotate": u.be.RotateSecret != nil, "CanTest": u.be.TestEndpoint != nil,
		"CanReplay": u.be.ReplayEndpoint != nil, "CanDelete": u.be.DeleteEndpoint != nil,
		"CanRetry": u.be.RetryDelivery != nil,
	}
	if u.be.ListDeliveries != nil {
		ds, _, err := u.be.ListDeliveries(r, EventQuery{Endpoint: ep.ID, Limit: 20})
		if err != nil {
			u.fail(w, r, err)
			return
		}
		data["Deliveries"] = ds
	}
	for k, v := range extra {
		data[k] = v
	}
	title := ep.Description
	if title == "" {
		title = ep.URL
	}
	u.render(w, r, status, "endpoint", view{Title: title, Nav: "endpoints", User: user, Data: data})
}

// statusOf is the HTTP status for a form error.
func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// endpointAction runs a POST on one endpoint and returns to its page with
// a message.
func (u *UI) endpointAction(w http.ResponseWriter, r *http.Request, user *User, available bool, do func(id string) (string, error)) {
	if !available {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	id := r.PathValue("id")
	msg, err := do(id)
	if err != nil {
		u.renderEndpoint(w, r, user, statusOf(err), id, map[string]any{"ActionError": u.userMessage(r, err)})
		return
	}
	u.redirect(w, r, "/ui/endpoints/"+url.PathEscape(id), msg)
}

func (u *UI) updateEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	u.endpointAction(w, r, user, u.be.UpdateEndpoint != nil, func(id string) (string, error) {
		return "The endpoint was saved.", u.be.UpdateEndpoint(r, id, endpointInput(r))
	})
}

func (u *UI) enableEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	u.endpointAction(w, r, user, u.be.SetEndpointOn != nil, func(id string) (string, error) {
		return "The endpoint was enabled; pending deliveries resume.", u.be.SetEndpointOn(r, id, true, "")
	})
}

func (u *UI) disableEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	u.endpointAction(w, r, user, u.be.SetEndpointOn != nil, func(id string) (string, error) {
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if reason == "" {
			reason = "disabled by " + user.Username
		}
		return "The endpoint was disabled.", u.be.SetEndpointOn(r, id, false, reason)
	})
}

func (u *UI) rotateSecret(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.RotateSecret == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	id := r.PathValue("id")
	secret, err := u.be.RotateSecret(r, id)
	if err != nil {
		u.renderEndpoint(w, r, user, statusOf(err), id, map[string]any{"ActionError": u.userMessage(r, err)})
		return
	}
	u.renderEndpoint(w, r, user, http.StatusOK, id, map[string]any{"Secret": secret,
		"SecretNote": "The secret was rotated. Copy the new secret now: it is shown only once. The old one keeps signing for a grace period."})
}

func (u *UI) testEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	u.endpointAction(w, r, user, u.be.TestEndpoint != nil, func(id string) (string, error) {
		return "A test event was queued for this endpoint.", u.be.TestEndpoint(r, id)
	})
}

func (u *UI) replayEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.ReplayEndpoint == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	id := r.PathValue("id")
	var since *time.Time
	if s := strings.TrimSpace(r.PostForm.Get("since")); s != "" {
		t, err := parseLocalTime(s)
		if err != nil {
			u.renderEndpoint(w, r, user, http.StatusBadRequest, id, map[string]any{"ActionError": err.Error()})
			return
		}
		since = &t
	}
	n, err := u.be.ReplayEndpoint(r, id, since)
	if err != nil {
		u.renderEndpoint(w, r, user, statusOf(err), id, map[string]any{"ActionError": u.userMessage(r, err)})
		return
	}
	msg := strconv.Itoa(n) + " deliveries were queued again."
	if n == 1 {
		msg = "1 delivery was queued again."
	}
	u.redirect(w, r, backTo(r, "/ui/endpoints/"+url.PathEscape(id)), msg)
}

// parseLocalTime reads a datetime-local input (taken as UTC) or RFC 3339.
func parseLocalTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &Error{Status: http.StatusBadRequest, Message: "“Since” must be a date and time like 2025-01-31T14:00."}
}

func (u *UI) deleteEndpoint(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.DeleteEndpoint == nil {
		u.renderError(w, r, http.StatusNotFound, noDelivery)
		return
	}
	if err := u.be.DeleteEndpoint(r, r.PathValue("id")); err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, "/ui/endpoints", "The endpoint was deleted.")
}
