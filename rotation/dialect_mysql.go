package rotation

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"
)

// mysqlDialect is MySQL 8 and MariaDB 10.6 and later (InnoDB).
//
// A batch is a READ COMMITTED transaction that takes its rows with SELECT …
// FOR UPDATE SKIP LOCKED, as on PostgreSQL, and writes them back with one
// UPDATE joined to a derived table of the new values:
//
//	UPDATE t AS colcrypt_t JOIN (SELECT ? AS k, ? AS c1 UNION ALL SELECT ?, ? …) AS colcrypt_v
//	ON colcrypt_t.id = CAST(colcrypt_v.k AS SIGNED) SET colcrypt_t.c1 = colcrypt_v.c1, …
//
// Every column of the row layout is written: the new value, or the value
// the batch read under its lock. Writing back a value read under the same
// lock changes nothing, and it spares the statement a COALESCE between the
// derived table's column and the table's, whose collations may differ (a
// mix that MySQL can refuse). Only rows that exist and that the batch holds
// locked are joined: no row is ever inserted, unlike INSERT … ON DUPLICATE
// KEY UPDATE. An index column that can hold NULL is assigned CASE WHEN
// colcrypt_t.<source> IS NULL AND <it holds an index value> THEN NULL
// ELSE colcrypt_v.cN END (see plan.clearSQL, mysqlIndexValue).
//
// Primary keys travel as text: integers cast back with CAST(? AS SIGNED)
// or UNSIGNED, character strings as they are (compared in the column's
// collation), binary strings as hex (HEX and UNHEX).
type mysqlDialect struct{}

// mysqlMaxParams is the number of parameters a prepared statement takes.
const mysqlMaxParams = 65535

