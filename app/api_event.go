package app

import (
	"errors"
	"net/http"

	"github.com/doorito/portal/outbox"
	"github.com/google/uuid"
)

// apiListEvents serves GET /api/v1/events?type=&file_id=&limit=&cursor=.
func (a *App) apiListEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return errBadRequest(err.Error())
	}
	f := outbox.EventFilter{Type: q.Get("type"), FileID: q.Get("file_id"), Cursor: q.Get("cursor"), Limit: limit}
	if f.FileID != "" {
		if _, err := uuid.Parse(f.FileID); err != nil {
			return errBadRequest("file_id must be a UUID")
		}
	}
	page, err := a.outbox.List(r.Context(), f)
	if errors.Is(err, outbox.ErrBadCursor) {
		return errBadRequest("invalid cursor")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// apiGetEvent serves GET /api/v1/events/{id}, with the event's deliveries
// and their attempts.
func (a *App) apiGetEvent(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return errBadRequest("event id must be a UUID")
	}
	ev, err := a.outbox.Get(r.Context(), id)
	if errors.Is(err, outbox.ErrNotFound) {
		return errNotFound("event")
	}
	if err != nil {
		return err
	}
	ds, err := a.outbox.EventDeliveries(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, eventWithDeliveries{Event: ev, Deliveries: ds})
	return nil
}

// eventWithDeliveries is an event with its deliveries to each endpoint and
// their attempts.
type eventWithDeliveries struct {
	outbox.Event
	Deliveries []outbox.Delivery `json:"deliveries"`
}
