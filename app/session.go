package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/doorito/portal/webui"
)

// Web sessions: the UI logs in with a username and password and gets a
// session cookie (HttpOnly, SameSite=Lax, Secure over https). The cookie
// holds a random id; the database keeps only its SHA-256 and expiry.
const (
	sessionCookie = "portal_session"
	sessionPrefix = "dps_"
	sessionTTL    = 12 * time.Hour
	maxAuthBody   = 16 << 10
)

// createSession starts a session for u and removes expired ones.
func (a *App) createSession(ctx context.Context, u User) (string, time.Time, error) {
	now := a.cfg.Now()
	secret, hash := newSecret(sessionPrefix)
	exp := now.Add(sessionTTL).UTC().Truncate(time.Millisecond)
	if _, err := a.db.W.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= ?", now.UnixMilli()); err != nil {
		return "", time.Time{}, fmt.Errorf("expire sessions: %w", err)
	}
	if _, err := a.db.W.ExecContext(ctx, "INSERT INTO sessions (hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
		hash, u.ID, now.UnixMilli(), exp.UnixMilli()); err != nil {
		return "", time.Time{}, fmt.Errorf("create session: %w", err)
	}
	return secret, exp, nil
}

// userBySession returns the enabled user of a live session, or
// ErrBadCredentials.
func (a *App) userBySession(ctx context.Context, secret string) (User, error) {
	if !strings.HasPrefix(secret, sessionPrefix) {
		return User{}, ErrBadCredentials
	}
	var expires int64
	u, err := scanUser(a.db.R.QueryRowContext(ctx, `SELECT u.id, u.username, u.role, u.disabled, u.created_at, s.expires_at
		FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?`, secretHash(secret)), &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("check session: %w", err)
	}
	if a.cfg.Now().UnixMilli() >= expires || u.Disabled {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// isHTTPS reports whether the client reached the portal over https.
func (a *App) isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(a.cfg.PublicURL, "https://") ||
		a.cfg.TrustProxy && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *App) setSessionCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: a.isHTTPS(r)})
}

// wantsJSON reports whether a login/logout request came from a script
// (JSON body or Accept) rather than an HTML form.
func wantsJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// readCredentials reads username and password from a JSON or form body.
func readCredentials(w http.ResponseWriter, r *http.Request) (loginRequest, error) {
	var c loginRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/json" {
		return c, decodeJSON(w, r, &c, false)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAuthBody)
	if err := r.ParseForm(); err != nil {
		return c, errBadRequest("unreadable form")
	}
	c.Username, c.Password = r.PostForm.Get("username"), r.PostForm.Get("password")
	return c, nil
}

// login serves POST /login: a form (redirects to the UI) or JSON (answers
// the user). Rate limited per client; one answer for every wrong
// username, password or disabled account.
func (a *App) login(w http.ResponseWriter, r *http.Request) error {
	if a.rateLimited(w, r) {
		return nil
	}
	if a.auth.cop.Check(r) != nil {
		return errCrossOrigin
	}
	c, err := readCredentials(w, r)
	if err != nil {
		return err
	}
	u, err := a.checkCredentials(r.Context(), c.Username, c.Password)
	if errors.Is(err, ErrBadCredentials) {
		if wantsJSON(r) {
			return &Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Message: ErrBadCredentials.Error()}
		}
		return a.renderLogin(w, r, http.StatusUnauthorized, ErrBadCredentials.Error())
	}
	if err != nil {
		return err
	}
	if old, err := r.Cookie(sessionCookie); err == nil {
		a.endSession(r.Context(), old.Value)
	}
	secret, exp, err := a.createSession(r.Context(), u)
	if err != nil {
		return err
	}
	a.setSessionCookie(w, r, secret, int(sessionTTL.Seconds()))
	a.log.Info("login", "user_id", u.ID, "username", u.Username)
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"user": u, "expires_at": exp})
		return nil
	}
	http.Redirect(w, r, webui.SafeNext(r.PostForm.Get("next")), http.StatusSeeOther)
	return nil
}

// endSession deletes the session whose cookie value is secret.
func (a *App) endSession(ctx context.Context, secret string) {
	if _, err := a.db.W.ExecContext(ctx, "DELETE FROM sessions WHERE hash = ?", secretHash(secret)); err != nil {
		a.log.Warn("end session", "err", err)
	}
}

// logout serves POST /logout: ends the session and clears the cookie.
func (a *App) logout(w http.ResponseWriter, r *http.Request) error {
	if a.auth.cop.Check(r) != nil {
		return errCrossOrigin
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		a.endSession(r.Context(), c.Value)
	}
	a.setSessionCookie(w, r, "", -1)
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	http.Redirect(w, r, "login", http.StatusSeeOther)
	return nil
}

// renderLogin shows the sign-in form again with msg (the web UI's page;
// a JSON error when no form renderer is set).
func (a *App) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	if a.auth.loginForm == nil {
		return &Error{Status: status, Code: "invalid_credentials", Message: msg}
	}
	a.auth.loginForm(w, r, status, msg)
	return nil
}
