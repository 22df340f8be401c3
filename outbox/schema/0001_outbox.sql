-- The outbox's tables: events, webhook endpoints with their secrets, and the
-- deliveries of every event to every endpoint with their attempts. Until
-- the outbox owned its schema, the app's migrations 0001 and 0002 made them;
-- IF NOT EXISTS makes this a no-op on those databases, the exact schema on
-- new ones. Nothing outside package outbox writes SQL against these tables.

-- The transactional outbox: events are written in the same transaction as
-- the change they describe. seq orders them; id is the public event_id.
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,   -- UUIDv7, the payload's event_id and webhook-id
    type       TEXT NOT NULL,
    file_id    TEXT,
    payload    BLOB NOT NULL,          -- the exact JSON bytes delivered
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_file ON events (file_id, seq);
CREATE INDEX IF NOT EXISTS events_type ON events (type, seq);

-- Webhook endpoints, their signing secrets, and per-endpoint delivery
-- tracking (DESIGN.md Q2: one delivery row per (event, endpoint), one
-- attempt row per HTTP try). Times are Unix milliseconds (UTC).

-- Endpoints are soft-deleted (deleted_at) so an event's history still names
-- where it went; a deleted endpoint's secrets are removed at once.
CREATE TABLE IF NOT EXISTS endpoints (
    id              TEXT PRIMARY KEY,                -- UUIDv7
    url             TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    event_types     TEXT NOT NULL DEFAULT '[]',      -- JSON list; [] = all, "file.*" = prefix
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    disabled_at     INTEGER,
    failing_since   INTEGER,                         -- first failure since the last success
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);

-- Signing secrets (whsec_...). The newest signs; older ones keep signing
-- until expires_at after a rotation. NULL expires_at: current.
CREATE TABLE IF NOT EXISTS endpoint_secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX IF NOT EXISTS endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id, id);

-- One row per (event, endpoint), written in the event's own transaction.
-- lane 0: first attempts of fresh fan-out; lane 1: retries and replays.
-- The dispatcher claims from both lanes in turn so neither starves the other.
-- attempts counts every try ever made; tries counts those of the current
-- schedule (a manual retry or replay starts a new schedule).
CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,               -- UUIDv7, the X-Webhook-Delivery header
    event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'succeeded', 'failed', 'cancelled')),
    lane             INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    tries            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,                        -- set while pending
    last_attempt_at  INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
-- Claiming: due deliveries of one endpoint and lane, oldest due first.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (endpoint_id, lane, next_attempt_at) WHERE status = 'pending';
-- Listing one endpoint's deliveries (all, or by status) and bulk replay.
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX IF NOT EXISTS deliveries_endpoint_status ON deliveries (endpoint_id, status, id);
-- Restart recovery.
CREATE INDEX IF NOT EXISTS deliveries_delivering ON deliveries (status) WHERE status = 'delivering';

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at  INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    url           TEXT NOT NULL,
    status_code   INTEGER,                            -- NULL: no HTTP response
    response_body TEXT NOT NULL DEFAULT '',           -- capped
    error         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Replay by time reads the events of a period.
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);
