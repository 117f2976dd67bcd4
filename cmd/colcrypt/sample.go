package main

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/rotation"
)

// strayRows is how many rows of the table, and how many non-NULL values of
// a column that is NULL in all of them, the search for blind index columns
// that no --blind-index names reads.
const strayRows = 16

// strayScanRows bounds the rows that the search for a sparse column's
// non-NULL values reads first, so that in a table of at most that many
// rows a column NULL everywhere costs no full scan. In a larger table such
// a column is then read in full: a sparse index must not go unseen.
const strayScanRows = 10000

// strayIndex is a column of the table that no --column or --blind-index
// names, most of whose sampled values are stored blind index values.
type strayIndex struct {
	column  string
	sampled int // non-NULL values sampled that are blind index values
	other   int // non-NULL values sampled that are not
}

// textType reports whether a column of the database type name (as
// database/sql reports it) can hold a blind index value: character and
// binary types, and a type the driver does not name (SQLite's untyped
// columns; pgx gives the OID of a type it does not know, such as a domain
// or citext). Numbers, times, UUIDs, JSON and the like cannot.
func textType(name string) bool {
	n := strings.ToUpper(name)
	if n == "" || strings.Trim(n, "0123456789") == "" {
		return true
	}
	for _, t := range []string{"CHAR", "TEXT", "BLOB", "BINARY", "BYTEA", "CLOB", "STRING"} {
		if strings.Contains(n, t) {
			return true
		}
	}
	return false
}

// isIndexValue reports whether a stored value is a blind index value:
// b<version>:<MAC> or a<version>:<MAC>, with a version from 1 to
// keyprovider.MaxVersion and 1 to 32 bytes of unpadded base64url.
func isIndexValue(v []byte) bool {
	_, err := blindindex.Version(string(v))
	return err == nil
}

// sampleBytes returns the value a driver scanned into an any as bytes, and
// whether it is text or binary at all (numbers, times and booleans are not
// blind index values).
func sampleBytes(v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return []byte(v), true
	case []byte:
		return v, true
	}
	return nil, false
}