// quote wraps name in backquotes, doubling every backquote in it, which
// MySQL reads back as exactly name whatever the SQL mode (ANSI_QUOTES
// changes double quotes, not backquotes; backslashes are not escapes in
// identifiers).
func (mysqlDialect) quote(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func (mysqlDialect) pkSelect(p *plan) string {
	switch p.pkKind {
	case keySigned, keyUnsigned:
		return "CAST(" + p.qpk + " AS CHAR)"
	case keyBinary:
		return "HEX(" + p.qpk + ")"
	}
	return p.qpk
}

func (mysqlDialect) keyParam(p *plan, _ int) string { return mysqlKeyExpr(p, "?") }

// mysqlKeyExpr turns e, a key in the text form of pkSelect, into a value
// of the primary key's type.
func mysqlKeyExpr(p *plan, e string) string {
	switch p.pkKind {
	case keySigned:
		return "CAST(" + e + " AS SIGNED)"
	case keyUnsigned:
		return "CAST(" + e + " AS UNSIGNED)"
	case keyBinary:
		return "UNHEX(" + e + ")"
	}
	return e
}

// prefixMismatch compares a text column in the binary collation of its own
// character set, so that the comparison is exact (the column's collation
// may ignore case) and agrees with the byte comparison in Go whatever the
// character set; binary columns are compared with a hex literal.
func (mysqlDialect) prefixMismatch(c colRef, prefix string) string {
	if c.bytea {
		return fmt.Sprintf("LEFT(%s, %d) <> X'%x'", c.q, len(prefix), prefix)
	}
	return fmt.Sprintf("LEFT(%s, %d) COLLATE %s_bin <> '%s'", c.q, len(prefix), c.charset, prefix)
}

func (mysqlDialect) prefixExpr(c colRef, n int) string {
	return fmt.Sprintf("LEFT(%s, %d)", c.q, n)
}

func (mysqlDialect) indexValue(c colRef) string { return mysqlIndexValue(c) }

func (mysqlDialect) lockClause() string { return " FOR UPDATE SKIP LOCKED" }

func (mysqlDialect) begin(ctx context.Context, db *sql.DB) (batchTx, error) {
	return db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
}

// transient recognises deadlocks (1213) and lock wait timeouts (1205).
func (mysqlDialect) transient(err error) bool {
	switch n, _ := mysqlErrorNumber(err); n {
	case 1205, 1213:
		return true
	}
	return false
}

func (mysqlDialect) maxParams() int { return mysqlMaxParams }

// duplicate recognises ER_DUP_ENTRY (1062) and ER_DUP_ENTRY_WITH_KEY_NAME
// (1586), and takes the key's name from the end of the message ("… for
// key 'name'", MySQL 8 writing 'table.name'). The value the message quotes
// is never kept.
func (mysqlDialect) duplicate(_ *plan, err error) (dupError, bool) {
	switch n, _ := mysqlErrorNumber(err); n {
	case 1062, 1586:
	default:
		return dupError{}, false
	}
	var d dupError
	if m := mysqlDupKey.FindStringSubmatch(err.Error()); m != nil {
		d.index = m[1]
	}
	return d, true
}

// mysqlCheckName finds the constraint's name in the text of a CHECK
// violation: MySQL's "Check constraint 'name' is violated." (3819) or
// MariaDB's "CONSTRAINT `name` failed for `db`.`table`" (4025). Neither
// holds a value.
var mysqlCheckName = regexp.MustCompile("(?:Check constraint '([^']*)' is violated|CONSTRAINT `((?:[^`]|``)*)` failed)")

// check recognises ER_CHECK_CONSTRAINT_VIOLATED (3819, MySQL 8.0.16 and
// later) and ER_CONSTRAINT_FAILED (4025, MariaDB).
func (mysqlDialect) check(err error) (string, bool) {
	switch n, _ := mysqlErrorNumber(err); n {
	case 3819, 4025:
	default:
		return "", false
	}
	if m := mysqlCheckName.FindStringSubmatch(err.Error()); m != nil {
		if m[1] != "" {
			return m[1], true
		}
		return strings.ReplaceAll(m[2], "``", "`"), true
	}
	return "", true
}

// uniqueColumns reads the columns of the table's index named name from
// information_schema.STATISTICS. MySQL 8 names the key as "table.name"
// in its error: the name without the table's is tried when no index has
// the name as it is. An index of another table is not found.
func (mysqlDialect) uniqueColumns(ctx context.Context, q querier, p *plan, name string) ([]string, bool, error) {
	const query = `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = ? ORDER BY SEQ_IN_INDEX`
	cols, found, err := queryColumns(ctx, q, query, p.schemaName, p.tableName, name)
	if err != nil || found {
		return cols, found, err
	}
	if short, ok := strings.CutPrefix(name, p.tableName+"."); ok {
		return queryColumns(ctx, q, query, p.schemaName, p.tableName, short)
	}
	return nil, false, nil
}

func (mysqlDialect) immediate() string { return "" }

// mysqlErrorNumber returns the number of the go-sql-driver/mysql error
// (*mysql.MySQLError) in err's chain. It is found by its type's name and
// its Number field, so that this package does not import the driver.
func mysqlErrorNumber(err error) (uint16, bool) {
	n, ok := findInChain(err, func(err error) (int, bool) {
		if v := structOf(err); v.IsValid() && v.Type().Name() == "MySQLError" {
			if f := v.FieldByName("Number"); f.IsValid() && f.Kind() == reflect.Uint16 {
				return int(f.Uint()), true
			}
		}
		return 0, false
	})
	return uint16(n), ok
}

// mysqlUpdate returns the statement that writes a batch back on MySQL and
// its arguments: the key and every column of each row written.
func mysqlUpdate(p *plan, b *batch) (string, []any) {
	w := p.width()
	var q strings.Builder
	args := make([]any, 0, len(b.outRows)*(1+w))
	fmt.Fprintf(&q, "UPDATE %s AS colcrypt_t JOIN (", p.qtable)
	for n, i := range b.outRows {
		if n == 0 {
			q.WriteString("SELECT ? AS k")
			for k := range w {
				fmt.Fprintf(&q, ", ? AS c%d", k+1)
			}
		} else {
			q.WriteString(" UNION ALL SELECT ?")
			q.WriteString(strings.Repeat(", ?", w))
		}
		args = append(args, b.key(i))
		for k := range w {
			v, null := b.outVals[n*w+k], false
			if v == nil {
				v, null = b.value(i, k) // as read, under the batch's lock
			}
			switch {
			case null:
				args = append(args, nil)
			case p.colRef(k).bytea:
				args = append(args, v)
			default:
				args = append(args, string(v))
			}
		}
	}
	fmt.Fprintf(&q, ") AS colcrypt_v ON colcrypt_t.%s = %s SET ", p.qpk, mysqlJoinKey(p))
	for k := range w {
		if k > 0 {
			q.WriteString(", ")
		}
		v := fmt.Sprintf("colcrypt_v.c%d", k+1)
		if k >= len(p.cols) {
			v = p.clearSQL(k-len(p.cols), v)
		}
		fmt.Fprintf(&q, "colcrypt_t.%s = %s", p.colRef(k).q, v)
	}
	return q.String(), args
}

// mysqlJoinKey is the derived table's key as a value of the primary key's
// type. A character-string key is converted to the column's character set
// and collation, so that the comparison is the column's own (and can use
// its index) whatever the connection's collation.
func mysqlJoinKey(p *plan) string {
	if p.pkKind == keyString {
		return fmt.Sprintf("CONVERT(colcrypt_v.k USING %s) COLLATE %s", p.pkCharset, p.pkCollation)
	}
	return mysqlKeyExpr(p, "colcrypt_v.k")
}

// colRef returns column k of the row layout: the encrypted columns, then
// the index columns.
func (p *plan) colRef(k int) colRef {
	if k < len(p.cols) {
		return p.cols[k].ref()
	}
	return p.idx[k-len(p.cols)].ref()
}

// Character set and collation names go into SQL text; they come from the
// catalog, and are checked all the same.
var (
	mysqlCharsetRE   = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	mysqlCollationRE = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// mysqlSafeClientCharsets are the client character sets in which a
// backquote byte is always a backquote. In gbk, big5, sjis, cp932 and
// gb18030 it can be the second byte of a character, which would let a name
// with non-ASCII bytes end its quotes early.
var mysqlSafeClientCharsets = map[string]bool{
	"utf8mb4": true, "utf8mb3": true, "utf8": true, "latin1": true, "ascii": true, "binary": true,
}

// mysqlColumn is a column as information_schema.COLUMNS describes it.
type mysqlColumn struct {
	name, dataType, columnType string
	nullable                   bool
	charset, collation         sql.NullString
	extra                      string
	// maxChars and maxBytes are CHARACTER_MAXIMUM_LENGTH and
	// CHARACTER_OCTET_LENGTH: the most a string column holds.
	maxChars, maxBytes sql.NullInt64
}

// findName returns the catalog's name among names that name means: the
// same name, or else the only one equal to it ignoring case (MySQL compares
// column names, and on some systems table names, that way; SQLite every
// name, in ASCII). fold reports whether two names are equal ignoring case.
func findName(names []string, name string, fold func(a, b string) bool) (string, bool) {
	found, n := "", 0
	for _, c := range names {
		if c == name {
			return c, true
		}
		if fold(c, name) {
			found, n = c, n+1
		}
	}
	return found, n == 1
}

func (d mysqlDialect) resolve(ctx context.Context, db *sql.DB, p *plan, plaintext []string) error {
	t := p.table
	var current, results, connection sql.NullString
	var client string
	if err := db.QueryRowContext(ctx, "SELECT DATABASE(), @@character_set_client, @@character_set_results, @@character_set_connection").
		Scan(&current, &client, &results, &connection); err != nil {
		return fmt.Errorf("rotation: looking up table %s: %w", t, err)
	}
	if !mysqlSafeClientCharsets[strings.ToLower(client)] && !asciiNames(t) {
		return fmt.Errorf("%w: table %s: names with non-ASCII characters need a connection character set of utf8mb4 (this one is %s)", ErrInvalidTable, t, client)
	}
	if !allUTF8(t) {
		return fmt.Errorf("%w: table %s: a name is not valid UTF-8", ErrInvalidTable, t)
	}
	schema := t.Schema
	if schema == "" {
		if !current.Valid {
			return fmt.Errorf("%w: table %s: the connection has no current database; name one in the DSN, or set Table.Schema", ErrInvalidTable, t)
		}
		schema = current.String
	}

	// The table, by name: the comparison in SQL may ignore case, the one
	// here does not, unless no name matches exactly.
	type tableRow struct{ schema, name, typ string }
	var tables []tableRow
	rows, err := db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, schema, t.Name)
	if err != nil {
		return fmt.Errorf("rotation: looking up table %s: %w", t, err)
	}
	for rows.Next() {
		var r tableRow
		if err := rows.Scan(&r.schema, &r.name, &r.typ); err != nil {
			rows.Close()
			return fmt.Errorf("rotation: looking up table %s: %w", t, err)
		}
		tables = append(tables, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotation: looking up table %s: %w", t, err)
	}
	var names []string
	for _, r := range tables {
		names = append(names, r.schema+"\x00"+r.name)
	}
	found, ok := findName(names, schema+"\x00"+t.Name, strings.EqualFold)
	if !ok {
		return fmt.Errorf("%w: table %s does not exist", ErrInvalidTable, t)
	}
	var table tableRow
	for _, r := range tables {
		if r.schema+"\x00"+r.name == found {
			table = r
		}
	}
	if table.typ == "VIEW" {
		return fmt.Errorf("%w: %s is a view; rotate its table", ErrInvalidTable, t)
	}
	p.qtable = d.quote(table.schema) + "." + d.quote(table.name)
	p.schemaName, p.tableName = table.schema, table.name

	// Its columns.
	cols := map[string]mysqlColumn{}
	var colNames []string
	rows, err = db.QueryContext(ctx, `SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE,
		       CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, table.schema, table.name)
	if err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	for rows.Next() {
		var tname, nullable string
		var c mysqlColumn
		if err := rows.Scan(&tname, &c.name, &c.dataType, &c.columnType, &nullable, &c.charset, &c.collation, &c.extra, &c.maxChars, &c.maxBytes); err != nil {
			rows.Close()
			return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
		}
		if tname != table.name {
			continue
		}
		c.dataType, c.nullable = strings.ToLower(c.dataType), nullable == "YES"
		cols[c.name] = c
		colNames = append(colNames, c.name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	lookup := func(name string) (mysqlColumn, bool) {
		n, ok := findName(colNames, name, strings.EqualFold)
		return cols[n], ok
	}

	// The primary key: NOT NULL, with a unique index on it alone, of a
	// type whose values go back into SQL exactly.
	pk, ok := lookup(t.PrimaryKey)
	if !ok {
		return fmt.Errorf("%w: table %s has no column %s (the primary key)", ErrInvalidTable, t, d.quote(t.PrimaryKey))
	}
	if pk.nullable {
		return fmt.Errorf("%w: table %s: primary key column %s is nullable", ErrInvalidTable, t, d.quote(pk.name))
	}
	unique, err := mysqlUniqueColumns(ctx, db, table.schema, table.name)
	if err != nil {
		return fmt.Errorf("rotation: reading the indexes of %s: %w", t, err)
	}
	if !unique[pk.name] {
		return fmt.Errorf("%w: table %s: column %s has no unique index on it alone; the job pages over a single-column primary key", ErrInvalidTable, t, d.quote(pk.name))
	}
	switch pk.dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		p.pkKind = keySigned
		if strings.Contains(strings.ToLower(pk.columnType), "unsigned") {
			p.pkKind = keyUnsigned
		}
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		p.pkKind = keyString
		p.pkCharset, p.pkCollation = pk.charset.String, pk.collation.String
		if !mysqlCharsetRE.MatchString(p.pkCharset) || !mysqlCollationRE.MatchString(p.pkCollation) {
			return fmt.Errorf("%w: table %s: primary key column %s has an unexpected character set or collation", ErrInvalidTable, t, d.quote(pk.name))
		}
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
		p.pkKind = keyBinary
	default:
		return fmt.Errorf("%w: table %s: primary key column %s is %s; on MySQL the job pages over an integer, character or binary string key", ErrInvalidTable, t, d.quote(pk.name), pk.columnType)
	}
	p.qpk = d.quote(pk.name)

	// Plaintext to encrypt, and character-string keys, are read through
	// the connection's character set: one narrower than utf8mb4 turns the
	// characters it cannot hold into '?', which would be encrypted, or
	// would name another row. The session's character sets are left
	// alone (the connections are the pool's); the DSN sets them.
	if (len(plaintext) > 0 || p.pkKind == keyString) &&
		!(strings.EqualFold(client, "utf8mb4") && strings.EqualFold(results.String, "utf8mb4") && strings.EqualFold(connection.String, "utf8mb4")) {
		why := "a character-string primary key"
		if len(plaintext) > 0 {
			why = "encrypting plaintext (EncryptPlaintext)"
		}
		return fmt.Errorf("%w: table %s: %s needs the connection's character sets to be utf8mb4, so that no character is lost; "+
			"they are client %s, results %s, connection %s: set charset=utf8mb4 in the DSN",
			ErrInvalidTable, t, why, client, mysqlVarName(results), mysqlVarName(connection))
	}

	find := describedColumn(t, d.quote, pk.name, lookup, func(c mysqlColumn) string { return c.name })
	return p.addColumns(plaintext, func(name, what string) (colRef, error) {
		c, err := find(name, what)
		if err != nil {
			return colRef{}, err
		}
		if x := strings.ToUpper(c.extra); strings.Contains(x, "VIRTUAL") || strings.Contains(x, "STORED") || strings.Contains(x, "PERSISTENT") {
			return colRef{}, fmt.Errorf("%w: table %s: column %s is generated; %s must be a stored column", ErrInvalidTable, t, d.quote(c.name), what)
		}
		ref := colRef{q: d.quote(c.name), notNull: !c.nullable}
		// What the column holds: characters and bytes for a text column,
		// bytes for a binary one (whose CHARACTER_MAXIMUM_LENGTH is in
		// bytes too).
		if c.maxChars.Valid {
			ref.limit.chars = c.maxChars.Int64
		}
		if c.maxBytes.Valid {
			ref.limit.bytes = c.maxBytes.Int64
		}
		switch c.dataType {
		case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
			ref.bytea = true
			ref.limit.chars = 0
		case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
			ref.charset = c.charset.String
			if !mysqlCharsetRE.MatchString(ref.charset) {
				return colRef{}, fmt.Errorf("%w: table %s: column %s has an unexpected character set", ErrInvalidTable, t, d.quote(c.name))
			}
		default:
			return colRef{}, fmt.Errorf("%w: table %s: column %s is %s; %s must be CHAR, VARCHAR, TEXT, BINARY, VARBINARY or BLOB", ErrInvalidTable, t, d.quote(c.name), c.columnType, what)
		}
		return ref, nil
	})
}

// mysqlVarName is a character-set variable's value for a message: its
// name, or NULL.
func mysqlVarName(v sql.NullString) string {
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

// mysqlUniqueColumns returns the columns that have a unique index on them
// alone.
func mysqlUniqueColumns(ctx context.Context, db *sql.DB, schema, table string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME
		FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, schema, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type index struct {
		unique bool
		cols   []string
	}
	indexes := map[string]*index{}
	for rows.Next() {
		var tname, name string
		var nonUnique int64
		var col sql.NullString // NULL for an expression
		if err := rows.Scan(&tname, &name, &nonUnique, &col); err != nil {
			return nil, err
		}
		if tname != table {
			continue
		}
		ix := indexes[name]
		if ix == nil {
			ix = &index{unique: nonUnique == 0}
			indexes[name] = ix
		}
		ix.cols = append(ix.cols, col.String)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	unique := map[string]bool{}
	for _, ix := range indexes {
		if ix.unique && len(ix.cols) == 1 && ix.cols[0] != "" {
			unique[ix.cols[0]] = true
		}
	}
	return unique, nil
}

// tableNames returns every name of a table description.
func tableNames(t Table) []string {
	names := []string{t.Schema, t.Name, t.PrimaryKey}
	for _, c := range t.Columns {
		names = append(names, c.Name)
		for _, ix := range c.Indexes {
			names = append(names, ix.Column)
		}
	}
	return names
}

// asciiNames reports whether every name of t is ASCII.
func asciiNames(t Table) bool {
	for _, n := range tableNames(t) {
		for i := 0; i < len(n); i++ {
			if n[i] >= utf8.RuneSelf {
				return false
			}
		}
	}
	return true
}

// allUTF8 reports whether every name of t is valid UTF-8.
func allUTF8(t Table) bool {
	for _, n := range tableNames(t) {
		if !utf8.ValidString(n) {
			return false
		}
	}
	return true
}

// mysqlDupKey finds the key's name at the end of the text of MySQL's error
// 1062, "Duplicate entry '…' for key '…'".
var mysqlDupKey = regexp.MustCompile(`for key '([^']*)'$`)

// redactDuplicate returns err, or, for MySQL's duplicate-key errors (1062,
// 1586), whose text quotes the duplicate value (a blind index value,
// during an index-key rotation), an error that names the key only, and for
// those of a foreign key cascade (1557, 1761, 1762), which quote the
// record, one that names neither: errors never repeat stored values.
// PostgreSQL and SQLite put no value in theirs. Rotate turns a duplicate into a failure of its row; this covers
// the statements where it cannot.
func redactDuplicate(err error) error {
	n, ok := mysqlErrorNumber(err)
	switch {
	case !ok:
		return err
	case n == 1557 || n == 1761 || n == 1762:
		// A foreign key cascade that would duplicate an entry: the text
		// quotes the record.
		return fmt.Errorf("MySQL error %d: a foreign key cascade would lead to a duplicate entry (the record is not repeated here)", n)
	}
	d, dup := mysqlDialect{}.duplicate(nil, err)
	if !dup {
		return err
	}
	key := ""
	if d.index != "" {
		key = " " + d.index
	}
	return fmt.Errorf("MySQL error %d: duplicate entry for unique key%s (the value is not repeated here)", n, key)
}
