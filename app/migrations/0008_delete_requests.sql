-- A file's deletion is requested before its bytes go, and committed (status
-- deleted, file.deleted) only once they are gone: the request records who
-- asked and why, so a deletion cut short (a crash, a bucket that is down)
-- is finished later with the same reason and actor.
ALTER TABLE files ADD COLUMN delete_requested_at INTEGER;
ALTER TABLE files ADD COLUMN delete_request TEXT; -- JSON {"reason", "actor"}
CREATE INDEX files_delete_requested ON files (delete_requested_at)
    WHERE status = 'stored' AND delete_requested_at IS NOT NULL;
