package integration

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
)

// The MySQL/MariaDB tests run against the database named by envMySQLDSN,
// a go-sql-driver/mysql DSN. Without it they skip, saying how to run them,
// or fail when COLCRYPT_REQUIRE_DB=1 (as in CI).
const (
	envMySQLDSN     = "COLCRYPT_TEST_MYSQL_URL"
	exampleMySQLDSN = "root@tcp(127.0.0.1:3306)/test?parseTime=true"
)

// mysqlBidxType is the column type these tests recommend, and use, for a
// blind index on MySQL and MariaDB: short enough for an ordinary B-tree
// index (a TEXT column needs a prefix length, see TestMySQLBlindIndexColumn)
// and compared byte for byte. The default collations of MySQL and MariaDB
// ignore case, and index values are case-sensitive base64url.
const mysqlBidxType = "VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin"

// mysqlURL returns the DSN of the MySQL or MariaDB database of the tests:
// $COLCRYPT_TEST_MYSQL_URL. When it is not set it skips t, or fails it if
// COLCRYPT_REQUIRE_DB=1.
func mysqlURL(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(envMySQLDSN); dsn != "" {
		return dsn
	}
	msg := fmt.Sprintf("no MySQL/MariaDB database for the MySQL integration tests: %s is not set.\n"+
		"To run them, set it to a go-sql-driver/mysql DSN of a database in which the tests may create and drop tables, for example\n"+
		"\t%s='%s' go test -run MySQL ./integration/\n"+
		"Set %s=1 to make a missing database a failure instead of a skip.",
		envMySQLDSN, envMySQLDSN, exampleMySQLDSN, envRequireDB)
	if os.Getenv(envRequireDB) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// mysqlDSNWith returns dsn with client-side interpolation of parameters
// switched on or off. Off (the driver's default), every query with
// arguments is a server-side prepared statement and results come in the
// binary protocol; on, the driver escapes the arguments into the query text
// and results come in the text protocol.
func mysqlDSNWith(t testing.TB, dsn string, interpolate bool) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("%s is not a go-sql-driver/mysql DSN: %v", envMySQLDSN, err)
	}
	cfg.InterpolateParams = interpolate
	return cfg.FormatDSN()
}

// openMySQL opens a database/sql pool with go-sql-driver/mysql, closed when
// t ends.
func openMySQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("sql.Open(mysql): %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(testContext(t)); err != nil {
		t.Fatalf("connecting to the MySQL test database (%s): %v", envMySQLDSN, err)
	}
	return db
}

// isMySQLError reports whether err is a MySQL server error with the given
// number.
func isMySQLError(err error, number uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == number
}

// MySQL error numbers the tests expect.
const (
	mysqlDupEntry    = 1062 // ER_DUP_ENTRY
	mysqlDataTooLong = 1406 // ER_DATA_TOO_LONG
)

// mysqlDialect describes MySQL/MariaDB to the shared checks, on dsn.
func mysqlDialect(dsn string) *sqlDialect {
	return &sqlDialect{
		name:            "MySQL",
		open:            func(t testing.TB) *sql.DB { return openMySQL(t, dsn) },
		gorm:            func(testing.TB) gorm.Dialector { return gormmysql.Open(dsn) },
		idColumn:        "id BIGINT AUTO_INCREMENT PRIMARY KEY",
		varchar:         "VARCHAR(255)",
		blob:            "BLOB",
		varbinary:       "VARBINARY(255)",
		bidxColumn:      mysqlBidxType,
		quote:           func(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" },
		uniqueViolation: func(err error) bool { return isMySQLError(err, mysqlDupEntry) },
		columns:         mysqlColumns,
		indexes:         mysqlIndexes,
	}
}

// mysqlColumns reads information_schema.COLUMNS for table.
func mysqlColumns(t testing.TB, db *sql.DB, table string) map[string]columnInfo {
	t.Helper()
	rows, err := db.QueryContext(testContext(t), `
		SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(COLLATION_NAME, '')
		FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]columnInfo{}
	for rows.Next() {
		var name, typ, nullable, collation string
		if err := rows.Scan(&name, &typ, &nullable, &collation); err != nil {
			t.Fatal(err)
		}
		out[name] = columnInfo{Type: strings.ToLower(typ), Nullable: nullable == "YES", Extra: "collation " + collation}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mysqlIndexes reads information_schema.STATISTICS for table.
func mysqlIndexes(t testing.TB, db *sql.DB, table string) []indexInfo {
	t.Helper()
	rows, err := db.QueryContext(testContext(t), `
		SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE, COALESCE(SUB_PART, 0), INDEX_TYPE
		FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?
		ORDER BY INDEX_NAME, SEQ_IN_INDEX`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []indexInfo
	for rows.Next() {
		var name, col, typ string
		var nonUnique, subPart int
		if err := rows.Scan(&name, &col, &nonUnique, &subPart, &typ); err != nil {
			t.Fatal(err)
		}
		if n := len(out); n > 0 && out[n-1].Name == name {
			out[n-1].Columns = append(out[n-1].Columns, col)
			continue
		}
		extra := "type " + typ
		if subPart > 0 {
			extra += fmt.Sprintf(", prefix of %d characters", subPart)
		}
		out = append(out, indexInfo{Name: name, Columns: []string{col}, Unique: nonUnique == 0, Extra: extra})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mysqlExplain returns the access type and the key of the first row of
// MySQL's EXPLAIN of query ("ref" and an index name for an index lookup,
// "ALL" and "" for a full scan), and the whole plan for logging.
func mysqlExplain(t testing.TB, db *sql.DB, query string, args ...any) (accessType, key, plan string) {
	t.Helper()
	rows, err := db.QueryContext(testContext(t), "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("EXPLAIN %s: no plan", query)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	var parts []string
	for i, c := range cols {
		switch c {
		case "type":
			accessType = vals[i].String
		case "key":
			key = vals[i].String
		}
		if vals[i].Valid {
			parts = append(parts, c+"="+vals[i].String)
		}
	}
	return accessType, key, strings.Join(parts, " ")
}
