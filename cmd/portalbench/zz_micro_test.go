package main

import (
	"database/sql"
	"testing"
	"time"
)

func TestZZMicro(t *testing.T) {
	db, _ := sql.Open("sqlite", ":memory:")
	defer db.Close()
	for _, q := range []string{
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 500000) SELECT count(*) FROM n`,
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 500000) SELECT count(strftime('%Y-%m-%dT%H:%M:%fZ', (1700000000000 + i*1000) / 1000.0, 'unixepoch')) FROM n`,
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 500000) SELECT count(printf('%08x-%04x-7%03x-%x%03x-%012x', i / 65536, i % 65536, i % 4096, 8 + i % 4, i / 4 % 4096, i * 3740067437 % 281474976710656)) FROM n`,
		`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 500000) SELECT count(printf('{"event_type":"%s","event_id":"%s","occurred_at":"%s",%s"file":{"id":"%s","filename":"%s","content_type":"%s","size_bytes":%d,"sha256":"%s","storage":{"backend":"local","bucket":"uploads","key":"%s"},"expires_at":"%s","metadata":%s,"download_url":"http://127.0.0.1:8080/api/v1/files/%s/content"},"actor":{"user_id":%s,"username":%s},"source":"http://127.0.0.1:8080"}', 'file.uploaded', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '2026-11-04T11:07:48.096Z', '', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'report-1.bin', 'application/pdf', i, 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 'abcdefabcdefabcdefabcdefabcdefab', '2026-11-04T11:07:48.096Z', '{}', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'null', 'null')) FROM n`,
	} {
		t0 := time.Now()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		t.Logf("%v %.60s", time.Since(t0), q[60:])
	}
}
