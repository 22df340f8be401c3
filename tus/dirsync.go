package tus

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Shared directory syncs. A new upload's directory entry is durable only
// once its directory is synced. All uploads of a store share one
// directory, so when many small uploads finish at once each would wait for
// its own sync of the same directory, one after another. One sync that
// starts after an entry was made covers it, so callers share them: a caller
// waits for the next sync to start after its call (starting it if none is
// running) and returns that sync's result. No entry is reported durable by
// a sync that began before it was asked for.

// dirSyncs keeps one syncer per directory.
type dirSyncs struct {
	mu   sync.Mutex
	dirs map[string]*dirSyncer
}

// sync makes the directory entries in dir made before the call durable.
func (d *dirSyncs) sync(dir string) error {
	d.mu.Lock()
	if d.dirs == nil {
		d.dirs = map[string]*dirSyncer{}
	}
	s := d.dirs[dir]
	if s == nil {
		s = &dirSyncer{dir: dir, syncFn: syncDir}
		s.cond = sync.NewCond(&s.mu)
		d.dirs[dir] = s
	}
	d.mu.Unlock()
	return s.sync()
}

// dirSyncer shares the syncs of one directory. Syncs run one at a time
// and are numbered as they start; started and done count them (one is
// running while started > done).
type dirSyncer struct {
	dir     string
	syncFn  func(dir string) error // syncDir (tests count and fail syncs)
	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // syncs begun
	done    uint64 // syncs ended (they end in order)
	lastOK  uint64 // the number of the last sync that succeeded
}

func (s *dirSyncer) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Any sync numbered ticket or later starts after this call.
	ticket := s.started + 1
	for s.done < ticket {
		if s.started > s.done { // one is running
			s.cond.Wait()
			continue
		}
		s.started++
		n := s.started
		s.mu.Unlock()
		err := s.syncFn(s.dir)
		s.mu.Lock()
		s.done = n
		if err == nil {
			s.lastOK = n
		}
		s.cond.Broadcast()
	}
	if s.lastOK >= ticket {
		return nil
	}
	// The sync that covered this call failed: sync again alone, so the
	// error is this caller's own.
	s.mu.Unlock()
	err := s.syncFn(s.dir)
	s.mu.Lock()
	return err
}

// syncDir flushes a directory's entries to stable storage.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync upload dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync upload dir: %w", err)
	}
	return nil
}

// syncFile flushes a file and its directory entry to stable storage.
func (s *HashStore) syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync upload: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("sync upload: %w", err)
	}
	return s.dirSyncs.sync(filepath.Dir(path))
}
