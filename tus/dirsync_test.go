package tus

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirSyncShared: concurrent callers share directory syncs, and each
// returns only after a sync that started after its call ended; a caller
// whose covering sync failed gets the result of a sync of its own.
func TestDirSyncShared(t *testing.T) {
	var clock atomic.Int64
	type span struct{ start, end int64 }
	var mu sync.Mutex
	var syncs []span
	failFirst := atomic.Bool{}
	s := &dirSyncer{dir: t.TempDir()}
	s.cond = sync.NewCond(&s.mu)
	s.syncFn = func(string) error {
		sp := span{start: clock.Add(1)}
		time.Sleep(3 * time.Millisecond)
		sp.end = clock.Add(1)
		mu.Lock()
		syncs = append(syncs, sp)
		n := len(syncs)
		mu.Unlock()
		if n == 2 && failFirst.Load() {
			return errors.New("disk on fire")
		}
		return nil
	}
	for _, fail := range []bool{false, true} {
		failFirst.Store(fail)
		mu.Lock()
		syncs = nil
		mu.Unlock()
		const callers = 40
		calls := make([]span, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i%8) * time.Millisecond)
				calls[i].start = clock.Add(1)
				errs[i] = s.sync()
				calls[i].end = clock.Add(1)
			}()
		}
		wg.Wait()
		if len(syncs) >= callers {
			t.Errorf("fail=%v: %d syncs for %d callers: none shared", fail, len(syncs), callers)
		}
		for i, c := range calls {
			if errs[i] != nil {
				t.Errorf("fail=%v: caller %d: %v (its own retry should have succeeded)", fail, i, errs[i])
			}
			covered := false
			for _, sp := range syncs {
				covered = covered || sp.start > c.start && sp.end < c.end
			}
			if !covered {
				t.Errorf("fail=%v: caller %d (%d–%d) returned without a sync begun after its call", fail, i, c.start, c.end)
			}
		}
		t.Logf("fail=%v: %d callers, %d syncs", fail, callers, len(syncs))
	}
}
