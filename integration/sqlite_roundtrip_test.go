package integration

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/glebarez/sqlite" // GORM's pure-Go SQLite dialector; registers the "sqlite" database/sql driver
	"gorm.io/gorm"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// The SQLite tests, on the pure-Go driver (github.com/glebarez/sqlite for
// GORM, over modernc.org/sqlite; no cgo). They need no set-up: each test
// works in a database file of its own in a temporary directory. Run them
// with
//
//	go test -race -count=1 -run SQLite ./integration/

// SQLite's extended result code for a UNIQUE constraint failure.
const sqliteConstraintUnique = 2067

// sqliteDialect describes SQLite to the shared checks, on a new database
// file in t's temporary directory.
func sqliteDialect(t testing.TB) *sqlDialect {
	dsn := "file:" + filepath.Join(t.TempDir(), "colcrypt.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	return &sqlDialect{
		name: "SQLite",
		open: func(t testing.TB) *sql.DB {
			t.Helper()
			db, err := sql.Open(sqlite.DriverName, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if err := db.PingContext(testContext(t)); err != nil {
				t.Fatalf("opening the SQLite database: %v", err)
			}
			return db
		},
		gorm:     func(testing.TB) gorm.Dialector { return sqlite.Open(dsn) },
		idColumn: "id INTEGER PRIMARY KEY AUTOINCREMENT",
		// SQLite takes any type name and keeps only its affinity: VARCHAR
		// is TEXT (the length is not enforced), VARBINARY would be NUMERIC.
		varchar:    "VARCHAR(255)",
		blob:       "BLOB",
		varbinary:  "BLOB",
		bidxColumn: "TEXT",
		quote:      func(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` },
		uniqueViolation: func(err error) bool {
			code, ok := errorCode(err)
			return ok && code == sqliteConstraintUnique
		},
		columns: sqliteColumns,
		indexes: sqliteIndexes,
		storage: sqliteStorage,
	}
}

// sqliteColumns reads PRAGMA table_info.
func sqliteColumns(t testing.TB, db *sql.DB, table string) map[string]columnInfo {
	t.Helper()
	rows, err := db.QueryContext(testContext(t), "SELECT name, type, \"notnull\" FROM pragma_table_info(?)", table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]columnInfo{}
	for rows.Next() {
		var name, typ string
		var notNull bool
		if err := rows.Scan(&name, &typ, &notNull); err != nil {
			t.Fatal(err)
		}
		out[name] = columnInfo{Type: strings.ToLower(typ), Nullable: !notNull, Extra: "declared type " + typ}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sqliteIndexes reads PRAGMA index_list and index_info.
func sqliteIndexes(t testing.TB, db *sql.DB, table string) []indexInfo {
	t.Helper()
	ctx := testContext(t)
	rows, err := db.QueryContext(ctx, `
		SELECT l.name, l."unique", l.origin, i.name
		FROM pragma_index_list(?) AS l, pragma_index_info(l.name) AS i
		ORDER BY l.name, i.seqno`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []indexInfo
	for rows.Next() {
		var name, origin, col string
		var unique bool
		if err := rows.Scan(&name, &unique, &origin, &col); err != nil {
			t.Fatal(err)
		}
		if n := len(out); n > 0 && out[n-1].Name == name {
			out[n-1].Columns = append(out[n-1].Columns, col)
			continue
		}
		out = append(out, indexInfo{Name: name, Columns: []string{col}, Unique: unique, Extra: "origin " + origin})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sqliteStorage returns SQLite's storage class of a value: typeof(column).
func sqliteStorage(t testing.TB, db *sql.DB, table, column string, id int64) string {
	t.Helper()
	var class string
	if err := db.QueryRowContext(testContext(t), "SELECT typeof("+column+") FROM "+table+" WHERE id = ?", id).Scan(&class); err != nil {
		t.Fatal(err)
	}
	return class
}

// TestSQLiteDatabaseSQL runs the database/sql checks (testDialectSQL) on
// SQLite.
func TestSQLiteDatabaseSQL(t *testing.T) {
	d := sqliteDialect(t)
	testDialectSQL(t, d, d.open(t))
}

// TestSQLiteGORM runs the GORM checks (testDialectGORM) on SQLite.
func TestSQLiteGORM(t *testing.T) {
	testDialectGORM(t, sqliteDialect(t))
}

// TestSQLiteStorageClass pins how SQLite stores the wire format: Value
// returns a Go string, so the value is stored with storage class TEXT even
// in a BLOB column (SQLite keeps what it is given there). A wire-format
// value stored as a BLOB, as another tool may write it, reads back all the
// same: Scan takes string and []byte.
func TestSQLiteStorageClass(t *testing.T) {
	d := sqliteDialect(t)
	db := d.open(t)
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	table := createDialectTable(t, d, db, "t TEXT, b BLOB")
	q := tableQuery(table)
	const plain = "stored as <text>"

	res, err := db.ExecContext(ctx, q("INSERT INTO %s (t, b) VALUES (?, ?)"), encryptedtype.NewString(plain), encryptedtype.NewBytes([]byte(plain)))
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := res.LastInsertId()
	for _, col := range []string{"t", "b"} {
		if class := sqliteStorage(t, db, table, col, id1); class != "text" {
			t.Errorf("column %s: storage class %q, want text", col, class)
		}
		assertCiphertext(t, rawText(t, db, q("SELECT "+col+" FROM %s WHERE id = ?"), id1), 1, []byte(plain))
	}

	// The same wire format as a BLOB, in both columns.
	wire, err := encryptedtype.NewString(plain).Value()
	if err != nil {
		t.Fatal(err)
	}
	res, err = db.ExecContext(ctx, q("INSERT INTO %s (t, b) VALUES (?, ?)"), []byte(wire.(string)), []byte(wire.(string)))
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := res.LastInsertId()
	for _, col := range []string{"t", "b"} {
		class := sqliteStorage(t, db, table, col, id2)
		if col == "b" && class != "blob" {
			t.Errorf("column b: []byte stored with storage class %q, want blob", class)
		}
		t.Logf("[]byte into %s is stored as %s", col, class)
	}
	for _, id := range []int64{id1, id2} {
		var s encryptedtype.String
		var b encryptedtype.Bytes
		if err := db.QueryRowContext(ctx, q("SELECT t, b FROM %s WHERE id = ?"), id).Scan(&s, &b); err != nil {
			t.Fatalf("row %d: %v", id, err)
		}
		if s.Plaintext() != plain || string(b.Plaintext()) != plain {
			t.Errorf("row %d reads back as %q, %q", id, s.Plaintext(), b.Plaintext())
		}
	}
}
