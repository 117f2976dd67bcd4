package rotation

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Dialect is the SQL dialect of the database a Job works on: the SQL it
// generates, how it reads the catalog and how each batch is made safe
// beside the application's writes.
//
// The zero value, DetectDialect, takes the dialect from the type of the
// *sql.DB's driver (see Table.Dialect).
type Dialect int

// The dialects.
const (
	// DetectDialect takes the dialect from the driver: a driver type from
	// a package whose import path contains "mysql" is MySQL, one
	// containing "sqlite" is SQLite, and any other is PostgreSQL.
	DetectDialect Dialect = iota
	// Postgres is PostgreSQL, through any driver (pgx's stdlib, lib/pq).
	Postgres
	// MySQL is MySQL 8 or MariaDB 10.6 and later, with InnoDB tables,
	// through github.com/go-sql-driver/mysql.
	MySQL
	// SQLite is SQLite 3.33 or later (UPDATE … FROM), through a driver
	// such as modernc.org/sqlite or github.com/glebarez/go-sqlite.
	SQLite
)

// String returns the dialect's name: "PostgreSQL", "MySQL", "SQLite" or
// "detect".
func (d Dialect) String() string {
	switch d {
	case DetectDialect:
		return "detect"
	case Postgres:
		return "PostgreSQL"
	case MySQL:
		return "MySQL"
	case SQLite:
		return "SQLite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// ParseDialect returns the dialect named s, as a CLI flag or a
// configuration file names it: "postgres" (or "postgresql", "pgx"),
// "mysql" (or "mariadb"), "sqlite" (or "sqlite3"); case does not matter.
// The empty string and "detect" are DetectDialect.
func ParseDialect(s string) (Dialect, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "detect", "auto":
		return DetectDialect, nil
	case "postgres", "postgresql", "pgx", "pq":
		return Postgres, nil
	case "mysql", "mariadb":
		return MySQL, nil
	case "sqlite", "sqlite3":
		return SQLite, nil
	}
	return DetectDialect, fmt.Errorf("rotation: unknown SQL dialect %q (want postgres, mysql or sqlite)", s)
}

// detectDialect returns the dialect of a database/sql driver from the
// import path and name of its type, and whether that names the database
// (rather than falling back to PostgreSQL).
func detectDialect(d driver.Driver) (Dialect, bool) {
	if d == nil {
		return Postgres, false
	}
	t := reflect.TypeOf(d)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := strings.ToLower(t.PkgPath() + "." + t.Name())
	switch {
	case strings.Contains(name, "mysql"):
		return MySQL, true
	case strings.Contains(name, "sqlite"):
		return SQLite, true
	case strings.Contains(name, "pgx"), strings.Contains(name, "lib/pq"), strings.Contains(name, "postgres"):
		return Postgres, true
	}
	return Postgres, false
}

// keyKind is how a dialect passes primary-key values back into SQL.
type keyKind int

const (
	keyPgText   keyKind = iota // PostgreSQL: the key's text form, cast to its type
	keySigned                  // MySQL: a signed integer, as text
	keyUnsigned                // MySQL: an unsigned integer, as text
	keyString                  // MySQL: a character string, as it is
	keyBinary                  // MySQL: a binary string, as hex
	keyNative                  // SQLite: the value as the driver returned it
)

// sqlDialect is what differs between the databases: identifier quoting,
// the catalog, the SQL text of the expressions the job generates, the
// batch transaction and which errors are worth a retry. The statements
// themselves are put together by the job.
type sqlDialect interface {
	// quote quotes an identifier so that the database reads back exactly
	// name, whatever it contains (except NUL, rejected by validate).
	quote(name string) string
	// resolve looks the table up in the catalog and fills in the plan:
	// quoted names, the primary key's handling, every column's kind.
	resolve(ctx context.Context, db *sql.DB, p *plan, plaintext []string) error
	// pkSelect is the select-list expression of the primary key: its text
	// form, or (keyNative) the value itself.
	pkSelect(p *plan) string
	// keyParam is the SQL of parameter n (from 1) as a primary-key value.
	keyParam(p *plan, n int) string
	// prefixMismatch is an SQL expression that is true when the value of
	// non-NULL column c (a column or an index column of the plan) does not
	// start with prefix, compared byte for byte.
	prefixMismatch(c colRef, prefix string) string
	// prefixExpr is the first n bytes (or characters) of column c.
	prefixExpr(c colRef, n int) string
	// indexValue is an SQL expression that is true when the value of
	// non-NULL column c is a blind-index value, exactly as isIndexValue
	// decides it.
	indexValue(c colRef) string
	// lockClause is appended to the SELECT that takes a batch.
	lockClause() string
	// begin starts the transaction of a batch.
	begin(ctx context.Context, db *sql.DB) (batchTx, error)
	// transient reports whether err is a deadlock, serialization failure,
	// lock timeout or busy database, after which the batch can simply be
	// tried again later.
	transient(err error) bool
	// maxParams is the most parameters one statement may have, 0 for no
	// limit that matters.
	maxParams() int
	// duplicate reports whether err is a unique violation (another row
	// already holds a value that a unique index or UNIQUE constraint
	// allows once), and what the error says of it, never a value.
	duplicate(p *plan, err error) (dupError, bool)
	// check reports whether err is a CHECK constraint violation, and the
	// constraint's name (or, on SQLite, what the error names) when the
	// error gives it. It never returns a value.
	check(err error) (string, bool)
	// uniqueColumns returns the columns of the table's unique index (or
	// UNIQUE constraint) named name, as the catalog spells them, read
	// through q (none for an index on expressions only), and whether the
	// table has an index of that name: false for an index of another
	// table.
	uniqueColumns(ctx context.Context, q querier, p *plan, name string) (cols []string, found bool, err error)
	// immediate is the statement that makes deferred constraints of the
	// transaction checked at the end of each statement, "" where
	// constraints are never deferred.
	immediate() string
}

// dupError is what a unique violation says of itself: the name of the
// unique index or constraint, and the columns when the error names them
// (SQLite). Either may be unknown ("", nil). other is set when the error
// names a column of another table (SQLite: a trigger's write, say). It
// never holds a value.
type dupError struct {
	index   string
	columns []string
	other   bool
}

// querier runs a query: a *sql.DB or a batch's transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// colRef is what the dialects need to know of a column in SQL text.
type colRef struct {
	q       string // quoted name
	bytea   bool   // a binary column
	charset string // MySQL: the character set of a text column
	// limit is the most a value of the column holds, 0 for no limit the
	// job knows of (see fits).
	limit lengthLimit
	// notNull reports that the column cannot be set to NULL: the catalog
	// declares it NOT NULL (on PostgreSQL, or of a NOT NULL domain).
	notNull bool
}

// sql returns the plan's dialect. A plan with no dialect set is
// PostgreSQL's.
func (p *plan) sql() sqlDialect { return dialectOf(p.dialect) }

func dialectOf(d Dialect) sqlDialect {
	switch d {
	case MySQL:
		return mysqlDialect{}
	case SQLite:
		return sqliteDialect{}
	}
	return postgresDialect{}
}

// batchTx is the transaction of one batch: a *sql.Tx, or SQLite's
// connection holding the database's write lock.
type batchTx interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	Commit() error
	Rollback() error
}

