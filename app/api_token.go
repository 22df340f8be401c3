package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/doorito/portal/app/access"
)

// createTokenRequest is the optional body of POST /api/v1/tokens.
type createTokenRequest struct {
	Name string `json:"name"`
	// ExpiresIn is a Go duration ("720h") or a number of seconds; absent
	// means the token does not expire.
	ExpiresIn json.RawMessage `json:"expires_in"`
	// Scopes narrow the token (see docs/auth.md); absent: unscoped.
	Scopes []string `json:"scopes"`
}

// createdToken is a new token with its secret, shown this once.
type createdToken struct {
	Token
	Secret string `json:"token"`
}

// parseExpiresIn reads a token lifetime: a duration string or seconds.
func parseExpiresIn(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var d time.Duration
	var s string
	var secs float64
	switch {
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("expires_in %q is not a duration like 720h", s)
		}
	case json.Unmarshal(raw, &secs) == nil:
		if secs > float64(100*365*24*time.Hour/time.Second) {
			return 0, errors.New("expires_in is too large")
		}
		d = time.Duration(secs * float64(time.Second))
	default:
		return 0, errors.New("expires_in must be a duration string or a number of seconds")
	}
	if d <= 0 {
		return 0, errors.New("expires_in must be positive")
	}
	return d, nil
}

// apiCreateToken serves POST /api/v1/tokens: with HTTP Basic
// username/password (or a web session) it mints a token for that user.
// Rate limited per client address.
func (a *App) apiCreateToken(w http.ResponseWriter, r *http.Request) error {
	if a.rateLimited(w, r) {
		return nil
	}
	var id access.Identity
	if name, pw, ok := r.BasicAuth(); ok {
		u, err := a.checkCredentials(r.Context(), name, pw)
		if errors.Is(err, ErrBadCredentials) {
			w.Header().Set("WWW-Authenticate", `Basic realm="portal", charset="UTF-8"`)
			return &Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: ErrBadCredentials.Error()}
		}
		if err != nil {
			return err
		}
		id = principal{user: &u, via: "password"}.identity()
	} else if p := principalFrom(r.Context()); p.via == "session" && !p.bad {
		if e := a.needUser(r, p); e != nil {
			return e
		}
		id = p.identity()
	} else {
		w.Header().Set("WWW-Authenticate", `Basic realm="portal", charset="UTF-8"`)
		return errNoAuth("tokens are issued for a username and password: use HTTP Basic authentication")
	}
	req := createTokenRequest{Name: "api"}
	if err := decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	ttl, err := parseExpiresIn(req.ExpiresIn)
	if err != nil {
		return errBadRequest(err.Error())
	}
	t, secret, err := a.ops.CreateToken(r.Context(), id, NewToken{Name: req.Name, TTL: ttl, Scopes: req.Scopes})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, createdToken{Token: t, Secret: secret})
	return nil
}

// apiListTokens serves GET /api/v1/tokens: the caller's tokens; an
// admin's list holds every user's.
func (a *App) apiListTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := a.ops.ListTokens(r.Context(), requestIdentity(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]Token{"items": ts})
	return nil
}

// apiRevokeToken serves DELETE /api/v1/tokens/{id}: revokes one of the
// caller's tokens (an admin: anyone's). Someone else's token is 404.
func (a *App) apiRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "token")
	if err != nil {
		return err
	}
	if err := a.ops.RevokeToken(r.Context(), requestIdentity(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
