package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/doorito/portal/app/access"
	"github.com/doorito/portal/internal/keyset"
	"github.com/google/uuid"
)

// TokenPrefix starts every API token, so a leaked one is easy to spot
// (secret scanners, logs) and easy to tell from a password.
const TokenPrefix = "dpt_"

// tokenTouchEvery bounds how often a token's last use is written.
const tokenTouchEvery = time.Minute

// Token is an API token as listed; the secret itself is shown only once,
// when it is created, and stored only as its SHA-256.
type Token struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	Name     string `json:"name"`
	// Scopes narrow the token (empty: all its owner's role allows).
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// newSecret returns prefix followed by 256 random bits (base64url) and
// the hex SHA-256 under which it is stored.
func newSecret(prefix string) (secret, hash string) {
	b := make([]byte, 32)
	rand.Read(b)
	secret = prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, secretHash(secret)
}

// secretHash is the stored form of a token or session id. A fast hash is
// right here: the secret has 256 random bits, nothing to brute-force.
func secretHash(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// checkTokenName accepts 1 to 100 printable characters.
func checkTokenName(name string) error {
	if name == "" || len(name) > 100 || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return errors.New("token name must have 1 to 100 printable characters")
	}
	return nil
}

// insertToken creates a token for u, narrowed to scopes (none: all u's
// role allows), and returns it with its secret.
func insertToken(ctx context.Context, db execer, u User, name string, scopes []access.Scope, now time.Time,
	expiresAt *time.Time) (Token, string, error) {
	if err := checkTokenName(name); err != nil {
		return Token{}, "", err
	}
	secret, hash := newSecret(TokenPrefix)
	t := Token{ID: uuid.Must(uuid.NewV7()).String(), UserID: u.ID, Username: u.Username, Name: name,
		Scopes: scopeNames(scopes), CreatedAt: now.UTC().Truncate(time.Millisecond)}
	var exp sql.NullInt64
	if expiresAt != nil {
		e := expiresAt.UTC().Truncate(time.Millisecond)
		t.ExpiresAt = &e
		exp = sql.NullInt64{Int64: e.UnixMilli(), Valid: true}
	}
	_, err := db.ExecContext(ctx, `INSERT INTO tokens (id, user_id, name, scopes, hash, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, t.ID, t.UserID, t.Name, strings.Join(t.Scopes, " "), hash, t.CreatedAt.UnixMilli(), exp)
	if err != nil {
		return Token{}, "", fmt.Errorf("insert token: %w", err)
	}
	return t, secret, nil
}

// userByToken returns the enabled user a valid (known, unexpired,
// unrevoked) token belongs to, with the token's scopes (nil: unscoped),
// or ErrBadCredentials.
func (a *App) userByToken(ctx context.Context, secret string) (User, []access.Scope, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return User{}, nil, ErrBadCredentials
	}
	var tokenID, scopes string
	var expires, revoked, used sql.NullInt64
	u, err := scanUser(a.db.R.QueryRowContext(ctx, `SELECT u.id, u.username, u.role, u.disabled, u.created_at,
		t.id, t.scopes, t.expires_at, t.revoked_at, t.last_used_at
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, secretHash(secret)),
		&tokenID, &scopes, &expires, &revoked, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, nil, ErrBadCredentials
	}
	if err != nil {
		return User{}, nil, fmt.Errorf("check token: %w", err)
	}
	now := a.cfg.Now()
	if revoked.Valid || expires.Valid && now.UnixMilli() >= expires.Int64 || u.Disabled {
		return User{}, nil, ErrBadCredentials
	}
	if !used.Valid || now.UnixMilli()-used.Int64 >= tokenTouchEvery.Milliseconds() {
		if _, err := a.db.W.ExecContext(ctx, "UPDATE tokens SET last_used_at = ? WHERE id = ?", now.UnixMilli(), tokenID); err != nil {
			a.log.Warn("record token use", "token_id", tokenID, "err", err)
		}
	}
	return u, parseScopeNames(scopes), nil
}

// scopeNames and parseScopeNames convert scopes to and from their stored
// form (names, space-separated). A token stored without scopes has nil.
func scopeNames(scopes []access.Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = string(s)
	}
	return out
}

func parseScopeNames(s string) []access.Scope {
	var out []access.Scope
	for _, f := range strings.Fields(s) {
		out = append(out, access.Scope(f))
	}
	return out
}

const tokenColumns = `t.id, t.user_id, u.username, t.name, t.scopes, t.created_at, t.expires_at, t.last_used_at, t.revoked_at`

func scanToken(s keyset.Scanner) (Token, error) {
	var t Token
	var created int64
	var scopes string
	var expires, used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.UserID, &t.Username, &t.Name, &scopes, &created, &expires, &used, &revoked); err != nil {
		return Token{}, err
	}
	t.Scopes = strings.Fields(scopes)
	t.CreatedAt = time.UnixMilli(created).UTC()
	t.ExpiresAt, t.LastUsedAt, t.RevokedAt = optTime(expires), optTime(used), optTime(revoked)
	return t, nil
}

func optTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// listTokens returns the tokens of one user (userID "" for all users),
// newest first.
func listTokens(ctx context.Context, db queryer, userID string) ([]Token, error) {
	q := "SELECT " + tokenColumns + " FROM tokens t JOIN users u ON u.id = t.user_id"
	var args []any
	if userID != "" {
		q += " WHERE t.user_id = ?"
		args = append(args, userID)
	}
	rows, err := db.QueryContext(ctx, q+" ORDER BY t.id DESC", args...)
	out, err := keyset.All(rows, err, scanToken)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// revokeToken revokes token id, which must belong to userID unless
// userID is "" (an admin). Revoking twice is not an error.
func revokeToken(ctx context.Context, db execer, id, userID string, now time.Time) error {
	q := "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?"
	args := []any{now.UnixMilli(), id}
	if userID != "" {
		q += " AND user_id = ?"
		args = append(args, userID)
	}
	res, err := db.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateToken issues an API token for username in the database of the
// portal whose data directory is dataDir (for `portal token create`; safe
// while the portal runs). ttl 0 means the token does not expire; scopes
// narrow it (none: all the user's role allows). The returned secret is
// not stored anywhere: show it once.
func CreateToken(ctx context.Context, dataDir, username, name string, ttl time.Duration, scopes []string) (Token, string, error) {
	if ttl < 0 {
		return Token{}, "", errors.New("token lifetime must not be negative")
	}
	sc, err := access.ParseScopes(scopes)
	if err != nil {
		return Token{}, "", err
	}
	db, err := OpenDB(ctx, dbPath(dataDir))
	if err != nil {
		return Token{}, "", err
	}
	defer db.Close()
	u, _, err := userByName(ctx, db.R, username)
	if errors.Is(err, ErrNotFound) {
		return Token{}, "", fmt.Errorf("no user %q", username)
	}
	if err != nil {
		return Token{}, "", err
	}
	if u.Disabled {
		return Token{}, "", fmt.Errorf("user %q is disabled", username)
	}
	now := time.Now()
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	return insertToken(ctx, db.W, u, name, sc, now, exp)
}
