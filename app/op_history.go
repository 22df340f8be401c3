package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/outbox"
	"github.com/doorito/portal/webui"
)

// The dashboard's history reads hourly rollups only: file_hours (kept in
// finalize's transaction) and the outbox's delivery history (kept in the
// recorder's). Each costs a row per hour (and endpoint) of the period,
// whatever the number of files, events and attempts.

// DashboardPeriods are the spans the dashboard's history covers.
var DashboardPeriods = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour}

// sqlFileHours reads the files stored per hour (hour = stored_at / 3600000)
// of a range of hours.
const sqlFileHours = `SELECT hour, files, bytes FROM file_hours WHERE hour >= ? AND hour <= ? ORDER BY hour`

// DashboardHistory returns the hourly history of the period (one of
// DashboardPeriods) that ends with the current hour (UTC): uploads,
// delivery attempts by outcome and finished deliveries per hour, and every
// endpoint's figures over the last 24 hours and 7 days.
func (o *Ops) DashboardHistory(ctx context.Context, id access.Identity, period time.Duration) (webui.History, error) {
	if _, err := o.check(id, access.Dashboard); err != nil {
		return webui.History{}, err
	}
	if !slices.Contains(DashboardPeriods, period) {
		return webui.History{}, invalid("period", "the period must be 24h or 7d")
	}
	cur := o.a.cfg.Now().UTC().Truncate(time.Hour)
	n := int(period / time.Hour)
	first := cur.Add(-time.Duration(n-1) * time.Hour)
	h := webui.History{Period: period, Hours: make([]webui.HourStat, n)}
	for i := range h.Hours {
		h.Hours[i].Hour = first.Add(time.Duration(i) * time.Hour)
	}
	if err := o.a.fileHours(ctx, h.Hours); err != nil {
		return h, err
	}
	ds, err := o.a.outbox.DeliveryHistory(ctx, first, cur.Add(time.Hour))
	if err != nil {
		return h, err
	}
	for _, s := range ds {
		if i, ok := hourIndex(h.Hours, s.Hour); ok {
			h.Hours[i].Attempts, h.Hours[i].Succeeded, h.Hours[i].Failed = uiOutcomes(s.Attempts), s.Succeeded, s.Failed
		}
	}
	h.Endpoints, err = o.endpointHealth(ctx, cur, h.Hours)
	return h, err
}

// hourIndex is the index of the hour starting at t in hours (consecutive,
// oldest first).
func hourIndex(hours []webui.HourStat, t time.Time) (int, bool) {
	if len(hours) == 0 {
		return 0, false
	}
	i := int(t.Sub(hours[0].Hour) / time.Hour)
	return i, i >= 0 && i < len(hours) && hours[i].Hour.Equal(t)
}

// fileHours fills in the files and bytes stored in each hour.
func (a *App) fileHours(ctx context.Context, hours []webui.HourStat) error {
	const msPerHour = int64(time.Hour / time.Millisecond)
	rows, err := a.db.R.QueryContext(ctx, sqlFileHours,
		hours[0].Hour.UnixMilli()/msPerHour, hours[len(hours)-1].Hour.UnixMilli()/msPerHour)
	if err != nil {
		return fmt.Errorf("dashboard: files per hour: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var hour, files, bytes int64
		if err := rows.Scan(&hour, &files, &bytes); err != nil {
			return fmt.Errorf("dashboard: files per hour: %w", err)
		}
		if i, ok := hourIndex(hours, time.UnixMilli(hour*msPerHour).UTC()); ok {
			hours[i].Files, hours[i].Bytes = files, bytes
		}
	}
	return rows.Err()
}

// endpointHealth returns every endpoint's figures over the last 24 hours
// and 7 days (up to the current hour, cur) and its attempts per hour of
// hours.
func (o *Ops) endpointHealth(ctx context.Context, cur time.Time, hours []webui.HourStat) ([]webui.EndpointHealth, error) {
	week, err := o.a.outbox.EndpointHealth(ctx, cur.Add(-(7*24-1)*time.Hour))
	if err != nil {
		return nil, err
	}
	day, err := o.a.outbox.EndpointHealth(ctx, cur.Add(-23*time.Hour))
	if err != nil {
		return nil, err
	}
	dayOf := map[string]outbox.EndpointHealth{}
	for _, ep := range day {
		dayOf[ep.EndpointID] = ep
	}
	out := make([]webui.EndpointHealth, 0, len(week))
	for _, ep := range week {
		e := webui.EndpointHealth{ID: ep.EndpointID, URL: ep.URL, Description: ep.Description, Enabled: ep.Enabled,
			DisabledAt: ep.DisabledAt, FailingSince: ep.FailingSince, Week: endpointFigures(ep),
			Day: endpointFigures(dayOf[ep.EndpointID])}
		if ep.DisabledReason != nil {
			e.DisabledReason = *ep.DisabledReason
		}
		// The week's hours hold the period's (up to the hour the outbox
		// read as its current one).
		e.Hours = make([]webui.EndpointHour, len(hours))
		for i := range hours {
			e.Hours[i].Hour = hours[i].Hour
		}
		for _, s := range ep.Hours {
			if i, ok := hourIndex(hours, s.Hour); ok {
				e.Hours[i].Success, e.Hours[i].Failed = s.Attempts.Success, s.Attempts.Failed()
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// endpointFigures converts an endpoint's figures over a period.
func endpointFigures(ep outbox.EndpointHealth) webui.EndpointFigures {
	f := webui.EndpointFigures{Attempts: ep.Attempts.Total(), Successes: ep.Attempts.Success,
		Succeeded: ep.Succeeded, Failed: ep.Failed, SuccessRate: ep.SuccessRate}
	if ep.P95MS != nil {
		d := time.Duration(*ep.P95MS * float64(time.Millisecond))
		f.P95 = &d
	}
	return f
}

func uiOutcomes(a outbox.AttemptCounts) webui.Outcomes {
	return webui.Outcomes{Success: a.Success, HTTPError: a.HTTPError, NetworkError: a.NetworkError,
		Timeout: a.Timeout, Refused: a.Refused}
}
