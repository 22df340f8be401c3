package app

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/doorito/portal/internal/keyset"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Roles a user may have.
const (
	RoleAdmin    = "admin"
	RoleUploader = "uploader"
)

// DefaultPasswordCost is the bcrypt cost of stored password hashes.
const DefaultPasswordCost = 12

// Password and username bounds. bcrypt reads at most 72 bytes, so longer
// passwords are refused rather than silently truncated.
const (
	minPasswordLen = 8
	maxPasswordLen = 72
	maxUsernameLen = 64
)

// Errors of the user store.
var (
	ErrUserExists = errors.New("a user with that name exists")
	ErrLastAdmin  = errors.New("the last enabled admin cannot be removed, disabled or demoted")
)

// User is an account. The password hash never leaves the store.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	// Usage is what the user holds against their storage quota (in
	// lists and answers about users).
	Usage *Usage `json:"usage,omitempty"`
}

// IsAdmin reports whether u may administer the portal.
func (u *User) IsAdmin() bool { return u != nil && u.Role == RoleAdmin }

// checkUsername enforces the username rules: 1 to 64 characters from
// letters, digits and . _ @ -.
func checkUsername(name string) error {
	if name == "" || len(name) > maxUsernameLen {
		return fmt.Errorf("username must have 1 to %d characters", maxUsernameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r)
		if !ok {
			return errors.New("username may only contain letters, digits and . _ @ -")
		}
	}
	return nil
}

// checkPassword enforces the password length bounds.
func checkPassword(pw string) error {
	if len(pw) < minPasswordLen || len(pw) > maxPasswordLen {
		return fmt.Errorf("password must have %d to %d bytes", minPasswordLen, maxPasswordLen)
	}
	return nil
}

// checkRole accepts the two roles.
func checkRole(role string) error {
	if role != RoleAdmin && role != RoleUploader {
		return errors.New("role must be admin or uploader")
	}
	return nil
}

// hashPassword returns the bcrypt hash of pw at cost.
func hashPassword(pw string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// randomPassword returns a password of 24 characters from a 57-symbol
// alphabet without look-alikes (about 140 bits).
func randomPassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	return randomFrom(alphabet, 24)
}

func randomFrom(alphabet string, n int) string {
	var b strings.Builder
	buf := make([]byte, 1)
	for b.Len() < n {
		rand.Read(buf)
		// Rejection sampling keeps every symbol equally likely.
		if int(buf[0]) < 256-256%len(alphabet) {
			b.WriteByte(alphabet[int(buf[0])%len(alphabet)])
		}
	}
	return b.String()
}

// newUser validates the fields and returns the user with its password hash.
func newUser(username, role, password string, cost int, now time.Time) (User, string, error) {
	if err := checkUsername(username); err != nil {
		return User{}, "", err
	}
	if err := checkRole(role); err != nil {
		return User{}, "", err
	}
	if err := checkPassword(password); err != nil {
		return User{}, "", err
	}
	hash, err := hashPassword(password, cost)
	if err != nil {
		return User{}, "", err
	}
	u := User{ID: uuid.Must(uuid.NewV7()).String(), Username: username, Role: role,
		CreatedAt: now.UTC().Truncate(time.Millisecond)}
	return u, hash, nil
}

