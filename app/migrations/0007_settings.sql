-- Settings the portal keeps for itself: instance_id names this portal in
-- the claim it writes under an S3 bucket prefix (one portal per prefix).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
