package webui

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

func (u *UI) dashboardPage(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.DashboardCounts == nil {
		u.renderError(w, r, http.StatusNotFound, "The dashboard is not available in this build.")
		return
	}
	d, err := u.be.DashboardCounts(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "dashboard", view{Title: "Dashboard", Nav: "dashboard", User: user,
		Data: map[string]any{"D": d, "Window": u.limits().ExpiringWithin}})
}

// eventsPage lists events, or, when filtered by delivery status or
// endpoint, the matching deliveries.
func (u *UI) eventsPage(w http.ResponseWriter, r *http.Request, user *User) {
	qs := r.URL.Query()
	q := EventQuery{Type: qs.Get("type"), Status: qs.Get("status"), Endpoint: qs.Get("endpoint"),
		FileID: qs.Get("file_id"), Cursor: qs.Get("cursor"), Limit: pageLimit(qs.Get("limit"))}
	filter := url.Values{}
	for k, v := range map[string]string{"type": q.Type, "status": q.Status, "endpoint": q.Endpoint, "file_id": q.FileID} {
		if v != "" {
			filter.Set(k, v)
		}
	}
	filtered := len(filter) > 0
	if q.Limit != pageSize {
		filter.Set("limit", strconv.Itoa(q.Limit))
	}
	data := map[string]any{
		"Query":      q,
		"Filtered":   filtered,
		"Types":      u.be.EventTypes,
		"Statuses":   u.be.DeliveryStatus,
		"HasDeliver": u.be.ListDeliveries != nil,
		"CanRetry":   u.be.RetryDelivery != nil,
		"CanReplay":  u.be.ReplayEndpoint != nil,
		"FirstURL":   withQuery("/ui/events", filter, ""),
		"NextURL":    "",
		"Back":       r.URL.RequestURI(),
	}
	if u.be.ListEndpoints != nil {
		eps, err := u.be.ListEndpoints(r)
		if err != nil {
			u.fail(w, r, err)
			return
		}
		data["Endpoints"] = eps
	}
	next := ""
	if (q.Status != "" || q.Endpoint != "") && u.be.ListDeliveries != nil {
		ds, cursor, err := u.be.ListDeliveries(r, q)
		if err != nil {
			u.fail(w, r, err)
			return
		}
		data["Deliveries"], next = ds, cursor
		data["Mode"] = "deliveries"
	} else {
		if u.be.ListEvents == nil {
			u.renderError(w, r, http.StatusNotFound, "Listing events is not available in this build.")
			return
		}
		q.Status, q.Endpoint = "", ""
		page, err := u.be.ListEvents(r, q)
		if err != nil {
			u.fail(w, r, err)
			return
		}
		data["Events"], next = page.Items, page.NextCursor
		data["Mode"] = "events"
	}
	if next != "" {
		data["NextURL"] = withQuery("/ui/events", filter, next)
	}
	u.render(w, r, http.StatusOK, "events", view{Title: "Events", Nav: "events", User: user, Data: data})
}

func (u *UI) eventPage(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.GetEvent == nil {
		u.renderError(w, r, http.StatusNotFound, "Event details are not available in this build.")
		return
	}
	ev, err := u.be.GetEvent(r, r.PathValue("id"))
	if err != nil {
		u.fail(w, r, err)
		return
	}
	u.render(w, r, http.StatusOK, "event", view{Title: ev.Type + " event", Nav: "events", User: user,
		Data: map[string]any{"Event": ev, "CanRetry": u.be.RetryDelivery != nil}})
}

func (u *UI) retryDelivery(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.RetryDelivery == nil {
		u.renderError(w, r, http.StatusNotFound, "Retrying deliveries is not available in this build.")
		return
	}
	if err := u.be.RetryDelivery(r, r.PathValue("id")); err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, backTo(r, "/ui/events"), "The delivery was queued to be sent again.")
}

// backTo is the form's "back" field when it is a local /ui/ path (that
// SafeNext keeps: no control characters for the Location header), else
// fallback.
func backTo(r *http.Request, fallback string) string {
	b := r.PostForm.Get("back")
	if strings.HasPrefix(b, "/ui/") && SafeNext(b) == b {
		return b
	}
	return fallback
}
