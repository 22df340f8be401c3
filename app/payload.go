package app

import (
	"time"
)

// Event types the portal emits (PEP 0016 names; see docs/events.md).
const (
	EventFileUploaded = "file.uploaded"
	EventFileExpiring = "file.expiring"
	EventFileDeleted  = "file.deleted"
)

// EventPayload is the PEP 0016 event shape shared by every file event, plus
// the portal's additive fields (file.expires_at, file.metadata,
// file.download_url, source, and reason on file.deleted). Fields are never
// removed or renamed.
type EventPayload struct {
	EventType  string       `json:"event_type"`
	EventID    string       `json:"event_id"`
	OccurredAt string       `json:"occurred_at"`
	File       PayloadFile  `json:"file"`
	Actor      PayloadActor `json:"actor"`
	Source     string       `json:"source"`
	Reason     string       `json:"reason,omitempty"`
}

// PayloadFile describes the file an event is about.
type PayloadFile struct {
	ID          string            `json:"id"`
	Filename    string            `json:"filename"`
	ContentType string            `json:"content_type"`
	SizeBytes   int64             `json:"size_bytes"`
	SHA256      string            `json:"sha256"`
	Storage     Storage           `json:"storage"`
	ExpiresAt   string            `json:"expires_at"`
	Metadata    map[string]string `json:"metadata"`
	DownloadURL string            `json:"download_url"`
}

// Storage points at a file's bytes in its storage backend.
type Storage struct {
	Backend string `json:"backend"`
	Bucket  string `json:"bucket"`
	Key     string `json:"key"`
}

// PayloadActor names the user who caused the event; both fields are null
// when no authenticated user did.
type PayloadActor struct {
	UserID   *string `json:"user_id"`
	Username *string `json:"username"`
}

// rfc3339 formats t the way every timestamp in the API and events is
// written: RFC 3339, UTC, millisecond precision.
func rfc3339(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// newPayload builds the payload of an event of type typ about f.
func (a *App) newPayload(typ, eventID string, at time.Time, f File, actor PayloadActor) EventPayload {
	meta := f.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return EventPayload{
		EventType:  typ,
		EventID:    eventID,
		OccurredAt: rfc3339(at),
		File: PayloadFile{
			ID:          f.ID,
			Filename:    f.Filename,
			ContentType: f.ContentType,
			SizeBytes:   f.SizeBytes,
			SHA256:      f.SHA256,
			Storage:     f.Storage,
			ExpiresAt:   rfc3339(f.ExpiresAt),
			Metadata:    meta,
			DownloadURL: a.publicURL + "/api/v1/files/" + f.ID + "/content",
		},
		Actor:  actor,
		Source: a.publicURL,
	}
}
