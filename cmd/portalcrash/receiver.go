package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hit is one request the receiver got.
type hit struct {
	Path       string
	WebhookID  string // webhook-id: the event id
	DeliveryID string // X-Webhook-Delivery: stable per (event, endpoint)
	Verified   bool   // the Standard Webhooks signature and timestamp held
	Status     int    // what the receiver answered
	Type       string // event_type of the payload
	FileID     string // file.id of the payload
	SHA256     string // file.sha256 of the payload
}

// receiver is the webhook consumer of a run: a real HTTP server on
// 127.0.0.1 that outlives the portal's restarts. It verifies every
// request with the Standard Webhooks library (not the portal's code),
// records it, holds it a random moment (so deliveries are in flight when
// the killer strikes) and answers 204, or now and then 500 so retries run.
type receiver struct {
	ln  net.Listener
	srv *http.Server

	maxHold  time.Duration
	failRate float64

	mu    sync.Mutex
	rng   *rand.Rand
	hooks map[string]*standardwebhooks.Webhook // path -> verifier
	hits  []hit

	inflight atomic.Int64
	// gate, when set, holds every request until it is closed; failNext
	// makes the next verified requests answer 500 (the disk-full
	// scenario steers deliveries with them).
	gate     atomic.Pointer[chan struct{}]
	failNext atomic.Int64
}

func startReceiver(seed uint64, maxHold time.Duration, failRate float64) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{ln: ln, maxHold: maxHold, failRate: failRate, rng: rand.New(rand.NewPCG(seed, 0x7265636569766572)),
		hooks: map[string]*standardwebhooks.Webhook{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) url(path string) string { return "http://" + r.ln.Addr().String() + path }

// addEndpoint registers the signing secret ("whsec_...") of the endpoint
// at path.
func (r *receiver) addEndpoint(path, secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("secret of %s: %w", path, err)
	}
	r.mu.Lock()
	r.hooks[path] = wh
	r.mu.Unlock()
	return nil
}

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.srv.Shutdown(ctx)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	h := hit{Path: req.URL.Path, WebhookID: req.Header.Get("webhook-id"), DeliveryID: req.Header.Get("X-Webhook-Delivery")}
	r.mu.Lock()
	wh := r.hooks[h.Path]
	hold := time.Duration(r.rng.Int64N(int64(r.maxHold) + 1))
	fail := r.rng.Float64() < r.failRate
	r.mu.Unlock()
	h.Verified = wh != nil && wh.Verify(body, req.Header) == nil
	var ev struct {
		Type string `json:"event_type"`
		ID   string `json:"event_id"`
		File struct {
			ID     string `json:"id"`
			SHA256 string `json:"sha256"`
		} `json:"file"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.ID != h.WebhookID {
		h.Verified = false
	}
	h.Type, h.FileID, h.SHA256 = ev.Type, ev.File.ID, ev.File.SHA256
	switch {
	case !h.Verified:
		h.Status = http.StatusUnauthorized
	case r.failNext.Load() > 0 && r.failNext.Add(-1) >= 0:
		h.Status = http.StatusInternalServerError
	case fail:
		h.Status = http.StatusInternalServerError
	default:
		h.Status = http.StatusNoContent
	}
	time.Sleep(hold)
	if g := r.gate.Load(); g != nil {
		<-*g
	}
	// Recorded before the answer: the receiver has the event now, whether
	// or not the portal lives to read the answer.
	r.mu.Lock()
	r.hits = append(r.hits, h)
	r.mu.Unlock()
	w.WriteHeader(h.Status)
}

// snapshot returns a copy of the requests so far.
func (r *receiver) snapshot() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}
