package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests of edge cases that a review found, on each database
// that applies: new values too long for their column, a MySQL connection
// character set narrower than utf8mb4, plaintext that starts like a value
// of the active key version, SQLite keys whose text forms collide,
// MaxFailures, and a key provider that cannot be reached.

// rotEdgeDB is one database for these tests.
type rotEdgeDB struct {
	name    string
	dialect rotation.Dialect
	db      *sql.DB
	quote   func(string) string
	// ph is the SQL of parameter n (from 1).
	ph func(n int) string
	// idColumn declares the primary key id, an integer the test gives.
	idColumn string
	// text is a text column type that holds utf8mb4 (on MySQL).
	text string
}

func rotEdgePostgres(t *testing.T) *rotEdgeDB {
	return &rotEdgeDB{name: "PostgreSQL", dialect: rotation.Postgres, db: openSQL(t, databaseURL(t)),
		quote: quoteIdentPG, ph: func(n int) string { return fmt.Sprintf("$%d", n) },
		idColumn: "id BIGINT NOT NULL PRIMARY KEY", text: "TEXT"}
}

func rotEdgeMySQL(t *testing.T) *rotEdgeDB {
	return rotEdgeMySQLWith(t, "")
}

// rotEdgeMySQLWith opens the MySQL test database with the DSN parameter
// param (such as "charset=latin1") added, when it is not empty.
func rotEdgeMySQLWith(t *testing.T, param string) *rotEdgeDB {
	t.Helper()
	return &rotEdgeDB{name: "MySQL", dialect: rotation.MySQL, db: openMySQL(t, rotEdgeMySQLDSN(t, param)),
		quote: rotMyQuote, ph: func(int) string { return "?" },
		idColumn: "id BIGINT NOT NULL PRIMARY KEY", text: "TEXT CHARACTER SET utf8mb4"}
}

// rotEdgeMySQLDSN is the MySQL test DSN with param added.
func rotEdgeMySQLDSN(t *testing.T, param string) string {
	t.Helper()
	dsn := mysqlURL(t)
	if _, err := mysql.ParseDSN(dsn); err != nil {
		t.Fatalf("%s is not a go-sql-driver/mysql DSN: %v", envMySQLDSN, err)
	}
	if param == "" {
		return dsn
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&" + param
	}
	return dsn + "?" + param
}

func rotEdgeSQLite(t *testing.T) *rotEdgeDB {
	d := rotLiteDB(t)
	return &rotEdgeDB{name: "SQLite", dialect: rotation.SQLite, db: d.db, quote: d.quote,
		ph: func(int) string { return "?" }, idColumn: "id INTEGER PRIMARY KEY", text: "TEXT"}
}

func quoteIdentPG(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// rotEdgeAll are the three databases.
var rotEdgeAll = []struct {
	name string
	open func(*testing.T) *rotEdgeDB
}{
	{"PostgreSQL", rotEdgePostgres},
	{"MySQL", rotEdgeMySQL},
	{"SQLite", rotEdgeSQLite},
}

// create creates a table of id and the given columns (with %s for the
// quoted id column's declaration), dropped when t ends, and returns its
// name and quoted name.
func (d *rotEdgeDB) create(t *testing.T, columns string) (string, string) {
	t.Helper()
	name := uniqueName(t)
	qt := d.quote(name)
	ddl := fmt.Sprintf("CREATE TABLE %s (%s, %s)", qt, d.idColumn, columns)
	if _, err := d.db.ExecContext(testContext(t), ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	db := d.db
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+qt)
	})
	return name, qt
}

