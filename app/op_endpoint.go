package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
)

// EndpointInput is a new webhook endpoint.
type EndpointInput struct {
	URL         string
	Description string
	EventTypes  []string // empty: every event
	// Enabled nil means enabled.
	Enabled *bool
}

// EndpointChange is a partial update of an endpoint; nil fields stay.
type EndpointChange struct {
	URL         *string
	Description *string
	EventTypes  *[]string
	Enabled     *bool
	// DisabledReason is recorded when Enabled turns false; empty means
	// "disabled by <username>".
	DisabledReason string
}

// ListEndpoints lists the webhook endpoints.
func (o *Ops) ListEndpoints(ctx context.Context, id access.Identity) ([]outbox.Endpoint, error) {
	if _, err := o.check(id, access.EndpointRead); err != nil {
		return nil, err
	}
	return o.a.outbox.ListEndpoints(ctx)
}

// GetEndpoint returns one endpoint.
func (o *Ops) GetEndpoint(ctx context.Context, id access.Identity, endpointID string) (outbox.Endpoint, error) {
	if _, err := o.check(id, access.EndpointRead); err != nil {
		return outbox.Endpoint{}, err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return outbox.Endpoint{}, err
	}
	ep, err := o.a.outbox.GetEndpoint(ctx, endpointID)
	return ep, opError(err, "endpoint")
}

// endpointStatsWindow is the period an endpoint's success rate covers.
const endpointStatsWindow = 7 * 24 * time.Hour

// EndpointStats returns an endpoint's figures of the last week.
func (o *Ops) EndpointStats(ctx context.Context, id access.Identity, endpointID string) (outbox.EndpointStats, error) {
	if _, err := o.check(id, access.EndpointRead); err != nil {
		return outbox.EndpointStats{}, err
	}
	return o.a.outbox.EndpointStats(ctx, endpointID, o.a.cfg.Now().Add(-endpointStatsWindow))
}

// CreateEndpoint registers a webhook endpoint and returns it with its
// signing secret, shown this once.
func (o *Ops) CreateEndpoint(ctx context.Context, id access.Identity, in EndpointInput) (outbox.Endpoint, string, error) {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return outbox.Endpoint{}, "", err
	}
	in.URL = strings.TrimSpace(in.URL)
	if in.URL == "" {
		return outbox.Endpoint{}, "", invalid("url", "Enter the URL events are sent to (url is required).")
	}
	if err := o.checkEndpointURL(in.URL); err != nil {
		return outbox.Endpoint{}, "", err
	}
	if err := checkSubscribedTypes(in.EventTypes); err != nil {
		return outbox.Endpoint{}, "", err
	}
	p := outbox.EndpointParams{URL: in.URL, Description: in.Description, EventTypes: in.EventTypes}
	if in.Enabled != nil {
		p.Disabled = !*in.Enabled
	}
	ep, secret, err := o.a.outbox.CreateEndpoint(ctx, p)
	if err != nil {
		return outbox.Endpoint{}, "", opError(err, "endpoint")
	}
	o.record(ctx, id, "endpoint.create", "endpoint_id", ep.ID, "url", ep.URL)
	return ep, secret, nil
}

// UpdateEndpoint changes an endpoint. Enabling clears the disabled reason
// and resumes its waiting deliveries.
func (o *Ops) UpdateEndpoint(ctx context.Context, id access.Identity, endpointID string, ch EndpointChange) (outbox.Endpoint, error) {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return outbox.Endpoint{}, err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return outbox.Endpoint{}, err
	}
	p := outbox.EndpointPatch{Description: ch.Description, EventTypes: ch.EventTypes, Enabled: ch.Enabled,
		DisabledReason: ch.DisabledReason}
	if ch.URL != nil {
		u := strings.TrimSpace(*ch.URL)
		if err := o.checkEndpointURL(u); err != nil {
			return outbox.Endpoint{}, err
		}
		p.URL = &u
	}
	if ch.EventTypes != nil {
		if err := checkSubscribedTypes(*ch.EventTypes); err != nil {
			return outbox.Endpoint{}, err
		}
	}
	if p.DisabledReason == "" {
		p.DisabledReason = "disabled by " + id.Username
	}
	ep, err := o.a.outbox.UpdateEndpoint(ctx, endpointID, p)
	if err != nil {
		return outbox.Endpoint{}, opError(err, "endpoint")
	}
	kv := []any{"endpoint_id", ep.ID, "url", ep.URL, "enabled", ep.Enabled}
	if ch.Enabled != nil && !*ch.Enabled {
		kv = append(kv, "reason", p.DisabledReason)
	}
	o.record(ctx, id, "endpoint.update", kv...)
	return ep, nil
}

