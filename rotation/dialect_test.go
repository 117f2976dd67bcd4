package rotation

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// hostileNames are identifiers that try to end their quotes early.
var hostileNames = []string{
	"users", "Users", `we"ird`, "we`ird", `x"; DROP TABLE users; --`, "x`; DROP TABLE users; --",
	`""`, "``", "naïve table", `back\slash`, "semi;colon'quote", "a``b\"\"c", "`", `"`, "日本`語",
}

// unquote reads back a name quoted with q as the database's tokenizer
// does: the first character must be q, a doubled q is one q, and the
// name ends at the first single q, which must be the last character.
func unquote(s string, q byte) (string, bool) {
	if len(s) < 2 || s[0] != q {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != q {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == q {
			b.WriteByte(q)
			i++
			continue
		}
		return b.String(), i == len(s)-1
	}
	return "", false
}

func TestQuotePerDialect(t *testing.T) {
	for _, tc := range []struct {
		d Dialect
		q byte
	}{{Postgres, '"'}, {MySQL, '`'}, {SQLite, '"'}, {DetectDialect, '"'}} {
		for _, name := range hostileNames {
			quoted := dialectOf(tc.d).quote(name)
			back, ok := unquote(quoted, tc.q)
			if !ok || back != name {
				t.Errorf("%v: quote(%q) = %s, which reads back as %q (whole: %v)", tc.d, name, quoted, back, ok)
			}
		}
	}
	if got := dialectOf(MySQL).quote("x`; DROP TABLE users; --"); got != "`x``; DROP TABLE users; --`" {
		t.Errorf("MySQL quote: %s", got)
	}
	for d, want := range map[Dialect]string{
		DetectDialect: `"s""x"."t` + "`" + `"`,
		Postgres:      `"s""x"."t` + "`" + `"`,
		MySQL:         "`s\"x`.`t```",
		SQLite:        `"s""x"."t` + "`" + `"`,
	} {
		if got := (Table{Schema: `s"x`, Name: "t`", Dialect: d}).String(); got != want {
			t.Errorf("%v: Table.String() = %s, want %s", d, got, want)
		}
	}
}

func TestParseDialect(t *testing.T) {
	for in, want := range map[string]Dialect{
		"": DetectDialect, "detect": DetectDialect, "postgres": Postgres, "PostgreSQL": Postgres, "pgx": Postgres,
		"mysql": MySQL, "MariaDB": MySQL, " sqlite ": SQLite, "sqlite3": SQLite,
	} {
		if got, err := ParseDialect(in); err != nil || got != want {
			t.Errorf("ParseDialect(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDialect("oracle"); err == nil {
		t.Error("ParseDialect(oracle): no error")
	}
	for d, want := range map[Dialect]string{DetectDialect: "detect", Postgres: "PostgreSQL", MySQL: "MySQL", SQLite: "SQLite", Dialect(9): "Dialect(9)"} {
		if d.String() != want {
			t.Errorf("%d.String() = %s", int(d), d.String())
		}
	}
	if err := (Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}}, Dialect: Dialect(9)}).validate(); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("unknown dialect: %v", err)
	}
}

// otherDriver is a driver colcrypt does not know (its package path names
// no database).
type otherDriver struct{}

func (otherDriver) Open(string) (driver.Conn, error) { return nil, errors.New("no") }

// otherConnector connects with otherDriver.
type otherConnector struct{}

func (otherConnector) Connect(context.Context) (driver.Conn, error) { return nil, errors.New("no") }
func (otherConnector) Driver() driver.Driver                        { return otherDriver{} }

