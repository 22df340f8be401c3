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

-- The transactional outbox: events are written in the same transaction as
-- the change they describe. seq orders them; id is the public event_id.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,   -- UUIDv7, the payload's event_id and webhook-id
    type       TEXT NOT NULL,
    file_id    TEXT,
    payload    BLOB NOT NULL,          -- the exact JSON bytes delivered
    created_at INTEGER NOT NULL
);
CREATE INDEX events_file ON events (file_id, seq);
CREATE INDEX events_type ON events (type, seq);
