package rotation

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// sqliteDialect is SQLite 3.33 and later.
//
// SQLite has no row locks and no SKIP LOCKED; it has one write lock for the
// whole database. A batch takes it first, with BEGIN IMMEDIATE on a
// connection of its own, then reads its rows and writes them back in the
// same transaction, so that no other writer can come in between: the same
// guarantee as a row lock, for the duration of one batch. The
// application's writes wait for the batch to commit (up to the driver's
// busy timeout), and the batch waits for theirs.
//
// The batch is written back with one UPDATE … FROM (VALUES …):
//
//	UPDATE OR ABORT t AS colcrypt_t SET c1 = COALESCE(colcrypt_v.column2, colcrypt_t.c1), …
//	FROM (VALUES (?, ?, …), …) AS colcrypt_v WHERE colcrypt_t.id = colcrypt_v.column1
//
// OR ABORT overrides a conflict clause of the table's UNIQUE constraints:
// with ON CONFLICT REPLACE, a new blind-index value equal to another
// row's would delete that row; with IGNORE, FAIL or ROLLBACK the row
// would be skipped, the statement half done or the transaction ended.
// ABORT undoes the statement alone, and the job writes the batch again
// row by row (see runner.rewriteByRow).
//
// An index column that can hold NULL is assigned CASE WHEN
// colcrypt_t.<source> IS NULL AND <it holds an index value> THEN NULL
// ELSE COALESCE(…) END instead (see plan.clearSQL, sqliteIndexValue).
// Primary keys go back into SQL as the driver returned them (an integer,
// a string, …), so they compare exactly as stored.
type sqliteDialect struct{}

// sqliteMaxParams is SQLite's default SQLITE_MAX_VARIABLE_NUMBER since
// version 3.32.
const sqliteMaxParams = 32766

// quote wraps name in double quotes, doubling every double quote in it.
// SQLite would take a double-quoted name that is not a column for a string
// literal; resolve checks every name against the catalog before any
// statement uses it.
func (sqliteDialect) quote(name string) string { return quoteIdent(name) }

func (sqliteDialect) pkSelect(p *plan) string { return p.qpk }

func (sqliteDialect) keyParam(*plan, int) string { return "?" }

// prefixMismatch compares the first bytes of a BLOB, or the first
// characters of a TEXT value, with the prefix as a blob and as text: a
// value of either storage class that starts with the prefix equals one of
// them. substr's result has no collation, so the comparison is exact.
func (sqliteDialect) prefixMismatch(c colRef, prefix string) string {
	return fmt.Sprintf("substr(%s, 1, %d) NOT IN ('%s', X'%x')", c.q, len(prefix), prefix, prefix)
}

func (sqliteDialect) prefixExpr(c colRef, n int) string {
	return fmt.Sprintf("substr(%s, 1, %d)", c.q, n)
}

func (sqliteDialect) indexValue(c colRef) string { return sqliteIndexValue(c) }

func (sqliteDialect) lockClause() string { return "" }

func (sqliteDialect) begin(ctx context.Context, db *sql.DB) (batchTx, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &sqliteTx{conn: conn}, nil
}

// transient recognises SQLITE_BUSY and SQLITE_LOCKED (and their extended
// codes).
func (sqliteDialect) transient(err error) bool {
	switch code, _ := sqliteErrorCode(err); code & 0xff {
	case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
		return true
	}
	return false
}

func (sqliteDialect) maxParams() int { return sqliteMaxParams }

// sqliteUniqueRE finds what SQLite's message of a unique violation names:
// the columns ("UNIQUE constraint failed: t.a, t.b"), or for an index on
// expressions the index ("UNIQUE constraint failed: index 'name'"). The
// message holds no value.
var sqliteUniqueRE = regexp.MustCompile(`UNIQUE constraint failed: (.*?)(?: \(\d+\))?$`)