func TestDetectDialect(t *testing.T) {
	for _, tc := range []struct {
		drv   driver.Driver
		want  Dialect
		known bool
	}{
		{stdlib.GetDefaultDriver(), Postgres, true},
		{mysql.MySQLDriver{}, MySQL, true},
		{&mysql.MySQLDriver{}, MySQL, true},
		{&gosqlite.Driver{}, SQLite, true},
		{otherDriver{}, Postgres, false},
		{nil, Postgres, false},
	} {
		if got, known := detectDialect(tc.drv); got != tc.want || known != tc.known {
			t.Errorf("detectDialect(%T) = %v, %v; want %v, %v", tc.drv, got, known, tc.want, tc.known)
		}
	}
	codec := testCodec(t, 1)
	tbl := Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}}}
	for name, want := range map[string]Dialect{"mysql": MySQL, "sqlite": SQLite, "pgx": Postgres} {
		db, err := sql.Open(name, "")
		if err != nil {
			t.Fatal(err)
		}
		j, err := New(db, tbl, codec)
		if err != nil || j.Table().Dialect != want || j.guessed {
			t.Errorf("New on driver %s: dialect %v, guessed %v, %v", name, j.Table().Dialect, j.guessed, err)
		}
		tbl2 := tbl
		tbl2.Dialect = SQLite
		if j, _ := New(db, tbl2, codec); j.Table().Dialect != SQLite {
			t.Errorf("an explicit dialect was replaced on driver %s", name)
		}
		_ = db.Close()
	}
	// An unknown driver is taken for PostgreSQL, and errors reading the
	// catalog say so.
	db := sql.OpenDB(otherConnector{})
	defer db.Close()
	j, err := New(db, tbl, codec)
	if err != nil || j.Table().Dialect != Postgres || !j.guessed {
		t.Fatalf("unknown driver: %+v, %v", j, err)
	}
	if _, err := j.Census(context.Background()); err == nil || !strings.Contains(err.Error(), "set Table.Dialect") {
		t.Errorf("Census on an unknown driver: %v", err)
	}
}

// mysqlPlan is a plan on MySQL of `s`.`t` with key id (of kind k), a text
// column a (utf8mb4) with an index column a_bidx (ascii), and a binary
// column b.
func mysqlPlan(k keyKind) *plan {
	return &plan{
		dialect: MySQL, table: Table{Name: "t", Dialect: MySQL}, qtable: "`s`.`t`", qpk: "`id`", pkKind: k,
		pkCharset: "utf8mb4", pkCollation: "utf8mb4_unicode_ci",
		cols: []colPlan{{name: "a", q: "`a`", charset: "utf8mb4", idx: []int{0}}, {name: "b", q: "`b`", bytea: true}},
		idx:  []idxPlan{{name: "a_bidx", q: "`a_bidx`", charset: "ascii", src: 0, ix: fakeIndexer{version: 3}}},
	}
}

// sqlitePlan is the same table on SQLite, in schema main.
func sqlitePlan() *plan {
	return &plan{
		dialect: SQLite, table: Table{Name: "t", Dialect: SQLite}, qtable: `"main"."t"`, qpk: `"id"`, pkKind: keyNative,
		cols: []colPlan{{name: "a", q: `"a"`, idx: []int{0}}, {name: "b", q: `"b"`, bytea: true}},
		idx:  []idxPlan{{name: "a_bidx", q: `"a_bidx"`, src: 0, ix: fakeIndexer{version: 3}}},
	}
}

