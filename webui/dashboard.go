package webui

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// period is a span the dashboard's charts offer.
type period struct {
	Param, Label string
	D            time.Duration
}

// Text is how a sentence names the period: "the last 7 days".
func (p period) Text() string { return "the " + strings.ToLower(p.Label) }

// periods are the dashboard's spans; the first is the default.
var periods = []period{
	{"24h", "Last 24 hours", 24 * time.Hour},
	{"7d", "Last 7 days", 7 * 24 * time.Hour},
}

// parsePeriod reads the dashboard's period parameter: absent, 24h or 7d.
func parsePeriod(q url.Values) (period, bool) {
	vs, ok := q["period"]
	if !ok {
		return periods[0], true
	}
	if len(vs) == 1 {
		for _, p := range periods {
			if vs[0] == p.Param {
				return p, true
			}
		}
	}
	return period{}, false
}

func (u *UI) dashboardPage(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.DashboardCounts == nil {
		u.renderError(w, r, http.StatusNotFound, "The dashboard is not available in this build.")
		return
	}
	p, ok := parsePeriod(r.URL.Query())
	if !ok {
		u.renderError(w, r, http.StatusBadRequest, "The period must be 24h or 7d (for example /ui/dashboard?period=7d).")
		return
	}
	d, err := u.be.DashboardCounts(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	data := map[string]any{"D": d, "Window": u.limits().ExpiringWithin}
	if u.be.DashboardHistory != nil {
		h, err := u.be.DashboardHistory(r, p.D)
		if err != nil {
			u.fail(w, r, err)
			return
		}
		data["History"] = newHistoryView(h, p)
	}
	u.render(w, r, http.StatusOK, "dashboard", view{Title: "Dashboard", Nav: "dashboard", User: user, Data: data})
}

// outcomes are the attempt outcomes in the order the charts stack them.
var outcomes = []struct {
	Key, Name string
	of        func(Outcomes) int64
}{
	{"success", "success", func(o Outcomes) int64 { return o.Success }},
	{"http_error", "HTTP error", func(o Outcomes) int64 { return o.HTTPError }},
	{"network_error", "network error", func(o Outcomes) int64 { return o.NetworkError }},
	{"timeout", "timeout", func(o Outcomes) int64 { return o.Timeout }},
	{"refused", "refused", func(o Outcomes) int64 { return o.Refused }},
}

// historyView is the dashboard's history as the template shows it.
type historyView struct {
	Period  period
	Periods []period
	// From and Until bound the period (UTC): the start of its first hour
	// and the end of the current one.
	From, Until                time.Time
	Uploads, Bytes, Deliveries template.HTML
	// Legend has the outcomes with their totals over the period.
	Legend []legendItem
	// Rows are the hours with anything in them, newest first; Total sums
	// the period.
	Rows  []HourStat
	Total HourStat
	// Endpoints are nil in a build without webhooks.
	Endpoints []endpointHealthView
}

type legendItem struct {
	Key, Name string
	Total     int64
}

// endpointHealthView is an endpoint's row of the dashboard.
type endpointHealthView struct {
	EndpointHealth
	Name  string
	Spark template.HTML
}

func newHistoryView(h History, p period) historyView {
	v := historyView{Period: p, Periods: periods}
	hours := make([]time.Time, len(h.Hours))
	files, bytes := make([]int64, len(h.Hours)), make([]int64, len(h.Hours))
	byOutcome := make([]Series, len(outcomes))
	for i, o := range outcomes {
		byOutcome[i] = Series{Key: o.Key, Name: o.Name, Values: make([]int64, len(h.Hours))}
	}
	for i, s := range h.Hours {
		hours[i], files[i], bytes[i] = s.Hour.UTC(), s.Files, s.Bytes
		for j, o := range outcomes {
			byOutcome[j].Values[i] = o.of(s.Attempts)
		}
		v.Total.Files += s.Files
		v.Total.Bytes += s.Bytes
		v.Total.Succeeded += s.Succeeded
		v.Total.Failed += s.Failed
		v.Total.Attempts = addOutcomes(v.Total.Attempts, s.Attempts)
		if s.Files != 0 || s.Bytes != 0 || s.Attempts.Total() != 0 || s.Succeeded != 0 || s.Failed != 0 {
			v.Rows = append([]HourStat{s}, v.Rows...)
		}
	}
	if n := len(hours); n > 0 {
		v.From, v.Until = hours[0], hours[n-1].Add(time.Hour)
	}
	// Uploads and bytes share a row; the deliveries chart has one of its own.
	uploads := BarChart{ID: "chart-uploads", Title: "Uploads per hour (UTC)", Unit: "uploads", Hours: hours,
		Series: []Series{{Key: "uploads", Name: "uploads", Values: files}}, Width: 440, Height: 200}
	byteChart := BarChart{ID: "chart-bytes", Title: "Bytes uploaded per hour (UTC)", Unit: "uploaded", Hours: hours,
		Series: []Series{{Key: "bytes", Name: "bytes", Values: bytes}}, Format: formatBytes, Width: 440, Height: 200}
	deliveries := BarChart{ID: "chart-deliveries", Title: "Delivery attempts per hour by outcome (UTC)",
		Unit: "attempts", Hours: hours, Series: byOutcome, Width: 960, Height: 220}
	v.Uploads, v.Bytes, v.Deliveries = uploads.SVG(), byteChart.SVG(), deliveries.SVG()
	for _, o := range outcomes {
		v.Legend = append(v.Legend, legendItem{Key: o.Key, Name: o.Name, Total: o.of(v.Total.Attempts)})
	}
	if h.Endpoints != nil {
		v.Endpoints = []endpointHealthView{}
	}
	for _, ep := range h.Endpoints {
		v.Endpoints = append(v.Endpoints, endpointHealthView{EndpointHealth: ep, Name: endpointName(ep.Description, ep.URL),
			Spark: endpointSpark(ep, p)})
	}
	return v
}

func addOutcomes(a, b Outcomes) Outcomes {
	return Outcomes{Success: a.Success + b.Success, HTTPError: a.HTTPError + b.HTTPError,
		NetworkError: a.NetworkError + b.NetworkError, Timeout: a.Timeout + b.Timeout, Refused: a.Refused + b.Refused}
}

// endpointSpark draws an endpoint's successful and failed attempts per
// hour, with the moment it started failing marked.
func endpointSpark(ep EndpointHealth, p period) template.HTML {
	hours := make([]time.Time, len(ep.Hours))
	ok, failed := make([]int64, len(ep.Hours)), make([]int64, len(ep.Hours))
	var nOK, nFailed int64
	for i, h := range ep.Hours {
		hours[i], ok[i], failed[i] = h.Hour, h.Success, h.Failed
		nOK += h.Success
		nFailed += h.Failed
	}
	s := Sparkline{
		Label: fmt.Sprintf("Attempts per hour over %s (UTC): %d succeeded, %d failed", p.Text(), nOK, nFailed),
		Hours: hours, Series: []Series{{Key: "success", Name: "succeeded", Values: ok},
			{Key: "http_error", Name: "failed", Values: failed}},
		Mark: ep.FailingSince,
	}
	if ep.FailingSince != nil {
		s.MarkLabel = "failing since " + formatTime(*ep.FailingSince)
	}
	return s.SVG()
}

// formatRate writes a success rate (0..1) as a percentage: "99.5%"; "—"
// when there is none.
func formatRate(r *float64) string {
	if r == nil {
		return "—"
	}
	p := *r * 100
	if p == 100 || p == 0 {
		return strconv.Itoa(int(p)) + "%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

// formatLatency writes a duration as its largest fitting unit: "48 ms",
// "1.2 s", "3.5 min", "2.0 h".
func formatLatency(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Hour:
		return strconv.FormatFloat(d.Minutes(), 'f', 1, 64) + " min"
	}
	return strconv.FormatFloat(d.Hours(), 'f', 1, 64) + " h"
}
