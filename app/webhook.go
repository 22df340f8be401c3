package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/google/uuid"
)

// EventPortalTest is the type of the test event sent to one endpoint.
const EventPortalTest = outbox.TestEventType

// subscribableEventTypes are the event types endpoints may list in
// event_types (exactly, or through a prefix such as "file.*").
var subscribableEventTypes = []string{EventFileUploaded, EventFileExpiring, EventFileDeleted}

// netPolicy is where webhook requests may connect.
func (a *App) netPolicy() outbox.NetPolicy {
	return outbox.NetPolicy{AllowPrivate: a.cfg.AllowPrivateEndpoints, Allow: a.cfg.endpointAllow}
}

// newDispatcher builds the webhook sender from the configuration.
func (a *App) newDispatcher() *outbox.Dispatcher {
	return outbox.NewDispatcher(a.outbox, outbox.DispatcherConfig{
		Workers:      a.cfg.DeliveryWorkers,
		PerEndpoint:  a.cfg.DeliveryPerEndpoint,
		Timeout:      a.cfg.DeliveryTimeout,
		Schedule:     a.cfg.DeliverySchedule,
		Jitter:       a.cfg.deliveryJitter,
		DisableAfter: a.cfg.EndpointDisableAfter,
		PollInterval: a.cfg.deliveryPoll,
		UserAgent:    "doorito-portal/" + a.cfg.Version,
		Policy:       a.netPolicy(),
		Logger:       a.log.With("component", "webhooks"),
		Now:          a.cfg.Now,
	})
}

// TestPayload is the body of a portal.test event.
type TestPayload struct {
	EventType  string       `json:"event_type"`
	EventID    string       `json:"event_id"`
	OccurredAt string       `json:"occurred_at"`
	EndpointID string       `json:"endpoint_id"`
	Actor      PayloadActor `json:"actor"`
	Source     string       `json:"source"`
	Message    string       `json:"message"`
}

// sendTestEvent writes a portal.test event with one delivery, to the
// endpoint only, and returns the event and delivery ids.
func (a *App) sendTestEvent(ctx context.Context, endpointID string, actor PayloadActor) (string, string, error) {
	now := a.cfg.Now().UTC().Truncate(time.Millisecond)
	id := uuid.Must(uuid.NewV7()).String()
	body, err := json.Marshal(TestPayload{
		EventType: EventPortalTest, EventID: id, OccurredAt: rfc3339(now), EndpointID: endpointID,
		Actor: actor, Source: a.publicURL,
		Message: "Test event from Doorito Portal: if its signature verifies, this endpoint is ready.",
	})
	if err != nil {
		return "", "", err
	}
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return "", "", fmt.Errorf("test event: %w", err)
	}
	defer tx.Rollback()
	deliveryID, err := a.outbox.AppendTo(ctx, tx, outbox.Event{ID: id, Type: EventPortalTest, Payload: body, CreatedAt: now}, endpointID)
	if err != nil {
		return "", "", err
	}
	if err := tx.Commit(); err != nil {
		return "", "", fmt.Errorf("test event: %w", err)
	}
	a.outbox.Committed()
	return id, deliveryID, nil
}
