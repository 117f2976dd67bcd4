package integration

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/glebarez/go-sqlite" // the pure-Go "sqlite" database/sql driver (modernc.org/sqlite)

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests on SQLite (the shared checks are in
// rotation_dialects_test.go). They need no set-up: each works in a database
// file of its own in a temporary directory, a file rather than :memory: so
// that the job's and the writers' connections share it. Run them with
//
//	go test -race -count=1 -run 'Rotation.*SQLite' ./integration/

// rotLiteDB opens a new SQLite database file for t: WAL (with synchronous
// NORMAL, as WAL applications run it), so that readers do not wait for the
// writer, a busy timeout, so that writers wait for each
// other (and for the job's batches) instead of failing, and BEGIN
// IMMEDIATE for the application's transactions, so that a
// read-modify-write transaction takes the write lock before it reads.
func rotLiteDB(t *testing.T) *rotDiaDB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "rotation.db") +
		"?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(testContext(t)); err != nil {
		t.Fatalf("opening the SQLite database: %v", err)
	}
	return &rotDiaDB{
		name:        "SQLite",
		dialect:     rotation.SQLite,
		db:          db,
		quote:       func(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` },
		idColumn:    "id INTEGER PRIMARY KEY",
		columns:     "%s TEXT NOT NULL, %s TEXT, %s BLOB NOT NULL, %s TEXT",
		writerTx:    func(ctx context.Context, db *sql.DB) (*sql.Tx, error) { return db.BeginTx(ctx, nil) },
		writerPause: 2 * time.Millisecond,
		lockIdle:    40 * time.Millisecond,
		minWrites:   5, // SQLite serializes them with the batches, and its busy handler backs off in steps of up to 100ms
		// SQLite locks the whole database, not rows: a transaction that
		// writes the rows (without changing them) holds the write lock,
		// and the job's batches wait for it.
		lockRows: func(ctx context.Context, table string, ids []int64) (func(), error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			in, args := rotDiaIn(ids)
			if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET id = id WHERE id IN "+in, args...); err != nil {
				_ = tx.Rollback()
				return nil, err
			}
			return func() { _ = tx.Commit() }, nil
		},
	}
}

// rotLiteExists reports whether table exists in d's main database.
func rotLiteExists(t *testing.T, d *rotDiaDB) func(string) bool {
	return func(table string) bool {
		var n int
		if err := d.db.QueryRowContext(testContext(t), "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

func TestRotationSQLiteRotatesEverything(t *testing.T) {
	d := rotLiteDB(t)
	f := testRotDiaEverything(t, d)

	// The blob column kept each value's storage class: BLOB for the
	// values written as []byte (even ids), TEXT for the others.
	rows, err := d.db.QueryContext(testContext(t), f.q(`SELECT id %% 2, typeof("blob"), count(*) FROM %s GROUP BY 1, 2 ORDER BY 1`))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var odd, n int
		var class string
		if err := rows.Scan(&odd, &class, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %d", odd, class, n))
	}
	if fmt.Sprint(got) != "[0 blob 750 1 text 750]" {
		t.Errorf("storage classes of the blob column (id%%2, class, count): %v", got)
	}
}

func TestRotationSQLiteConcurrentWriters(t *testing.T) {
	testRotDiaConcurrent(t, rotLiteDB(t), 1000, 4)
}

func TestRotationSQLiteCorruptedRowsReported(t *testing.T) {
	testRotDiaCorrupted(t, rotLiteDB(t))
}

func TestRotationSQLitePlaintextMigration(t *testing.T) {
	testRotDiaPlaintext(t, rotLiteDB(t), "TEXT", "TEXT")
}

func TestRotationSQLiteHostileIdentifiers(t *testing.T) {
	d := rotLiteDB(t)
	testRotDiaHostile(t, d, `"`, rotLiteExists(t, d))
}

// TestRotationSQLiteKeys pages over text and blob keys, and over a table
// whose integer key is not the rowid.
func TestRotationSQLiteKeys(t *testing.T) {
	d := rotLiteDB(t)
	keys := newKeyring(t)
	for _, typ := range []string{"TEXT NOT NULL PRIMARY KEY", "BLOB NOT NULL PRIMARY KEY", "BIGINT NOT NULL UNIQUE"} {
		t.Run(strings.Fields(typ)[0], func(t *testing.T) {
			keys.use(1)
			name := uniqueName(t)
			if _, err := d.db.ExecContext(testContext(t), "CREATE TABLE "+d.quote(name)+" (k "+typ+", secret TEXT)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dropTable(t, d.db, d.quote(name)) })
			var pks []any
			switch typ[:4] {
			case "TEXT":
				for _, s := range []string{`a"b`, `c\d`, `NULL`, ``, `g h`, `ñandú`, `'; DROP TABLE x; --`, "tab\there", "A", "a", "Z"} {
					pks = append(pks, s)
				}
				for i := range 60 {
					pks = append(pks, fmt.Sprintf("key %03d", i))
				}
			case "BLOB":
				for i := range 60 {
					pks = append(pks, []byte{byte(i * 37), 0, byte(i), '"', 0xff})
				}
			default:
				for i := range 60 {
					pks = append(pks, int64(i*i)-900)
				}
			}
			testRotDiaKeys(t, d, keys, name, pks)
		})
	}
}

// TestRotationSQLiteCatalog checks the table descriptions SQLite refuses,
// and that names are found as SQLite finds them (ignoring ASCII case).
func TestRotationSQLiteCatalog(t *testing.T) {
	d := rotLiteDB(t)
	keys := newKeyring(t)
	codec := encryptedtype.NewCodec(keys.use(1))
	ctx := testContext(t)
	for _, ddl := range []string{
		`CREATE TABLE nullable_pk (k TEXT PRIMARY KEY, c TEXT)`,
		`CREATE TABLE no_unique (k INTEGER NOT NULL, c TEXT)`,
		`CREATE TABLE int_col (id INTEGER PRIMARY KEY, c INTEGER)`,
		`CREATE TABLE date_pk (k DATETIME NOT NULL PRIMARY KEY, c TEXT)`,
		`CREATE TABLE mixed (ID INTEGER PRIMARY KEY, Secret TEXT)`,
		`CREATE VIEW a_view AS SELECT * FROM mixed`,
	} {
		if _, err := d.db.ExecContext(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		table, pk, col string
		ok             bool
	}{
		{"nullable_pk", "k", "c", false},
		{"no_unique", "k", "c", false},
		{"int_col", "id", "c", false},
		{"date_pk", "k", "c", false},
		{"a_view", "ID", "Secret", false},
		{"mixed", "ID", "Secret", true},
		{"MIXED", "id", "secret", true},
		{"mixed", "id", "Secret\x00", false},
		{"mixed", "id", "secreT", true},
	} {
		tbl := rotation.Table{Name: tc.table, PrimaryKey: tc.pk, Dialect: rotation.SQLite, Columns: []rotation.Column{{Name: tc.col}}}
		j, err := rotation.New(d.db, tbl, codec)
		if err == nil {
			_, err = j.Census(ctx)
		}
		if tc.ok && err != nil || !tc.ok && err == nil {
			t.Errorf("%s(%s, %s): %v", tc.table, tc.pk, tc.col, err)
		}
	}
	// Two names for one column are refused.
	j, err := rotation.New(d.db, rotation.Table{Name: "mixed", PrimaryKey: "id", Dialect: rotation.SQLite, Columns: []rotation.Column{{Name: "secret"}, {Name: "SECRET"}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Census(ctx); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a column named twice: %v", err)
	}
}
