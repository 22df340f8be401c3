package app

import (
	"net/http"
)

// createUserRequest is the body of POST /api/v1/users.
type createUserRequest struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

// apiMe serves GET /api/v1/me: the caller and how they authenticated.
func (a *App) apiMe(w http.ResponseWriter, r *http.Request) error {
	p := principalFrom(r.Context())
	u := *p.user
	if err := a.withUsage(r.Context(), &u); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u, "auth": p.via, "scopes": scopeNames(p.scopes)})
	return nil
}

// apiListUsers serves GET /api/v1/users (admin).
func (a *App) apiListUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := a.ops.ListUsers(r.Context(), requestIdentity(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]User{"items": us})
	return nil
}

// apiCreateUser serves POST /api/v1/users (admin).
func (a *App) apiCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	u, err := a.ops.CreateUser(r.Context(), requestIdentity(r), NewUser{Username: req.Username, Role: req.Role,
		Password: req.Password})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

// apiUpdateUser serves PATCH /api/v1/users/{id} (admin): role, disabled,
// password.
func (a *App) apiUpdateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "user")
	if err != nil {
		return err
	}
	var ch UserChange
	if err := decodeJSON(w, r, &ch, false); err != nil {
		return err
	}
	u, err := a.ops.UpdateUser(r.Context(), requestIdentity(r), id, ch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// apiDeleteUser serves DELETE /api/v1/users/{id} (admin).
func (a *App) apiDeleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathUUID(r, "user")
	if err != nil {
		return err
	}
	if err := a.ops.DeleteUser(r.Context(), requestIdentity(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