func TestSQLTextMySQL(t *testing.T) {
	pre := prefixes{value: "v2:", index: []string{"b3:"}}
	p := mysqlPlan(keySigned)
	want := "((`a` IS NOT NULL AND LEFT(`a`, 3) COLLATE utf8mb4_bin <> 'v2:') OR " +
		"(`a` IS NOT NULL AND (`a_bidx` IS NULL OR LEFT(`a_bidx`, 3) COLLATE ascii_bin <> 'b3:')) OR " +
		"(`a` IS NULL AND `a_bidx` IS NOT NULL AND (CONCAT(`a_bidx`, ':') COLLATE ascii_bin REGEXP '" + mysqlPattern + "')) OR " +
		"(`b` IS NOT NULL AND LEFT(`b`, 3) <> X'76323a'))"
	if got := p.pendingSQL(pre); got != want {
		t.Errorf("pendingSQL:\n got %s\nwant %s", got, want)
	}
	r := &runner{p: p, pre: pre, opts: Options{BatchSize: 10}}
	q, args := r.selectSQL(&cursor{started: true, last: "41", excludeKeys: []any{"7", "9"}})
	wantQ := "SELECT CAST(`id` AS CHAR), `a`, `b`, `a_bidx` FROM `s`.`t` WHERE " + want +
		" AND `id` > CAST(? AS SIGNED) AND `id` NOT IN (CAST(? AS SIGNED), CAST(? AS SIGNED)) ORDER BY `s`.`t`.`id` LIMIT 10 FOR UPDATE SKIP LOCKED"
	if q != wantQ || !reflect.DeepEqual(args, []any{"41", "7", "9"}) {
		t.Errorf("selectSQL:\n got %s %v\nwant %s", q, args, wantQ)
	}
	r.opts.DryRun = true
	if q, args := r.selectSQL(&cursor{}); strings.Contains(q, "FOR UPDATE") || strings.Contains(q, "?") || len(args) != 0 {
		t.Errorf("dry-run selectSQL: %s", q)
	}

	for kind, want := range map[keyKind][3]string{
		keySigned:   {"CAST(`id` AS CHAR)", "CAST(? AS SIGNED)", "CAST(colcrypt_v.k AS SIGNED)"},
		keyUnsigned: {"CAST(`id` AS CHAR)", "CAST(? AS UNSIGNED)", "CAST(colcrypt_v.k AS UNSIGNED)"},
		keyString:   {"`id`", "?", "CONVERT(colcrypt_v.k USING utf8mb4) COLLATE utf8mb4_unicode_ci"},
		keyBinary:   {"HEX(`id`)", "UNHEX(?)", "UNHEX(colcrypt_v.k)"},
	} {
		p := mysqlPlan(kind)
		if got := [3]string{p.sql().pkSelect(p), p.sql().keyParam(p, 1), mysqlJoinKey(p)}; got != want {
			t.Errorf("key kind %d: %q, want %q", kind, got, want)
		}
	}

	// The UPDATE writes every column of each row: the new value, or the
	// one read (NULL stays NULL); the index is NULL where its source is
	// and it holds an index value.
	b := newBatch(p, 10)
	b.pks = []string{"1", "2", "3"}
	b.vals = [][]byte{
		[]byte("v1:a1"), []byte("v1:b1"), []byte("b1:x"),
		[]byte("v2:a2"), nil, []byte("b1:y"),
		nil, []byte("v1:b3"), nil,
	}
	b.nulls = []bool{false, false, false, false, true, false, true, false, true}
	b.blobs = make([]bool, 9)
	b.resetOut()
	out := func(i int, vals ...string) {
		for k, v := range vals {
			b.rowOut[k] = nil
			if v != "" {
				b.rowOut[k] = []byte(v)
			}
		}
		b.addOut(i)
	}
	out(0, "v2:A1", "v2:B1", "b3:X")
	out(1, "", "", "b3:Y")
	out(2, "", "v2:B3", "")
	u, uargs := mysqlUpdate(p, b)
	wantU := "UPDATE `s`.`t` AS colcrypt_t JOIN (SELECT ? AS k, ? AS c1, ? AS c2, ? AS c3 UNION ALL SELECT ?, ?, ?, ? UNION ALL SELECT ?, ?, ?, ?) AS colcrypt_v " +
		"ON colcrypt_t.`id` = CAST(colcrypt_v.k AS SIGNED) SET colcrypt_t.`a` = colcrypt_v.c1, colcrypt_t.`b` = colcrypt_v.c2, " +
		"colcrypt_t.`a_bidx` = CASE WHEN (colcrypt_t.`a` IS NULL AND colcrypt_t.`a_bidx` IS NOT NULL AND " +
		"(CONCAT(colcrypt_t.`a_bidx`, ':') COLLATE ascii_bin REGEXP '" + mysqlPattern + "')) THEN NULL ELSE colcrypt_v.c3 END"
	wantArgs := []any{
		"1", "v2:A1", []byte("v2:B1"), "b3:X",
		"2", "v2:a2", nil, "b3:Y",
		"3", nil, []byte("v2:B3"), nil,
	}
	if u != wantU || !reflect.DeepEqual(uargs, wantArgs) {
		t.Errorf("mysqlUpdate:\n got %s\n     %q\nwant %s\n     %q", u, uargs, wantU, wantArgs)
	}
	if q, args := r.writeSQL(b); q != u || len(args) != len(uargs) {
		t.Errorf("writeSQL on MySQL: %s", q)
	}
	p.idx[0].notNull = true
	if u, _ := mysqlUpdate(p, b); !strings.HasSuffix(u, "colcrypt_t.`a_bidx` = colcrypt_v.c3") {
		t.Errorf("mysqlUpdate with a NOT NULL index column: %s", u)
	}
	// A binary index column is matched as latin1.
	p.idx[0].notNull, p.idx[0].bytea, p.idx[0].charset = false, true, ""
	if got, want := p.orphanSQL(0, ""), "(`a` IS NULL AND `a_bidx` IS NOT NULL AND (CONCAT(CAST(`a_bidx` AS CHAR CHARACTER SET latin1), ':') COLLATE latin1_bin REGEXP '"+mysqlPattern+"'))"; got != want {
		t.Errorf("orphanSQL of a binary column:\n got %s\nwant %s", got, want)
	}
}