// insert inserts rows of values for the named columns.
func (d *rotEdgeDB) insert(t *testing.T, qt string, cols []string, rows ...[]any) {
	t.Helper()
	for _, r := range rows {
		var ph []string
		for i := range r {
			ph = append(ph, d.ph(i+1))
		}
		q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", qt, strings.Join(cols, ", "), strings.Join(ph, ", "))
		if _, err := d.db.ExecContext(testContext(t), q, r...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// values returns column col of every row, by id; NULL is "<NULL>".
func (d *rotEdgeDB) values(t *testing.T, qt, col string) map[int64]string {
	t.Helper()
	rows, err := d.db.QueryContext(testContext(t), fmt.Sprintf("SELECT id, %s FROM %s", d.quote(col), qt))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var v sql.NullString
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		if v.Valid {
			out[id] = v.String
		} else {
			out[id] = "<NULL>"
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// rotEdgeCodecs returns codecs writing under versions 1 and 2, the second
// holding both keys.
func rotEdgeCodecs(t *testing.T) (v1, v2 *encryptedtype.Codec) {
	t.Helper()
	k1, err := keyprovider.GenerateKey(1)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := keyprovider.GenerateKey(2)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := keyprovider.NewStatic(1, k1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := keyprovider.NewStatic(2, k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	return encryptedtype.NewCodec(s1), encryptedtype.NewCodec(s2)
}

func rotEdgeSeal(t *testing.T, c *encryptedtype.Codec, pt string) string {
	t.Helper()
	v, err := c.Seal(context.Background(), []byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// rotEdgeFailures returns the failures by primary key and column.
func rotEdgeFailures(fs []rotation.Failure) map[string]rotation.Failure {
	out := map[string]rotation.Failure{}
	for _, f := range fs {
		out[f.PK+"/"+f.Column] = f
	}
	return out
}

// TestRotationValueTooLong: a new value (ciphertext or blind-index
// value) longer than its column's declared length is a failure of its
// row, and nothing of the row is written; the rest of the table is
// rotated. On MySQL with a non-strict sql_mode the value would otherwise
// be cut short (and the plaintext lost); with a strict one, and on
// PostgreSQL, the whole job would fail. SQLite declares no lengths.
func TestRotationValueTooLong(t *testing.T) {
	type setup struct {
		name    string
		open    func(*testing.T) *rotEdgeDB
		limited bool // the database enforces the declared lengths
	}
	for _, s := range []setup{
		{"PostgreSQL", rotEdgePostgres, true},
		{"MySQL-strict", rotEdgeMySQL, true},
		{"MySQL-nonstrict", func(t *testing.T) *rotEdgeDB { return rotEdgeMySQLWith(t, "sql_mode=%27%27") }, true},
		{"SQLite", rotEdgeSQLite, false},
	} {
		t.Run(s.name, func(t *testing.T) {
			ctx := testContext(t)
			d := s.open(t)
			if s.name == "MySQL-nonstrict" {
				var mode string
				if err := d.db.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil {
					t.Fatal(err)
				}
				if mode != "" {
					t.Fatalf("sql_mode is %q, want ''", mode)
				}
			}
			_, c2 := rotEdgeCodecs(t)
			ikeys := newRotIndexKeys(t, 1)
			ix, err := blindindex.New("edges.t", ikeys, blindindex.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := ix.Compute("x"); len(v) <= 8 {
				t.Fatalf("index values are %d bytes, the test needs more than 8", len(v))
			}
			name, qt := d.create(t, "s VARCHAR(64), u VARCHAR(255), u_bidx VARCHAR(8)")
			long := strings.Repeat("a", 60) // fits; its ciphertext does not
			cols := []string{"id", "s", "u"}
			d.insert(t, qt, cols,
				[]any{1, long, nil},
				[]any{2, "short", nil},
				[]any{3, nil, "x"}, // fits, and so does its ciphertext, but not its index value
				[]any{4, "also short", nil},
			)
			beforeS, beforeU := d.values(t, qt, "s"), d.values(t, qt, "u")
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{
				{Name: "s"},
				{Name: "u", Indexes: []rotation.Index{{Column: "u_bidx", Indexer: ix}}},
			}}, c2)
			if err != nil {
				t.Fatal(err)
			}
			var reported atomic.Int64
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 2, EncryptPlaintext: []string{"s", "u"},
				OnFailure: func(rotation.Failure) { reported.Add(1) }})
			afterS, afterU := d.values(t, qt, "s"), d.values(t, qt, "u")

			if !s.limited {
				if err != nil || len(res.Failures) != 0 || res.Rows != 4 {
					t.Fatalf("SQLite: Rotate: %v, %+v", err, res)
				}
				return
			}
			if !errors.Is(err, rotation.ErrFailures) {
				t.Fatalf("Rotate: got %v, want ErrFailures", err)
			}
			fs := rotEdgeFailures(res.Failures)
			if len(res.Failures) != 2 || reported.Load() != 2 {
				t.Fatalf("failures %v (%d reported), want rows 1 (s) and 3 (u_bidx)", res.Failures, reported.Load())
			}
			for _, key := range []string{"1/s", "3/u_bidx"} {
				f, ok := fs[key]
				if !ok {
					t.Errorf("no failure %s in %v", key, res.Failures)
					continue
				}
				if !errors.Is(f.Err, rotation.ErrValueTooLong) {
					t.Errorf("failure %s: %v, want ErrValueTooLong", key, f.Err)
				}
				msg := f.String()
				if strings.Contains(msg, long) || strings.Contains(msg, "v2:") || !strings.Contains(msg, "at most") {
					t.Errorf("failure %s: %q should give the lengths, never a value", key, msg)
				}
			}
			// Rows 1 and 3 are untouched, 2 and 4 encrypted.
			if afterS[1] != beforeS[1] || afterU[3] != beforeU[3] || afterS[3] != "<NULL>" {
				t.Errorf("failed rows were written: s[1] %d bytes (was %d), u[3] %q", len(afterS[1]), len(beforeS[1]), afterU[3])
			}
			for id, want := range map[int64]string{2: "short", 4: "also short"} {
				pt, err := c2.Open(ctx, []byte(afterS[id]))
				if err != nil || string(pt) != want {
					t.Errorf("row %d: %q, %v", id, pt, err)
				}
			}
			if res.Rows != 2 || res.Plaintext != 2 {
				t.Errorf("result %+v", res)
			}
			c, err := job.Census(ctx)
			if err != nil || c.Done() {
				t.Errorf("census after: done=%v, %v", c != nil && c.Done(), err)
			}
		})
	}
}

// TestRotationMySQLCharset: a connection whose character sets are
// narrower than utf8mb4 would read characters it cannot hold as '?', and
// encrypt that. Rotate refuses it for EncryptPlaintext and for a
// character-string key, and the value is left as it was; through utf8mb4
// it is encrypted exactly.
func TestRotationMySQLCharset(t *testing.T) {
	ctx := testContext(t)
	admin := rotEdgeMySQL(t)
	_, c2 := rotEdgeCodecs(t)
	const text = "Zoë 😀 Ωμέγα"
	name, qt := admin.create(t, "s TEXT CHARACTER SET utf8mb4")
	admin.insert(t, qt, []string{"id", "s"}, []any{1, text})
	strName, strQT := admin.create(t, "k VARCHAR(40) CHARACTER SET utf8mb4 NOT NULL UNIQUE, s TEXT CHARACTER SET utf8mb4")
	admin.insert(t, strQT, []string{"id", "k", "s"}, []any{1, "clé 😀", rotEdgeSeal(t, c2, "x")})
	plain := rotation.Table{Name: name, PrimaryKey: "id", Dialect: rotation.MySQL, Columns: []rotation.Column{{Name: "s"}}}
	strKey := rotation.Table{Name: strName, PrimaryKey: "k", Dialect: rotation.MySQL, Columns: []rotation.Column{{Name: "s"}}}

	for _, cs := range []string{"latin1", "utf8"} {
		t.Run(cs, func(t *testing.T) {
			d := rotEdgeMySQLWith(t, "charset="+cs)
			job, err := rotation.New(d.db, plain, c2)
			if err != nil {
				t.Fatal(err)
			}
			_, err = job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"s"}})
			if !errors.Is(err, rotation.ErrInvalidTable) || !strings.Contains(err.Error(), "charset=utf8mb4") {
				t.Errorf("Rotate with EncryptPlaintext: got %v, want ErrInvalidTable asking for charset=utf8mb4", err)
			}
			if _, err := job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"s"}, DryRun: true}); !errors.Is(err, rotation.ErrInvalidTable) {
				t.Errorf("dry run: got %v, want ErrInvalidTable", err)
			}
			if got := admin.values(t, qt, "s")[1]; got != text {
				t.Errorf("the value was changed to %q", got)
			}
			// Ciphertext alone is ASCII: rotating it needs no utf8mb4.
			if _, err := job.Census(ctx); err != nil {
				t.Errorf("Census of an integer-keyed table: %v", err)
			}
			// A character-string key is refused, even without
			// EncryptPlaintext.
			kjob, err := rotation.New(d.db, strKey, c2)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kjob.Rotate(ctx, rotation.Options{}); !errors.Is(err, rotation.ErrInvalidTable) || !strings.Contains(err.Error(), "charset=utf8mb4") {
				t.Errorf("Rotate with a string key: got %v, want ErrInvalidTable", err)
			}
		})
	}

	// Through utf8mb4 (the driver's default) the plaintext is encrypted
	// exactly.
	job, err := rotation.New(admin.db, plain, c2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	pt, err := c2.Open(ctx, []byte(admin.values(t, qt, "s")[1]))
	if err != nil || string(pt) != text {
		t.Errorf("decrypted %q, %v; want %q", pt, err, text)
	}
	kjob, err := rotation.New(admin.db, strKey, c2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kjob.Census(ctx); err != nil {
		t.Errorf("Census of a string-keyed table through utf8mb4: %v", err)
	}
}

// TestRotationActivePrefixPlaintext: in a column being converted, a
// plaintext that starts like a value of the active version ("v2:…" with
// version 2 active) does not decrypt, and is reported as a failure rather
// than taken to be done; it is left as it is.
func TestRotationActivePrefixPlaintext(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			c1, c2 := rotEdgeCodecs(t)
			name, qt := d.create(t, "s "+d.text+", p "+d.text)
			forged := "v2:" + strings.Repeat("A", 60) // well-formed, fails authentication
			d.insert(t, qt, []string{"id", "s", "p"},
				[]any{1, "v2:plain text", "x"}, // the p value is rewritten by the passes: the row is written, s is not
				[]any{2, "hello", nil},
				[]any{3, rotEdgeSeal(t, c2, "current"), nil},
				[]any{4, "v1:plain", nil},
				[]any{5, forged, nil},
				[]any{6, rotEdgeSeal(t, c1, "old"), nil},
			)
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect,
				Columns: []rotation.Column{{Name: "s"}, {Name: "p"}}}, c2)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, res *rotation.Result, err error) {
				t.Helper()
				if !errors.Is(err, rotation.ErrFailures) {
					t.Fatalf("%s: got %v, want ErrFailures", what, err)
				}
				fs := rotEdgeFailures(res.Failures)
				if len(fs) != 3 {
					t.Errorf("%s: failures %v, want rows 1, 4 and 5", what, res.Failures)
				}
				for key, want := range map[string]error{"1/s": encryptedtype.ErrMalformed, "4/s": encryptedtype.ErrMalformed, "5/s": encryptedtype.ErrAuth} {
					if f, ok := fs[key]; !ok || !errors.Is(f.Err, want) {
						t.Errorf("%s: failure %s: %v, want %v", what, key, f.Err, want)
					} else if strings.Contains(f.String(), "v2:plain text") || strings.Contains(f.String(), "v1:plain") || strings.Contains(f.String(), forged) {
						t.Errorf("%s: failure %q holds the value", what, f)
					}
				}
			}
			var onFailure []string
			res, err := job.Rotate(ctx, rotation.Options{DryRun: true, EncryptPlaintext: []string{"s", "p"},
				OnFailure: func(f rotation.Failure) { onFailure = append(onFailure, f.PK) }})
			check("dry run", res, err)
			if len(onFailure) != 3 {
				t.Errorf("OnFailure called for %v", onFailure)
			}
			res, err = job.Rotate(ctx, rotation.Options{BatchSize: 2, EncryptPlaintext: []string{"s", "p"}})
			check("Rotate", res, err)
			s := d.values(t, qt, "s")
			if s[1] != "v2:plain text" || s[4] != "v1:plain" || s[5] != forged {
				t.Errorf("failed values were changed: %v", s)
			}
			for id, want := range map[int64]string{2: "hello", 3: "current", 6: "old"} {
				if pt, err := c2.Open(ctx, []byte(s[id])); err != nil || string(pt) != want {
					t.Errorf("row %d: %q, %v", id, pt, err)
				}
			}
			if pt, err := c2.Open(ctx, []byte(d.values(t, qt, "p")[1])); err != nil || string(pt) != "x" {
				t.Errorf("row 1, p: %q, %v", pt, err)
			}
			// Again: still failures, not done.
			res, err = job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"s", "p"}})
			check("Rotate again", res, err)
			if res.Rows != 0 {
				t.Errorf("second Rotate wrote %d rows", res.Rows)
			}
			// Verify finds row 1 too.
			if _, err := job.Verify(ctx, rotation.VerifyOptions{}); !errors.Is(err, rotation.ErrFailures) {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// TestRotationSQLiteCollidingKeys: in a SQLite key column without a
// type, the integer 1 and the text '1' are two rows with the same text
// form. Both fail, both are reported, and Rotate ends (it used to make
// passes until its context ended).
func TestRotationSQLiteCollidingKeys(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 30*time.Second)
	defer cancel()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "keys.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	c1, c2 := rotEdgeCodecs(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE m (id NOT NULL PRIMARY KEY, s TEXT)`); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][]any{
		{int64(1), "v1:AAAA"}, {"1", "v1:BBBB"}, {[]byte("1"), "v1:CCCC"},
		{int64(2), rotEdgeSeal(t, c1, "two")}, {"2", rotEdgeSeal(t, c1, "deux")},
		{int64(3), "v2:not a ciphertext"}, {"3", "v2:nor this one"},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO m VALUES (?, ?)`, r...); err != nil {
			t.Fatal(err)
		}
	}
	job, err := rotation.New(db, rotation.Table{Name: "m", PrimaryKey: "id", Columns: []rotation.Column{{Name: "s"}}}, c2)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []rotation.Options{{}, {BatchSize: 1}, {EncryptPlaintext: []string{"s"}}} {
		res, err := job.Rotate(ctx, opts)
		if ctx.Err() != nil {
			t.Fatalf("Rotate(%+v) did not end: %v after %d passes", opts, err, res.Passes)
		}
		if !errors.Is(err, rotation.ErrFailures) {
			t.Fatalf("Rotate(%+v): got %v, want ErrFailures", opts, err)
		}
		want := 3
		if opts.EncryptPlaintext != nil {
			want = 5 // and the two v2-looking plaintexts
		}
		if len(res.Failures) != want || res.Passes > 2 {
			t.Errorf("Rotate(%+v): %d passes, failures %v, want %d", opts, res.Passes, res.Failures, want)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT typeof(id), id, s FROM m WHERE id IN (2, '2')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var typ, id, s string
		if err := rows.Scan(&typ, &id, &s); err != nil {
			t.Fatal(err)
		}
		n++
		if v, err := encryptedtype.Version([]byte(s)); err != nil || v != 2 {
			t.Errorf("row %s %s: not rotated (%v)", typ, id, err)
		}
	}
	if err := rows.Err(); err != nil || n != 2 {
		t.Errorf("%d rows 2, %v", n, err)
	}
}

// TestRotationMaxFailures: MaxFailures N stops Rotate once N rows
// have failed, with exactly N listed; the rows of the batch that did not
// fail are written.
func TestRotationMaxFailures(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			c1, c2 := rotEdgeCodecs(t)
			name, qt := d.create(t, "s "+d.text)
			for id := int64(1); id <= 10; id++ {
				v := rotEdgeSeal(t, c1, fmt.Sprint(id))
				if id%2 == 0 {
					v = "v1:AAAA" // malformed
				}
				d.insert(t, qt, []string{"id", "s"}, []any{id, v})
			}
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect,
				Columns: []rotation.Column{{Name: "s"}}}, c2)
			if err != nil {
				t.Fatal(err)
			}
			for _, max := range []int{1, 2, 5} {
				var called int
				res, err := job.Rotate(ctx, rotation.Options{MaxFailures: max, OnFailure: func(rotation.Failure) { called++ }})
				if !errors.Is(err, rotation.ErrTooManyFailures) {
					t.Errorf("MaxFailures %d: got %v, want ErrTooManyFailures", max, err)
				}
				if len(res.Failures) != max || called != max {
					t.Errorf("MaxFailures %d: %d failures listed, %d reported", max, len(res.Failures), called)
				}
			}
			// The rows that did not fail were written by the first batch.
			for id, v := range d.values(t, qt, "s") {
				if id%2 == 1 {
					if pt, err := c2.Open(ctx, []byte(v)); err != nil || string(pt) != fmt.Sprint(id) {
						t.Errorf("row %d: %q, %v", id, pt, err)
					}
				}
			}
			res, err := job.Rotate(ctx, rotation.Options{MaxFailures: 6})
			if !errors.Is(err, rotation.ErrFailures) || errors.Is(err, rotation.ErrTooManyFailures) || len(res.Failures) != 5 {
				t.Errorf("MaxFailures 6 with 5 failing: %v, %d failures", err, len(res.Failures))
			}
		})
	}
}

// rotEdgeOutage is a reloading key provider whose reload fails while down
// is set, as one reading its keys from a database or a KMS that cannot be
// reached: until then it holds only the active version 2.
type rotEdgeOutage struct {
	active, old keyprovider.Key
	down        atomic.Bool
	loaded      atomic.Bool
}

var errRotRevOutage = errors.New("key store unreachable: connection refused")

func (p *rotEdgeOutage) Active() (keyprovider.Key, error) { return p.active, nil }

func (p *rotEdgeOutage) Key(v uint32) (keyprovider.Key, error) {
	switch {
	case v == p.active.Version():
		return p.active, nil
	case v == p.old.Version() && p.loaded.Load():
		return p.old, nil
	}
	return keyprovider.Key{}, fmt.Errorf("%w: %d", keyprovider.ErrUnknownVersion, v)
}

func (p *rotEdgeOutage) Reload(context.Context) error {
	if p.down.Load() {
		return errRotRevOutage
	}
	p.loaded.Store(true)
	return nil
}

// TestRotationProviderOutage: an error of the key provider that is
// not about the value (here a reload that fails, which
// *encryptedtype.Codec returns wrapped with ErrUnknownVersion) stops
// Rotate with that error, writing nothing and marking no row failed; once
// the provider is back, Rotate finishes the job.
func TestRotationProviderOutage(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			c1, _ := rotEdgeCodecs(t)
			old, err := c1.Provider().Active()
			if err != nil {
				t.Fatal(err)
			}
			k2, err := keyprovider.GenerateKey(2)
			if err != nil {
				t.Fatal(err)
			}
			prov := &rotEdgeOutage{active: k2, old: old}
			prov.down.Store(true)
			codec := encryptedtype.NewCodec(prov)
			name, qt := d.create(t, "s "+d.text)
			for id := int64(1); id <= 5; id++ {
				d.insert(t, qt, []string{"id", "s"}, []any{id, rotEdgeSeal(t, c1, fmt.Sprint(id))})
			}
			before := d.values(t, qt, "s")
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect,
				Columns: []rotation.Column{{Name: "s"}}}, codec)
			if err != nil {
				t.Fatal(err)
			}
			var reported int
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 2, OnFailure: func(rotation.Failure) { reported++ }})
			if !errors.Is(err, errRotRevOutage) || errors.Is(err, rotation.ErrFailures) || errors.Is(err, rotation.ErrTooManyFailures) {
				t.Errorf("Rotate during the outage: got %v, want the provider's error", err)
			}
			if len(res.Failures) != 0 || reported != 0 || res.Rows != 0 {
				t.Errorf("Rotate during the outage: %d failures (%d reported), %d rows written", len(res.Failures), reported, res.Rows)
			}
			if after := d.values(t, qt, "s"); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("values changed during the outage")
			}

			prov.down.Store(false)
			res, err = job.Rotate(ctx, rotation.Options{BatchSize: 2})
			if err != nil || res.Rows != 5 {
				t.Fatalf("Rotate after the outage: %v, %+v", err, res)
			}
			for id, v := range d.values(t, qt, "s") {
				if pt, err := codec.Open(ctx, []byte(v)); err != nil || string(pt) != fmt.Sprint(id) || !strings.HasPrefix(v, "v2:") {
					t.Errorf("row %d: %q, %v", id, pt, err)
				}
			}
		})
	}
}
