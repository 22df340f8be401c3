package app

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/webui"
	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
)

// The web UI's adapter for webhooks (endpoints, deliveries), file deletion
// and the dashboard's delivery and job figures. The rules are the JSON
// API's: the same checks, the same outbox calls.

// endpointStatsWindow is the period an endpoint's success rate covers.
const endpointStatsWindow = 7 * 24 * time.Hour

// uiDeleteFile deletes a file its user may see, as DELETE
// /api/v1/files/{id} does: row and file.deleted first, then the bytes.
func (a *App) uiDeleteFile(r *http.Request, id string) error {
	if _, err := a.uiGetFile(r, id); err != nil {
		return err
	}
	f, err := a.getFile(r.Context(), id)
	if err != nil {
		return uiError(err)
	}
	if err := a.deleteByRequest(r, f); err != nil {
		return uiError(err)
	}
	return nil
}

func uiDelivery(d outbox.Delivery) webui.Delivery {
	out := webui.Delivery{ID: d.ID, EventID: d.EventID, EventType: d.EventType, EndpointID: d.EndpointID,
		EndpointURL: d.EndpointURL, Status: d.Status, AttemptCount: d.AttemptCount, NextAttemptAt: d.NextAttemptAt,
		UpdatedAt: d.UpdatedAt}
	if d.LastStatusCode != nil {
		out.LastStatusCode = *d.LastStatusCode
	}
	if d.LastError != nil {
		out.LastError = beyondStatus(out.LastStatusCode, *d.LastError)
	}
	if d.Status != outbox.StatusPending {
		out.NextAttemptAt = nil
	}
	for _, at := range d.Attempts {
		wa := webui.Attempt{At: at.AttemptedAt, Duration: time.Duration(at.DurationMS) * time.Millisecond,
			ResponseBody: at.ResponseBody}
		if at.StatusCode != nil {
			wa.StatusCode = *at.StatusCode
		}
		wa.Error = beyondStatus(wa.StatusCode, at.Error)
		out.Attempts = append(out.Attempts, wa)
	}
	return out
}

// beyondStatus is what an attempt's error says beyond its status code (the
// dispatcher records a non-2xx answer as the error "HTTP <code>").
func beyondStatus(code int, msg string) string {
	if code != 0 {
		msg = strings.TrimSpace(strings.TrimPrefix(msg, fmt.Sprintf("HTTP %d", code)))
	}
	return msg
}

// lastErrorText describes a failed answer: its status, the error beyond
// it, and the start of the response body.
func lastErrorText(code int, msg, body string) string {
	parts := []string{fmt.Sprintf("HTTP %d", code)}
	if m := beyondStatus(code, msg); m != "" {
		parts = append(parts, m)
	}
	if body = strings.Join(strings.Fields(body), " "); body != "" {
		if len(body) > 120 {
			body = body[:120] + "…"
		}
		parts = append(parts, body)
	}
	return strings.Join(parts, ": ")
}

// uiWithDeliveries adds an event's deliveries, with their attempts.
func (a *App) uiWithDeliveries(ctx context.Context, ev webui.Event) (webui.Event, error) {
	ds, err := a.outbox.EventDeliveries(ctx, ev.ID)
	if err != nil {
		return ev, err
	}
	for _, d := range ds {
		ev.Deliveries = append(ev.Deliveries, uiDelivery(d))
	}
	return ev, nil
}

func (a *App) uiRetryDelivery(r *http.Request, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	d, err := a.outbox.RetryDelivery(r.Context(), id)
	if err != nil {
		return uiError(webhookError(err, "delivery"))
	}
	a.log.Info("webhook delivery retried", "delivery_id", d.ID, "by", requestUser(r).ID)
	return nil
}

