package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/doorito/portal/app"
	"github.com/doorito/portal/outbox"
	"github.com/google/uuid"
)

// writeBacklog creates one endpoint per path of recv (registering its
// secret there) and appends n file.uploaded events through the outbox, so
// each gets one pending delivery per endpoint, as the finalizer would.
func writeBacklog(ctx context.Context, dataDir string, n int, recv *receiver, paths []string) error {
	db, err := app.OpenDB(ctx, filepath.Join(dataDir, "portal.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	o := outbox.New(db.W, db.R)
	for _, p := range paths {
		_, secret, err := o.CreateEndpoint(ctx, outbox.EndpointParams{URL: recv.url(p), Description: "portalbench"})
		if err != nil {
			return err
		}
		if err := recv.addEndpoint(p, secret); err != nil {
			return err
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	return inBatches(ctx, db.W, n, 1000, func(tx *sql.Tx, i int) error {
		id := uuid.Must(uuid.NewV7()).String()
		payload, _ := json.Marshal(backlogPayload(id, i, now))
		return o.Append(ctx, tx, outbox.Event{ID: id, Type: "file.uploaded", Payload: payload, CreatedAt: now})
	})
}

// inBatches calls add for row 0..n-1, batch rows per write transaction.
func inBatches(ctx context.Context, w *sql.DB, n, batch int, add func(tx *sql.Tx, i int) error) error {
	for done := 0; done < n; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for i := 0; i < batch && done < n; i++ {
			if err := add(tx, done); err != nil {
				tx.Rollback()
				return err
			}
			done++
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// backlogPayload is an event body of the usual size and shape.
func backlogPayload(id string, i int, at time.Time) map[string]any {
	return map[string]any{
		"event_type": "file.uploaded", "event_id": id, "occurred_at": at.Format(time.RFC3339Nano),
		"file": map[string]any{
			"id": uuid.Must(uuid.NewV7()).String(), "filename": fmt.Sprintf("backlog-%d.bin", i),
			"content_type": "application/octet-stream", "size_bytes": 1 << 20, "sha256": fmt.Sprintf("%064x", i),
			"storage":    map[string]any{"backend": "local", "bucket": "uploads", "key": fmt.Sprintf("%032x", i)},
			"expires_at": at.Add(7 * 24 * time.Hour).Format(time.RFC3339Nano), "metadata": map[string]string{},
		},
		"actor":  map[string]any{"user_id": nil, "username": nil},
		"source": "http://127.0.0.1",
	}
}

// deliveryCounts waits (until deadline) for the database to record want
// succeeded deliveries and returns the succeeded deliveries and attempts.
func deliveryCounts(ctx context.Context, dataDir string, want int64, deadline time.Time) (succeeded, attempts int64, err error) {
	db, err := app.OpenDB(ctx, filepath.Join(dataDir, "portal.db"))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	for {
		if err := db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'").Scan(&succeeded); err != nil {
			return 0, 0, err
		}
		if succeeded >= want {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return succeeded, 0, fmt.Errorf("%d of %d deliveries recorded as succeeded", succeeded, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM delivery_attempts").Scan(&attempts)
	return succeeded, attempts, err
}
