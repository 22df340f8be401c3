package webui

import (
	"net/http"
	"strings"
	"time"
)

func (u *UI) usersPage(w http.ResponseWriter, r *http.Request, user *User) {
	u.renderUsers(w, r, user, http.StatusOK, nil)
}

func (u *UI) renderUsers(w http.ResponseWriter, r *http.Request, user *User, status int, extra map[string]any) {
	if u.be.ListUsers == nil {
		u.renderError(w, r, http.StatusNotFound, "Managing users is not available in this build.")
		return
	}
	users, err := u.be.ListUsers(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	data := map[string]any{"Users": users, "CanCreate": u.be.CreateUser != nil, "CanUpdate": u.be.UpdateUser != nil,
		"CanDelete": u.be.DeleteUser != nil, "Form": map[string]string{"Role": RoleUploader}}
	for k, v := range extra {
		data[k] = v
	}
	u.render(w, r, status, "users", view{Title: "Users", Nav: "users", User: user, Data: data})
}

func (u *UI) createUser(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.CreateUser == nil {
		u.renderError(w, r, http.StatusNotFound, "Managing users is not available in this build.")
		return
	}
	name, role := strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("role")
	created, err := u.be.CreateUser(r, name, role, r.PostForm.Get("password"))
	if err != nil {
		u.renderUsers(w, r, user, statusOf(err), map[string]any{"FormError": u.userMessage(r, err),
			"Form": map[string]string{"Username": name, "Role": role}})
		return
	}
	u.redirect(w, r, "/ui/users", "User "+created.Username+" was created.")
}

// updateUser applies one of the row forms: role, enable/disable or a new
// password (which field is present says which).
func (u *UI) updateUser(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.UpdateUser == nil {
		u.renderError(w, r, http.StatusNotFound, "Managing users is not available in this build.")
		return
	}
	var role, password, quota *string
	var disabled *bool
	msg := "The user was updated."
	if v, ok := r.PostForm["role"]; ok {
		role = &v[0]
		msg = "The role was changed."
	}
	if v := r.PostForm.Get("disabled"); v != "" {
		b := v == "true"
		disabled = &b
		msg = "The user was enabled."
		if b {
			msg = "The user was disabled; their sessions ended."
		}
	}
	if v, ok := r.PostForm["password"]; ok {
		password = &v[0]
		msg = "The password was changed; the user's sessions ended."
	}
	if v, ok := r.PostForm["quota"]; ok {
		quota = &v[0]
		msg = "The storage quota was changed."
	}
	if err := u.be.UpdateUser(r, r.PathValue("id"), role, disabled, password, quota); err != nil {
		u.renderUsers(w, r, user, statusOf(err), map[string]any{"ActionError": u.userMessage(r, err)})
		return
	}
	u.redirect(w, r, "/ui/users", msg)
}

func (u *UI) deleteUser(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.DeleteUser == nil {
		u.renderError(w, r, http.StatusNotFound, "Managing users is not available in this build.")
		return
	}
	if err := u.be.DeleteUser(r, r.PathValue("id")); err != nil {
		u.renderUsers(w, r, user, statusOf(err), map[string]any{"ActionError": u.userMessage(r, err)})
		return
	}
	u.redirect(w, r, "/ui/users", "The user was deleted.")
}

func (u *UI) tokensPage(w http.ResponseWriter, r *http.Request, user *User) {
	u.renderTokens(w, r, user, http.StatusOK, nil)
}

func (u *UI) renderTokens(w http.ResponseWriter, r *http.Request, user *User, status int, extra map[string]any) {
	if u.be.ListTokens == nil {
		u.renderError(w, r, http.StatusNotFound, "API tokens are not available in this build.")
		return
	}
	tokens, err := u.be.ListTokens(r)
	if err != nil {
		u.fail(w, r, err)
		return
	}
	data := map[string]any{"Tokens": tokens, "CanCreate": u.be.CreateToken != nil, "CanRevoke": u.be.RevokeToken != nil,
		"Now": u.cfg.Now(), "Scopes": u.be.TokenScopes}
	for k, v := range extra {
		data[k] = v
	}
	u.render(w, r, status, "tokens", view{Title: "API tokens", Nav: "tokens", User: user, Data: data})
}

// tokenLifetimes are the choices of the new-token form, in days (0: never
// expires).
var tokenLifetimes = map[string]time.Duration{"": 0, "1": 24 * time.Hour, "7": 7 * 24 * time.Hour,
	"30": 30 * 24 * time.Hour, "90": 90 * 24 * time.Hour, "365": 365 * 24 * time.Hour}

func (u *UI) createToken(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.CreateToken == nil {
		u.renderError(w, r, http.StatusNotFound, "API tokens are not available in this build.")
		return
	}
	ttl, ok := tokenLifetimes[r.PostForm.Get("expires_days")]
	if !ok {
		u.renderTokens(w, r, user, http.StatusBadRequest, map[string]any{"FormError": "Choose a lifetime from the list."})
		return
	}
	tok, secret, err := u.be.CreateToken(r, strings.TrimSpace(r.PostForm.Get("name")), ttl, r.PostForm["scopes"])
	if err != nil {
		u.renderTokens(w, r, user, statusOf(err), map[string]any{"FormError": u.userMessage(r, err)})
		return
	}
	u.renderTokens(w, r, user, http.StatusCreated, map[string]any{"Secret": secret, "Created": tok})
}

func (u *UI) revokeToken(w http.ResponseWriter, r *http.Request, user *User) {
	if u.be.RevokeToken == nil {
		u.renderError(w, r, http.StatusNotFound, "API tokens are not available in this build.")
		return
	}
	if err := u.be.RevokeToken(r, r.PathValue("id")); err != nil {
		u.fail(w, r, err)
		return
	}
	u.redirect(w, r, "/ui/tokens", "The token was revoked.")
}
