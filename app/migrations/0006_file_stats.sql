-- Figures that stay cheap with millions of files: totals by status and
-- files stored per hour, kept in the transactions that store and delete
-- files; and which deleted files still have bytes in the store.

CREATE TABLE file_totals (
    status TEXT PRIMARY KEY,
    files  INTEGER NOT NULL DEFAULT 0,
    bytes  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO file_totals (status, files, bytes) VALUES ('stored', 0, 0), ('deleted', 0, 0);
UPDATE file_totals SET
    files = (SELECT COUNT(*) FROM files WHERE files.status = file_totals.status),
    bytes = (SELECT COALESCE(SUM(size_bytes), 0) FROM files WHERE files.status = file_totals.status);

-- Files stored (finalized) per UTC hour: hour = stored_at / 3600000.
CREATE TABLE file_hours (
    hour  INTEGER PRIMARY KEY,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
INSERT INTO file_hours (hour, files, bytes)
    SELECT stored_at / 3600000, COUNT(*), SUM(size_bytes) FROM files GROUP BY stored_at / 3600000;

-- purged_at: when a deleted file's bytes left the store. Deleted files
-- without it are the cleanup's leftovers to remove (it finds them here,
-- not by listing the store).
ALTER TABLE files ADD COLUMN purged_at INTEGER;
CREATE INDEX files_unpurged ON files (deleted_at) WHERE status = 'deleted' AND purged_at IS NULL;
