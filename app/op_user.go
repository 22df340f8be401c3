package app

import (
	"context"

	"github.com/doorito/portal/app/access"
)

// NewUser is an account to create.
type NewUser struct {
	Username string
	Role     string // "" means uploader
	Password string
}

// ListUsers lists every user, oldest first.
func (o *Ops) ListUsers(ctx context.Context, id access.Identity) ([]User, error) {
	if _, err := o.check(id, access.UserRead); err != nil {
		return nil, err
	}
	us, err := listUsers(ctx, o.a.db.R)
	if err != nil {
		return nil, err
	}
	for i := range us {
		if err := o.a.withUsage(ctx, &us[i]); err != nil {
			return nil, err
		}
	}
	return us, nil
}

// CreateUser creates an account.
func (o *Ops) CreateUser(ctx context.Context, id access.Identity, in NewUser) (User, error) {
	if _, err := o.check(id, access.UserWrite); err != nil {
		return User{}, err
	}
	if in.Role == "" {
		in.Role = RoleUploader
	}
	u, hash, err := newUser(in.Username, in.Role, in.Password, o.a.passwordCost(), o.a.cfg.Now())
	if err != nil {
		return User{}, invalid("", err.Error())
	}
	if err := insertUser(ctx, o.a.db.W, u, hash); err != nil {
		return User{}, opError(err, "user")
	}
	o.record(ctx, id, "user.create", "user_id", u.ID, "username", u.Username, "role", u.Role)
	return u, nil
}

// UpdateUser changes a user's role, disabled flag or password, refusing
// to leave the portal without an enabled admin. A new password or
// disabling the user ends the user's web sessions.
func (o *Ops) UpdateUser(ctx context.Context, id access.Identity, userID string, ch UserChange) (User, error) {
	if _, err := o.check(id, access.UserWrite); err != nil {
		return User{}, err
	}
	if err := checkUUID(userID, "user"); err != nil {
		return User{}, err
	}
	u, err := o.a.updateUser(ctx, userID, ch)
	if err != nil {
		return User{}, opError(err, "user")
	}
	kv := []any{"user_id", u.ID, "role", u.Role, "disabled", u.Disabled, "password_changed", ch.Password != nil}
	if ch.Quota.Set {
		kv = append(kv, "quota_bytes", ch.Quota.Value)
	}
	o.record(ctx, id, "user.update", kv...)
	return u, o.a.withUsage(ctx, &u)
}

// DeleteUser removes a user with their tokens and sessions; their files
// keep the owner they recorded.
func (o *Ops) DeleteUser(ctx context.Context, id access.Identity, userID string) error {
	if _, err := o.check(id, access.UserWrite); err != nil {
		return err
	}
	if err := checkUUID(userID, "user"); err != nil {
		return err
	}
	if err := o.a.deleteUser(ctx, userID); err != nil {
		return opError(err, "user")
	}
	o.record(ctx, id, "user.delete", "user_id", userID)
	return nil
}
