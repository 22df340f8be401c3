package webui

import (
	"errors"
	"net/http"
	"time"
)

// Role names, as the portal stores them.
const (
	RoleAdmin    = "admin"
	RoleUploader = "uploader"
)

// User is the signed-in user, or a row of the users page.
type User struct {
	ID        string
	Username  string
	Role      string
	Disabled  bool
	CreatedAt time.Time
	// Storage the user holds (stored files, uploads in progress) and
	// their quota (0: none); shown on the users page.
	StoredBytes, ReservedBytes, QuotaBytes int64
}

// Admin reports whether u may see the admin pages.
func (u *User) Admin() bool { return u != nil && u.Role == RoleAdmin }

// Limits are the upload settings the upload page shows and enforces in the
// browser (the server enforces them again).
type Limits struct {
	MaxUploadSize int64 // bytes; 0 means no limit
	DefaultTTL    time.Duration
	MaxTTL        time.Duration
	// ExpiringWithin is the window of the files page's "expiring soon".
	ExpiringWithin time.Duration
}

// File is a stored (or deleted) file.
type File struct {
	ID           string
	UploadID     string
	Filename     string
	ContentType  string
	SizeBytes    int64
	SHA256       string
	Status       string
	Owner        string // username; "" for an anonymous upload
	Metadata     map[string]string
	StoredAt     time.Time
	ExpiresAt    time.Time
	DeletedAt    *time.Time
	DeleteReason string
}

// FileQuery filters the files page.
type FileQuery struct {
	Status   string // "", "stored" or "deleted"
	Owner    string // username (admins only)
	Expiring bool   // stored files expiring within Limits.ExpiringWithin
	Cursor   string
	Limit    int
}

// FilePage is one page of files, newest first.
type FilePage struct {
	Items      []File
	NextCursor string
}

// Event is an outbox event with, where known, its deliveries.
type Event struct {
	ID         string
	Type       string
	FileID     string
	CreatedAt  time.Time
	Payload    []byte
	Deliveries []Delivery
}

// DeliverySummary counts an event's deliveries by status.
func (e Event) DeliverySummary() map[string]int {
	m := map[string]int{}
	for _, d := range e.Deliveries {
		m[d.Status]++
	}
	return m
}

// EventQuery filters the events page.
type EventQuery struct {
	Type     string
	Status   string // delivery status
	Endpoint string // endpoint id
	FileID   string
	Cursor   string
	Limit    int
}

// EventPage is one page of events, newest first.
type EventPage struct {
	Items      []Event
	NextCursor string
}

// Delivery is one event's delivery to one endpoint.
type Delivery struct {
	ID             string
	EventID        string
	EventType      string
	EndpointID     string
	EndpointURL    string
	Status         string // pending, delivering, succeeded, failed…
	AttemptCount   int
	NextAttemptAt  *time.Time
	LastStatusCode int
	LastError      string
	UpdatedAt      time.Time
	Attempts       []Attempt
}

// Attempt is one HTTP try of a delivery.
type Attempt struct {
	At           time.Time
	Duration     time.Duration
	StatusCode   int
	ResponseBody string
	Error        string
}

// Endpoint is a webhook endpoint.
type Endpoint struct {
	ID             string
	URL            string
	Description    string
	EventTypes     []string
	Enabled        bool
	DisabledReason string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Delivery statistics (recent window chosen by the backend).
	Succeeded   int
	Failed      int
	Pending     int
	LastError   string
	LastErrorAt *time.Time
}

// SuccessRate is the share of finished deliveries that succeeded, in
// percent, or -1 when none finished.
func (e Endpoint) SuccessRate() int {
	n := e.Succeeded + e.Failed
	if n == 0 {
		return -1
	}
	return e.Succeeded * 100 / n
}

// EndpointInput is what the endpoint forms submit.
type EndpointInput struct {
	URL         string
	Description string
	EventTypes  []string
}

