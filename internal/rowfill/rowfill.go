// Package rowfill writes a portal's database as it looks after weeks of
// use with millions of files: rows only (the store holds no bytes),
// written by SQL in bulk. The benchmark (cmd/portalbench, scenario 6) and
// the query-plan tests fill their databases with it.
package rowfill

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite" // the "sqlite" driver
)

// Fill writes n files with their uploads, events,
// deliveries and attempts, written straight into a new data dir's
// database by SQL (rows only: the store holds no bytes). It looks like a
// portal that ran for four weeks:
//
//   - files stored uniformly over 28 days, in that order; TTLs of 7 days
//     (85%), 1 day (10%) and 30 days (5%); owners mixed (one heavy user
//     with 30%, anonymous uploads 20%, 99 other users the rest);
//   - every file that expired is deleted (reason expired, after its
//     file.expiring), 4% were deleted by their owner or an admin, the rest
//     are stored, those expiring within a day already notified;
//   - events file.uploaded, file.expiring and file.deleted in time order,
//     and a few portal.test;
//   - three endpoints: "all" gets every file event (a few deliveries
//     failed, some retrying), "uploads" gets file.uploaded since day 14
//     and fails more often, "deletions" got file.deleted until it was
//     disabled three days ago after a day of failures; about three
//     deliveries per file, one attempt per delivery that succeeded the
//     first time, seven for one that failed;
//   - the totals, usage, hourly history and counters kept as the portal
//     keeps them.
//
// Nothing is due: every file that expires within the next two hours is
// already deleted, and every stored file expiring within a day after that
// is notified, so the jobs find no work while the scenario runs. No
// ANALYZE is run: a portal's database has the statistics the portal
// gathers itself.

// registryStart is how far back the registry's files go.
const registrySpan = 28 * 24 * time.Hour

// UserPassword is the password of the registry's heavy user (who lists
// their own files in the scenario).
const UserPassword = "portalbench-user"

// HeavyUser is the username of the user owning 30% of the files.
const HeavyUser = "heavy"

// Stats is what a fill wrote.
type Stats struct {
	Files, Events, Deliveries, Attempts int64
	Bytes                               int64 // size of the database file
	Took                                time.Duration
	Tables                              map[string]int64 // bytes per table and index (dbstat), if measured
}

// Fill fills the database at path, made and migrated by the portal
// (app.OpenDB) and closed again, with n files. Progress goes to logf.
func Fill(ctx context.Context, path string, n int, logf func(string, ...any)) (Stats, error) {
	start := time.Now()
	var st Stats
	// The fill writes once, without a journal or syncs: a crash leaves a
	// scratch database to throw away.
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(OFF)"+
		"&_pragma=synchronous(OFF)&_pragma=foreign_keys(OFF)&_pragma=cache_size(-1048576)&_pragma=mmap_size(2147418112)&_pragma=temp_store(FILE)")
	if err != nil {
		return st, err
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1) // the temporary tables live on the one connection
	f := &filler{db: raw, n: n, now: time.Now().UTC().Truncate(time.Millisecond)}
	f.cols, err = tableColumns(ctx, raw, "deliveries")
	if err != nil {
		return st, err
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"users and endpoints", f.setup},
		{"indexes and triggers dropped", f.dropIndexes},
		{"files and uploads", f.files},
		{"events", f.events},
		{"deliveries", f.deliveries},
		{"attempts", f.attempts},
		{"indexes and triggers made again", f.restoreIndexes},
		{"totals and history", f.totals},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return st, fmt.Errorf("fill %s: %w", s.name, err)
		}
		logf("    %s: %s", s.name, time.Since(t).Round(time.Millisecond))
	}
	for _, c := range []struct {
		table string
		n     *int64
	}{{"files", &st.Files}, {"events", &st.Events}, {"deliveries", &st.Deliveries}, {"delivery_attempts", &st.Attempts}} {
		if err := raw.QueryRowContext(ctx, "SELECT MAX(rowid) FROM "+c.table).Scan(c.n); err != nil {
			return st, err
		}
	}
	if err := raw.Close(); err != nil {
		return st, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return st, err
	}
	st.Bytes, st.Took = fi.Size(), time.Since(start)
	return st, nil
}

