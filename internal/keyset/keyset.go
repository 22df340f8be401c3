// Package keyset builds the portal's list queries: filters that apply only
// when they are set, rows newest first by a unique key, and pages that go
// on after a cursor (the last key of the page before) instead of an
// OFFSET, so a page costs the same at any depth and rows added meanwhile
// neither repeat nor get skipped.
package keyset

import (
	"context"
	"database/sql"
	"strings"
)

// Query is a SELECT with its conditions.
type Query struct {
	sel   string
	conds []string
	args  []any
}

// Select starts a query from "SELECT <columns> FROM <tables>".
func Select(sel string) *Query { return &Query{sel: sel} }

// Where adds a condition with its arguments.
func (q *Query) Where(cond string, args ...any) *Query {
	q.conds = append(q.conds, cond)
	q.args = append(q.args, args...)
	return q
}

// Eq adds "col = v" when v is not empty.
func (q *Query) Eq(col, v string) *Query {
	if v == "" {
		return q
	}
	return q.Where(col+" = ?", v)
}

// Querier runs queries: a *sql.DB or a *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Scanner is a row to scan: *sql.Row or *sql.Rows.
type Scanner interface{ Scan(dest ...any) error }

// Page runs q newest first by the unique column key, on rows after the
// cursor value after (nil: from the newest), at most limit of them. When
// older rows remain, next is the cursor of the page after (cursor of the
// last item), else "".
func Page[T any](ctx context.Context, db Querier, q *Query, key string, after any, limit int,
	scan func(Scanner) (T, error), cursor func(T) string) (items []T, next string, err error) {
	query, args := q.SQL(key, after, limit)
	return run(ctx, db, query, args, limit, scan, cursor)
}

// SQL is the statement and arguments Page runs for q (query plan tests
// explain it): newest first by key, after the cursor value after (nil:
// from the newest), one row more than limit.
func (q *Query) SQL(key string, after any, limit int) (string, []any) {
	conds, args := q.conds, q.args
	if after != nil {
		conds = append(conds[:len(conds):len(conds)], key+" < ?")
		args = append(args[:len(args):len(args)], after)
	}
	return statement(q.sel, conds, args, key+" DESC", limit)
}

// PageOrdered runs q in the order orderBy (whose last column is a unique
// key), at most limit rows; q's conditions place the page (after the
// cursor's row). When rows remain, next is the cursor of the last item.
func PageOrdered[T any](ctx context.Context, db Querier, q *Query, orderBy string, limit int,
	scan func(Scanner) (T, error), cursor func(T) string) (items []T, next string, err error) {
	query, args := statement(q.sel, q.conds, q.args, orderBy, limit)
	return run(ctx, db, query, args, limit, scan, cursor)
}

// statement builds sel WHERE conds ORDER BY orderBy LIMIT limit+1.
func statement(sel string, conds []string, args []any, orderBy string, limit int) (string, []any) {
	var b strings.Builder
	b.WriteString(sel)
	for i, c := range conds {
		if i == 0 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		b.WriteString(c)
	}
	b.WriteString(" ORDER BY " + orderBy + " LIMIT ?")
	return b.String(), append(args[:len(args):len(args)], limit+1)
}

// run reads one page: at most limit items, and the cursor of the last one
// when the statement found one row more.
func run[T any](ctx context.Context, db Querier, query string, args []any, limit int,
	scan func(Scanner) (T, error), cursor func(T) string) (items []T, next string, err error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if items, err = All(rows, err, scan); err != nil {
		return nil, "", err
	}
	if len(items) > limit {
		return items[:limit], cursor(items[limit-1]), nil
	}
	return items, "", nil
}

// All reads every row of a query with scan and closes the rows; rows and
// err are what QueryContext returned.
func All[T any](rows *sql.Rows, err error, scan func(Scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		item, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, rows.Err()
}

// String scans a one-column row of text: All(rows, err, String).
func String(s Scanner) (string, error) {
	var v string
	err := s.Scan(&v)
	return v, err
}
