-- A token may be narrowed to some of its owner's operations (package
-- app/access): its scopes, space-separated; empty means all its owner's
-- role allows.
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
