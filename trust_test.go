package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The built-in Mozilla roots are added to the host's (or SSL_CERT_FILE's),
// not put in their place.
func TestBuiltinRootsAddToHostRoots(t *testing.T) {
	custom := httptest.NewTLSServer(http.NotFoundHandler())
	defer custom.Close()
	var mozilla *x509.Certificate
	for r := range bundle.Roots() {
		if r.Constraint == nil {
			mozilla, _ = x509.ParseCertificate(r.Certificate)
			break
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(custom.Certificate())
	verifies := func(c *x509.Certificate) bool {
		_, err := c.Verify(x509.VerifyOptions{Roots: pool})
		return err == nil
	}
	if verifies(mozilla) {
		t.Fatal("a Mozilla root verifies before the built-in roots were added")
	}
	addBuiltinRoots(pool)
	if !verifies(mozilla) || !verifies(custom.Certificate()) {
		t.Fatalf("after adding the built-in roots: Mozilla root %v, custom CA %v", verifies(mozilla), verifies(custom.Certificate()))
	}
}

// The binary verifies https webhook endpoints: a receiver whose CA is in
// SSL_CERT_FILE gets the delivery; without it the attempt fails on the
// certificate (so verification is on, and roots are loaded).
func TestHTTPSEndpointWithCustomCA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	got := make(chan *http.Request, 10)
	recv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: recv.Certificate().Raw}), 0o644)

	const password = "trust-test-admin-password"
	bin := portalBinary(t)
	for _, c := range []struct {
		env        []string
		status     string
		errContain string
	}{
		{[]string{"SSL_CERT_FILE=" + caFile}, "succeeded", ""},
		{nil, "pending", "x509: certificate signed by unknown authority"},
	} {
		p := startPortal(t, bin, append(c.env, "PORTAL_ADMIN_PASSWORD="+password),
			"--allow-private-endpoints", "--delivery-retry-schedule", "1h")
		tok := p.token(password)
		resp, b := p.call("POST", "/api/v1/endpoints", tok, []byte(fmt.Sprintf(`{"url":%q}`, recv.URL+"/hook")),
			map[string]string{"Content-Type": "application/json"})
		var ep struct{ ID string }
		if json.Unmarshal(b, &ep); resp.StatusCode != http.StatusCreated {
			t.Fatalf("create endpoint: %s %s", resp.Status, b)
		}
		resp, b = p.call("POST", "/api/v1/endpoints/"+ep.ID+"/test", tok, nil, nil)
		var sent struct {
			DeliveryID string `json:"delivery_id"`
		}
		if json.Unmarshal(b, &sent); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("test event: %s %s", resp.Status, b)
		}
		var d struct {
			Status   string
			Attempts []struct{ Error string }
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			_, b = p.call("GET", "/api/v1/deliveries/"+sent.DeliveryID, tok, nil, nil)
			json.Unmarshal(b, &d)
			if len(d.Attempts) > 0 && d.Status != "delivering" {
				break
			}
		}
		if d.Status != c.status || len(d.Attempts) != 1 || !strings.Contains(d.Attempts[0].Error, c.errContain) {
			t.Errorf("env %v: delivery %s", c.env, b)
		}
		p.stop()
	}
	if len(got) != 1 {
		t.Errorf("the receiver got %d requests, want 1 (from the portal that trusts its CA)", len(got))
	}
}
