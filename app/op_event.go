package app

import (
	"context"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
)

// EventDetail is an event with its deliveries to each endpoint and their
// attempts.
type EventDetail struct {
	outbox.Event
	Deliveries []outbox.Delivery `json:"deliveries"`
}

// EventQuery selects events for ListEvents.
type EventQuery struct {
	Type   string
	FileID string
	Cursor string
	Limit  int
}

// ListEvents lists events, newest first.
func (o *Ops) ListEvents(ctx context.Context, id access.Identity, q EventQuery) (outbox.EventPage, error) {
	if _, err := o.check(id, access.EventRead); err != nil {
		return outbox.EventPage{}, err
	}
	if q.FileID != "" && !isUUID(q.FileID) {
		return outbox.EventPage{}, invalid("file_id", "file_id must be a UUID")
	}
	if len(q.Type) > 100 {
		return outbox.EventPage{}, invalid("type", "type is too long")
	}
	limit, err := pageLimit(q.Limit)
	if err != nil {
		return outbox.EventPage{}, err
	}
	page, err := o.a.outbox.List(ctx, outbox.EventFilter{Type: q.Type, FileID: q.FileID, Cursor: q.Cursor, Limit: limit})
	return page, opError(err, "event")
}

// ListEventDetails is ListEvents with each event's deliveries.
func (o *Ops) ListEventDetails(ctx context.Context, id access.Identity, q EventQuery) ([]EventDetail, string, error) {
	page, err := o.ListEvents(ctx, id, q)
	if err != nil {
		return nil, "", err
	}
	out, err := o.withDeliveries(ctx, page.Items)
	return out, page.NextCursor, err
}

// GetEvent returns one event with its deliveries and their attempts.
func (o *Ops) GetEvent(ctx context.Context, id access.Identity, eventID string) (EventDetail, error) {
	if _, err := o.check(id, access.EventRead); err != nil {
		return EventDetail{}, err
	}
	if err := checkUUID(eventID, "event"); err != nil {
		return EventDetail{}, err
	}
	ev, err := o.a.outbox.Get(ctx, eventID)
	if err != nil {
		return EventDetail{}, opError(err, "event")
	}
	ds, err := o.withDeliveries(ctx, []outbox.Event{ev})
	if err != nil {
		return EventDetail{}, err
	}
	return ds[0], nil
}

// withDeliveries adds each event's deliveries, with their attempts.
func (o *Ops) withDeliveries(ctx context.Context, evs []outbox.Event) ([]EventDetail, error) {
	out := make([]EventDetail, 0, len(evs))
	for _, ev := range evs {
		ds, err := o.a.outbox.EventDeliveries(ctx, ev.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, EventDetail{Event: ev, Deliveries: ds})
	}
	return out, nil
}

// ListDeliveries lists deliveries, newest first: of one endpoint (which
// must exist) or of all.
func (o *Ops) ListDeliveries(ctx context.Context, id access.Identity, f outbox.DeliveryFilter) (outbox.DeliveryPage, error) {
	if _, err := o.check(id, access.EventRead); err != nil {
		return outbox.DeliveryPage{}, err
	}
	if f.EndpointID != "" {
		if err := checkUUID(f.EndpointID, "endpoint"); err != nil {
			return outbox.DeliveryPage{}, err
		}
		if _, err := o.a.outbox.GetEndpoint(ctx, f.EndpointID); err != nil {
			return outbox.DeliveryPage{}, opError(err, "endpoint")
		}
	}
	status, err := outbox.ParseStatus(f.Status)
	if err != nil {
		return outbox.DeliveryPage{}, opError(err, "delivery")
	}
	if len(f.EventType) > 100 {
		return outbox.DeliveryPage{}, invalid("event_type", "event_type is too long")
	}
	if f.Limit, err = pageLimit(f.Limit); err != nil {
		return outbox.DeliveryPage{}, err
	}
	f.Status = status
	page, err := o.a.outbox.ListDeliveries(ctx, f)
	return page, opError(err, "delivery")
}

// GetDelivery returns one delivery with its attempts.
func (o *Ops) GetDelivery(ctx context.Context, id access.Identity, deliveryID string) (outbox.Delivery, error) {
	if _, err := o.check(id, access.EventRead); err != nil {
		return outbox.Delivery{}, err
	}
	if err := checkUUID(deliveryID, "delivery"); err != nil {
		return outbox.Delivery{}, err
	}
	d, err := o.a.outbox.GetDelivery(ctx, deliveryID)
	return d, opError(err, "delivery")
}

// RetryDelivery makes an attempt now, and a new retry schedule if the
// delivery was done.
func (o *Ops) RetryDelivery(ctx context.Context, id access.Identity, deliveryID string) (outbox.Delivery, error) {
	if _, err := o.check(id, access.DeliveryRetry); err != nil {
		return outbox.Delivery{}, err
	}
	if err := checkUUID(deliveryID, "delivery"); err != nil {
		return outbox.Delivery{}, err
	}
	d, err := o.a.outbox.RetryDelivery(ctx, deliveryID)
	if err != nil {
		return outbox.Delivery{}, opError(err, "delivery")
	}
	o.record(ctx, id, "delivery.retry", "delivery_id", d.ID, "event_id", d.EventID, "endpoint_id", d.EndpointID)
	return d, nil
}
