package app

import "github.com/doorito/portal/tus"

// UploadStore returns the local store that hashes uploads as they arrive
// (after Open), or nil with S3 storage. Its counters, BytesRehashed and
// LastFinish, are what the benchmarks (cmd/portalbench) read.
func (a *App) UploadStore() *tus.HashStore { return a.tus.Store() }

// Uploads returns the tus server (after Open): its BytesRehashed counts
// the bytes read back on either backend.
func (a *App) Uploads() *tus.Server { return a.tus }