// mysqlPattern is indexValuePattern as MySQL matches it, against the
// value with a ':' appended.
const mysqlPattern = "^[ab]" + ivVersion + ":" + ivPayload + ":$"

func TestSQLTextSQLite(t *testing.T) {
	pre := prefixes{value: "v2:", index: []string{"b3:"}}
	p := sqlitePlan()
	want := `(("a" IS NOT NULL AND substr("a", 1, 3) NOT IN ('v2:', X'76323a')) OR ` +
		`("a" IS NOT NULL AND ("a_bidx" IS NULL OR substr("a_bidx", 1, 3) NOT IN ('b3:', X'62333a'))) OR ` +
		`("a" IS NULL AND "a_bidx" IS NOT NULL AND ` + sqliteIndexValue(colRef{q: `"a_bidx"`}) + `) OR ` +
		`("b" IS NOT NULL AND substr("b", 1, 3) NOT IN ('v2:', X'76323a')))`
	if got := p.pendingSQL(pre); got != want {
		t.Errorf("pendingSQL:\n got %s\nwant %s", got, want)
	}
	r := &runner{p: p, pre: pre, opts: Options{BatchSize: 10}}
	q, args := r.selectSQL(&cursor{started: true, last: "41", lastKey: int64(41), excludeKeys: []any{"k7", []byte{0}}})
	wantQ := `SELECT "id", "a", "b", "a_bidx" FROM "main"."t" WHERE ` + want + ` AND "id" > ? AND "id" NOT IN (?, ?) ORDER BY "id" LIMIT 10`
	if q != wantQ || !reflect.DeepEqual(args, []any{int64(41), "k7", []byte{0}}) {
		t.Errorf("selectSQL:\n got %s %v\nwant %s", q, args, wantQ)
	}

	b := newBatch(p, 10)
	b.pks, b.keys = []string{"1", "x"}, []any{int64(1), "x"}
	b.vals = [][]byte{[]byte("v1:a"), []byte("v1:b"), []byte("b1:i"), nil, []byte("v1:c"), nil}
	b.nulls = []bool{false, false, false, true, false, true}
	b.blobs = []bool{false, true, false, false, false, false}
	b.resetOut()
	b.rowOut[0], b.rowOut[1], b.rowOut[2] = []byte("v2:A"), []byte("v2:B"), nil
	b.addOut(0)
	b.rowOut[0], b.rowOut[1], b.rowOut[2] = nil, []byte("v2:C"), nil
	b.addOut(1)
	u, uargs := sqliteUpdate(p, b)
	wantU := `UPDATE OR ABORT "main"."t" AS colcrypt_t SET "a" = COALESCE(colcrypt_v.column2, colcrypt_t."a"), "b" = COALESCE(colcrypt_v.column3, colcrypt_t."b"), ` +
		`"a_bidx" = CASE WHEN (colcrypt_t."a" IS NULL AND colcrypt_t."a_bidx" IS NOT NULL AND ` + sqliteIndexValue(colRef{q: `colcrypt_t."a_bidx"`}) + `) ` +
		`THEN NULL ELSE COALESCE(colcrypt_v.column4, colcrypt_t."a_bidx") END ` +
		`FROM (VALUES (?, ?, ?, ?), (?, ?, ?, ?)) AS colcrypt_v WHERE colcrypt_t."id" = colcrypt_v.column1`
	// New values keep the storage class of the value they replace: the
	// blob of row 1 is a []byte, the text of row x a string.
	wantArgs := []any{int64(1), "v2:A", []byte("v2:B"), nil, "x", nil, "v2:C", nil}
	if u != wantU || !reflect.DeepEqual(uargs, wantArgs) {
		t.Errorf("sqliteUpdate:\n got %s\n     %#v\nwant %s\n     %#v", u, uargs, wantU, wantArgs)
	}
}

