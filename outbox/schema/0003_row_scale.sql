-- Listing deliveries by status or by event type reads the page from an
-- index in order (newest first) instead of sorting every match: the
-- event's type is kept on its deliveries (it never changes).
ALTER TABLE deliveries ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
UPDATE deliveries SET event_type = (SELECT type FROM events WHERE events.id = deliveries.event_id);
CREATE INDEX deliveries_status_id ON deliveries (status, id);
CREATE INDEX deliveries_type ON deliveries (event_type, id);
