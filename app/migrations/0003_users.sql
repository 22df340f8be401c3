-- Users, API tokens, web sessions, and the owner of every tus upload.
-- Times are Unix milliseconds (UTC). Secrets are never stored: tokens and
-- session ids only as their SHA-256, passwords only as bcrypt hashes.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,                 -- UUIDv7
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'uploader')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,                  -- UUIDv7
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,              -- hex SHA-256 of the token
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,                           -- NULL: never
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX tokens_user ON tokens (user_id, id);

CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,                    -- hex SHA-256 of the cookie value
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Who created each tus upload, written by the pre-create hook before the
-- upload exists (the portal picks the upload id). Not a foreign key: the
-- user may be deleted later and the upload keeps its recorded owner.
-- user_id and username are NULL for an anonymous upload. An upload without
-- a row (made before this migration) counts as anonymous.
CREATE TABLE upload_owners (
    upload_id  TEXT PRIMARY KEY,
    user_id    TEXT,
    username   TEXT,
    created_at INTEGER NOT NULL
);