func TestKeyText(t *testing.T) {
	for in, want := range map[any]string{int64(-42): "-42", 1.5: "1.5", "k'\"": "k'\"", "": ""} {
		if got, err := keyText(in); err != nil || got != want {
			t.Errorf("keyText(%v) = %q, %v", in, got, err)
		}
	}
	if got, _ := keyText([]byte{0, 0xff}); got != `\x00ff` {
		t.Errorf("keyText(bytes) = %q", got)
	}
	for _, bad := range []any{nil, true, struct{}{}} {
		if _, err := keyText(bad); err == nil {
			t.Errorf("keyText(%v): no error", bad)
		}
	}
}

// codeErr is an error with a Code method, as modernc.org/sqlite's.
type codeErr int

func (e codeErr) Error() string { return fmt.Sprint("sqlite error ", int(e)) }
func (e codeErr) Code() int     { return int(e) }

// mattnErr has the fields of github.com/mattn/go-sqlite3's Error, but not
// its package path: it is not taken for an SQLite error.
type mattnErr struct{ Code, ExtendedCode int }

func (mattnErr) Error() string { return "x" }

func TestTransientPerDialect(t *testing.T) {
	my := dialectOf(MySQL)
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, true},
		{fmt.Errorf("batch: %w", &mysql.MySQLError{Number: 1205}), true},
		{errors.Join(errors.New("x"), &mysql.MySQLError{Number: 1213}), true},
		{&mysql.MySQLError{Number: 1062}, false},
		{errors.New("Error 1213: deadlock"), false},
		{nil, false},
	} {
		if got := my.transient(tc.err); got != tc.want {
			t.Errorf("MySQL transient(%v) = %v", tc.err, got)
		}
	}
	lite := dialectOf(SQLite)
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{codeErr(5), true},        // SQLITE_BUSY
		{codeErr(5 | 2<<8), true}, // SQLITE_BUSY_SNAPSHOT
		{fmt.Errorf("x: %w", codeErr(6)), true},
		{codeErr(19), false}, // SQLITE_CONSTRAINT
		{mattnErr{Code: 5}, false},
		{errors.New("database is locked"), false},
	} {
		if got := lite.transient(tc.err); got != tc.want {
			t.Errorf("SQLite transient(%v) = %v", tc.err, got)
		}
	}
	if dialectOf(Postgres).transient(&mysql.MySQLError{Number: 1213}) || !dialectOf(Postgres).transient(sqlStateErr("40P01")) {
		t.Error("PostgreSQL transient")
	}
}

