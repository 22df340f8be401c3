package app

import (
	"errors"
	"fmt"

	"github.com/doorito/portal/tus"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// storageFull turns SQLite's "database or disk is full" into
// tus.ErrStorageFull, which tusd answers with 507 (tus clients retry it)
// rather than a bare 500; the cause stays in the chain for the log. Any
// other error is returned as it is.
func storageFull(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", tus.ErrStorageFull, err)
	}
	return err
}
