package app

import (
	"context"
	"net/http"
	"os"
	"time"
)

// healthz serves GET /healthz: the process is alive and serving.
func (a *App) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": a.cfg.Version})
	return nil
}

// readyz serves GET /readyz: the database answers and the upload directory
// takes writes. It answers 503 with the failing checks otherwise.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) error {
	checks := a.readiness(r.Context())
	status, code := "ok", http.StatusOK
	for _, v := range checks {
		if v != "ok" {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	return nil
}

func (a *App) readiness(ctx context.Context) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "storage": "ok", "dispatcher": "ok"}
	if err := a.databaseWritable(ctx); err != nil {
		checks["database"] = "error: " + err.Error()
	}
	f, err := os.CreateTemp(a.UploadDir(), ".readyz-*")
	if err != nil {
		checks["storage"] = "error: upload dir is not writable"
	} else {
		f.Close()
		os.Remove(f.Name())
	}
	if err := a.tus.Check(ctx); err != nil {
		checks["storage"] = "error: " + err.Error()
	}
	if e := a.checkFreeSpace(); e != nil {
		checks["storage"] = "error: " + e.Message
	}
	if a.webhooks == nil || !a.webhooks.Running() {
		checks["dispatcher"] = "error: the webhook dispatcher is not running"
	}
	return checks
}

// databaseWritable takes SQLite's write lock (the writer pool's
// transactions begin IMMEDIATE) and releases it: it fails when another
// writer holds the database past the busy timeout or the file cannot be
// written.
func (a *App) databaseWritable(ctx context.Context) error {
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	return tx.Rollback()
}