func TestNamesAndAffinity(t *testing.T) {
	for decl, want := range map[string]string{
		"TEXT": "TEXT", "varchar(255)": "TEXT", "CLOB": "TEXT", "CHARINT": "INTEGER", "": "BLOB", "blob": "BLOB",
		"INTEGER": "INTEGER", "BIGINT": "INTEGER", "REAL": "REAL", "DOUBLE": "REAL", "DATETIME": "NUMERIC", "JSON": "NUMERIC",
	} {
		if got := sqliteAffinity(decl); got != want {
			t.Errorf("sqliteAffinity(%q) = %s, want %s", decl, got, want)
		}
	}
	if !asciiFold("Email_BIDX", "email_bidx") || asciiFold("É", "é") || asciiFold("a", "ab") {
		t.Error("asciiFold")
	}
	names := []string{"Email", "email", "Phone"}
	if n, ok := findName(names, "email", asciiFold); !ok || n != "email" {
		t.Errorf("exact match: %q %v", n, ok)
	}
	if n, ok := findName(names, "PHONE", asciiFold); !ok || n != "Phone" {
		t.Errorf("folded match: %q %v", n, ok)
	}
	if _, ok := findName(names, "EMAIL", asciiFold); ok {
		t.Error("an ambiguous folded match was accepted")
	}
	if asciiNames(Table{Name: "naïve", PrimaryKey: "id"}) || !asciiNames(Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}}}) {
		t.Error("asciiNames")
	}
}

