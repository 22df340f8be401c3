package app

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/doorito/portal/internal/keyset"
	"github.com/doorito/portal/outbox"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"
)

// Collectors of the ingest path. They are registered on the App's own
// registry in newRegistry; label values come from fixed sets only.
var (
	metricEventsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portal_events_written_total",
		Help: "Events written to the outbox, by event type.",
	}, []string{"type"})
	metricFinalizeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portal_finalize_duration_seconds",
		Help:    "Time to record a completed upload: the file row and its event, committed.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	})
	metricFinalizeFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portal_finalize_failures_total",
		Help: "Finalizations that failed (the sweep retries them).",
	})
	metricRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portal_http_request_duration_seconds",
		Help:    "HTTP request durations by route group (tus, api, ui, static, schemas, health, metrics), method and status class.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"route", "method", "code"})
	metricSweepFinalized = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portal_sweep_finalized_total",
		Help: "Completed uploads finalized by the sweep rather than the upload's own request.",
	})
)

var fileStatusDesc = struct{ files, bytes *prometheus.Desc }{
	files: prometheus.NewDesc("portal_files", "Files by status.", []string{"status"}, nil),
	bytes: prometheus.NewDesc("portal_file_bytes", "Bytes of files by status.", []string{"status"}, nil),
}

// fileCollector reads file counts from the database at scrape time.
type fileCollector struct{ a *App }

func (c fileCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fileStatusDesc.files
	ch <- fileStatusDesc.bytes
}

func (c fileCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.a.fileCounts(ctx)
	if err != nil {
		c.a.log.Warn("metrics: count files", "err", err)
		return
	}
	for _, status := range []string{StatusStored, StatusDeleted} {
		ch <- prometheus.MustNewConstMetric(fileStatusDesc.files, prometheus.GaugeValue, float64(counts[status].n), status)
		ch <- prometheus.MustNewConstMetric(fileStatusDesc.bytes, prometheus.GaugeValue, float64(counts[status].bytes), status)
	}
}

// newRegistry builds the portal's own registry: Go and process collectors,
// tusd's collector (tusd_*), build info and the portal_* collectors.
var usageDesc = struct{ used, reserved, quota *prometheus.Desc }{
	used: prometheus.NewDesc("portal_storage_used_bytes",
		"Bytes of stored files per account (user=\"\" for anonymous uploads).", []string{"user"}, nil),
	reserved: prometheus.NewDesc("portal_storage_reserved_bytes",
		"Bytes reserved by uploads in progress per account.", []string{"user"}, nil),
	quota: prometheus.NewDesc("portal_storage_quota_bytes",
		"Storage quota per account (0: no limit).", []string{"user"}, nil),
}

// usageCollector reads every account's usage against its quota at scrape
// time: one row per account, from the usage the upload transactions keep.
type usageCollector struct{ a *App }

func (c usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- usageDesc.used
	ch <- usageDesc.reserved
	ch <- usageDesc.quota
}

func (c usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := c.a.db.R.QueryContext(ctx, `SELECT '' AS user_key, '' AS username UNION ALL SELECT id, username FROM users`)
	accounts, err := keyset.All(rows, err, func(s keyset.Scanner) ([2]string, error) {
		var k [2]string
		return k, s.Scan(&k[0], &k[1])
	})
	if err != nil {
		c.a.log.Warn("metrics: accounts", "err", err)
		return
	}
	for _, acc := range accounts {
		u, err := c.a.usage(ctx, c.a.db.R, acc[0])
		if err != nil {
			c.a.log.Warn("metrics: usage", "err", err)
			return
		}
		ch <- prometheus.MustNewConstMetric(usageDesc.used, prometheus.GaugeValue, float64(u.Stored), acc[1])
		ch <- prometheus.MustNewConstMetric(usageDesc.reserved, prometheus.GaugeValue, float64(u.Reserved), acc[1])
		ch <- prometheus.MustNewConstMetric(usageDesc.quota, prometheus.GaugeValue, float64(u.Quota), acc[1])
	}
}

func (a *App) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheuscollector.New(a.tus.Metrics()),
		fileCollector{a},
		usageCollector{a},
		jobCollector{a},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "portal_build_info",
			Help:        "Build information; the value is always 1.",
			ConstLabels: prometheus.Labels{"version": a.cfg.Version},
		}, func() float64 { return 1 }),
	)
	for _, c := range []prometheus.Collector{metricEventsWritten, metricCommitBatch, metricFinalizeDuration, metricFinalizeFailures, metricSweepFinalized, metricRequestDuration} {
		// The package-level collectors are shared by every App in a process
		// (tests open many); each registry registers them once.
		reg.MustRegister(c)
	}
	reg.MustRegister(outbox.Collectors(a.outbox)...) // webhook delivery
	reg.MustRegister(a.tus.Collectors()...)          // bytes read back; S3 reads and s3store's own
	return reg
}

// metricsHandler serves the registry in the Prometheus exposition format.
func (a *App) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{ErrorLog: nil})
}

// routeGroup maps a request path to one of a fixed set of route groups, so
// the label set stays bounded whatever paths clients send.
func routeGroup(path string) string {
	switch {
	case path == "/files" || strings.HasPrefix(path, "/files/"):
		return "tus"
	case strings.HasPrefix(path, "/api/"):
		return "api"
	case strings.HasPrefix(path, "/static/"):
		return "static"
	case strings.HasPrefix(path, "/schemas/"):
		return "schemas"
	case path == "/healthz" || path == "/readyz":
		return "health"
	case path == "/metrics":
		return "metrics"
	default:
		return "ui"
	}
}

// methodLabel keeps the method label to the methods the portal serves.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodPut:
		return m
	}
	return "other"
}

// statusClass is "2xx", "4xx", ….
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
