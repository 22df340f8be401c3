-- Indexes and a count that keep the hot queries' cost flat with millions
-- of files: list pages by status and by owner read their page from an
-- index in order (no sort of every match); the expiry notifier reads only
-- the files it has not notified; cleanup reads the expired files in the
-- order it handles them; the dashboard's "expiring soon" sums hours.

-- The file list by status (newest first) and by owner's name.
CREATE INDEX files_status_id ON files (status, id);
CREATE INDEX files_owner_name ON files (owner_username, id);

-- Cleanup takes expired files by (expires_at, id).
DROP INDEX files_status_expires;
CREATE INDEX files_status_expires ON files (status, expires_at, id);

-- The notifier's work: stored files not yet notified, by expiry. Once
-- notified a file leaves the index, so a run does not read the files of
-- the notice window it already announced.
CREATE INDEX files_notify ON files (expires_at, id) WHERE status = 'stored' AND expiring_notified_at IS NULL;

-- Stored files by the UTC hour they expire in (hour = expires_at /
-- 3600000), kept by triggers in the transaction of every change, so
-- counting the files that expire by a time reads a few hundred rows,
-- not the files. Hours without files are removed.
CREATE TABLE file_expiry_hours (
    hour  INTEGER PRIMARY KEY,
    files INTEGER NOT NULL
);
INSERT INTO file_expiry_hours (hour, files)
    SELECT expires_at / 3600000, COUNT(*) FROM files WHERE status = 'stored' GROUP BY expires_at / 3600000;

CREATE TRIGGER files_expiry_counted AFTER INSERT ON files WHEN new.status = 'stored' BEGIN
    INSERT INTO file_expiry_hours (hour, files) VALUES (new.expires_at / 3600000, 1)
        ON CONFLICT (hour) DO UPDATE SET files = files + 1;
END;
CREATE TRIGGER files_expiry_uncounted AFTER DELETE ON files WHEN old.status = 'stored' BEGIN
    UPDATE file_expiry_hours SET files = files - 1 WHERE hour = old.expires_at / 3600000;
    DELETE FROM file_expiry_hours WHERE hour = old.expires_at / 3600000 AND files = 0;
END;
CREATE TRIGGER files_expiry_recounted AFTER UPDATE OF status, expires_at ON files
WHEN (old.status = 'stored' OR new.status = 'stored')
    AND (old.status <> new.status OR old.expires_at <> new.expires_at)
BEGIN
    UPDATE file_expiry_hours SET files = files - 1 WHERE old.status = 'stored' AND hour = old.expires_at / 3600000;
    DELETE FROM file_expiry_hours WHERE old.status = 'stored' AND hour = old.expires_at / 3600000 AND files = 0;
    INSERT INTO file_expiry_hours (hour, files) SELECT new.expires_at / 3600000, 1 WHERE new.status = 'stored'
        ON CONFLICT (hour) DO UPDATE SET files = files + 1;
END;
