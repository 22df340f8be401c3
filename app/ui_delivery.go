package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/webui"
)

// How deliveries and their attempts read on the pages.

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