// execer is what inserts need: a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// queryer is what lookups need: a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// insertUser stores u with its password hash.
func insertUser(ctx context.Context, db execer, u User, hash string) error {
	_, err := db.ExecContext(ctx, `INSERT INTO users (id, username, role, password_hash, disabled, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, u.ID, u.Username, u.Role, hash, u.Disabled, u.CreatedAt.UnixMilli())
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: users.username") {
		return ErrUserExists
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

const userColumns = "id, username, role, disabled, created_at"

func scanUser(s interface{ Scan(...any) error }, extra ...any) (User, error) {
	var u User
	var created int64
	if err := s.Scan(append([]any{&u.ID, &u.Username, &u.Role, &u.Disabled, &created}, extra...)...); err != nil {
		return User{}, err
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	return u, nil
}

// userByName returns a user (case-insensitive name) and its password hash.
func userByName(ctx context.Context, db queryer, username string) (User, string, error) {
	var hash string
	u, err := scanUser(db.QueryRowContext(ctx, "SELECT "+userColumns+", password_hash FROM users WHERE username = ?",
		username), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", fmt.Errorf("get user: %w", err)
	}
	return u, hash, nil
}

// userByID returns one user.
func userByID(ctx context.Context, db queryer, id string) (User, error) {
	u, err := scanUser(db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// listUsers returns every user, oldest first.
func listUsers(ctx context.Context, db queryer) ([]User, error) {
	rows, err := db.QueryContext(ctx, "SELECT "+userColumns+" FROM users ORDER BY id")
	out, err := keyset.All(rows, err, func(s keyset.Scanner) (User, error) { return scanUser(s) })
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// UserChange is a partial update of a user; nil fields stay as they are.
type UserChange struct {
	Role     *string `json:"role"`
	Disabled *bool   `json:"disabled"`
	Password *string `json:"password"`
	// Quota sets the user's storage quota in bytes (0: no limit); null
	// goes back to the portal's default.
	Quota Optional[int64] `json:"quota_bytes"`
}

// Optional is a JSON value that may be absent (Set false), null (Value
// nil) or given.
type Optional[T any] struct {
	Set   bool
	Value *T
}

// UnmarshalJSON records that the value was given, and what it is.
func (o *Optional[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	o.Value = &v
	return nil
}

// updateUser applies ch to the user id in one transaction, refusing to
// leave the portal without an enabled admin. A new password or disabling
// the user ends the user's web sessions.
func (a *App) updateUser(ctx context.Context, id string, ch UserChange) (User, error) {
	var hash string
	if ch.Role != nil {
		if err := checkRole(*ch.Role); err != nil {
			return User{}, invalid("role", err.Error())
		}
	}
	if ch.Quota.Value != nil && *ch.Quota.Value < 0 {
		return User{}, invalid("quota_bytes", "quota_bytes must be a number of bytes (0: no limit), or null for the default")
	}
	if ch.Password != nil {
		if err := checkPassword(*ch.Password); err != nil {
			return User{}, invalid("password", err.Error())
		}
		var err error
		if hash, err = hashPassword(*ch.Password, a.passwordCost()); err != nil {
			return User{}, err
		}
	}
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	defer tx.Rollback()
	u, err := userByID(ctx, tx, id)
	if err != nil {
		return User{}, err
	}
	if ch.Role != nil {
		u.Role = *ch.Role
	}
	if ch.Disabled != nil {
		u.Disabled = *ch.Disabled
	}
	if _, err := tx.ExecContext(ctx, "UPDATE users SET role = ?, disabled = ? WHERE id = ?", u.Role, u.Disabled, id); err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	if ch.Quota.Set {
		if _, err := tx.ExecContext(ctx, "UPDATE users SET quota_bytes = ? WHERE id = ?", ch.Quota.Value, id); err != nil {
			return User{}, fmt.Errorf("update user: %w", err)
		}
	}
	if hash != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE users SET password_hash = ? WHERE id = ?", hash, id); err != nil {
			return User{}, fmt.Errorf("update user: %w", err)
		}
	}
	if hash != "" || u.Disabled {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE user_id = ?", id); err != nil {
			return User{}, fmt.Errorf("update user: %w", err)
		}
	}
	if err := requireAdminLeft(ctx, tx); err != nil {
		return User{}, err
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	return u, nil
}

// deleteUser removes a user with its tokens and sessions. Files and
// uploads keep the owner they recorded.
func (a *App) deleteUser(ctx context.Context, id string) error {
	tx, err := a.db.W.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "DELETE FROM users WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if err := requireAdminLeft(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	return nil
}

// requireAdminLeft fails with ErrLastAdmin when no enabled admin remains.
func requireAdminLeft(ctx context.Context, tx *sql.Tx) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").Scan(&n); err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	if n == 0 {
		return ErrLastAdmin
	}
	return nil
}

// ensureAdmin creates the user "admin" on first start (when no admin
// exists yet; the last admin cannot be removed, so that is the first
// start, even after `portal user add` created uploaders). Its password is
// Config.AdminPassword, or a random one printed once to Config.Console,
// never to the log.
func (a *App) ensureAdmin(ctx context.Context) error {
	var n int
	if err := a.db.R.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE role = 'admin'").Scan(&n); err != nil {
		return fmt.Errorf("count admins: %w", err)
	}
	if n > 0 {
		if a.cfg.AdminPassword != "" {
			a.log.Info("an admin exists; the admin password from the environment is ignored")
		}
		return nil
	}
	pw, generated := a.cfg.AdminPassword, false
	if pw == "" {
		pw, generated = randomPassword(), true
	}
	u, hash, err := newUser("admin", RoleAdmin, pw, a.passwordCost(), a.cfg.Now())
	if err != nil {
		return fmt.Errorf("create admin: %w", err)
	}
	if err := insertUser(ctx, a.db.W, u, hash); err != nil {
		return fmt.Errorf("create admin: %w", err)
	}
	a.log.Info("created user admin", "user_id", u.ID, "password_generated", generated)
	if generated {
		fmt.Fprintf(a.console(), "\nCreated user admin with the generated password:\n\n    %s\n\n"+
			"It is shown only this once. Set PORTAL_ADMIN_PASSWORD on first start to choose it.\n\n", pw)
	}
	return nil
}

func (a *App) console() io.Writer {
	if a.cfg.Console != nil {
		return a.cfg.Console
	}
	return os.Stdout
}

func (a *App) passwordCost() int {
	if a.cfg.passwordCost != 0 {
		return a.cfg.passwordCost
	}
	return DefaultPasswordCost
}

// AddUser creates a user in the database of the portal whose data
// directory is dataDir (for `portal user add`; safe while the portal runs).
func AddUser(ctx context.Context, dataDir, username, role, password string) (User, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return User{}, fmt.Errorf("create data dir: %w", err)
	}
	db, err := OpenDB(ctx, dbPath(dataDir))
	if err != nil {
		return User{}, err
	}
	defer db.Close()
	u, hash, err := newUser(username, role, password, DefaultPasswordCost, time.Now())
	if err != nil {
		return User{}, err
	}
	if err := insertUser(ctx, db.W, u, hash); err != nil {
		return User{}, err
	}
	return u, nil
}
