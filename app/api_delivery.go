package app

import (
	"net/http"

	"github.com/doorito/portal/outbox"
	"github.com/google/uuid"
)

// apiGetDelivery serves GET /api/v1/deliveries/{id}: one delivery with
// its attempts.
func (a *App) apiGetDelivery(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "delivery")
	if err != nil {
		return err
	}
	d, err := a.outbox.GetDelivery(r.Context(), id)
	if err != nil {
		return webhookError(err, "delivery")
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// apiRetryDelivery serves POST /api/v1/deliveries/{id}/retry: an attempt
// now, and a new retry schedule if the delivery was done.
func (a *App) apiRetryDelivery(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "delivery")
	if err != nil {
		return err
	}
	d, err := a.outbox.RetryDelivery(r.Context(), id)
	if err != nil {
		return webhookError(err, "delivery")
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// apiListEndpointDeliveries serves GET
// /api/v1/endpoints/{id}/deliveries?status=&limit=&cursor=, newest first.
func (a *App) apiListEndpointDeliveries(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	if _, err := a.outbox.GetEndpoint(r.Context(), id); err != nil {
		return webhookError(err, "endpoint")
	}
	return a.listDeliveries(w, r, id)
}

// apiListDeliveries serves GET
// /api/v1/deliveries?endpoint_id=&status=&event_type=&limit=&cursor=,
// newest first.
func (a *App) apiListDeliveries(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("endpoint_id")
	if _, err := uuid.Parse(id); id != "" && err != nil {
		return errBadRequest("endpoint_id must be a UUID")
	}
	return a.listDeliveries(w, r, id)
}

func (a *App) listDeliveries(w http.ResponseWriter, r *http.Request, endpointID string) error {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return errBadRequest(err.Error())
	}
	status, err := outbox.ParseStatus(q.Get("status"))
	if err != nil {
		return webhookError(err, "delivery")
	}
	eventType := q.Get("event_type")
	if len(eventType) > 100 {
		return errBadRequest("event_type is too long")
	}
	page, err := a.outbox.ListDeliveries(r.Context(), outbox.DeliveryFilter{EndpointID: endpointID, Status: status,
		EventType: eventType, Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		return webhookError(err, "delivery")
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
