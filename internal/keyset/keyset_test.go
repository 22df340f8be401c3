package keyset

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	_ "modernc.org/sqlite"
)

func TestPagesWalkEveryRowOnceNewestFirst(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 23; i++ {
		db.Exec("INSERT INTO t (id, kind) VALUES (?, ?)", i, []string{"a", "b"}[i%2])
	}
	scan := func(s Scanner) (int, error) {
		var id int
		var kind string
		return id, s.Scan(&id, &kind)
	}
	for _, tc := range []struct {
		kind string
		want int
	}{{"", 23}, {"a", 11}, {"b", 12}} {
		t.Run("kind="+tc.kind, func(t *testing.T) {
			var seen []int
			var after any
			for pages := 0; ; pages++ {
				q := Select("SELECT id, kind FROM t").Eq("kind", tc.kind)
				items, next, err := Page(context.Background(), db, q, "id", after, 5, scan, strconv.Itoa)
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, items...)
				if next == "" {
					break
				}
				if len(items) != 5 || pages > 10 || next != strconv.Itoa(items[4]) {
					t.Fatalf("page %d: %d items, next %q", pages, len(items), next)
				}
				after = items[len(items)-1]
			}
			if len(seen) != tc.want {
				t.Fatalf("%d rows, want %d: %v", len(seen), tc.want, seen)
			}
			for i := 1; i < len(seen); i++ {
				if seen[i] >= seen[i-1] {
					t.Fatalf("not newest first: %v", seen)
				}
			}
		})
	}
	// A query reused for two pages is not changed by them.
	q := Select("SELECT id, kind FROM t").Where("id > ?", 3)
	a, _, _ := Page(context.Background(), db, q, "id", 10, 100, scan, strconv.Itoa)
	b, _, _ := Page(context.Background(), db, q, "id", nil, 100, scan, strconv.Itoa)
	if fmt.Sprint(len(a), len(b)) != "6 20" {
		t.Fatalf("reused query: %d and %d rows, want 6 and 20", len(a), len(b))
	}
}