// quoteIn quotes an identifier for dialect d, as package rotation does:
// backquotes for MySQL, double quotes for the others, the quote character
// doubled inside.
func quoteIn(d rotation.Dialect, name string) string {
	if d == rotation.MySQL {
		return "`" + strings.ReplaceAll(name, "`", "``") + "`"
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// findStrayIndexes looks for blind index columns that the command was not
// told about: columns of t not in named (the --column and --blind-index
// columns), of a character or binary type, most of whose non-NULL sampled
// values are blind index values (a damaged or empty value does not hide
// one). It reads the first strayRows rows of the table, and, for each
// column that is NULL in all of them, up to strayRows of its non-NULL
// values among the first strayScanRows rows (in a larger table, then among
// all of them). A column with no non-NULL value sampled is not one. The
// columns come back in the table's order. When a column cannot be read,
// the columns found so far come back with the first error.
//
// t must have been resolved against the catalog first (the job checks the
// names it was given, and on MySQL the connection's character set).
func findStrayIndexes(ctx context.Context, db *sql.DB, t rotation.Table, named []string) ([]strayIndex, error) {
	same := func(a, b string) bool { return a == b }
	if t.Dialect != rotation.Postgres {
		// MySQL and SQLite column names are case-insensitive.
		same = strings.EqualFold
	}
	isNamed := func(c string) bool {
		return slices.ContainsFunc(named, func(n string) bool { return same(n, c) })
	}
	table := t.String()
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+table+" LIMIT "+strconv.Itoa(strayRows))
	if err != nil {
		return nil, fmt.Errorf("reading a sample of %s: %w", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("reading a sample of %s: %w", table, err)
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("reading a sample of %s: %w", table, err)
	}
	type state struct {
		sampled int // non-NULL values that are blind index values
		other   int // non-NULL values that are not
	}
	states := make([]state, len(cols))
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		clear(vals)
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("reading a sample of %s: %w", table, err)
		}
		for i, v := range vals {
			if v == nil {
				continue
			}
			if b, ok := sampleBytes(v); ok && isIndexValue(b) {
				states[i].sampled++
			} else {
				states[i].other++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading a sample of %s: %w", table, err)
	}
	rows.Close()

	var out []strayIndex
	var firstErr error
	big := -1 // whether the table has more than strayScanRows rows; -1: not asked
	for i, c := range cols {
		st := &states[i]
		if isNamed(c) || !textType(types[i].DatabaseTypeName()) {
			continue
		}
		count := func(v any) {
			if b, ok := sampleBytes(v); ok && isIndexValue(b) {
				st.sampled++
			} else {
				st.other++
			}
		}
		if st.sampled+st.other == 0 {
			// NULL in every row read: a sparse column, such as an
			// optional phone number's index. Read its non-NULL values,
			// among the first strayScanRows rows, then, if the table has
			// more and none was found, among all.
			err := sampleColumn(ctx, db, t, c, strayScanRows, count)
			if err == nil && st.sampled+st.other == 0 {
				if big < 0 {
					big, err = moreRowsThan(ctx, db, t, strayScanRows)
				}
				if err == nil && big == 1 {
					err = sampleColumn(ctx, db, t, c, 0, count)
				}
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
		}
		if st.sampled > st.other {
			out = append(out, strayIndex{column: c, sampled: st.sampled, other: st.other})
		}
	}
	return out, firstErr
}

// moreRowsThan returns 1 if table t has more than n rows, else 0, reading
// at most n+1 of them.
func moreRowsThan(ctx context.Context, db *sql.DB, t rotation.Table, n int) (int, error) {
	var rows int
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT COUNT(*) FROM (SELECT 1 AS x FROM %s LIMIT %d) AS colcrypt_count", t, n+1)).Scan(&rows); err != nil {
		return 0, fmt.Errorf("counting the rows of %s: %w", t, err)
	}
	if rows > n {
		return 1, nil
	}
	return 0, nil
}

// sampleColumn calls f with up to strayRows non-NULL values of column c of
// table t, among its first scan rows (0: all of them).
func sampleColumn(ctx context.Context, db *sql.DB, t rotation.Table, c string, scan int, f func(any)) error {
	if t.Dialect == rotation.MySQL && !asciiName(c) {
		// As package rotation does: in a client character set such as
		// gbk, a backquote byte can end a multi-byte character.
		var client string
		if err := db.QueryRowContext(ctx, "SELECT @@character_set_client").Scan(&client); err != nil {
			return fmt.Errorf("reading a sample of column %s of %s: %w", strconv.Quote(c), t, err)
		}
		switch strings.ToLower(client) {
		case "utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary":
		default:
			return fmt.Errorf("reading a sample of column %s of %s: a name with non-ASCII characters needs a connection character set of utf8mb4 (this one is %s)", strconv.Quote(c), t, client)
		}
	}
	if !utf8.ValidString(c) {
		return fmt.Errorf("reading a sample of %s: a column name is not valid UTF-8", t)
	}
	q := quoteIn(t.Dialect, c)
	query := fmt.Sprintf("SELECT %s FROM %s WHERE %s IS NOT NULL LIMIT %d", q, t, q, strayRows)
	if scan > 0 {
		query = fmt.Sprintf("SELECT %s FROM (SELECT %s FROM %s LIMIT %d) AS colcrypt_sample WHERE %s IS NOT NULL LIMIT %d",
			q, q, t, scan, q, strayRows)
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("reading a sample of column %s of %s: %w", strconv.Quote(c), t, err)
	}
	defer rows.Close()
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return fmt.Errorf("reading a sample of column %s of %s: %w", strconv.Quote(c), t, err)
		}
		if v != nil {
			f(v)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading a sample of column %s of %s: %w", strconv.Quote(c), t, err)
	}
	return nil
}

// asciiName reports whether name is ASCII.
func asciiName(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// strayList names the columns of ss: "a", or "a", "b".
func strayList(ss []strayIndex) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = strconv.Quote(s.column)
	}
	return strings.Join(names, ", ")
}
