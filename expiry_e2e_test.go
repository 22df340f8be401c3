package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestServeFlagsExpiry(t *testing.T) {
	env := map[string]string{"PORTAL_EXPIRY_SCHEDULE": "@every 30s", "PORTAL_INCOMPLETE_TTL": "6h"}
	cfg, _, err := parseServe([]string{"--expiry-notify-before", "2h", "--cleanup-schedule", "*/10 * * * *"},
		func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ExpiryNotifyBefore != 2*time.Hour || cfg.ExpirySchedule != "@every 30s" ||
		cfg.CleanupSchedule != "*/10 * * * *" || cfg.IncompleteTTL != 6*time.Hour {
		t.Fatalf("cfg = %+v", cfg)
	}
	var out bytes.Buffer
	if code := run([]string{"serve", "--help"}, &out, &out); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, want := range []string{"--expiry-notify-before", "PORTAL_EXPIRY_NOTIFY_BEFORE", "--expiry-schedule",
		"PORTAL_EXPIRY_SCHEDULE", "--cleanup-schedule", "PORTAL_CLEANUP_SCHEDULE", "--incomplete-ttl", "PORTAL_INCOMPLETE_TTL"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %s", want)
		}
	}
	// A bad schedule stops serve before it listens.
	var errOut bytes.Buffer
	if code := run([]string{"serve", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--expiry-schedule", "sometimes"},
		&errOut, &errOut); code == 0 || !strings.Contains(errOut.String(), "sometimes") {
		t.Fatalf("bad schedule: exit %d: %s", code, errOut.String())
	}
}

type receivedHook struct {
	header http.Header
	body   []byte
}

// The real binary with second-scale TTLs: every file's file.uploaded,
// file.expiring and file.deleted reach a real webhook receiver, signed,
// valid against the schemas the binary serves, in that order.
func TestE2EExpiryReachesWebhookReceiver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := portalBinary(t)

	var mu sync.Mutex
	var got []receivedHook
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, receivedHook{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	const password = "e2e-admin-password-long-enough"
	p := startPortal(t, bin, []string{"PORTAL_ADMIN_PASSWORD=" + password},
		"--file-ttl", "4s", "--file-ttl-max", "1h", "--expiry-notify-before", "2s",
		"--expiry-schedule", "@every 1s", "--cleanup-schedule", "@every 1s",
		"--allow-private-endpoints")
	defer func() {
		if code := p.stop(); code != 0 {
			t.Errorf("portal exit %d after SIGTERM", code)
		}
	}()
	call := p.call
	token := p.token(password)
	resp, b := call(http.MethodPost, "/api/v1/endpoints", token,
		[]byte(fmt.Sprintf(`{"url":%q,"event_types":["file.*"]}`, recv.URL)), map[string]string{"Content-Type": "application/json"})
	var ep struct{ Secret string }
	if json.Unmarshal(b, &ep); resp.StatusCode != http.StatusCreated || ep.Secret == "" {
		t.Fatalf("endpoint: %s %s", resp.Status, b)
	}
	verifier, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}

	// Two files: the default 4s TTL, and 1s (shorter than the 2s window).
	upload := func(meta string, data []byte) string {
		resp, b := call(http.MethodPost, "/files/", token, nil, map[string]string{"Tus-Resumable": "1.0.0",
			"Upload-Length": strconv.Itoa(len(data)), "Upload-Metadata": meta})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create: %s %s", resp.Status, b)
		}
		loc := resp.Header.Get("Location")
		loc = loc[strings.Index(loc, "/files/"):]
		resp, b = call(http.MethodPatch, loc, token, data, map[string]string{"Tus-Resumable": "1.0.0",
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("patch: %s %s", resp.Status, b)
		}
		return loc[len("/files/"):]
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	uploads := map[string]bool{
		upload("filename "+b64("four.txt"), []byte("four seconds")):               true,
		upload("filename "+b64("one.txt")+",ttl "+b64("1"), []byte("one second")): true,
	}

	schemas := map[string]*jsonschema.Schema{}
	for _, typ := range []string{"file.uploaded", "file.expiring", "file.deleted"} {
		resp, b := call(http.MethodGet, "/schemas/"+typ+".json", "", nil, nil)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("schema %s: %s %v", typ, resp.Status, err)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if err := c.AddResource("mem://"+typ, doc); err != nil {
			t.Fatal(err)
		}
		if schemas[typ], err = c.Compile("mem://" + typ); err != nil {
			t.Fatal(err)
		}
	}

	// Wait for the six events (about five seconds of TTLs and ticks).
	type event struct {
		EventType  string `json:"event_type"`
		EventID    string `json:"event_id"`
		OccurredAt string `json:"occurred_at"`
		Reason     string `json:"reason"`
		File       struct {
			ID        string `json:"id"`
			ExpiresAt string `json:"expires_at"`
			Storage   struct{ Key string }
		} `json:"file"`
	}
	var events []event
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		hooks := append([]receivedHook(nil), got...)
		mu.Unlock()
		events = events[:0]
		for i, h := range hooks {
			if err := verifier.Verify(h.body, h.header); err != nil {
				t.Fatalf("delivery %d: signature: %v", i, err)
			}
			var ev event
			if err := json.Unmarshal(h.body, &ev); err != nil {
				t.Fatalf("delivery %d: %v", i, err)
			}
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(h.body))
			if s := schemas[ev.EventType]; s == nil || s.Validate(inst) != nil {
				t.Fatalf("delivery %d (%s) invalid against its schema: %s", i, ev.EventType, h.body)
			}
			if h.header.Get("webhook-id") != ev.EventID {
				t.Fatalf("delivery %d: webhook-id %q, event_id %q", i, h.header.Get("webhook-id"), ev.EventID)
			}
			events = append(events, ev)
		}
		if len(events) >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	byFile := map[string][]event{}
	for _, ev := range events {
		byFile[ev.File.ID] = append(byFile[ev.File.ID], ev)
	}
	if len(events) != 6 || len(byFile) != 2 {
		t.Fatalf("received %d events for %d files, want 3 for each of 2: %+v", len(events), len(byFile), events)
	}
	for id, evs := range byFile {
		var types []string
		for _, ev := range evs {
			types = append(types, ev.EventType)
		}
		if strings.Join(types, " ") != "file.uploaded file.expiring file.deleted" {
			t.Errorf("file %s: received %v in that order", id, types)
			continue
		}
		if !uploads[evs[0].File.Storage.Key] {
			t.Errorf("file %s: storage key %q is none of the uploads", id, evs[0].File.Storage.Key)
		}
		if evs[2].Reason != "expired" || evs[1].File.ExpiresAt != evs[0].File.ExpiresAt || evs[1].OccurredAt > evs[2].OccurredAt {
			t.Errorf("file %s: %+v", id, evs)
		}
		resp, _ := call(http.MethodGet, "/api/v1/files/"+id+"/content", token, nil, nil)
		if resp.StatusCode != http.StatusGone {
			t.Errorf("file %s content after expiry: %s", id, resp.Status)
		}
	}
}
