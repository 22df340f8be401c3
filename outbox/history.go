package outbox

// History: hourly rollups of delivery attempts per endpoint, written by the
// recorder in the same group commits as the attempts (record.go), and the
// read methods the dashboard calls. Reading them costs what the period
// holds (one row per endpoint and hour), never a scan of attempts.

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Attempt outcomes (the delivery_attempts.outcome column, the rollups'
// columns and the attempts metric's label).
const (
	OutcomeSuccess      = "success"
	OutcomeHTTPError    = "http_error"
	OutcomeNetworkError = "network_error"
	OutcomeTimeout      = "timeout"
	OutcomeRefused      = "refused"
)

// LatencyBuckets are the upper bounds of the latency histogram of the
// history: bucket i counts latencies up to LatencyBuckets[i] (and above
// the previous bound); one more bucket counts the longer ones.
var LatencyBuckets = []time.Duration{
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
	30 * time.Minute, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour,
}

// nBuckets is the number of histogram buckets (the bounds and "longer").
const nBuckets = 18

// AttemptCounts count attempts by outcome.
type AttemptCounts struct {
	Success, HTTPError, NetworkError, Timeout, Refused int64
}

// Total is the number of attempts.
func (a AttemptCounts) Total() int64 {
	return a.Success + a.HTTPError + a.NetworkError + a.Timeout + a.Refused
}

// Failed is the number of attempts that did not succeed.
func (a AttemptCounts) Failed() int64 { return a.Total() - a.Success }

func (a *AttemptCounts) add(b AttemptCounts) {
	a.Success += b.Success
	a.HTTPError += b.HTTPError
	a.NetworkError += b.NetworkError
	a.Timeout += b.Timeout
	a.Refused += b.Refused
}

func (a *AttemptCounts) count(outcome string) {
	switch outcome {
	case OutcomeSuccess:
		a.Success++
	case OutcomeHTTPError:
		a.HTTPError++
	case OutcomeTimeout:
		a.Timeout++
	case OutcomeRefused:
		a.Refused++
	default:
		a.NetworkError++
	}
}

// LatencyHistogram is the distribution of delivery latencies (event
// committed -> end of the successful attempt) of deliveries on their first
// schedule: Buckets[i] counts those up to LatencyBuckets[i], the last
// bucket the longer ones.
type LatencyHistogram struct {
	Count   int64
	SumMS   int64
	Buckets [nBuckets]int64
}

func (h *LatencyHistogram) add(b LatencyHistogram) {
	h.Count += b.Count
	h.SumMS += b.SumMS
	for i := range h.Buckets {
		h.Buckets[i] += b.Buckets[i]
	}
}

func (h *LatencyHistogram) observe(d time.Duration) {
	d = max(d, 0)
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	h.Count++
	h.SumMS += d.Milliseconds()
	h.Buckets[i]++
}

// Quantile estimates the q-quantile (0..1) in milliseconds, interpolating
// linearly inside its bucket (as Prometheus' histogram_quantile does); in
// the last, open bucket it is that bucket's lower bound. ok is false when
// the histogram is empty.
func (h LatencyHistogram) Quantile(q float64) (ms float64, ok bool) {
	if h.Count == 0 || q < 0 || q > 1 {
		return 0, false
	}
	rank := q * float64(h.Count)
	var cum int64
	for i, n := range h.Buckets {
		if n == 0 || float64(cum+n) < rank {
			cum += n
			continue
		}
		lo := 0.0
		if i > 0 {
			lo = float64(LatencyBuckets[i-1].Milliseconds())
		}
		if i == len(LatencyBuckets) {
			return lo, true
		}
		hi := float64(LatencyBuckets[i].Milliseconds())
		return lo + (hi-lo)*math.Max(0, rank-float64(cum))/float64(n), true
	}
	return float64(LatencyBuckets[len(LatencyBuckets)-1].Milliseconds()), true
}

// HourStat is one hour of delivery history.
type HourStat struct {
	// Hour is the start of the hour, UTC.
	Hour time.Time
	// Attempts counts the attempts made in the hour by outcome.
	Attempts AttemptCounts
	// Succeeded and Failed count the deliveries that reached that final
	// state in the hour (a delivery replayed later can reach one again).
	Succeeded, Failed int64
	// Latency is the distribution of the hour's successful first-schedule
	// deliveries, from the event's commit.
	Latency LatencyHistogram
}

func (s *HourStat) add(b HourStat) {
	s.Attempts.add(b.Attempts)
	s.Succeeded += b.Succeeded
	s.Failed += b.Failed
	s.Latency.add(b.Latency)
}

// hourOf is the start of t's hour (UTC) in Unix milliseconds.
func hourOf(t time.Time) int64 {
	return t.UTC().Truncate(time.Hour).UnixMilli()
}

// historyDelta is what one record batch adds to the rollups.
type historyDelta map[historyKey]*HourStat

type historyKey struct {
	hour       int64
	endpointID string
}

func (h historyDelta) of(endpointID string, at time.Time) *HourStat {
	k := historyKey{hourOf(at), endpointID}
	s := h[k]
	if s == nil {
		s = &HourStat{}
		h[k] = s
	}
	return s
}

// sqlHistoryUpsert adds one (hour, endpoint) delta to the rollups.
var sqlHistoryUpsert = func() string {
	cols := []string{"hour", "endpoint_id", "success", "http_error", "network_error", "timeout", "refused",
		"succeeded", "failed", "latency_count", "latency_sum"}
	for i := range nBuckets {
		cols = append(cols, "lat_"+strconv.Itoa(i))
	}
	var sets []string
	for _, c := range cols[2:] {
		sets = append(sets, c+" = "+c+" + excluded."+c)
	}
	return "INSERT INTO delivery_hourly (" + strings.Join(cols, ", ") + ") VALUES (?" +
		strings.Repeat(", ?", len(cols)-1) + ") ON CONFLICT (hour, endpoint_id) DO UPDATE SET " + strings.Join(sets, ", ")
}()

// writeHistory adds the batch's delta to the rollups inside tx.
func (o *Outbox) writeHistory(ctx context.Context, tx *sql.Tx, h historyDelta) error {
	for k, s := range h {
		args := []any{k.hour, k.endpointID, s.Attempts.Success, s.Attempts.HTTPError, s.Attempts.NetworkError,
			s.Attempts.Timeout, s.Attempts.Refused, s.Succeeded, s.Failed, s.Latency.Count, s.Latency.SumMS}
		for _, n := range s.Latency.Buckets {
			args = append(args, n)
		}
		if _, err := o.txExec(ctx, tx, sqlHistoryUpsert, args...); err != nil {
			return fmt.Errorf("outbox: history: %w", err)
		}
	}
	return nil
}

// historyColumns are the rollup sums the read queries select, in the order
// scanHourStat reads them.
var historyColumns = func() string {
	cols := []string{"success", "http_error", "network_error", "timeout", "refused", "succeeded", "failed",
		"latency_count", "latency_sum"}
	for i := range nBuckets {
		cols = append(cols, "lat_"+strconv.Itoa(i))
	}
	for i, c := range cols {
		cols[i] = "SUM(" + c + ")"
	}
	return strings.Join(cols, ", ")
}()

// The history's read queries: the hours of a period, all endpoints summed
// or one endpoint's.
var (
	sqlHistoryAll = "SELECT hour, " + historyColumns +
		" FROM delivery_hourly WHERE hour >= ? AND hour <= ? GROUP BY hour ORDER BY hour"
	sqlHistoryEndpoint = "SELECT hour, " + historyColumns +
		" FROM delivery_hourly WHERE endpoint_id = ? AND hour >= ? AND hour <= ? GROUP BY hour ORDER BY hour"
)

func scanHourStat(rows *sql.Rows, hour *int64) (HourStat, error) {
	var s HourStat
	dest := []any{hour, &s.Attempts.Success, &s.Attempts.HTTPError, &s.Attempts.NetworkError, &s.Attempts.Timeout,
		&s.Attempts.Refused, &s.Succeeded, &s.Failed, &s.Latency.Count, &s.Latency.SumMS}
	for i := range s.Latency.Buckets {
		dest = append(dest, &s.Latency.Buckets[i])
	}
	err := rows.Scan(dest...)
	s.Hour = time.UnixMilli(*hour).UTC()
	return s, err
}

// maxHistoryHours bounds the hours one history call returns (about 13
// months).
const maxHistoryHours = 400 * 24

// hoursBetween lists the starts of the hours from since's to the one
// before until's (until's own hour when until is not on an hour).
func hoursBetween(since, until time.Time) ([]int64, error) {
	first, end := hourOf(since), until.UTC().UnixMilli()
	if end <= first {
		return nil, nil
	}
	n := (end - first + int64(time.Hour/time.Millisecond) - 1) / int64(time.Hour/time.Millisecond)
	if n > maxHistoryHours {
		return nil, invalidf("a history spans at most %d days", maxHistoryHours/24)
	}
	hours := make([]int64, n)
	for i := range hours {
		hours[i] = first + int64(i)*int64(time.Hour/time.Millisecond)
	}
	return hours, nil
}

// DeliveryHistory returns one HourStat per hour from the start of since's
// hour until until (all endpoints summed, deleted ones included), oldest
// first; hours without attempts are there with zeros.
func (o *Outbox) DeliveryHistory(ctx context.Context, since, until time.Time) ([]HourStat, error) {
	hours, err := hoursBetween(since, until)
	if err != nil || len(hours) == 0 {
		return nil, err
	}
	out, err := o.denseHours(ctx, hours, sqlHistoryAll, hours[0], hours[len(hours)-1])
	if err != nil {
		return nil, fmt.Errorf("outbox: delivery history: %w", err)
	}
	return out, nil
}

// denseHours runs a history query (rows of hour and sums, in hour order)
// and returns one HourStat per hour of hours.
func (o *Outbox) denseHours(ctx context.Context, hours []int64, query string, args ...any) ([]HourStat, error) {
	rows, err := o.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]HourStat, len(hours))
	for i, h := range hours {
		out[i].Hour = time.UnixMilli(h).UTC()
	}
	first := hours[0]
	for rows.Next() {
		var h int64
		s, err := scanHourStat(rows, &h)
		if err != nil {
			return nil, err
		}
		if i := (h - first) / int64(time.Hour/time.Millisecond); i >= 0 && int(i) < len(out) {
			out[i] = s
		}
	}
	return out, rows.Err()
}

