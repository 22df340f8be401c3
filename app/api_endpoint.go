package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/google/uuid"
)

// maxWebhookAPIBody bounds the JSON bodies of the endpoint and delivery API.
const maxWebhookAPIBody = 64 << 10

// decodeWebhookJSON reads a JSON object body into v, refusing unknown
// fields and trailing data. An empty body is allowed when emptyOK.
func decodeWebhookJSON(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookAPIBody))
	if err != nil {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
			Message: fmt.Sprintf("the request body is larger than %d bytes", maxWebhookAPIBody)}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if emptyOK {
			return nil
		}
		return errBadRequest("the request needs a JSON body")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadRequest("invalid JSON body: " + err.Error())
	}
	if dec.More() {
		return errBadRequest("invalid JSON body: data after the object")
	}
	return nil
}

// webhookError maps the outbox's errors to API errors.
func webhookError(err error, what string) error {
	var ve *outbox.ValidationError
	var ce *outbox.ConflictError
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return errNotFound(what)
	case errors.As(err, &ve):
		return errBadRequest(ve.Error())
	case errors.As(err, &ce):
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: ce.Error()}
	case errors.Is(err, outbox.ErrBadCursor):
		return errBadRequest("invalid cursor")
	}
	return err
}

// pathUUID returns the {id} path value, or a 400 when it is not a UUID.
func pathUUID(r *http.Request, what string) (string, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return "", errBadRequest(what + " id must be a UUID")
	}
	return strings.ToLower(id), nil
}

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

// checkEndpointURL refuses URLs that are malformed or that the address
// policy forbids outright.
func (a *App) checkEndpointURL(raw string) error {
	u, err := outbox.ParseEndpointURL(raw)
	if err != nil {
		return webhookError(err, "endpoint")
	}
	return webhookError(a.netPolicy().CheckURL(u), "endpoint")
}

// checkSubscribedTypes refuses event types no event can ever have (a typo
// would otherwise silently receive nothing).
func checkSubscribedTypes(types []string) error {
	if err := outbox.CheckEventTypes(types); err != nil {
		return webhookError(err, "endpoint")
	}
	for _, t := range types {
		known := slices.ContainsFunc(subscribableEventTypes, func(k string) bool { return outbox.MatchEventType([]string{t}, k) })
		if !known {
			return errBadRequest(fmt.Sprintf("event type %q matches no event the portal sends (%s)", t,
				strings.Join(subscribableEventTypes, ", ")))
		}
	}
	return nil
}

// apiCreateEndpoint serves POST /api/v1/endpoints.
func (a *App) apiCreateEndpoint(w http.ResponseWriter, r *http.Request) error {
	var req endpointRequest
	if err := decodeWebhookJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.URL == nil {
		return errBadRequest("url is required")
	}
	p := outbox.EndpointParams{URL: strings.TrimSpace(*req.URL)}
	if err := a.checkEndpointURL(p.URL); err != nil {
		return err
	}
	if req.Description != nil {
		p.Description = *req.Description
	}
	if req.EventTypes != nil {
		if err := checkSubscribedTypes(*req.EventTypes); err != nil {
			return err
		}
		p.EventTypes = *req.EventTypes
	}
	if req.Enabled != nil {
		p.Disabled = !*req.Enabled
	}
	ep, secret, err := a.outbox.CreateEndpoint(r.Context(), p)
	if err != nil {
		return webhookError(err, "endpoint")
	}
	a.log.Info("webhook endpoint created", "endpoint_id", ep.ID, "url", ep.URL)
	w.Header().Set("Location", "/api/v1/endpoints/"+ep.ID)
	writeJSON(w, http.StatusCreated, createdEndpoint{Endpoint: ep, Secret: secret})
	return nil
}

// apiListEndpoints serves GET /api/v1/endpoints.
func (a *App) apiListEndpoints(w http.ResponseWriter, r *http.Request) error {
	eps, err := a.outbox.ListEndpoints(r.Context())
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
	ep, err := a.outbox.GetEndpoint(r.Context(), id)
	if err != nil {
		return webhookError(err, "endpoint")
	}
	writeJSON(w, http.StatusOK, ep)
	return nil
}

// apiUpdateEndpoint serves PATCH /api/v1/endpoints/{id}: url, description,
// event_types and enabled. Enabling clears the disabled reason and resumes
// the endpoint's waiting deliveries.
func (a *App) apiUpdateEndpoint(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "endpoint")
	if err != nil {
		return err
	}
	var req endpointRequest
	if err := decodeWebhookJSON(w, r, &req, false); err != nil {
		return err
	}
	p := outbox.EndpointPatch{Description: req.Description, EventTypes: req.EventTypes, Enabled: req.Enabled}
	if req.URL != nil {
		u := strings.TrimSpace(*req.URL)
		if err := a.checkEndpointURL(u); err != nil {
			return err
		}
		p.URL = &u
	}
	if req.EventTypes != nil {
		if err := checkSubscribedTypes(*req.EventTypes); err != nil {
			return err
		}
	}
	if u := requestUser(r); u != nil {
		p.DisabledReason = "disabled by " + u.Username
	}
	ep, err := a.outbox.UpdateEndpoint(r.Context(), id, p)
	if err != nil {
		return webhookError(err, "endpoint")
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
	if err := a.outbox.DeleteEndpoint(r.Context(), id); err != nil {
		return webhookError(err, "endpoint")
	}
	a.log.Info("webhook endpoint deleted", "endpoint_id", id)
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
	if err := decodeWebhookJSON(w, r, &req, true); err != nil {
		return err
	}
	grace := a.cfg.SecretRotationGrace
	if req.GracePeriod != nil {
		if grace, err = time.ParseDuration(*req.GracePeriod); err != nil || grace < 0 || grace > maxSecretRotationGrace {
			return errBadRequest(fmt.Sprintf("grace_period must be a duration from 0s to %s", maxSecretRotationGrace))
		}
	}
	secret, until, err := a.outbox.RotateSecret(r.Context(), id, grace)
	if err != nil {
		return webhookError(err, "endpoint")
	}
	a.log.Info("webhook secret rotated", "endpoint_id", id, "previous_valid_until", until)
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
	eventID, deliveryID, err := a.sendTestEvent(r.Context(), id, requestActor(r))
	if err != nil {
		return webhookError(err, "endpoint")
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
	if err := decodeWebhookJSON(w, r, &req, false); err != nil {
		return err
	}
	f := outbox.ReplayFilter{}
	switch req.Status {
	case "":
	case outbox.StatusFailed:
		f.FailedOnly = true
	default:
		return errBadRequest(`status may only be "failed"`)
	}
	if req.Since != nil {
		f.Since = *req.Since
	}
	if !f.FailedOnly && f.Since.IsZero() {
		return errBadRequest(`replay needs {"status": "failed"} or {"since": "<RFC 3339 time>"}`)
	}
	n, err := a.outbox.Replay(r.Context(), id, f)
	if err != nil {
		return webhookError(err, "endpoint")
	}
	a.log.Info("webhook replay", "endpoint_id", id, "queued", n, "failed_only", f.FailedOnly, "since", f.Since)
	writeJSON(w, http.StatusAccepted, map[string]int{"queued": n})
	return nil
}