// duplicate recognises SQLITE_CONSTRAINT_UNIQUE (2067) and
// SQLITE_CONSTRAINT_PRIMARYKEY (1555), or, from a connection without
// extended result codes, SQLITE_CONSTRAINT (19) with the message of a
// unique violation.
func (sqliteDialect) duplicate(p *plan, err error) (dupError, bool) {
	code, ok := sqliteErrorCode(err)
	if !ok {
		return dupError{}, false
	}
	m := sqliteUniqueRE.FindStringSubmatch(err.Error())
	switch {
	case code == 2067, code == 1555:
	case code == 19 && m != nil:
	default:
		return dupError{}, false
	}
	var d dupError
	if m == nil {
		return d, true
	}
	if name, ok := strings.CutPrefix(m[1], "index '"); ok {
		d.index = strings.TrimSuffix(name, "'")
		return d, true
	}
	// Each column is named "table.column": one of another table (written
	// by a trigger, say) is not a column of this table, even when it
	// bears the name of one.
	for _, c := range strings.Split(m[1], ", ") {
		if len(c) <= len(p.tableName) || c[len(p.tableName)] != '.' || !strings.EqualFold(c[:len(p.tableName)], p.tableName) {
			return dupError{other: true}, true
		}
		d.columns = append(d.columns, c[len(p.tableName)+1:])
	}
	return d, true
}

// sqliteCheckRE finds what SQLite's message of a CHECK violation names:
// the constraint's name, or its expression ("CHECK constraint failed:
// x IS NOT NULL"). The message holds no value.
var sqliteCheckRE = regexp.MustCompile(`CHECK constraint failed: (.*?)(?: \(\d+\))?$`)

// check recognises SQLITE_CONSTRAINT_CHECK (275) or, from a connection
// without extended result codes, SQLITE_CONSTRAINT (19) with the message
// of a CHECK violation.
func (sqliteDialect) check(err error) (string, bool) {
	code, ok := sqliteErrorCode(err)
	if !ok {
		return "", false
	}
	m := sqliteCheckRE.FindStringSubmatch(err.Error())
	switch {
	case code == 275:
	case code == 19 && m != nil:
	default:
		return "", false
	}
	if m == nil {
		return "", true
	}
	return m[1], true
}

// uniqueColumns reads the columns of the table's index named name (one
// SQLite names in its error only when it is on expressions); an index of
// another table is not found.
func (sqliteDialect) uniqueColumns(ctx context.Context, q querier, p *plan, name string) ([]string, bool, error) {
	return queryColumns(ctx, q, `SELECT ii.name FROM pragma_index_list(?1, ?2) AS il, pragma_index_info(il.name, ?2) AS ii
		WHERE il.name = ?3 ORDER BY ii.seqno`, p.tableName, p.schemaName, name)
}

func (sqliteDialect) immediate() string { return "" }

// sqliteErrorCode returns the result code of the SQLite error in err's
// chain: from its Code method (modernc.org/sqlite,
// github.com/glebarez/go-sqlite) or its ExtendedCode or Code field
// (github.com/mattn/go-sqlite3), so that this package imports no driver.
func sqliteErrorCode(err error) (int, bool) {
	return findInChain(err, func(err error) (int, bool) {
		if c, ok := err.(interface{ Code() int }); ok {
			return c.Code(), true
		}
		if v := structOf(err); v.IsValid() && strings.Contains(v.Type().PkgPath(), "sqlite") {
			for _, name := range []string{"ExtendedCode", "Code"} {
				if f := v.FieldByName(name); f.IsValid() && f.CanInt() {
					return int(f.Int()), true
				}
			}
		}
		return 0, false
	})
}

// sqliteTx is a batch's transaction on SQLite: a connection that began
// with BEGIN IMMEDIATE and so holds the database's write lock.
type sqliteTx struct {
	conn *sql.Conn
}

func (t *sqliteTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.conn.QueryContext(ctx, query, args...)
}

func (t *sqliteTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.conn.ExecContext(ctx, query, args...)
}

// sqliteEndTimeout bounds COMMIT and ROLLBACK, which run whether or not
// the batch's context has ended.
const sqliteEndTimeout = 30 * time.Second

