-- Uploads in progress are recorded in the database (no job lists the
-- upload store), and each account's storage is counted against its quota.

-- Every tus upload, from its creation. id is the id the portal picked at
-- creation (on S3 the object id, before '+'). length is the declared
-- Upload-Length (NULL while deferred); received counts the bytes of a
-- deferred-length upload as they arrive. done_at is set when the upload
-- became a file or was removed: rows without it are the uploads in
-- progress. This replaces upload_owners.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    user_id    TEXT,
    username   TEXT,
    created_at INTEGER NOT NULL,
    length     INTEGER,
    received   INTEGER NOT NULL DEFAULT 0,
    partial    INTEGER NOT NULL DEFAULT 0,
    done_at    INTEGER
);
CREATE INDEX uploads_open ON uploads (created_at) WHERE done_at IS NULL;
INSERT INTO uploads (id, user_id, username, created_at, done_at)
    SELECT o.upload_id, o.user_id, o.username, o.created_at,
           (SELECT f.stored_at FROM files f WHERE f.upload_id = o.upload_id)
    FROM upload_owners o;
DROP TABLE upload_owners;

-- An account's storage quota in bytes; NULL: the portal's default.
ALTER TABLE users ADD COLUMN quota_bytes INTEGER;

-- What each account holds: bytes of its stored files, and bytes reserved
-- by its uploads in progress (declared lengths; received bytes while the
-- length is deferred). user_key is the user id, '' for anonymous uploads.
-- Kept in the transactions that change them, so checking a quota reads
-- one row.
CREATE TABLE usage (
    user_key TEXT PRIMARY KEY,
    stored   INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0
);
INSERT INTO usage (user_key, stored)
    SELECT COALESCE(owner_id, ''), SUM(size_bytes) FROM files WHERE status = 'stored' GROUP BY COALESCE(owner_id, '');
