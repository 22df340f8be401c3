package app

import (
	"context"
	"strings"
	"time"

	"github.com/doorito/portal/app/access"
)

// NewToken is an API token to mint.
type NewToken struct {
	Name string
	// TTL is the token's lifetime; 0 means it does not expire.
	TTL time.Duration
	// Scopes narrow the token to some of its owner's operations (see
	// access.Scopes); none means all the owner's role allows.
	Scopes []string
}

// ListTokens lists id's tokens, newest first (an admin's list holds every
// user's), never their secrets.
func (o *Ops) ListTokens(ctx context.Context, id access.Identity) ([]Token, error) {
	reach, err := o.check(id, access.TokenRead)
	if err != nil {
		return nil, err
	}
	owner := ""
	if reach == access.Own {
		owner = id.UserID
	}
	return listTokens(ctx, o.a.db.R, owner)
}

// CreateToken mints a token that acts as id's user, and returns it with
// its secret, shown this once. A token cannot mint tokens (only a password
// or a web session can), so a leaked, expiring token cannot outlive
// itself.
func (o *Ops) CreateToken(ctx context.Context, id access.Identity, in NewToken) (Token, string, error) {
	if _, err := o.check(id, access.TokenWrite); err != nil {
		return Token{}, "", err
	}
	if id.Via == "token" {
		return Token{}, "", &OpError{Kind: KindForbidden, Code: "forbidden",
			Message: "a token cannot mint tokens: use a username and password, or the web UI"}
	}
	if err := checkTokenName(in.Name); err != nil {
		return Token{}, "", invalid("name", err.Error())
	}
	if in.TTL < 0 {
		return Token{}, "", invalid("expires_in", "expires_in must be positive")
	}
	scopes, err := access.ParseScopes(in.Scopes)
	if err != nil {
		return Token{}, "", invalid("scopes", err.Error())
	}
	now := o.a.cfg.Now()
	var exp *time.Time
	if in.TTL > 0 {
		e := now.Add(in.TTL)
		exp = &e
	}
	u := User{ID: id.UserID, Username: id.Username}
	t, secret, err := insertToken(ctx, o.a.db.W, u, in.Name, scopes, now, exp)
	if err != nil {
		return Token{}, "", err
	}
	o.record(ctx, id, "token.create", "token_id", t.ID, "name", t.Name, "scopes", strings.Join(t.Scopes, " "))
	return t, secret, nil
}

// RevokeToken revokes one of id's tokens (an admin: anyone's). Someone
// else's token is not found; revoking twice is no error.
func (o *Ops) RevokeToken(ctx context.Context, id access.Identity, tokenID string) error {
	reach, err := o.check(id, access.TokenWrite)
	if err != nil {
		return err
	}
	if err := checkUUID(tokenID, "token"); err != nil {
		return err
	}
	owner := ""
	if reach == access.Own {
		owner = id.UserID
	}
	if err := revokeToken(ctx, o.a.db.W, tokenID, owner, o.a.cfg.Now()); err != nil {
		return opError(err, "token")
	}
	o.record(ctx, id, "token.revoke", "token_id", tokenID)
	return nil
}
