package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
)

// Fuzz targets of the values inside the API's JSON bodies that the portal
// parses itself. (fuzzhttp_test.go sends whole bodies through the real
// handlers.)

// decodeBody decodes b as decodeJSON does (unknown fields refused).
func decodeBody(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// FuzzParseExpiresIn: the expires_in of POST /api/v1/tokens (a duration
// string or seconds). Properties: absent or null is "never" (0); anything
// else accepted is positive and at most the longest Duration; a number is
// at most 100 years.
func FuzzParseExpiresIn(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var req createTokenRequest
		if decodeBody(body, &req) != nil {
			return
		}
		d, err := parseExpiresIn(req.ExpiresIn)
		absent := len(req.ExpiresIn) == 0 || string(req.ExpiresIn) == "null"
		switch {
		case err != nil && absent:
			t.Fatalf("absent expires_in refused: %v", err)
		case err != nil:
			return
		case absent && d != 0, !absent && d <= 0:
			t.Fatalf("expires_in %s = %s", req.ExpiresIn, d)
		}
		var secs float64
		if json.Unmarshal(req.ExpiresIn, &secs) == nil && d > 100*365*24*time.Hour+time.Second {
			t.Fatalf("expires_in %s = %s, more than 100 years", req.ExpiresIn, d)
		}
	})
}

// FuzzFileChange: the body of PATCH /api/v1/files/{id}. Properties: a
// refusal is a 400 *Error; an accepted ttl is positive; an accepted
// expires_at is the RFC 3339 time sent.
func FuzzFileChange(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		var ch fileChange
		if decodeBody(body, &ch) != nil {
			return
		}
		out, err := ch.expiryChange()
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
				t.Fatalf("expiryChange(%s): %v, want a 400", body, err)
			}
			return
		}
		if out.TTL != nil && *out.TTL <= 0 {
			t.Fatalf("expiryChange(%s): ttl %s", body, *out.TTL)
		}
		if (out.ExpiresAt != nil) != (ch.ExpiresAt != nil) {
			t.Fatalf("expiryChange(%s): expires_at %v", body, out.ExpiresAt)
		}
		if out.ExpiresAt != nil {
			if want, _ := time.Parse(time.RFC3339, *ch.ExpiresAt); !want.Equal(*out.ExpiresAt) {
				t.Fatalf("expiryChange(%s): expires_at %s", body, out.ExpiresAt)
			}
		}
	})
}
