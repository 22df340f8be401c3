package app

import (
	"net/http"
	"time"

	"github.com/doorito/portal/outbox"
)

// endpointRequest is the body of POST and PATCH /api/v1/endpoints.
type endpointRequest struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	EventTypes  *[]string `json:"event_types"`
	Enabled     *bool     `json:"enabled"`
}

// createdEndpoint is a new endpoint with its secret, shown this once.
type createdEndpoint struct {
	outbox.Endpoint
	Secret string `json:"secret"`
}

// apiCreateEndpoint serves POST /api/v1/endpoints.
func (a *App) apiCreateEndpoint(w http.ResponseWriter, r *http.Request) error {
	var req endpointRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	in := EndpointInput{Enabled: req.Enabled}
	if req.URL != nil {
		in.URL = *req.URL
	}
	if req.Description != nil {
		in.Description = *req.Description
	}
	if req.EventTypes != nil {
		in.EventTypes = *req.EventTypes
	}
	ep, secret, err := a.ops.CreateEndpoint(r.Context(), requestIdentity(r), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/endpoints/"+ep.ID)
	writeJSON(w, http.StatusCreated, createdEndpoint{Endpoint: ep, Secret: secret})
	return nil
}

// apiListEndpoints serves GET /api/v1/endpoints.
func (a *App) apiListEndpoints(w http.ResponseWriter, r *http.Request) error {
	eps, err := a.ops.ListEndpoints(r.Context(), requestIdentity(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": eps})
	return nil
}

// apiGetEndpoint serves GET /api/v1/endpoints/{id}.
func (a *App) apiGetEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	ep, err := a.ops.GetEndpoint(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ep)
	return nil
}

// apiUpdateEndpoint serves PATCH /api/v1/endpoints/{id}: url, description,
// event_types and enabled.
func (a *App) apiUpdateEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	var req endpointRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	ep, err := a.ops.UpdateEndpoint(r.Context(), requestIdentity(r), id, EndpointChange{URL: req.URL,
		Description: req.Description, EventTypes: req.EventTypes, Enabled: req.Enabled})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ep)
	return nil
}

// apiDeleteEndpoint serves DELETE /api/v1/endpoints/{id}.
func (a *App) apiDeleteEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	if err := a.ops.DeleteEndpoint(r.Context(), requestIdentity(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// rotateRequest is the optional body of POST .../rotate-secret.
type rotateRequest struct {
	// GracePeriod is how long the previous secrets keep signing, as a Go
	// duration ("24h", "0s"); absent means the configured default.
	GracePeriod *string `json:"grace_period"`
}

// apiRotateSecret serves POST /api/v1/endpoints/{id}/rotate-secret.
func (a *App) apiRotateSecret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	var req rotateRequest
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	var grace *time.Duration
	if req.GracePeriod != nil {
		g, err := time.ParseDuration(*req.GracePeriod)
		if err != nil {
			return errBadRequest("grace_period must be a duration like 24h")
		}
		grace = &g
	}
	secret, until, err := a.ops.RotateSecret(r.Context(), requestIdentity(r), id, grace)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"secret": secret, "previous_secrets_valid_until": until})
	return nil
}

// apiTestEndpoint serves POST /api/v1/endpoints/{id}/test: a portal.test
// event delivered to this endpoint only.
func (a *App) apiTestEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	eventID, deliveryID, err := a.ops.TestEndpoint(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"event_id": eventID, "delivery_id": deliveryID})
	return nil
}

// replayRequest is the body of POST /api/v1/endpoints/{id}/replay.
type replayRequest struct {
	// Status "failed" queues the endpoint's failed deliveries again.
	Status string `json:"status"`
	// Since (RFC 3339): every event since then that the endpoint got or
	// should have got (with Status, only the failed ones since then).
	Since *time.Time `json:"since"`
}

// apiReplayEndpoint serves POST /api/v1/endpoints/{id}/replay.
func (a *App) apiReplayEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	var req replayRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.Status != "" && req.Status != outbox.StatusFailed {
		return errBadRequest(`status may only be "failed"`)
	}
	n, err := a.ops.ReplayEndpoint(r.Context(), requestIdentity(r), id,
		ReplayInput{FailedOnly: req.Status == outbox.StatusFailed, Since: req.Since})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"queued": n})
	return nil
}

// apiListEvents serves GET /api/v1/events?type=&file_id=&limit=&cursor=.
func (a *App) apiListEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	page, err := a.ops.ListEvents(r.Context(), requestIdentity(r), EventQuery{Type: q.Get("type"),
		FileID: q.Get("file_id"), Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// apiGetEvent serves GET /api/v1/events/{id}, with the event's deliveries
// and their attempts.
func (a *App) apiGetEvent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "event")
	if err != nil {
		return err
	}
	ev, err := a.ops.GetEvent(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ev)
	return nil
}

// apiGetDelivery serves GET /api/v1/deliveries/{id}: one delivery with
// its attempts.
func (a *App) apiGetDelivery(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "delivery")
	if err != nil {
		return err
	}
	d, err := a.ops.GetDelivery(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
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
	d, err := a.ops.RetryDelivery(r.Context(), requestIdentity(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// apiListEndpointDeliveries serves GET
// /api/v1/endpoints/{id}/deliveries?status=&event_type=&limit=&cursor=.
func (a *App) apiListEndpointDeliveries(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	return a.listDeliveries(w, r, id)
}

// apiListDeliveries serves GET
// /api/v1/deliveries?endpoint_id=&status=&event_type=&limit=&cursor=.
func (a *App) apiListDeliveries(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("endpoint_id")
	if id != "" && !isUUID(id) {
		return errBadRequest("endpoint_id must be a UUID")
	}
	return a.listDeliveries(w, r, id)
}

func (a *App) listDeliveries(w http.ResponseWriter, r *http.Request, endpointID string) error {
	q := r.URL.Query()
	limit, err := queryLimit(q)
	if err != nil {
		return err
	}
	page, err := a.ops.ListDeliveries(r.Context(), requestIdentity(r), outbox.DeliveryFilter{EndpointID: endpointID,
		Status: q.Get("status"), EventType: q.Get("event_type"), Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
