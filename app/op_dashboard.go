package app

import (
	"context"
	"fmt"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/webui"
	"github.com/robfig/cron/v3"
)

// The dashboard's own queries (their plans are tested: each reads an index
// range or a small table, never all files or uploads). Files expiring soon
// come from the per-hour counts the triggers keep (expiringCount).
const (
	sqlUsers = `SELECT COUNT(*) FROM users`
	// The partial index uploads_open holds only the uploads in progress.
	sqlUploadsInProgress = `SELECT COUNT(*) FROM uploads WHERE done_at IS NULL AND partial = 0`
)

// Dashboard counts what the admin overview shows: files, uploads in
// progress, events, users, webhook delivery and the scheduled jobs.
func (o *Ops) Dashboard(ctx context.Context, id access.Identity) (webui.Dashboard, error) {
	if _, err := o.check(id, access.Dashboard); err != nil {
		return webui.Dashboard{}, err
	}
	a := o.a
	var d webui.Dashboard
	counts, err := a.fileCounts(ctx)
	if err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	d.FilesStored, d.BytesStored = counts[StatusStored].n, counts[StatusStored].bytes
	d.FilesDeleted = counts[StatusDeleted].n
	if d.ExpiringSoon, err = a.expiringCount(ctx, a.cfg.Now().Add(a.expiringWindow())); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	if err := a.db.R.QueryRowContext(ctx, sqlUsers).Scan(&d.Users); err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	if err := a.db.R.QueryRowContext(ctx, sqlUploadsInProgress).Scan(&d.UploadsInProgress); err != nil {
		return d, fmt.Errorf("dashboard: uploads: %w", err)
	}
	if d.Delivery, err = o.deliveryStats(ctx, id, &d.Events); err != nil {
		return d, err
	}
	d.Jobs = a.uiJobs()
	return d, nil
}

// deliveryStats is the dashboard's webhook summary; it also counts the
// events.
func (o *Ops) deliveryStats(ctx context.Context, id access.Identity, events *int64) (*webui.DeliveryStats, error) {
	eps, err := o.a.outbox.ListEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	t, err := o.a.outbox.Totals(ctx)
	if err != nil {
		return nil, err
	}
	*events = t.Events
	s := &webui.DeliveryStats{Endpoints: len(eps), Backlog: t.Backlog, Failed: t.Failed}
	for _, ep := range eps {
		if ep.Enabled {
			s.EndpointsEnabled++
		}
		if ep.FailingSince != nil || !ep.Enabled && ep.DisabledReason != nil {
			st, err := o.a.outbox.EndpointStats(ctx, ep.ID, o.a.cfg.Now().Add(-endpointStatsWindow))
			if err != nil {
				return nil, err
			}
			s.FailingEndpoints = append(s.FailingEndpoints, endpointView(ep, st))
		}
	}
	return s, nil
}
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