// uiListDeliveries lists deliveries, newest first: one endpoint's, or
// every endpoint's (their pages merged; the cursor is a delivery id, and
// ids sort by creation). An event type filter applies within the page.
func (a *App) uiListDeliveries(r *http.Request, q webui.EventQuery) ([]webui.Delivery, string, error) {
	status, err := outbox.ParseStatus(q.Status)
	if err != nil {
		return nil, "", uiError(webhookError(err, "delivery"))
	}
	if q.Cursor != "" {
		if _, err := uuid.Parse(q.Cursor); err != nil {
			return nil, "", uiBadRequest("That page link is not valid.")
		}
	}
	endpoints := []string{q.Endpoint}
	if q.Endpoint == "" {
		eps, err := a.outbox.ListEndpoints(r.Context())
		if err != nil {
			return nil, "", err
		}
		endpoints = endpoints[:0]
		for _, ep := range eps {
			endpoints = append(endpoints, ep.ID)
		}
	} else if _, err := uuid.Parse(q.Endpoint); err != nil {
		return nil, "", uiBadRequest("The endpoint id must be a UUID.")
	}
	// Merge the endpoints' pages and keep the newest Limit. An endpoint with
	// more returned Limit deliveries, so the merged page's last is never
	// older than that endpoint's last: the next cursor skips nothing.
	var all []outbox.Delivery
	more := false
	for _, id := range endpoints {
		page, err := a.outbox.ListDeliveries(r.Context(), outbox.DeliveryFilter{EndpointID: id, Status: status,
			EventType: q.Type, Cursor: q.Cursor, Limit: q.Limit})
		if err != nil {
			return nil, "", uiError(webhookError(err, "delivery"))
		}
		all = append(all, page.Items...)
		if page.NextCursor != "" {
			more = true
		}
	}
	slices.SortFunc(all, func(x, y outbox.Delivery) int { return strings.Compare(y.ID, x.ID) })
	next := ""
	if len(all) > q.Limit {
		all, more = all[:q.Limit], true
	}
	if more && len(all) > 0 {
		next = all[len(all)-1].ID
	}
	out := make([]webui.Delivery, 0, len(all))
	for _, d := range all {
		out = append(out, uiDelivery(d))
	}
	return out, next, nil
}

// uiEndpoint converts an endpoint and adds its figures: attempts of the
// last week by outcome, open deliveries and the last failed attempt.
func (a *App) uiEndpoint(ctx context.Context, ep outbox.Endpoint) (webui.Endpoint, error) {
	out := webui.Endpoint{ID: ep.ID, URL: ep.URL, Description: ep.Description, EventTypes: ep.EventTypes,
		Enabled: ep.Enabled, CreatedAt: ep.CreatedAt, UpdatedAt: ep.UpdatedAt}
	if ep.DisabledReason != nil {
		out.DisabledReason = *ep.DisabledReason
	}
	st, err := a.outbox.EndpointStats(ctx, ep.ID, a.cfg.Now().Add(-endpointStatsWindow))
	if err != nil {
		return out, err
	}
	out.Succeeded, out.Failed, out.Pending = st.Succeeded, st.Failed, st.Pending
	if at := st.LastFailure; at != nil {
		out.LastError = at.Error
		if at.StatusCode != nil {
			out.LastError = lastErrorText(*at.StatusCode, at.Error, at.ResponseBody)
		}
		out.LastErrorAt = &at.AttemptedAt
	}
	return out, nil
}

