package app

import "github.com/doorito/portal/tus"

// UploadStore returns the store that hashes uploads as they arrive (after
// Open). Its counters, BytesRehashed and LastFinish, are what the
// benchmarks (cmd/portalbench) read.
func (a *App) UploadStore() *tus.HashStore { return a.tus.Store() }