// Commit commits, or when that fails rolls back.
func (t *sqliteTx) Commit() error {
	if t.conn == nil {
		return sql.ErrTxDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqliteEndTimeout)
	defer cancel()
	if _, err := t.conn.ExecContext(ctx, "COMMIT"); err != nil {
		_ = t.Rollback()
		return err
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

// Rollback rolls back and returns the connection to the pool; when the
// rollback fails, the connection is closed instead, so that no transaction
// is left open on a pooled connection.
func (t *sqliteTx) Rollback() error {
	if t.conn == nil {
		return sql.ErrTxDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqliteEndTimeout)
	defer cancel()
	_, err := t.conn.ExecContext(ctx, "ROLLBACK")
	if err != nil {
		// Discard the connection: returning driver.ErrBadConn from Raw
		// makes database/sql close it.
		_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = t.conn.Close()
	t.conn = nil
	return err
}

// sqliteUpdate returns the statement that writes a batch back on SQLite
// and its arguments: the key and the new values of each row written, NULL
// for a value left as it is. A new value is passed as a string or []byte
// like the value it replaces, so that it keeps its storage class (TEXT or
// BLOB).
func sqliteUpdate(p *plan, b *batch) (string, []any) {
	w := p.width()
	var q strings.Builder
	args := make([]any, 0, len(b.outRows)*(1+w))
	fmt.Fprintf(&q, "UPDATE OR ABORT %s AS colcrypt_t SET ", p.qtable)
	for k := range w {
		if k > 0 {
			q.WriteString(", ")
		}
		c := p.colRef(k).q
		v := fmt.Sprintf("COALESCE(colcrypt_v.column%d, colcrypt_t.%s)", k+2, c)
		if k >= len(p.cols) {
			v = p.clearSQL(k-len(p.cols), v)
		}
		fmt.Fprintf(&q, "%s = %s", c, v)
	}
	q.WriteString(" FROM (VALUES ")
	row := "(?" + strings.Repeat(", ?", w) + ")"
	for n, i := range b.outRows {
		if n > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
		args = append(args, b.key(i))
		for k := range w {
			v := b.outVals[n*w+k]
			switch {
			case v == nil:
				args = append(args, nil)
			case b.blobs[i*w+k]:
				args = append(args, v)
			default:
				args = append(args, string(v))
			}
		}
	}
	fmt.Fprintf(&q, ") AS colcrypt_v WHERE colcrypt_t.%s = colcrypt_v.column1", p.qpk)
	return q.String(), args
}

// sqliteColumn is a column as PRAGMA table_info describes it.
type sqliteColumn struct {
	name, typ string
	notNull   bool
	pk        int // position in the primary key, from 1; 0 if not in it
}

// asciiFold reports whether a and b are equal ignoring the case of ASCII
// letters, as SQLite compares names.
func asciiFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// sqliteAffinity returns the type affinity of a declared column type, by
// SQLite's rules (https://sqlite.org/datatype3.html, 3.1).
func sqliteAffinity(decl string) string {
	u := strings.ToUpper(decl)
	switch {
	case strings.Contains(u, "INT"):
		return "INTEGER"
	case strings.Contains(u, "CHAR"), strings.Contains(u, "CLOB"), strings.Contains(u, "TEXT"):
		return "TEXT"
	case strings.Contains(u, "BLOB"), strings.TrimSpace(u) == "":
		return "BLOB"
	case strings.Contains(u, "REAL"), strings.Contains(u, "FLOA"), strings.Contains(u, "DOUB"):
		return "REAL"
	}
	return "NUMERIC"
}

func (d sqliteDialect) resolve(ctx context.Context, db *sql.DB, p *plan, plaintext []string) error {
	t := p.table

	// The schema: the one named, or those an unqualified name is looked
	// up in, temp then main.
	schemas := []string{"temp", "main"}
	if t.Schema != "" {
		names, err := sqliteStrings(ctx, db, "SELECT name FROM pragma_database_list")
		if err != nil {
			return fmt.Errorf("rotation: looking up table %s: %w", t, err)
		}
		s, ok := findName(names, t.Schema, asciiFold)
		if !ok {
			return fmt.Errorf("%w: table %s: no attached database %s", ErrInvalidTable, t, d.quote(t.Schema))
		}
		schemas = []string{s}
	}
	var schema, table, typ string
	for _, s := range schemas {
		// The schema's name goes into SQL quoted; it is one of the names
		// the database listed, or temp or main.
		rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT name, type FROM %s.sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE", d.quote(s)), t.Name)
		if err != nil {
			return fmt.Errorf("rotation: looking up table %s: %w", t, err)
		}
		for rows.Next() {
			if err := rows.Scan(&table, &typ); err != nil {
				rows.Close()
				return fmt.Errorf("rotation: looking up table %s: %w", t, err)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rotation: looking up table %s: %w", t, err)
		}
		if table != "" {
			schema = s
			break
		}
	}
	if table == "" {
		return fmt.Errorf("%w: table %s does not exist", ErrInvalidTable, t)
	}
	if typ != "table" {
		return fmt.Errorf("%w: %s is a view; rotate its table", ErrInvalidTable, t)
	}
	p.qtable = d.quote(schema) + "." + d.quote(table)
	p.schemaName, p.tableName = schema, table

	rows, err := db.QueryContext(ctx, `SELECT name, type, "notnull", pk FROM pragma_table_info(?, ?)`, table, schema)
	if err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	cols := map[string]sqliteColumn{}
	var names []string
	pkCols := 0
	for rows.Next() {
		var c sqliteColumn
		if err := rows.Scan(&c.name, &c.typ, &c.notNull, &c.pk); err != nil {
			rows.Close()
			return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
		}
		cols[c.name] = c
		names = append(names, c.name)
		if c.pk > 0 {
			pkCols++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	lookup := func(name string) (sqliteColumn, bool) {
		n, ok := findName(names, name, asciiFold)
		return cols[n], ok
	}

	pk, ok := lookup(t.PrimaryKey)
	if !ok {
		return fmt.Errorf("%w: table %s has no column %s (the primary key)", ErrInvalidTable, t, d.quote(t.PrimaryKey))
	}
	// The only column of the primary key is unique; INTEGER PRIMARY KEY
	// is the rowid, never NULL. Any other key must be declared NOT NULL:
	// SQLite lets a PRIMARY KEY column of a rowid table hold NULLs.
	soleKey := pk.pk == 1 && pkCols == 1
	rowid := soleKey && strings.EqualFold(strings.TrimSpace(pk.typ), "INTEGER")
	if !pk.notNull && !rowid {
		return fmt.Errorf("%w: table %s: primary key column %s is nullable (declare it NOT NULL)", ErrInvalidTable, t, d.quote(pk.name))
	}
	if !soleKey {
		unique, err := sqliteUnique(ctx, db, schema, table, pk.name)
		if err != nil {
			return fmt.Errorf("rotation: reading the indexes of %s: %w", t, err)
		}
		if !unique {
			return fmt.Errorf("%w: table %s: column %s has no unique index on it alone; the job pages over a single-column primary key", ErrInvalidTable, t, d.quote(pk.name))
		}
	}
	if u := strings.ToUpper(pk.typ); strings.Contains(u, "DATE") || strings.Contains(u, "TIME") {
		return fmt.Errorf("%w: table %s: primary key column %s is %s, which drivers read as a time; the job needs the key as stored", ErrInvalidTable, t, d.quote(pk.name), pk.typ)
	}
	p.qpk = d.quote(pk.name)
	p.pkKind = keyNative

	// sqliteIndexValue reads values as UTF-8 text: in a database in
	// UTF-16, no index value beside a NULL source is cleared.
	var encoding string
	if err := db.QueryRowContext(ctx, "PRAGMA encoding").Scan(&encoding); err != nil {
		return fmt.Errorf("rotation: reading the encoding of the database of %s: %w", t, err)
	}
	p.keepOrphans = !strings.EqualFold(encoding, "UTF-8")

	find := describedColumn(t, d.quote, pk.name, lookup, func(c sqliteColumn) string { return c.name })
	return p.addColumns(plaintext, func(name, what string) (colRef, error) {
		c, err := find(name, what)
		if err != nil {
			return colRef{}, err
		}
		ref := colRef{q: d.quote(c.name), notNull: c.notNull}
		switch aff := sqliteAffinity(c.typ); {
		case aff == "TEXT":
		case aff == "BLOB", strings.EqualFold(strings.TrimSpace(c.typ), "ANY"):
			ref.bytea = true
		default:
			return colRef{}, fmt.Errorf("%w: table %s: column %s is %s (%s affinity); %s must have TEXT or BLOB affinity", ErrInvalidTable, t, d.quote(c.name), c.typ, aff, what)
		}
		return ref, nil
	})
}

// sqliteUnique reports whether column col of table has a unique index on
// it alone, with no WHERE clause.
func sqliteUnique(ctx context.Context, db *sql.DB, schema, table, col string) (bool, error) {
	indexes, err := sqliteStrings(ctx, db, `SELECT name FROM pragma_index_list(?, ?) WHERE "unique" AND NOT partial`, table, schema)
	if err != nil {
		return false, err
	}
	for _, ix := range indexes {
		rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_index_info(?, ?)`, ix, schema)
		if err != nil {
			return false, err
		}
		var cols []sql.NullString // NULL for an expression
		for rows.Next() {
			var c sql.NullString
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return false, err
			}
			cols = append(cols, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
		if len(cols) == 1 && cols[0].Valid && cols[0].String == col {
			return true, nil
		}
	}
	return false, nil
}

// sqliteStrings returns the first column of a query's rows.
func sqliteStrings(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
