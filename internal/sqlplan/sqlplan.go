// Package sqlplan reads SQLite's query plans, for the tests that assert the
// hot queries use an index (no full scan of a growing table, no temporary
// B-tree).
package sqlplan

import (
	"database/sql"
	"errors"
	"fmt"
)

// Explain returns the detail lines of EXPLAIN QUERY PLAN for q with args.
func Explain(db *sql.DB, q string, args ...any) ([]string, error) {
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		return nil, fmt.Errorf("explain %s: %w", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			return nil, err
		}
		out = append(out, detail)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no plan for " + q)
	}
	return out, nil
}