// postgresDialect is PostgreSQL.
type postgresDialect struct{}

func (postgresDialect) quote(name string) string { return quoteIdent(name) }

func (postgresDialect) resolve(ctx context.Context, db *sql.DB, p *plan, plaintext []string) error {
	return resolvePostgres(ctx, db, p, plaintext)
}

func (postgresDialect) pkSelect(p *plan) string { return p.qpk + "::text AS colcrypt_pk" }

func (postgresDialect) keyParam(p *plan, n int) string { return p.pkCast(n, false) }

func (postgresDialect) prefixMismatch(c colRef, prefix string) string {
	return prefixMismatchSQL(c.q, c.bytea, prefix)
}

func (postgresDialect) prefixExpr(c colRef, n int) string {
	if c.bytea {
		return fmt.Sprintf("substr(%s, 1, %d)", c.q, n)
	}
	return fmt.Sprintf("left(%s, %d)", c.q, n)
}

func (postgresDialect) indexValue(c colRef) string { return postgresIndexValue(c) }

func (postgresDialect) lockClause() string { return " FOR UPDATE SKIP LOCKED" }

func (postgresDialect) begin(ctx context.Context, db *sql.DB) (batchTx, error) {
	return db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
}

func (postgresDialect) transient(err error) bool { return isTransient(err) }