// DeleteEndpoint removes an endpoint (its history keeps naming it).
func (o *Ops) DeleteEndpoint(ctx context.Context, id access.Identity, endpointID string) error {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return err
	}
	if err := o.a.outbox.DeleteEndpoint(ctx, endpointID); err != nil {
		return opError(err, "endpoint")
	}
	o.record(ctx, id, "endpoint.delete", "endpoint_id", endpointID)
	return nil
}

// RotateSecret gives an endpoint a new signing secret; the previous ones
// keep signing beside it for grace (nil: the configured default). It
// returns the new secret and until when the previous ones sign.
func (o *Ops) RotateSecret(ctx context.Context, id access.Identity, endpointID string, grace *time.Duration) (string, time.Time, error) {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return "", time.Time{}, err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return "", time.Time{}, err
	}
	g := o.a.cfg.SecretRotationGrace
	if grace != nil {
		if g = *grace; g < 0 || g > maxSecretRotationGrace {
			return "", time.Time{}, invalid("grace_period", fmt.Sprintf("grace_period must be a duration from 0s to %s", maxSecretRotationGrace))
		}
	}
	secret, until, err := o.a.outbox.RotateSecret(ctx, endpointID, g)
	if err != nil {
		return "", time.Time{}, opError(err, "endpoint")
	}
	o.record(ctx, id, "endpoint.rotate_secret", "endpoint_id", endpointID, "previous_valid_until", until)
	return secret, until, nil
}

// TestEndpoint sends a portal.test event to one endpoint and returns the
// event's and the delivery's ids.
func (o *Ops) TestEndpoint(ctx context.Context, id access.Identity, endpointID string) (string, string, error) {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return "", "", err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return "", "", err
	}
	eventID, deliveryID, err := o.a.sendTestEvent(ctx, endpointID, identityActor(id))
	if err != nil {
		return "", "", opError(err, "endpoint")
	}
	o.record(ctx, id, "endpoint.test", "endpoint_id", endpointID, "event_id", eventID)
	return eventID, deliveryID, nil
}

// ReplayInput says what to deliver again: the endpoint's failed
// deliveries, every event since a time it got or should have got, or the
// failed ones since then.
type ReplayInput struct {
	FailedOnly bool
	Since      *time.Time
}

// ReplayEndpoint queues deliveries to an endpoint again and returns how
// many.
func (o *Ops) ReplayEndpoint(ctx context.Context, id access.Identity, endpointID string, in ReplayInput) (int, error) {
	if _, err := o.check(id, access.EndpointWrite); err != nil {
		return 0, err
	}
	if err := checkUUID(endpointID, "endpoint"); err != nil {
		return 0, err
	}
	f := outbox.ReplayFilter{FailedOnly: in.FailedOnly}
	if in.Since != nil {
		f.Since = *in.Since
	}
	if !f.FailedOnly && f.Since.IsZero() {
		return 0, invalid("", `replay needs {"status": "failed"} or {"since": "<RFC 3339 time>"}`)
	}
	n, err := o.a.outbox.Replay(ctx, endpointID, f)
	if err != nil {
		return 0, opError(err, "endpoint")
	}
	o.record(ctx, id, "endpoint.replay", "endpoint_id", endpointID, "queued", n, "failed_only", f.FailedOnly,
		"since", f.Since)
	return n, nil
}

// checkEndpointURL refuses URLs that are malformed or that the address
// policy forbids outright.
func (o *Ops) checkEndpointURL(raw string) error {
	u, err := outbox.ParseEndpointURL(raw)
	if err != nil {
		return opError(err, "endpoint")
	}
	return opError(o.a.netPolicy().CheckURL(u), "endpoint")
}

// checkSubscribedTypes refuses event types no event can ever have (a typo
// would otherwise silently receive nothing).
func checkSubscribedTypes(types []string) error {
	if err := outbox.CheckEventTypes(types); err != nil {
		return opError(err, "endpoint")
	}
	for _, t := range types {
		known := slices.ContainsFunc(subscribableEventTypes, func(k string) bool { return outbox.MatchEventType([]string{t}, k) })
		if !known {
			return invalid("event_types", fmt.Sprintf("event type %q matches no event the portal sends (%s)", t,
				strings.Join(subscribableEventTypes, ", ")))
		}
	}
	return nil
}
