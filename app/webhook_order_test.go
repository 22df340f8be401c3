package app

import (
	"net/http"
	"testing"
	"time"
)

// One endpoint receives a file's events in commit order even with several
// workers per endpoint: the file.deleted of a file waits while that file's
// file.uploaded is still being retried to the same endpoint, and other
// files' events are not held up by it.
func TestWebhookPerFileOrder(t *testing.T) {
	cfg := whConfig()
	cfg.DeliveryPerEndpoint = 4
	cfg.DeliverySchedule = []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}
	a := MustOpen(t, cfg)
	rc, _ := whReceiverEndpoint(t, a)
	// The first file.uploaded delivery fails once; everything else succeeds.
	failedOnce := false
	rc.setRespond(func(n int, r *http.Request) (int, http.Header, string) {
		if !failedOnce {
			failedOnce = true
			return http.StatusInternalServerError, nil, "try later"
		}
		return http.StatusNoContent, nil, ""
	})
	first := whUpload(t, a)
	if d := rc.next(5 * time.Second); d.eventID() != first || d.Status != 500 {
		t.Fatalf("first delivery %s answered %d, want %s answered 500", d.eventID(), d.Status, first)
	}
	ev := whEvent(t, a, first)
	fileID := ev.FileID
	// Delete the file while its file.uploaded waits for its retry, and
	// upload a second file meanwhile.
	if st, body := whDo(t, a, "DELETE", "/api/v1/files/"+fileID, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, body)
	}
	second := whUpload(t, a)

	var order []string
	deadline := time.Now().Add(10 * time.Second)
	for len(order) < 3 && time.Now().Before(deadline) {
		d := rc.next(5 * time.Second)
		p := d.payload(t)
		file := p["file"].(map[string]any)["id"].(string)
		order = append(order, p["event_type"].(string)+"@"+map[bool]string{true: "first", false: "second"}[file == fileID])
		if d.eventID() == second && len(order) != 1 {
			t.Errorf("the second file's event was held up behind the first file's retry: %v", order)
		}
	}
	want := []string{"file.uploaded@second", "file.uploaded@first", "file.deleted@first"}
	if len(order) != 3 || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("deliveries arrived as %v, want %v", order, want)
	}
}