func (postgresDialect) maxParams() int { return 0 } // the batch is a handful of array parameters

// duplicate recognises SQLSTATE 23505 (unique_violation); see
// pgViolation.
func (postgresDialect) duplicate(_ *plan, err error) (dupError, bool) {
	name, ok := pgViolation(err, "23505")
	return dupError{index: name}, ok
}

// check recognises SQLSTATE 23514 (check_violation); see pgViolation.
func (postgresDialect) check(err error) (string, bool) {
	return pgViolation(err, "23514")
}

// pgViolation reports whether err is a PostgreSQL error of SQLSTATE code,
// recognised by the SQLState method of the errors of pgx and lib/pq, and
// returns the violated constraint's name from the error's ConstraintName
// field (pgx's *pgconn.PgError) or Constraint field (lib/pq's *pq.Error),
// "" if it has none. The error's Detail, which quotes the row's values, is
// never read.
func pgViolation(err error, code string) (constraint string, ok bool) {
	var s interface{ SQLState() string }
	if !errors.As(err, &s) || s.SQLState() != code {
		return "", false
	}
	if e, ok := s.(error); ok {
		if v := structOf(e); v.IsValid() {
			for _, name := range []string{"ConstraintName", "Constraint"} {
				if f := v.FieldByName(name); f.IsValid() && f.Kind() == reflect.String && f.String() != "" {
					return f.String(), true
				}
			}
		}
	}
	return "", true
}

// uniqueColumns reads the columns of the table's index named name (a
// UNIQUE constraint's index bears its name) from pg_index; an index of
// another table is not found.
func (postgresDialect) uniqueColumns(ctx context.Context, q querier, p *plan, name string) ([]string, bool, error) {
	return queryColumns(ctx, q, `SELECT a.attname FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = to_regclass($1) AND c.relname = $2
		ORDER BY a.attnum`, p.qtable, name)
}

func (postgresDialect) immediate() string { return "SET CONSTRAINTS ALL IMMEDIATE" }

// queryColumns returns the non-NULL values of the first column of a
// query's rows, and whether it returned any row (a NULL stands for an
// expression of an index).
func queryColumns(ctx context.Context, q querier, query string, args ...any) ([]string, bool, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []string
	found := false
	for rows.Next() {
		found = true
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, false, err
		}
		if s.Valid {
			out = append(out, s.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	return out, found, rows.Close()
}

// isTransient reports whether err is a deadlock, serialization failure or
// lock timeout, after which the batch can simply be tried again later. It
// recognises the SQLState method of the errors of pgx and lib/pq.
func isTransient(err error) bool {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		switch s.SQLState() {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
}

// hint adds to an error reading the catalog a hint that the dialect may
// be wrong, when it is PostgreSQL only because the driver was not
// recognised.
func (j *Job) hint(err error) error {
	if err == nil || !j.guessed || errors.Is(err, ErrInvalidTable) {
		return err
	}
	return fmt.Errorf("%w (the SQL dialect was taken to be %s for the driver %T, which colcrypt does not know; set Table.Dialect if that is wrong)",
		err, j.table.Dialect, j.db.Driver())
}

// findInChain returns the first code that code finds in err or in the
// errors it wraps (Unwrap() error and Unwrap() []error), depth first. The
// dialects use it to read a driver's error code without importing the
// driver.
func findInChain(err error, code func(error) (int, bool)) (int, bool) {
	if err == nil {
		return 0, false
	}
	if c, ok := code(err); ok {
		return c, true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return findInChain(u.Unwrap(), code)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if c, ok := findInChain(e, code); ok {
				return c, true
			}
		}
	}
	return 0, false
}

// structOf returns the struct that err is or points to, or the zero Value.
func structOf(err error) reflect.Value {
	v := reflect.ValueOf(err)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v
}
