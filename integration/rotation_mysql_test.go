package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests on MySQL/MariaDB (the shared checks are in
// rotation_dialects_test.go), gated like the other MySQL tests by
// COLCRYPT_TEST_MYSQL_URL (see mysqlURL). Run them with
//
//	COLCRYPT_TEST_MYSQL_URL='root@tcp(127.0.0.1:3306)/test?parseTime=true' go test -race -count=1 -run 'Rotation.*MySQL' ./integration/

// rotMyDB opens the MySQL test database for t; interpolate switches on the
// driver's client-side interpolation (text protocol throughout), which
// changes how values come back.
func rotMyDB(t *testing.T, interpolate bool) *rotDiaDB {
	t.Helper()
	dsn := mysqlDSNWith(t, mysqlURL(t), interpolate)
	db := openMySQL(t, dsn)
	return &rotDiaDB{
		name:     "MySQL",
		dialect:  rotation.MySQL,
		db:       db,
		quote:    rotMyQuote,
		idColumn: "id BIGINT NOT NULL PRIMARY KEY",
		// Text columns in three collations and character sets, one
		// case-insensitive, to check that the job's prefix comparisons are
		// exact; the blind index as mysqlBidxType.
		columns:     "%s TEXT COLLATE utf8mb4_unicode_ci NOT NULL, %s " + mysqlBidxType + ", %s BLOB NOT NULL, %s TEXT CHARACTER SET latin1",
		writerTx:    func(ctx context.Context, db *sql.DB) (*sql.Tx, error) { return db.BeginTx(ctx, nil) },
		writerPause: 200 * time.Microsecond,
		minWrites:   40,
		lockRows: func(ctx context.Context, table string, ids []int64) (func(), error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			if err := rotMyLock(ctx, tx, table, ids); err != nil {
				_ = tx.Rollback()
				return nil, err
			}
			return func() { _ = tx.Rollback() }, nil
		},
	}
}

// rotMyQuote quotes a MySQL identifier.
func rotMyQuote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// rotMyLock locks the rows with the given ids of a quoted table in tx.
func rotMyLock(ctx context.Context, tx *sql.Tx, table string, ids []int64) error {
	in, args := rotDiaIn(ids)
	rows, err := tx.QueryContext(ctx, "SELECT id FROM "+table+" WHERE id IN "+in+" FOR UPDATE", args...)
	if err != nil {
		return err
	}
	return rows.Close()
}

// rotMyExists reports whether a table of the current database exists.
func rotMyExists(t *testing.T, d *rotDiaDB) func(string) bool {
	return func(table string) bool {
		var n int
		if err := d.db.QueryRowContext(testContext(t), "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

func TestRotationMySQLRotatesEverything(t *testing.T) {
	for _, interpolate := range []bool{false, true} {
		t.Run(fmt.Sprintf("interpolateParams=%v", interpolate), func(t *testing.T) {
			testRotDiaEverything(t, rotMyDB(t, interpolate))
		})
	}
}

func TestRotationMySQLConcurrentWriters(t *testing.T) {
	testRotDiaConcurrent(t, rotMyDB(t, false), 2000, 4)
}

func TestRotationMySQLCorruptedRowsReported(t *testing.T) {
	testRotDiaCorrupted(t, rotMyDB(t, false))
}

func TestRotationMySQLPlaintextMigration(t *testing.T) {
	testRotDiaPlaintext(t, rotMyDB(t, false), "TEXT", mysqlBidxType)
}

func TestRotationMySQLHostileIdentifiers(t *testing.T) {
	d := rotMyDB(t, false)
	testRotDiaHostile(t, d, "`", rotMyExists(t, d))
}

// TestRotationMySQLLockedRowsLaterPass holds some rows locked while the job
// runs: it skips them (SKIP LOCKED) instead of waiting, rotates the rest,
// comes back in later passes (leaving out a corrupted row by its key), and
// finishes once the lock is released.
func TestRotationMySQLLockedRowsLaterPass(t *testing.T) {
	const n = 500
	d := rotMyDB(t, false)
	f := newRotDiaFixture(t, d, n)
	ctx := testContext(t)
	job := f.job(f.activate())
	// A corrupted row too, which later passes leave out by its key.
	f.setRaw(ctx, 100, "email", rotDiaFlip(f.read0(ctx)[100][0].String))

	locked := []int64{1, 2, 250, 499}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := rotMyLock(ctx, tx, f.qt, locked); err != nil {
		t.Fatal(err)
	}
	done := rotWaitForSecondPass(t, ctx, job)
	for id, raw := range f.read0(ctx) {
		want := "v2:"
		if slices.Contains(locked, id) || id == 100 {
			want = "v1:"
		}
		if !strings.HasPrefix(raw[0].String, want) {
			t.Errorf("row %d is %s… while the job waits, want %s", id, raw[0].String[:3], want)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if !errors.Is(o.err, rotation.ErrFailures) || o.res.Rows != n-1 || o.res.Passes < 2 || len(o.res.Failures) != 1 || o.res.Failures[0].PK != "100" {
		t.Fatalf("Rotate: %+v, %v", o.res, o.err)
	}
	if err := f.update(ctx, d.db, 100, 0, false); err != nil { // the application rewrites it
		t.Fatal(err)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 2, 2)
}

// TestRotationMySQLKeys pages over primary keys other than BIGINT: strings
// in a case- and accent-insensitive collation and in latin1, binary keys,
// unsigned integers beyond 2^63 and a unique key that is not the primary
// key, each through both protocols of the driver.
func TestRotationMySQLKeys(t *testing.T) {
	keys := newKeyring(t)
	for _, interpolate := range []bool{false, true} {
		d := rotMyDB(t, interpolate)
		for _, typ := range []string{
			"VARCHAR(100) COLLATE utf8mb4_unicode_ci NOT NULL PRIMARY KEY",
			"VARCHAR(40) CHARACTER SET latin1 NOT NULL PRIMARY KEY",
			"VARBINARY(16) NOT NULL PRIMARY KEY",
			"BIGINT UNSIGNED NOT NULL PRIMARY KEY",
			"INT NOT NULL UNIQUE",
		} {
			t.Run(fmt.Sprintf("%s/interpolateParams=%v", strings.Fields(typ)[0], interpolate), func(t *testing.T) {
				keys.use(1)
				name := uniqueName(t)
				if _, err := d.db.ExecContext(testContext(t), "CREATE TABLE "+d.quote(name)+" (k "+typ+", secret TEXT)"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { dropTable(t, d.db, d.quote(name)) })
				var pks []any
				switch {
				case strings.HasPrefix(typ, "VARCHAR(100)"):
					for _, s := range []string{`a"b`, `c\d`, `NULL`, ``, `g h`, `ñandú`, `'; DROP TABLE x; --`, "tab\there", "A", "b", "back`tick", "Z", "日本"} {
						pks = append(pks, s)
					}
					for i := range 40 {
						pks = append(pks, fmt.Sprintf("Key %03d", i))
					}
				case strings.HasPrefix(typ, "VARCHAR(40)"):
					for i := range 40 {
						pks = append(pks, fmt.Sprintf("ñ%03d'\"`", i))
					}
				case strings.HasPrefix(typ, "VARBINARY"):
					for i := range 40 {
						pks = append(pks, []byte{byte(i * 37), 0, byte(i), '"', 0xff, '\\'})
					}
				case strings.HasPrefix(typ, "BIGINT"):
					for i := range 40 {
						pks = append(pks, uint64(1)<<63+uint64(i)*1e15)
					}
				default:
					for i := range 40 {
						pks = append(pks, int64(i*i)-900)
					}
				}
				testRotDiaKeys(t, d, keys, name, pks)
			})
		}
	}
}

// TestRotationMySQLCatalog checks the table descriptions the job refuses
// on MySQL, that column names are found as MySQL finds them (ignoring
// case), and that non-ASCII names are refused on a connection whose
// character set could let a backquote hide in a character.
func TestRotationMySQLCatalog(t *testing.T) {
	d := rotMyDB(t, false)
	keys := newKeyring(t)
	codec := encryptedtype.NewCodec(keys.use(1))
	ctx := testContext(t)
	p := uniqueName(t)[:40] + "_"
	tables := map[string]string{
		"nullable":  "(k INT, c TEXT, UNIQUE (k))",
		"no_unique": "(k INT NOT NULL, c TEXT)",
		"int_col":   "(id INT PRIMARY KEY, c INT)",
		"dec_pk":    "(k DECIMAL(10,2) PRIMARY KEY, c TEXT)",
		"generated": "(id INT PRIMARY KEY, c TEXT, g TEXT AS (c) VIRTUAL)",
		"mixed":     "(ID INT PRIMARY KEY, Secret TEXT)",
		"naïve":     "(id INT PRIMARY KEY, c TEXT)",
	}
	for name, cols := range tables {
		if _, err := d.db.ExecContext(ctx, "CREATE TABLE "+d.quote(p+name)+" "+cols); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dropTable(t, d.db, d.quote(p+name)) })
	}
	if _, err := d.db.ExecContext(ctx, "CREATE VIEW "+d.quote(p+"view")+" AS SELECT * FROM "+d.quote(p+"mixed")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.db.ExecContext(context.Background(), "DROP VIEW IF EXISTS "+d.quote(p+"view")) })
	var current string
	if err := d.db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	check := func(db *sql.DB, schema, table, pk, col string, ok bool) {
		t.Helper()
		tbl := rotation.Table{Schema: schema, Name: p + table, PrimaryKey: pk, Dialect: rotation.MySQL, Columns: []rotation.Column{{Name: col}}}
		j, err := rotation.New(db, tbl, codec)
		if err == nil {
			_, err = j.Census(ctx)
		}
		if ok && err != nil || !ok && !errors.Is(err, rotation.ErrInvalidTable) {
			t.Errorf("%s.%s(%s, %s): %v", schema, table, pk, col, err)
		}
	}
	check(d.db, "", "nullable", "k", "c", false)
	check(d.db, "", "no_unique", "k", "c", false)
	check(d.db, "", "int_col", "id", "c", false)
	check(d.db, "", "dec_pk", "k", "c", false)
	check(d.db, "", "generated", "id", "g", false)
	check(d.db, "", "generated", "id", "c", true)
	check(d.db, "", "view", "ID", "Secret", false)
	check(d.db, "", "mixed", "ID", "Secret", true)
	check(d.db, "", "mixed", "id", "secret", true) // MySQL ignores the case of column names
	check(d.db, current, "mixed", "ID", "Secret", true)
	check(d.db, current+"_nope", "mixed", "ID", "Secret", false)
	check(d.db, "", "naïve", "id", "c", true)
	j, err := rotation.New(d.db, rotation.Table{Name: p + "mixed", PrimaryKey: "id", Dialect: rotation.MySQL, Columns: []rotation.Column{{Name: "secret"}, {Name: "SECRET"}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Census(ctx); !errors.Is(err, rotation.ErrInvalidTable) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a column named twice: %v", err)
	}

	// A connection in GBK, where a backquote can be the second byte of a
	// character: ASCII names work, others are refused.
	cfg, err := mysql.ParseDSN(mysqlURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params = map[string]string{"charset": "gbk"}
	cfg.Collation = ""
	gbk := openMySQL(t, cfg.FormatDSN())
	check(gbk, "", "mixed", "ID", "Secret", true)
	check(gbk, "", "naïve", "id", "c", false)
}
