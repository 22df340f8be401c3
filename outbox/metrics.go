package outbox

import (
	"context"
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors of webhook delivery. Collectors registers them on the
// portal's registry; label values come from fixed sets only.
var (
	metricAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portal_webhook_attempts_total",
		Help: "Webhook delivery attempts by endpoint id and outcome: success, http_error, network_error, timeout, refused.",
	}, []string{"endpoint", "outcome"})
	metricDeliveryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portal_webhook_delivery_latency_seconds",
		Help:    "From an event's commit to the 2xx of its first successful attempt at an endpoint (first-try deliveries).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	metricAttemptDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portal_webhook_attempt_duration_seconds",
		Help:    "Duration of webhook delivery attempts, from sending to the end of the (capped) response.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
	})
	metricDeliveriesFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portal_webhook_deliveries_failed_total",
		Help: "Webhook deliveries that failed their last scheduled attempt (replay them by hand).",
	})
	metricEndpointsDisabled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portal_webhook_endpoints_disabled_total",
		Help: "Webhook endpoints disabled automatically, by reason: gone (410) or failing.",
	}, []string{"reason"})
)

var (
	descDeliveries = prometheus.NewDesc("portal_webhook_deliveries",
		"Webhook deliveries waiting (pending) or claimed by the sender, queued or being sent (delivering).", []string{"status"}, nil)
	descOldest = prometheus.NewDesc("portal_outbox_oldest_undelivered_age_seconds",
		"Age of the oldest event with a delivery still pending or being sent; 0 when none.", nil, nil)
	descEndpoints = prometheus.NewDesc("portal_webhook_endpoints",
		"Webhook endpoints by state: enabled or disabled.", []string{"state"}, nil)
)

// Collectors returns the webhook delivery collectors, including one that
// counts pending deliveries and endpoints in the outbox's database at
// scrape time.
func Collectors(o *Outbox) []prometheus.Collector {
	return []prometheus.Collector{metricAttempts, metricAttemptDuration, metricDeliveryLatency, metricDeliveriesFailed,
		metricEndpointsDisabled, stateCollector{o}}
}

// sqlStateMetrics reads the state gauges: open deliveries (pending or
// being sent), endpoints enabled and disabled, and the event of the
// oldest open delivery.
const sqlStateMetrics = `SELECT
	(SELECT n FROM outbox_counters WHERE name = 'deliveries_open'),
	(SELECT COUNT(*) FROM endpoints WHERE deleted_at IS NULL AND enabled = 1),
	(SELECT COUNT(*) FROM endpoints WHERE deleted_at IS NULL AND enabled = 0),
	(SELECT MIN(e.created_at) FROM endpoints ep, deliveries d, events e
		WHERE d.id IN ((SELECT MIN(id) FROM deliveries WHERE endpoint_id = ep.id AND status = 'pending'),
		(SELECT MIN(id) FROM deliveries WHERE endpoint_id = ep.id AND status = 'delivering'))
		AND e.id = d.event_id)`

type stateCollector struct{ o *Outbox }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDeliveries
	ch <- descOldest
	ch <- descEndpoints
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var open, enabled, disabled float64
	var oldest sql.NullInt64
	// The open deliveries are a counter kept by triggers; those being sent
	// are the ones the dispatcher holds; the oldest open delivery of each
	// endpoint is the first in its index (ids are time-ordered). So a
	// scrape costs the same whatever the history holds.
	err := c.o.r.QueryRowContext(ctx, sqlStateMetrics).Scan(&open, &enabled, &disabled, &oldest)
	if err != nil {
		return
	}
	delivering := float64(c.o.delivering.Load())
	pending := max(0, open-delivering)
	ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.GaugeValue, pending, StatusPending)
	ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.GaugeValue, delivering, StatusDelivering)
	age := 0.0
	if oldest.Valid {
		age = max(0, time.Since(time.UnixMilli(oldest.Int64)).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, enabled, "enabled")
	ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, disabled, "disabled")
}