// openSQLite opens a new SQLite database file in t's temporary directory.
func openSQLite(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db")+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestSQLiteManyFailures runs the job on SQLite with more failed rows than
// a batch SELECT leaves out by key (maxExcluded): they are read again in
// later batches and passes, reported once, counted out of the rows left
// (in chunks), and the job ends.
// A pass names at most maxExcluded failed keys as parameters.
func TestCursorCapsExcludedKeys(t *testing.T) {
	if n := len(newCursor(exclusion{keys: make([]any, 620)}).excludeKeys); n != maxExcluded {
		t.Errorf("620 failed keys: the cursor names %d, want %d", n, maxExcluded)
	}
	if n := len(newCursor(exclusion{keys: make([]any, 3)}).excludeKeys); n != 3 {
		t.Errorf("3 failed keys: the cursor names %d", n)
	}
}

func TestSQLiteManyFailures(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	old := testCodec(t, 1, 2)
	codec := sameKeys(t, old, 2, 1, 2)
	if _, err := db.Exec(`CREATE TABLE "t" (id INTEGER PRIMARY KEY, c TEXT)`); err != nil {
		t.Fatal(err)
	}
	const n, bad = 900, 620
	for i := 1; i <= n; i++ {
		v := "v7:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // a key the keyring lacks
		if i > bad {
			s, _ := old.Seal(ctx, fmt.Append(nil, "secret ", i))
			v = string(s)
		}
		if _, err := db.Exec(`INSERT INTO "t" VALUES (?, ?)`, i, v); err != nil {
			t.Fatal(err)
		}
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "c"}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Rotate(ctx, Options{BatchSize: 20000}); err == nil || !strings.Contains(err.Error(), "at most 16383") {
		t.Errorf("a batch too large for SQLite: %v", err)
	}
	// Once the first pass is over, the application writes row 700 under
	// the old key: a second pass takes it, leaving out 500 failed rows by
	// key and reading the other 120 again.
	var once bool
	rewrite := func(p Progress) {
		if p.Done == n && !once {
			once = true
			s, _ := old.Seal(ctx, []byte("rewritten"))
			if _, err := db.Exec(`UPDATE "t" SET c = ? WHERE id = 700`, s); err != nil {
				t.Error(err)
			}
		}
	}
	for run := range 2 {
		res, err := j.Rotate(ctx, Options{BatchSize: 100, MaxFailures: -1, Progress: rewrite})
		want, passes := int64(n-bad+1), 2
		if run > 0 {
			want, passes = 0, 1
		}
		if !errors.Is(err, ErrFailures) || len(res.Failures) != bad || res.Rows != want || res.Passes != passes {
			t.Fatalf("Rotate %d: %d rows, %d passes, %d failures, %v", run, res.Rows, res.Passes, len(res.Failures), err)
		}
		for i, f := range res.Failures {
			if f.PK != fmt.Sprint(i+1) || !errors.Is(f.Err, encryptedtype.ErrUnknownVersion) {
				t.Fatalf("failure %d: %v", i, f)
			}
		}
	}
	c, err := j.Census(ctx)
	if err != nil || c.Pending != bad || c.Columns[0].Versions[2] != n-bad || c.Columns[0].UnknownKey != bad {
		t.Errorf("census: %+v, %v", c, err)
	}
}

// TestSQLiteOneConnection runs the job with two workers on a pool of one
// connection, as SQLite applications often configure it: a batch holds
// the connection (and the write lock) and the other worker waits for it.
func TestSQLiteOneConnection(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	db.SetMaxOpenConns(1)
	old := testCodec(t, 1, 2)
	codec := sameKeys(t, old, 2, 1, 2)
	if _, err := db.Exec(`CREATE TABLE t (k TEXT NOT NULL PRIMARY KEY, c BLOB)`); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		v, _ := old.Seal(ctx, fmt.Append(nil, "secret ", i))
		if _, err := db.Exec(`INSERT INTO t VALUES (?, ?)`, fmt.Sprintf("key %03d", i), v); err != nil {
			t.Fatal(err)
		}
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "k", Columns: []Column{{Name: "c"}}, Dialect: SQLite}, codec)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := j.Rotate(cctx, Options{BatchSize: 16, Workers: 2})
	if err != nil || res.Rows != 300 {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
	var blobs int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE typeof(c) = 'blob' AND substr(c, 1, 3) = X'76323a'`).Scan(&blobs); err != nil || blobs != 300 {
		t.Errorf("%d values are blobs under version 2, %v", blobs, err)
	}
}

// MySQL's duplicate-key error quotes the value; the job's error does not.
func TestRedactDuplicate(t *testing.T) {
	dup := fmt.Errorf("exec: %w", &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'b2:c2VjcmV0' for key 'users.email_bidx'"})
	got := redactDuplicate(dup).Error()
	if strings.Contains(got, "b2:c2VjcmV0") || !strings.Contains(got, "users.email_bidx") || !strings.Contains(got, "1062") {
		t.Errorf("redactDuplicate: %q", got)
	}
	// A foreign key cascade that would duplicate an entry quotes the record.
	for _, e := range []*mysql.MySQLError{
		{Number: 1557, Message: "Upholding foreign key constraints for table 'users', entry 'b2:c2VjcmV0', key 2 would lead to a duplicate entry"},
		{Number: 1761, Message: "Foreign key constraint for table 'users', record 'b2:c2VjcmV0' would lead to a duplicate entry in table 'audit', key 'k'"},
		{Number: 1762, Message: "Foreign key constraint for table 'users', record 'b2:c2VjcmV0' would lead to a duplicate entry in a child table"},
	} {
		if got := redactDuplicate(fmt.Errorf("exec: %w", e)).Error(); strings.Contains(got, "b2:c2VjcmV0") || !strings.Contains(got, fmt.Sprint(e.Number)) {
			t.Errorf("redactDuplicate(%d): %q", e.Number, got)
		}
	}
	other := &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}
	if redactDuplicate(other) != other {
		t.Error("redactDuplicate changed another error")
	}
}
