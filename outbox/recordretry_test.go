package outbox

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// failWrites installs a trigger that makes the writes it names fail (as a
// full disk would), until the returned function drops it.
func failWrites(tb testing.TB, o *Outbox, trigger string) (restore func()) {
	tb.Helper()
	if _, err := o.w.Exec("CREATE TRIGGER fail_writes " + trigger + " BEGIN SELECT RAISE(ABORT, 'injected: disk full'); END"); err != nil {
		tb.Fatal(err)
	}
	return func() {
		if _, err := o.w.Exec("DROP TRIGGER fail_writes"); err != nil {
			tb.Fatal(err)
		}
	}
}

// countingEndpoint registers an endpoint that answers 204 and counts the
// requests, and returns the count.
func countingEndpoint(tb testing.TB, o *Outbox) *atomic.Int64 {
	tb.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(srv.Close)
	if _, _, err := o.CreateEndpoint(context.Background(), EndpointParams{URL: srv.URL}); err != nil {
		tb.Fatal(err)
	}
	return &hits
}

// runDispatcher runs a dispatcher (polling every 50 ms) until the test ends.
func runDispatcher(tb testing.TB, o *Outbox) {
	d := NewDispatcher(o, DispatcherConfig{Policy: NetPolicy{AllowPrivate: true}, PollInterval: 50 * time.Millisecond})
	ctx, stop := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { d.Run(ctx); close(finished) }()
	tb.Cleanup(func() { stop(); <-finished })
}

// deliveryStatuses counts the deliveries by status.
func deliveryStatuses(tb testing.TB, o *Outbox) map[string]int {
	tb.Helper()
	rows, err := o.r.Query("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		rows.Scan(&s, &n)
		out[s] = n
	}
	return out
}

func waitStatuses(tb testing.TB, o *Outbox, want map[string]int, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		got := deliveryStatuses(tb, o)
		same := len(got) == len(want)
		for k, v := range want {
			same = same && got[k] == v
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("deliveries %v after %s, want %v", got, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An attempt whose record fails (the database cannot commit) is recorded
// later, without a restart, and its delivery is held meanwhile (pending in
// the database, not claimed and sent again).
func TestFailedRecordIsWrittenLater(t *testing.T) {
	o, _ := mustOutbox(t)
	hits := countingEndpoint(t, o)
	restore := failWrites(t, o, "BEFORE INSERT ON delivery_attempts")
	appendEvent(t, o, "file.uploaded")
	runDispatcher(t, o)
	for deadline := time.Now().Add(5 * time.Second); hits.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the delivery never arrived")
		}
	}
	time.Sleep(700 * time.Millisecond) // past the first retry of the record
	if got := deliveryStatuses(t, o); got[StatusPending] != 1 {
		t.Fatalf("deliveries %v while records fail, want 1 pending", got)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d requests while the record fails, want 1: a held delivery is not sent again", n)
	}
	restore()
	waitStatuses(t, o, map[string]int{StatusSucceeded: 1}, 5*time.Second)
	if n := hits.Load(); n != 1 {
		t.Errorf("%d requests, want 1: the record was written again, the event not sent again", n)
	}
}

// Deliveries a crash left "delivering" are queued again even when the
// first recovery fails, and nothing is claimed before it has worked.
func TestRecoveryRetried(t *testing.T) {
	o, _ := mustOutbox(t)
	hits := countingEndpoint(t, o)
	appendEvent(t, o, "file.uploaded")
	o.w.Exec("UPDATE deliveries SET status = 'delivering'") // as a crash mid-request leaves it
	appendEvent(t, o, "file.uploaded")                      // a fresh one, pending
	restore := failWrites(t, o, "BEFORE UPDATE OF status ON deliveries WHEN OLD.status = 'delivering' AND NEW.status = 'pending'")
	runDispatcher(t, o)
	time.Sleep(300 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests before the recovery worked, want 0", n)
	}
	restore()
	waitStatuses(t, o, map[string]int{StatusSucceeded: 2}, 5*time.Second)
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}