func (a *App) uiListEndpoints(r *http.Request) ([]webui.Endpoint, error) {
	eps, err := a.outbox.ListEndpoints(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]webui.Endpoint, 0, len(eps))
	for _, ep := range eps {
		e, err := a.uiEndpoint(r.Context(), ep)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (a *App) uiGetEndpoint(r *http.Request, id string) (webui.Endpoint, error) {
	if _, err := uuid.Parse(id); err != nil {
		return webui.Endpoint{}, webui.ErrNotFound
	}
	ep, err := a.outbox.GetEndpoint(r.Context(), id)
	if err != nil {
		return webui.Endpoint{}, uiError(webhookError(err, "endpoint"))
	}
	return a.uiEndpoint(r.Context(), ep)
}

func (a *App) uiCreateEndpoint(r *http.Request, in webui.EndpointInput) (webui.Endpoint, string, error) {
	if in.URL == "" {
		return webui.Endpoint{}, "", uiBadRequest("Enter the URL events are sent to.")
	}
	if err := a.checkEndpointURL(in.URL); err != nil {
		return webui.Endpoint{}, "", uiError(err)
	}
	if err := checkSubscribedTypes(in.EventTypes); err != nil {
		return webui.Endpoint{}, "", uiError(err)
	}
	ep, secret, err := a.outbox.CreateEndpoint(r.Context(),
		outbox.EndpointParams{URL: in.URL, Description: in.Description, EventTypes: in.EventTypes})
	if err != nil {
		return webui.Endpoint{}, "", uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook endpoint created", "endpoint_id", ep.ID, "url", ep.URL, "by", requestUser(r).ID)
	out, err := a.uiEndpoint(r.Context(), ep)
	return out, secret, err
}

func (a *App) uiUpdateEndpoint(r *http.Request, id string, in webui.EndpointInput) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	if err := a.checkEndpointURL(in.URL); err != nil {
		return uiError(err)
	}
	types := in.EventTypes
	if types == nil {
		types = []string{}
	}
	if err := checkSubscribedTypes(types); err != nil {
		return uiError(err)
	}
	_, err := a.outbox.UpdateEndpoint(r.Context(), id,
		outbox.EndpointPatch{URL: &in.URL, Description: &in.Description, EventTypes: &types})
	if err != nil {
		return uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook endpoint updated", "endpoint_id", id, "by", requestUser(r).ID)
	return nil
}

func (a *App) uiSetEndpointOn(r *http.Request, id string, enabled bool, reason string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	_, err := a.outbox.UpdateEndpoint(r.Context(), id, outbox.EndpointPatch{Enabled: &enabled, DisabledReason: reason})
	if err != nil {
		return uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook endpoint switched", "endpoint_id", id, "enabled", enabled, "reason", reason, "by", requestUser(r).ID)
	return nil
}

func (a *App) uiRotateSecret(r *http.Request, id string) (string, error) {
	if _, err := uuid.Parse(id); err != nil {
		return "", webui.ErrNotFound
	}
	secret, until, err := a.outbox.RotateSecret(r.Context(), id, a.cfg.SecretRotationGrace)
	if err != nil {
		return "", uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook secret rotated", "endpoint_id", id, "previous_valid_until", until, "by", requestUser(r).ID)
	return secret, nil
}

func (a *App) uiTestEndpoint(r *http.Request, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	if _, _, err := a.sendTestEvent(r.Context(), id, requestActor(r)); err != nil {
		return uiError(webhookError(err, "endpoint"))
	}
	return nil
}

// uiReplayEndpoint queues an endpoint's failed deliveries again, or, with
// since, every event since then.
func (a *App) uiReplayEndpoint(r *http.Request, id string, since *time.Time) (int, error) {
	if _, err := uuid.Parse(id); err != nil {
		return 0, webui.ErrNotFound
	}
	f := outbox.ReplayFilter{FailedOnly: since == nil}
	if since != nil {
		f.Since = *since
	}
	n, err := a.outbox.Replay(r.Context(), id, f)
	if err != nil {
		return 0, uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook replay", "endpoint_id", id, "queued", n, "failed_only", f.FailedOnly, "since", f.Since,
		"by", requestUser(r).ID)
	return n, nil
}

func (a *App) uiDeleteEndpoint(r *http.Request, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return webui.ErrNotFound
	}
	if err := a.outbox.DeleteEndpoint(r.Context(), id); err != nil {
		return uiError(webhookError(err, "endpoint"))
	}
	a.log.Info("webhook endpoint deleted", "endpoint_id", id, "by", requestUser(r).ID)
	return nil
}

// uiDeliveryStats is the dashboard's webhook summary.
func (a *App) uiDeliveryStats(ctx context.Context) (*webui.DeliveryStats, error) {
	eps, err := a.outbox.ListEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	s := &webui.DeliveryStats{Endpoints: len(eps)}
	for _, ep := range eps {
		if ep.Enabled {
			s.EndpointsEnabled++
		}
		if ep.FailingSince != nil || !ep.Enabled && ep.DisabledReason != nil {
			e, err := a.uiEndpoint(ctx, ep)
			if err != nil {
				return nil, err
			}
			s.FailingEndpoints = append(s.FailingEndpoints, e)
		}
	}
	t, err := a.outbox.Totals(ctx)
	if err != nil {
		return nil, err
	}
	s.Backlog, s.Failed = t.Backlog, t.Failed
	return s, nil
}

// uiJobs lists the scheduled jobs with their next run (from their cron
// specs) and last successful run.
func (a *App) uiJobs() []webui.Job {
	if a.jobs.cron == nil {
		return nil
	}
	now := a.cfg.Now()
	stats := a.JobStats()
	var out []webui.Job
	for _, j := range []struct{ name, key, spec string }{
		{"Expiry notices (file.expiring)", jobExpiry, a.cfg.ExpirySchedule},
		{"Cleanup (file.deleted, abandoned uploads)", jobCleanup, a.cfg.CleanupSchedule},
	} {
		sched, err := cron.ParseStandard(j.spec)
		if err != nil {
			continue
		}
		job := webui.Job{Name: j.name, Next: sched.Next(now).UTC()}
		if last := stats[j.key].LastSuccess; !last.IsZero() {
			job.LastRun = &last
		}
		out = append(out, job)
	}
	return out
}
