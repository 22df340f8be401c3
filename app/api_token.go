package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
)

// createTokenRequest is the optional body of POST /api/v1/tokens.
type createTokenRequest struct {
	Name string `json:"name"`
	// ExpiresIn is a Go duration ("720h") or a number of seconds; absent
	// means the token does not expire.
	ExpiresIn json.RawMessage `json:"expires_in"`
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
// username/password (or a web session) it issues a token for that user.
// A bearer token cannot mint tokens, so a leaked, expiring token cannot
// outlive itself. Rate limited per client address.
func (a *App) apiCreateToken(w http.ResponseWriter, r *http.Request) error {
	if a.rateLimited(w, r) {
		return nil
	}
	var u User
	if name, pw, ok := r.BasicAuth(); ok {
		var err error
		u, err = a.checkCredentials(r.Context(), name, pw)
		if errors.Is(err, ErrBadCredentials) {
			w.Header().Set("WWW-Authenticate", `Basic realm="portal", charset="UTF-8"`)
			return &Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: ErrBadCredentials.Error()}
		}
		if err != nil {
			return err
		}
	} else if p := principalFrom(r.Context()); p.via == "session" && !p.bad {
		if e := a.needUser(r, p); e != nil {
			return e
		}
		u = *p.user
	} else {
		w.Header().Set("WWW-Authenticate", `Basic realm="portal", charset="UTF-8"`)
		return errNoAuth("tokens are issued for a username and password: use HTTP Basic authentication")
	}
	req := createTokenRequest{Name: "api"}
	if err := decodeUserJSON(w, r, &req); err != nil {
		return err
	}
	ttl, err := parseExpiresIn(req.ExpiresIn)
	if err != nil {
		return errBadRequest(err.Error())
	}
	if err := checkTokenName(req.Name); err != nil {
		return errBadRequest(err.Error())
	}
	now := a.cfg.Now()
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	t, secret, err := insertToken(r.Context(), a.db.W, u, req.Name, now, exp)
	if err != nil {
		return err
	}
	a.log.Info("token created", "token_id", t.ID, "user_id", u.ID, "name", t.Name)
	writeJSON(w, http.StatusCreated, createdToken{Token: t, Secret: secret})
	return nil
}

// apiListTokens serves GET /api/v1/tokens: the caller's tokens; an
// admin's list holds every user's.
func (a *App) apiListTokens(w http.ResponseWriter, r *http.Request) error {
	u := requestUser(r)
	owner := u.ID
	if u.IsAdmin() {
		owner = ""
	}
	ts, err := listTokens(r.Context(), a.db.R, owner)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]Token{"items": ts})
	return nil
}

// apiRevokeToken serves DELETE /api/v1/tokens/{id}: revokes one of the
// caller's tokens (an admin: anyone's). Someone else's token is 404.
func (a *App) apiRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return errBadRequest("token id must be a UUID")
	}
	u := requestUser(r)
	owner := u.ID
	if u.IsAdmin() {
		owner = ""
	}
	err := revokeToken(r.Context(), a.db.W, id, owner, a.cfg.Now())
	if errors.Is(err, ErrNotFound) {
		return errNotFound("token")
	}
	if err != nil {
		return err
	}
	a.log.Info("token revoked", "token_id", id, "by", u.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
