-- Files: one row per finalized upload. Times are Unix milliseconds (UTC).
CREATE TABLE files (
    id              TEXT PRIMARY KEY,          -- UUIDv7
    upload_id       TEXT NOT NULL UNIQUE,      -- tus upload id; makes finalize idempotent
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    storage_backend TEXT NOT NULL,
    storage_bucket  TEXT NOT NULL,
    storage_key     TEXT NOT NULL,
    metadata        TEXT NOT NULL DEFAULT '{}', -- JSON object of the other tus metadata
    status          TEXT NOT NULL CHECK (status IN ('stored', 'deleted')),
    owner_id        TEXT,
    owner_username  TEXT,
    stored_at       INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    expiring_notified_at INTEGER,
    deleted_at      INTEGER,
    delete_reason   TEXT
);
CREATE INDEX files_status_expires ON files (status, expires_at);
CREATE INDEX files_owner ON files (owner_id, id);

-- The outbox's events table was created here until the outbox took over its
-- schema (outbox/schema/0001_outbox.sql creates it on new databases).