// EndpointHealth is one endpoint's delivery figures over a period.
type EndpointHealth struct {
	EndpointID  string
	URL         string
	Description string
	Enabled     bool
	// DisabledReason and DisabledAt say why and when it was disabled
	// (nil when enabled).
	DisabledReason *string
	DisabledAt     *time.Time
	// FailingSince is when its attempts started failing (the first failed
	// attempt since the last success; nil when the last one succeeded).
	FailingSince *time.Time
	// Attempts counts the period's attempts by outcome.
	Attempts AttemptCounts
	// SuccessRate is the share of the period's attempts that succeeded
	// (0..1; nil when there were none).
	SuccessRate *float64
	// Succeeded and Failed count deliveries that reached that final state.
	Succeeded, Failed int64
	// Latency is the distribution of the period's delivery latencies (event
	// committed -> success, first schedule); P95MS its 95th percentile in
	// milliseconds (nil when there was no successful delivery).
	Latency LatencyHistogram
	P95MS   *float64
	// Hours has one point per hour of the period, oldest first (for a
	// sparkline).
	Hours []HourStat
}

// EndpointHealth returns the figures of every endpoint that is not deleted
// (oldest first) from the start of since's hour until now.
func (o *Outbox) EndpointHealth(ctx context.Context, since time.Time) ([]EndpointHealth, error) {
	eps, err := o.ListEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	hours, err := hoursBetween(since, o.clock().Add(time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := make([]EndpointHealth, 0, len(eps))
	for _, ep := range eps {
		h := EndpointHealth{EndpointID: ep.ID, URL: ep.URL, Description: ep.Description, Enabled: ep.Enabled,
			DisabledReason: ep.DisabledReason, DisabledAt: ep.DisabledAt, FailingSince: ep.FailingSince}
		if len(hours) > 0 {
			if h.Hours, err = o.endpointHours(ctx, ep.ID, hours); err != nil {
				return nil, err
			}
		}
		var sum HourStat
		for _, s := range h.Hours {
			sum.add(s)
		}
		h.Attempts, h.Succeeded, h.Failed, h.Latency = sum.Attempts, sum.Succeeded, sum.Failed, sum.Latency
		if n := sum.Attempts.Total(); n > 0 {
			r := float64(sum.Attempts.Success) / float64(n)
			h.SuccessRate = &r
		}
		if p, ok := sum.Latency.Quantile(0.95); ok {
			h.P95MS = &p
		}
		out = append(out, h)
	}
	return out, nil
}

// endpointHours reads one endpoint's rollups of the hours.
func (o *Outbox) endpointHours(ctx context.Context, endpointID string, hours []int64) ([]HourStat, error) {
	out, err := o.denseHours(ctx, hours, sqlHistoryEndpoint, endpointID, hours[0], hours[len(hours)-1])
	if err != nil {
		return nil, fmt.Errorf("outbox: endpoint health: %w", err)
	}
	return out, nil
}
