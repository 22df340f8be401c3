-- Delivery history for the dashboard, kept as attempts are recorded (in
-- the recorder's group commits), so reading it never scans attempts; and
-- counters kept by triggers, so the totals cost the same at any size.

-- One row per endpoint and hour (UTC; hour is the Unix milliseconds of its
-- start): attempts by outcome, deliveries that reached a final state, and
-- the latency from the event's commit to the end of the successful attempt
-- of deliveries on their first schedule (not replayed or retried by hand):
-- count, sum and a histogram: lat_i counts latencies up to
-- outbox.LatencyBuckets[i] (lat_17: longer). Summing the buckets of any
-- hours gives the distribution of that period.
CREATE TABLE delivery_hourly (
    hour          INTEGER NOT NULL,
    endpoint_id   TEXT NOT NULL,
    success       INTEGER NOT NULL DEFAULT 0,
    http_error    INTEGER NOT NULL DEFAULT 0,
    network_error INTEGER NOT NULL DEFAULT 0,
    timeout       INTEGER NOT NULL DEFAULT 0,
    refused       INTEGER NOT NULL DEFAULT 0,
    succeeded     INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    latency_count INTEGER NOT NULL DEFAULT 0,
    latency_sum   INTEGER NOT NULL DEFAULT 0,   -- milliseconds
    lat_0   INTEGER NOT NULL DEFAULT 0, -- <= 10 ms
    lat_1   INTEGER NOT NULL DEFAULT 0, -- <= 25 ms
    lat_2   INTEGER NOT NULL DEFAULT 0, -- <= 50 ms
    lat_3   INTEGER NOT NULL DEFAULT 0, -- <= 100 ms
    lat_4   INTEGER NOT NULL DEFAULT 0, -- <= 250 ms
    lat_5   INTEGER NOT NULL DEFAULT 0, -- <= 500 ms
    lat_6   INTEGER NOT NULL DEFAULT 0, -- <= 1 s
    lat_7   INTEGER NOT NULL DEFAULT 0, -- <= 2.5 s
    lat_8   INTEGER NOT NULL DEFAULT 0, -- <= 5 s
    lat_9   INTEGER NOT NULL DEFAULT 0, -- <= 10 s
    lat_10  INTEGER NOT NULL DEFAULT 0, -- <= 30 s
    lat_11  INTEGER NOT NULL DEFAULT 0, -- <= 1 min
    lat_12  INTEGER NOT NULL DEFAULT 0, -- <= 5 min
    lat_13  INTEGER NOT NULL DEFAULT 0, -- <= 30 min
    lat_14  INTEGER NOT NULL DEFAULT 0, -- <= 2 h
    lat_15  INTEGER NOT NULL DEFAULT 0, -- <= 6 h
    lat_16  INTEGER NOT NULL DEFAULT 0, -- <= 24 h
    lat_17  INTEGER NOT NULL DEFAULT 0, -- longer
    PRIMARY KEY (hour, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX delivery_hourly_endpoint ON delivery_hourly (endpoint_id, hour);

-- What each attempt's outcome was: success, http_error, network_error,
-- timeout or refused (NULL for attempts recorded before this column).
ALTER TABLE delivery_attempts ADD COLUMN outcome TEXT;

-- The endpoint's latest failed attempt (its id in delivery_attempts).
ALTER TABLE endpoints ADD COLUMN last_failure_id INTEGER;
UPDATE endpoints SET last_failure_id = (SELECT MAX(t.id) FROM delivery_attempts t
    JOIN deliveries d ON d.id = t.delivery_id
    WHERE d.endpoint_id = endpoints.id AND (t.status_code IS NULL OR t.status_code NOT BETWEEN 200 AND 299));

-- Totals the dashboard and /metrics show, kept exact by triggers in the
-- transaction of every change: events, open deliveries (pending or
-- delivering) and failed deliveries.
CREATE TABLE outbox_counters (
    name TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO outbox_counters (name, n) VALUES
    ('events', (SELECT COUNT(*) FROM events)),
    ('deliveries_open', (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering'))),
    ('deliveries_failed', (SELECT COUNT(*) FROM deliveries WHERE status = 'failed'));

CREATE TRIGGER events_counted AFTER INSERT ON events BEGIN
    UPDATE outbox_counters SET n = n + 1 WHERE name = 'events';
END;
CREATE TRIGGER events_uncounted AFTER DELETE ON events BEGIN
    UPDATE outbox_counters SET n = n - 1 WHERE name = 'events';
END;

CREATE TRIGGER deliveries_counted AFTER INSERT ON deliveries BEGIN
    UPDATE outbox_counters SET n = n + 1
        WHERE name = CASE new.status WHEN 'failed' THEN 'deliveries_failed'
            WHEN 'pending' THEN 'deliveries_open' WHEN 'delivering' THEN 'deliveries_open' END;
END;
CREATE TRIGGER deliveries_uncounted AFTER DELETE ON deliveries BEGIN
    UPDATE outbox_counters SET n = n - 1
        WHERE name = CASE old.status WHEN 'failed' THEN 'deliveries_failed'
            WHEN 'pending' THEN 'deliveries_open' WHEN 'delivering' THEN 'deliveries_open' END;
END;
-- Fires only when a delivery opens, closes, fails or stops being failed
-- (not when the sender claims a pending one).
CREATE TRIGGER deliveries_recounted AFTER UPDATE OF status ON deliveries
WHEN (old.status IN ('pending', 'delivering')) <> (new.status IN ('pending', 'delivering'))
    OR (old.status = 'failed') <> (new.status = 'failed')
BEGIN
    UPDATE outbox_counters SET n = n
        + (CASE WHEN new.status IN ('pending', 'delivering') THEN 1 ELSE 0 END)
        - (CASE WHEN old.status IN ('pending', 'delivering') THEN 1 ELSE 0 END)
        WHERE name = 'deliveries_open' AND (old.status IN ('pending', 'delivering')) <> (new.status IN ('pending', 'delivering'));
    UPDATE outbox_counters SET n = n
        + (CASE WHEN new.status = 'failed' THEN 1 ELSE 0 END)
        - (CASE WHEN old.status = 'failed' THEN 1 ELSE 0 END)
        WHERE name = 'deliveries_failed' AND (old.status = 'failed') <> (new.status = 'failed');
END;