// tableSizes returns the bytes each table and index of the database takes.
func TableSizes(ctx context.Context, path string) (map[string]int64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, err
		}
		out[name] = n
	}
	return out, rows.Err()
}

func tableColumns(ctx context.Context, db *sql.DB, table string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out[c] = true
	}
	return out, rows.Err()
}

type filler struct {
	db   *sql.DB
	n    int
	now  time.Time
	cols map[string]bool // columns of deliveries (the schema may have more than the fill needs)
	// dropped are the schema's indexes and triggers on the filled tables,
	// made again after the rows are in (sorting once is faster than
	// keeping them as rows come).
	dropped []string
}

// filledTables are the big tables of the fill.
const filledTables = "'files', 'uploads', 'events', 'deliveries', 'delivery_attempts'"

func (f *filler) dropIndexes(ctx context.Context) error {
	rows, err := f.db.QueryContext(ctx, `SELECT type, name, sql FROM sqlite_schema
		WHERE type IN ('index', 'trigger') AND sql IS NOT NULL AND tbl_name IN (`+filledTables+`) ORDER BY rowid`)
	if err != nil {
		return err
	}
	type obj struct{ typ, name, sql string }
	var objs []obj
	for rows.Next() {
		var o obj
		if err := rows.Scan(&o.typ, &o.name, &o.sql); err != nil {
			rows.Close()
			return err
		}
		objs = append(objs, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, o := range objs {
		if err := f.exec(ctx, "DROP "+strings.ToUpper(o.typ)+" "+o.name); err != nil {
			return err
		}
		f.dropped = append(f.dropped, o.sql)
	}
	return nil
}

// restoreIndexes makes the dropped indexes and triggers again, and the
// counters the triggers would have kept.
func (f *filler) restoreIndexes(ctx context.Context) error {
	for _, q := range f.dropped {
		if err := f.exec(ctx, q); err != nil {
			return fmt.Errorf("%.60s: %w", q, err)
		}
	}
	return f.exec(ctx, `UPDATE outbox_counters SET n = CASE name
		WHEN 'events' THEN (SELECT COUNT(*) FROM events)
		WHEN 'deliveries_open' THEN (SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'delivering'))
		WHEN 'deliveries_failed' THEN (SELECT COUNT(*) FROM deliveries WHERE status = 'failed') ELSE n END`)
}

// chunk is how many files one statement writes (and events, deliveries
// and attempts are written in ranges of the same size).
const fillChunk = 250_000

func (f *filler) exec(ctx context.Context, q string, args ...any) error {
	_, err := f.db.ExecContext(ctx, q, args...)
	return err
}

// params are the named parameters every statement may use.
func (f *filler) params(extra ...any) []any {
	now := f.now.UnixMilli()
	return append([]any{
		sql.Named("now", now),
		sql.Named("start", now-registrySpan.Milliseconds()),
		sql.Named("span", registrySpan.Milliseconds()-60_000),
		sql.Named("total", f.n),
		sql.Named("due", now+2*time.Hour.Milliseconds()),
		sql.Named("day", 24*time.Hour.Milliseconds()),
	}, extra...)
}

func (f *filler) setup(ctx context.Context) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(UserPassword), bcrypt.MinCost)
	if err != nil {
		return err
	}
	now := f.now.UnixMilli()
	start := now - registrySpan.Milliseconds()
	if err := f.exec(ctx, `CREATE TEMP TABLE bench_users (no INTEGER PRIMARY KEY, id TEXT, username TEXT)`); err != nil {
		return err
	}
	for no := 1; no <= 100; no++ {
		name := fmt.Sprintf("user%03d", no)
		if no == 1 {
			name = HeavyUser
		}
		id := uuid.Must(uuid.NewV7()).String()
		if err := f.exec(ctx, `INSERT INTO bench_users (no, id, username) VALUES (?, ?, ?)`, no, id, name); err != nil {
			return err
		}
		if err := f.exec(ctx, `INSERT INTO users (id, username, role, password_hash, created_at) VALUES (?, ?, 'uploader', ?, ?)`,
			id, name, string(hash), start-time.Hour.Milliseconds()); err != nil {
			return err
		}
	}
	// Endpoints: no, types the fill matches (a LIKE pattern), the window of
	// events they got, and what the portal keeps of them.
	if err := f.exec(ctx, `CREATE TEMP TABLE bench_endpoints (no INTEGER PRIMARY KEY, id TEXT, url TEXT,
		pattern TEXT, from_ms INTEGER, until_ms INTEGER)`); err != nil {
		return err
	}
	eps := []struct {
		name, types, pattern string
		from, until          int64
		disabled             bool
	}{
		{"all", `["file.*"]`, "file.%", start - 1, now + 1, false},
		{"uploads", `["file.uploaded"]`, "file.uploaded", start + registrySpan.Milliseconds()/2, now + 1, false},
		{"deletions", `["file.deleted"]`, "file.deleted", start - 1, now - 3*24*time.Hour.Milliseconds(), true},
	}
	for i, ep := range eps {
		id := uuid.Must(uuid.NewV7()).String()
		url := "https://hooks.example.com/portal/" + ep.name
		if err := f.exec(ctx, `INSERT INTO bench_endpoints (no, id, url, pattern, from_ms, until_ms) VALUES (?, ?, ?, ?, ?, ?)`,
			i, id, url, ep.pattern, ep.from, ep.until); err != nil {
			return err
		}
		var reason, disabledAt any
		enabled := 1
		if ep.disabled {
			enabled, reason, disabledAt = 0, "failing since "+time.UnixMilli(ep.until-24*time.Hour.Milliseconds()).UTC().Format(time.RFC3339), ep.until
		}
		if err := f.exec(ctx, `INSERT INTO endpoints (id, url, description, event_types, enabled, disabled_reason, disabled_at,
			created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, url, "portalbench "+ep.name, ep.types, enabled, reason, disabledAt, max(ep.from, start), max(ep.from, start)); err != nil {
			return err
		}
		if err := f.exec(ctx, `INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES (?, ?, ?)`,
			id, "whsec_"+strings.Repeat("A", 43)+"=", max(ep.from, start)); err != nil {
			return err
		}
	}
	return nil
}

// sqlFiles writes files [lo, hi): file i is stored at start + i*span/total.
// h is a hash of i that picks its TTL, owner, type and size.
const sqlFiles = `WITH RECURSIVE n(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :hi),
a AS (SELECT i, (i * 2654435761) % 4294967296 AS h, :start + i * :span / :total AS stored_at FROM n),
b AS (SELECT i, h, stored_at,
		CASE WHEN h % 100 < 85 THEN 7 * :day WHEN h % 100 < 95 THEN :day ELSE 30 * :day END AS ttl,
		CASE WHEN h / 100 % 1000 < 300 THEN 1 WHEN h / 100 % 1000 < 500 THEN 0 ELSE 2 + h / 100000 % 99 END AS owner_no,
		h / 1000 % 100 < 4 AS by_user
	FROM a),
c AS (SELECT *, stored_at + ttl AS expires_at,
		stored_at + (h / 7 % 1000) * MAX(ttl - :day, 60000) / 1000 AS user_del_at FROM b),
d AS (SELECT *,
		CASE WHEN by_user AND user_del_at <= :now THEN user_del_at
			WHEN expires_at <= :due THEN MIN(expires_at + 30000, :now) END AS deleted_at,
		CASE WHEN by_user AND user_del_at <= :now THEN
				CASE WHEN owner_no = 0 OR h % 5 = 0 THEN 'deleted_by_admin' ELSE 'deleted_by_user' END
			WHEN expires_at <= :due THEN 'expired' END AS reason
	FROM c),
e AS (SELECT d.*,
		CASE WHEN reason = 'expired' OR (reason IS NULL AND expires_at <= :due + :day)
			THEN MAX(expires_at - :day, stored_at) END AS notified_at,
		printf('%08x%08x%08x%08x', h, (i * 40503 + h) % 4294967296, h * 1000003 % 4294967296, (i + 1) * 2246822519 % 4294967296) AS upload_id,
		CASE h / 10 % 5 WHEN 0 THEN 'pdf' WHEN 1 THEN 'jpg' WHEN 2 THEN 'csv' WHEN 3 THEN 'zip' ELSE 'bin' END AS ext,
		CASE WHEN h / 10000 % 10 < 6 THEN 1024 + h % 1048576 ELSE h * 37 % 104857600 END AS size,
		u.id AS owner_id, u.username AS owner_username
	FROM d LEFT JOIN bench_users u ON u.no = d.owner_no)
INSERT INTO files (id, upload_id, filename, content_type, size_bytes, sha256, storage_backend, storage_bucket,
	storage_key, metadata, status, owner_id, owner_username, stored_at, expires_at, expiring_notified_at,
	deleted_at, delete_reason, purged_at)
SELECT printf('%08x-%04x-7%03x-%x%03x-%012x', stored_at / 65536, stored_at % 65536, h % 4096, 8 + i % 4,
		i / 4 % 4096, i * 3740067437 % 281474976710656),
	upload_id, printf('report-%d.%s', i, ext),
	CASE ext WHEN 'pdf' THEN 'application/pdf' WHEN 'jpg' THEN 'image/jpeg' WHEN 'csv' THEN 'text/csv'
		WHEN 'zip' THEN 'application/zip' ELSE 'application/octet-stream' END,
	size, printf('%016x%016x%016x%016x', h * 1000003, i * 40503 + h, h * 97 + i, i * 2246822519 + 1),
	'local', 'uploads', upload_id,
	CASE WHEN h / 3 % 10 < 3 THEN printf('{"project":"apollo-%d"}', h % 40) ELSE '{}' END,
	CASE WHEN deleted_at IS NULL THEN 'stored' ELSE 'deleted' END, owner_id, owner_username,
	stored_at, expires_at, notified_at, deleted_at, reason, deleted_at
FROM e`

func (f *filler) files(ctx context.Context) error {
	for lo := 0; lo < f.n; lo += fillChunk {
		hi := min(lo+fillChunk, f.n)
		if err := f.exec(ctx, sqlFiles, f.params(sql.Named("lo", lo), sql.Named("hi", hi))...); err != nil {
			return err
		}
		// Every file was an upload: its record stays, done.
		if err := f.exec(ctx, `INSERT INTO uploads (id, user_id, username, created_at, length, received, done_at)
			SELECT upload_id, owner_id, owner_username, stored_at - 1500, size_bytes, size_bytes, stored_at
			FROM files WHERE rowid > ? AND rowid <= ?`, lo, hi); err != nil {
			return err
		}
	}
	// A few uploads in progress, started within the last hours (no bytes
	// in the store: the cleanup leaves them until --incomplete-ttl).
	return f.exec(ctx, `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4)
		INSERT INTO uploads (id, user_id, username, created_at, length)
		SELECT printf('%032x', 4096 + i), u.id, u.username, :now - i * 600000, 5242880
		FROM n LEFT JOIN bench_users u ON u.no = i`, f.params()...)
}

// sqlEventOrder lists every event in time order: file.uploaded at the
// store time, file.expiring at the notice, file.deleted at the deletion,
// and 24 portal.test events (r is the file's rowid, or the test event's
// number).
const sqlEventOrder = `CREATE TEMP TABLE event_order AS
SELECT r, kind, at FROM (
	SELECT rowid AS r, 0 AS kind, stored_at AS at FROM files
	UNION ALL SELECT rowid, 1, expiring_notified_at FROM files WHERE expiring_notified_at IS NOT NULL
	UNION ALL SELECT rowid, 2, deleted_at FROM files WHERE deleted_at IS NOT NULL
	UNION ALL SELECT value, 3, :start + value * :span / 24 FROM json_each('[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23]'))
ORDER BY at, r, kind`

// sqlEvents writes the events of event_order's rows [lo, hi), with
// payloads shaped as the portal writes them.
const sqlEvents = `WITH k AS (SELECT o.rowid AS seq, o.r, o.kind, o.at,
		printf('%08x-%04x-7%03x-%x%03x-%012x', o.at / 65536, o.at % 65536, o.kind * 1024 + o.r % 1024, 8 + o.r % 4,
			o.r / 4 % 4096, (o.r * 4 + o.kind) * 3740067437 % 281474976710656) AS id,
		CASE o.kind WHEN 0 THEN 'file.uploaded' WHEN 1 THEN 'file.expiring' WHEN 2 THEN 'file.deleted' ELSE 'portal.test' END AS type
	FROM event_order o WHERE o.rowid > :lo AND o.rowid <= :hi)
INSERT INTO events (id, type, file_id, payload, created_at)
SELECT k.id, k.type, f.id,
	CASE WHEN k.kind = 3 THEN printf('{"event_type":"portal.test","event_id":"%s","occurred_at":"%s","message":"A test event from the portal.","source":"http://127.0.0.1:8080"}',
		k.id, strftime('%Y-%m-%dT%H:%M:%fZ', k.at / 1000.0, 'unixepoch'))
	ELSE printf('{"event_type":"%s","event_id":"%s","occurred_at":"%s",%s"file":{"id":"%s","filename":"%s","content_type":"%s","size_bytes":%d,"sha256":"%s","storage":{"backend":"local","bucket":"uploads","key":"%s"},"expires_at":"%s","metadata":%s,"download_url":"http://127.0.0.1:8080/api/v1/files/%s/content"},"actor":{"user_id":%s,"username":%s},"source":"http://127.0.0.1:8080"}',
		k.type, k.id, strftime('%Y-%m-%dT%H:%M:%fZ', k.at / 1000.0, 'unixepoch'),
		CASE WHEN k.kind = 2 THEN printf('"reason":"%s",', f.delete_reason) ELSE '' END,
		f.id, f.filename, f.content_type, f.size_bytes, f.sha256, f.storage_key,
		strftime('%Y-%m-%dT%H:%M:%fZ', f.expires_at / 1000.0, 'unixepoch'), f.metadata, f.id,
		CASE WHEN f.owner_id IS NULL OR k.kind = 2 AND f.delete_reason = 'expired' THEN 'null' ELSE '"' || f.owner_id || '"' END,
		CASE WHEN f.owner_id IS NULL OR k.kind = 2 AND f.delete_reason = 'expired' THEN 'null' ELSE '"' || f.owner_username || '"' END)
	END, k.at
FROM k LEFT JOIN files f ON f.rowid = k.r AND k.kind < 3
ORDER BY k.seq`

func (f *filler) events(ctx context.Context) error {
	if err := f.exec(ctx, sqlEventOrder, f.params()...); err != nil {
		return err
	}
	var total int
	if err := f.db.QueryRowContext(ctx, "SELECT MAX(rowid) FROM event_order").Scan(&total); err != nil {
		return err
	}
	for lo := 0; lo < total; lo += fillChunk {
		if err := f.exec(ctx, sqlEvents, f.params(sql.Named("lo", lo), sql.Named("hi", lo+fillChunk))...); err != nil {
			return err
		}
	}
	return f.exec(ctx, "DROP TABLE event_order")
}

// sqlDeliveries fans the events with seq in (lo, hi] out to the endpoints
// that subscribed then, with outcomes by a hash g of (event, endpoint):
// "all" fails 0.3% (seven attempts), "uploads" 4%; some recent deliveries
// of both are still retrying (pending, the next attempt hours away);
// "deletions" failed in its last day before it was disabled. Of the
// deliveries that succeeded, 2% did on a second attempt. attempts is
// the number of attempt rows the delivery gets.
const sqlDeliveries = `WITH x AS (SELECT e.seq, e.id AS event_id, e.type, e.created_at, ep.no, ep.id AS endpoint_id,
		(e.seq * 4 + ep.no) * 2654435761 % 4294967296 AS g
	FROM events e JOIN bench_endpoints ep ON (e.type LIKE ep.pattern OR e.type = 'portal.test' AND e.seq % 2 = ep.no)
		AND e.created_at >= ep.from_ms AND e.created_at < ep.until_ms
	WHERE e.seq > :lo AND e.seq <= :hi),
y AS (SELECT *,
		CASE WHEN no = 2 THEN CASE WHEN created_at >= :now - 4 * :day THEN 'failed' ELSE 'succeeded' END
			WHEN g % 1000 < CASE no WHEN 0 THEN 3 ELSE 40 END THEN 'failed'
			WHEN g % 1000 < CASE no WHEN 0 THEN 5 ELSE 50 END AND created_at >= :now - :day THEN 'pending'
			ELSE 'succeeded' END AS status
	FROM x),
z AS (SELECT *,
		CASE status WHEN 'failed' THEN 7 WHEN 'pending' THEN 2 ELSE CASE WHEN g / 1000 % 50 = 0 THEN 2 ELSE 1 END END AS attempts
	FROM y)
INSERT INTO deliveries (id, event_id, endpoint_id, status, lane, attempts, tries, next_attempt_at, last_attempt_at,
	last_status_code, last_error, created_at, updated_at{cols})
SELECT printf('%08x-%04x-7%03x-%x%03x-%012x', created_at / 65536, created_at % 65536, g % 4096, 8 + seq % 4,
		seq / 4 % 4096, (seq * 4 + no) * 3740067437 % 281474976710656),
	event_id, endpoint_id, status, 0, attempts, attempts,
	CASE WHEN status = 'pending' THEN :now + 3600000 + g % 14400000 END,
	created_at + CASE attempts WHEN 1 THEN 40 WHEN 2 THEN 5040 ELSE 55800000 END,
	CASE status WHEN 'succeeded' THEN 204 WHEN 'pending' THEN 503 ELSE CASE WHEN g % 2 = 0 THEN 500 END END,
	CASE status WHEN 'succeeded' THEN NULL WHEN 'pending' THEN 'HTTP 503' ELSE
		CASE WHEN g % 2 = 0 THEN 'HTTP 500' ELSE 'dial tcp 203.0.113.7:443: i/o timeout' END END,
	created_at, created_at + CASE attempts WHEN 1 THEN 40 WHEN 2 THEN 5040 ELSE 55800000 END{vals}
FROM z ORDER BY seq, no`

func (f *filler) deliveries(ctx context.Context) error {
	// A newer schema may keep the event's type on the delivery.
	cols, vals := "", ""
	if f.cols["event_type"] {
		cols, vals = ", event_type", ", type"
	}
	q := strings.NewReplacer("{cols}", cols, "{vals}", vals).Replace(sqlDeliveries)
	var total int
	if err := f.db.QueryRowContext(ctx, "SELECT MAX(seq) FROM events").Scan(&total); err != nil {
		return err
	}
	for lo := 0; lo < total; lo += fillChunk {
		if err := f.exec(ctx, q, f.params(sql.Named("lo", lo), sql.Named("hi", lo+fillChunk))...); err != nil {
			return err
		}
	}
	return nil
}

// sqlAttempts writes the attempts of the deliveries with rowid in (lo,
// hi]: at the retry schedule's offsets (0, 5 s, 5 min, 30 min, 2 h, 5 h,
// 10 h from the event); every attempt but a success failed with the
// delivery's last error.
const sqlAttempts = `WITH s(k, offset_ms) AS (VALUES (0, 0), (1, 5000), (2, 300000), (3, 1800000), (4, 7200000),
		(5, 18000000), (6, 55800000))
INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, url, status_code, response_body, error, outcome)
SELECT d.id, d.created_at + s.offset_ms + 40, 3 + (d.rowid + s.k) % 40, ep.url,
	CASE WHEN d.status = 'succeeded' AND s.k = d.attempts - 1 THEN 204 ELSE d.last_status_code END,
	CASE WHEN d.status = 'succeeded' AND s.k = d.attempts - 1 THEN ''
		WHEN d.last_status_code IS NOT NULL THEN '{"error":"upstream unavailable"}' ELSE '' END,
	CASE WHEN d.status = 'succeeded' AND s.k = d.attempts - 1 THEN '' ELSE COALESCE(d.last_error, 'HTTP 500') END,
	CASE WHEN d.status = 'succeeded' AND s.k = d.attempts - 1 THEN 'success'
		WHEN d.last_status_code IS NOT NULL OR d.status = 'succeeded' THEN 'http_error' ELSE 'timeout' END
FROM deliveries d JOIN bench_endpoints ep ON ep.id = d.endpoint_id JOIN s ON s.k < d.attempts
WHERE d.rowid > :lo AND d.rowid <= :hi
ORDER BY d.rowid, s.k`

func (f *filler) attempts(ctx context.Context) error {
	var total int
	if err := f.db.QueryRowContext(ctx, "SELECT MAX(rowid) FROM deliveries").Scan(&total); err != nil {
		return err
	}
	for lo := 0; lo < total; lo += fillChunk {
		if err := f.exec(ctx, sqlAttempts, f.params(sql.Named("lo", lo), sql.Named("hi", lo+fillChunk))...); err != nil {
			return err
		}
	}
	return nil
}

// totals fills what the portal keeps beside the rows: file totals, files
// per hour, each account's usage, the hourly delivery history (from the
// deliveries: attempts of the hour of their last attempt), the endpoints'
// last failures, and the failing endpoint's state.
func (f *filler) totals(ctx context.Context) error {
	for _, q := range []string{
		`UPDATE file_totals SET
			files = (SELECT COUNT(*) FROM files WHERE files.status = file_totals.status),
			bytes = (SELECT COALESCE(SUM(size_bytes), 0) FROM files WHERE files.status = file_totals.status)`,
		`INSERT INTO file_hours (hour, files, bytes)
			SELECT stored_at / 3600000, COUNT(*), SUM(size_bytes) FROM files GROUP BY stored_at / 3600000`,
		`INSERT INTO usage (user_key, stored, reserved)
			SELECT COALESCE(owner_id, ''), SUM(CASE WHEN status = 'stored' THEN size_bytes ELSE 0 END), 0
			FROM files GROUP BY COALESCE(owner_id, '')
			ON CONFLICT (user_key) DO UPDATE SET stored = excluded.stored`,
		`UPDATE usage SET reserved = (SELECT COALESCE(SUM(length), 0) FROM uploads
			WHERE done_at IS NULL AND COALESCE(user_id, '') = usage.user_key)`,
		`INSERT INTO delivery_hourly (hour, endpoint_id, success, http_error, timeout, succeeded, failed,
				latency_count, latency_sum, lat_0, lat_9)
			SELECT last_attempt_at / 3600000 * 3600000, endpoint_id,
				SUM(status = 'succeeded'), SUM(CASE WHEN status = 'succeeded' THEN attempts - 1
					WHEN last_status_code IS NOT NULL THEN attempts ELSE 0 END),
				SUM(CASE WHEN status <> 'succeeded' AND last_status_code IS NULL THEN attempts ELSE 0 END),
				SUM(status = 'succeeded'), SUM(status = 'failed'),
				SUM(status = 'succeeded' AND attempts = 1), SUM(CASE WHEN status = 'succeeded' AND attempts = 1 THEN 40 ELSE 0 END),
				SUM(status = 'succeeded' AND attempts = 1), SUM(status = 'succeeded' AND attempts = 2)
			FROM deliveries GROUP BY 1, 2`,
		`UPDATE endpoints SET last_failure_id = (SELECT MAX(t.id) FROM deliveries d
			JOIN delivery_attempts t ON t.delivery_id = d.id
			WHERE d.endpoint_id = endpoints.id AND d.status = 'failed')`,
		`UPDATE endpoints SET failing_since = :now - 3 * 3600000 WHERE description = 'portalbench uploads'`,
	} {
		if err := f.exec(ctx, q, f.params()...); err != nil {
			return fmt.Errorf("%.60s: %w", strings.Join(strings.Fields(q), " "), err)
		}
	}
	// Stored files by the hour they expire in (app migration 0009), which
	// the dropped triggers would have counted.
	var n int
	if err := f.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'file_expiry_hours'").Scan(&n); err != nil || n == 0 {
		return err
	}
	return f.exec(ctx, `INSERT INTO file_expiry_hours (hour, files)
		SELECT expires_at / 3600000, COUNT(*) FROM files WHERE status = 'stored' GROUP BY expires_at / 3600000`)
}
