package app

import (
	"errors"
	"net/http"

	"github.com/google/uuid"
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
	writeJSON(w, http.StatusOK, map[string]any{"user": p.user, "auth": p.via})
	return nil
}

// apiListUsers serves GET /api/v1/users (admin).
func (a *App) apiListUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := listUsers(r.Context(), a.db.R)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string][]User{"items": us})
	return nil
}

// apiCreateUser serves POST /api/v1/users (admin).
func (a *App) apiCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decodeUserJSON(w, r, &req); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = RoleUploader
	}
	u, hash, err := newUser(req.Username, req.Role, req.Password, a.passwordCost(), a.cfg.Now())
	if err != nil {
		return errBadRequest(err.Error())
	}
	err = insertUser(r.Context(), a.db.W, u, hash)
	if errors.Is(err, ErrUserExists) {
		return &Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	}
	if err != nil {
		return err
	}
	a.log.Info("user created", "user_id", u.ID, "username", u.Username, "role", u.Role, "by", requestUser(r).ID)
	writeJSON(w, http.StatusCreated, u)
	return nil
}

// userIDFromPath reads the {id} path value.
func userIDFromPath(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		return "", errBadRequest("user id must be a UUID")
	}
	return id, nil
}

// userStoreError maps the user store's errors to API errors.
func userStoreError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return errNotFound("user")
	case errors.Is(err, ErrLastAdmin):
		return &Error{Status: http.StatusConflict, Code: "last_admin", Message: err.Error()}
	}
	return err
}

// apiUpdateUser serves PATCH /api/v1/users/{id} (admin): role, disabled,
// password.
func (a *App) apiUpdateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := userIDFromPath(r)
	if err != nil {
		return err
	}
	var ch UserChange
	if err := decodeUserJSON(w, r, &ch); err != nil {
		return err
	}
	u, err := a.updateUser(r.Context(), id, ch)
	if err != nil {
		return userStoreError(err)
	}
	a.log.Info("user updated", "user_id", u.ID, "role", u.Role, "disabled", u.Disabled,
		"password_changed", ch.Password != nil, "by", requestUser(r).ID)
	writeJSON(w, http.StatusOK, u)
	return nil
}

// apiDeleteUser serves DELETE /api/v1/users/{id} (admin). Its tokens and
// sessions go with it; its files keep their recorded owner.
func (a *App) apiDeleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := userIDFromPath(r)
	if err != nil {
		return err
	}
	if err := a.deleteUser(r.Context(), id); err != nil {
		return userStoreError(err)
	}
	a.log.Info("user deleted", "user_id", id, "by", requestUser(r).ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
