//go:build unix

package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrDataDirInUse is returned when another portal serves the data directory.
var ErrDataDirInUse = errors.New("data directory is in use by another running portal")

// lockDataDir takes the kernel lock (flock) that makes a portal the only
// server of its data directory. The kernel drops it when the process ends,
// however it ends, so nothing stale is left behind and no PID is written
// anywhere; the upload locks can then live in this process alone. The CLI
// helpers (backup, user add, token create) do not take it: they work beside
// a running server through SQLite's own locking.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "portal.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrDataDirInUse, dir)
		}
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return f, nil
}