// Token is an API token (its secret is only shown once, at creation).
type Token struct {
	ID         string
	Name       string
	Username   string
	Scopes     []string // empty: unscoped
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

// Dashboard is the admin overview.
type Dashboard struct {
	FilesStored       int64
	FilesDeleted      int64
	BytesStored       int64
	UploadsInProgress int
	// ExpiringSoon counts stored files expiring within the window (from
	// per-hour counts the database keeps, so it costs the same at any size).
	ExpiringSoon int64
	Events       int64
	Users        int
	// Delivery is nil while the portal has no webhook delivery.
	Delivery *DeliveryStats
	// Jobs are the scheduled jobs and when they run next.
	Jobs []Job
}

// DeliveryStats summarizes webhook delivery for the dashboard.
type DeliveryStats struct {
	Endpoints        int
	EndpointsEnabled int
	Backlog          int64 // deliveries not yet finished
	Failed           int64
	FailingEndpoints []Endpoint
}

// History is what the dashboard's charts show: the portal's hourly
// rollups over a period, hour by hour (UTC), and each webhook endpoint's
// delivery figures.
type History struct {
	// Period is the span the hours cover: 24 hours or 7 days.
	Period time.Duration
	// Hours has one entry per hour of the period, oldest first; the last
	// is the current hour.
	Hours []HourStat
	// Endpoints are the webhook endpoints (not deleted), oldest first.
	Endpoints []EndpointHealth
}

// HourStat is one hour of the dashboard's history.
type HourStat struct {
	// Hour is the start of the hour, UTC.
	Hour time.Time
	// Files and Bytes count the uploads that finished (became stored
	// files) in the hour.
	Files, Bytes int64
	// Attempts counts the delivery attempts made in the hour by outcome.
	Attempts Outcomes
	// Succeeded and Failed count the deliveries that reached that final
	// state in the hour.
	Succeeded, Failed int64
}

// Outcomes counts delivery attempts by outcome.
type Outcomes struct {
	Success, HTTPError, NetworkError, Timeout, Refused int64
}

// Total is the number of attempts.
func (o Outcomes) Total() int64 {
	return o.Success + o.HTTPError + o.NetworkError + o.Timeout + o.Refused
}

// EndpointHealth is one endpoint's delivery figures for the dashboard.
type EndpointHealth struct {
	ID          string
	URL         string
	Description string
	Enabled     bool
	// DisabledReason and DisabledAt say why and when it was disabled.
	DisabledReason string
	DisabledAt     *time.Time
	// FailingSince is the first failed attempt since its last success
	// (nil when its last attempt succeeded).
	FailingSince *time.Time
	// Day and Week are its figures over the last 24 hours and 7 days.
	Day, Week EndpointFigures
	// Hours has its attempts per hour over the History's period, oldest
	// first.
	Hours []EndpointHour
}

// EndpointFigures are an endpoint's delivery figures over a period.
type EndpointFigures struct {
	// Attempts counts the attempts, Successes those that succeeded.
	Attempts, Successes int64
	// Succeeded and Failed count deliveries that reached that state.
	Succeeded, Failed int64
	// SuccessRate is Successes / Attempts (nil without attempts).
	SuccessRate *float64
	// P95 is the 95th percentile of the delivery latency, from the event's
	// commit to the end of its successful attempt (nil without a
	// successful delivery).
	P95 *time.Duration
}

// EndpointHour is one hour of an endpoint's attempts.
type EndpointHour struct {
	Hour            time.Time
	Success, Failed int64
}

// Job is a scheduled background job.
type Job struct {
	Name    string
	Next    time.Time
	LastRun *time.Time
}

// Backend is what the pages need from the portal. The app package fills it
// in; a nil function means the portal lacks that feature, and the pages
// that need it say so instead of failing. Every function gets the request,
// so the backend applies its own access rules to the authenticated user.
type Backend struct {
	CurrentUser func(r *http.Request) *User
	// May reports whether the request's user may perform op (an access
	// policy name, as in Routes); nil allows admins only.
	May    func(r *http.Request, op string) bool
	Limits func() Limits

	ListFiles    func(r *http.Request, q FileQuery) (FilePage, error)
	GetFile      func(r *http.Request, id string) (File, error)
	FileByUpload func(r *http.Request, uploadID string) (File, error)
	DeleteFile   func(r *http.Request, id string) error
	FileEvents   func(r *http.Request, fileID string) ([]Event, error)

	ListEvents    func(r *http.Request, q EventQuery) (EventPage, error)
	GetEvent      func(r *http.Request, id string) (Event, error)
	RetryDelivery func(r *http.Request, id string) error

	ListEndpoints   func(r *http.Request) ([]Endpoint, error)
	GetEndpoint     func(r *http.Request, id string) (Endpoint, error)
	CreateEndpoint  func(r *http.Request, in EndpointInput) (Endpoint, string, error)
	UpdateEndpoint  func(r *http.Request, id string, in EndpointInput) error
	SetEndpointOn   func(r *http.Request, id string, enabled bool, reason string) error
	RotateSecret    func(r *http.Request, id string) (string, error)
	TestEndpoint    func(r *http.Request, id string) error
	ReplayEndpoint  func(r *http.Request, id string, since *time.Time) (int, error)
	DeleteEndpoint  func(r *http.Request, id string) error
	EndpointEvents  []string // event types an endpoint may subscribe to
	ListDeliveries  func(r *http.Request, q EventQuery) ([]Delivery, string, error)
	DeliveryStatus  []string // the delivery statuses, for filters
	EventTypes      []string // the event types, for filters
	DashboardCounts func(r *http.Request) (Dashboard, error)
	// DashboardHistory returns the hourly history of the period (24 hours
	// or 7 days) that ends with the current hour.
	DashboardHistory func(r *http.Request, period time.Duration) (History, error)

	ListUsers  func(r *http.Request) ([]User, error)
	CreateUser func(r *http.Request, username, role, password string) (User, error)
	// UpdateUser changes the fields given; quota is as typed ("5GiB", "0"
	// for no limit, "default").
	UpdateUser func(r *http.Request, id string, role *string, disabled *bool, password, quota *string) error
	DeleteUser func(r *http.Request, id string) error

	ListTokens func(r *http.Request) ([]Token, error)
	// CreateToken mints a token for the signed-in user, narrowed to
	// scopes (none: unscoped).
	CreateToken func(r *http.Request, name string, ttl time.Duration, scopes []string) (Token, string, error)
	TokenScopes []string // the scopes a token may be narrowed to
	RevokeToken func(r *http.Request, id string) error
}

// ErrNotFound is what a backend returns for a record that does not exist
// or that the user may not see.
var ErrNotFound = errors.New("not found")

// Error is a failure the pages may show as it is: a status and a message
// meant for the user. Backends return it for invalid input and refusals;
// any other error is logged and shown as a generic failure.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }
