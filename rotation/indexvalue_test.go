package rotation

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
)

// indexValueCorpus returns values that are, or nearly are, blind-index
// values: the edges of what blindindex.Version accepts (versions, payload
// lengths, trailing bits, characters), and n random ones, some built
// valid and then changed.
func indexValueCorpus(n int) []string {
	long := strings.Repeat("A", 40)
	out := []string{
		"", " ", "b", "b1", "b1:", "b1:A", "b1:AA", "b1:AB", "b1:AQ", "b1:Ag", "b1:Aw", "b1:Ah",
		"b1:AAA", "b1:AAB", "b1:AAE", "b1:AA8", "b1:AA9", "b1:AAAA", "b1:AAAAA", "b1:AAAAAA", "b1:AAAAAB",
		"B1:AAAA", "c1:AAAA", "a1:AAAA", "a7:_-_-", "b0:AAAA", "b01:AAAA", "b-1:AAAA", "b1::AAAA", "b1:AA:A",
		"b4294967295:AAAA", "b4294967296:AAAA", "b4299999999:AAAA", "b9999999999:AAAA", "b1000000000:AAAA",
		"b12345678901:AAAA", "b999999999:AAAA", "b1:AAAA\n", "b1:AA\nAA", "b1:AAAA\r", "b1:AAAA ", " b1:AAAA",
		"b1:AA+A", "b1:AA/A", "b1:AA=A", "b1:AA==", "b1:AAA=", "b1:AAAAé", "b1:AAAA\x00", "b1:\x00AAA",
		"ｂ1:AAAA", "b１:AAAA", "b1：AAAA", "b1:ＡＡＡＡ", "b1:aaaa", "b1:zzzz", "b1:" + long + "AAA",
		"b1:" + long + "AAAA", "b1:" + long + "AA", "b1:" + long + "A", "b1:" + long + "AAE", "b1:" + long + "AAB",
		"b4294967295:" + long + "AAA", "v1:AAAA", "x1:AAAA", "bb1:AAAA", "b1:AAAA:", "b2:QUFB", "b2:9",
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "B", "c", "0", "1", "2", "4", "9", ":", "A", "Q", "g", "w", "E", "z", "_", "-",
		"+", "/", "=", "\n", " ", "é", "\x00", "8", "5"}
	for range n {
		var s string
		switch r.IntN(3) {
		case 0: // random characters
			var b strings.Builder
			for range r.IntN(16) {
				b.WriteString(alphabet[r.IntN(len(alphabet))])
			}
			s = b.String()
		default: // a valid value, maybe changed
			mac := make([]byte, 1+r.IntN(32))
			for i := range mac {
				mac[i] = byte(r.UintN(256))
			}
			version := []uint32{1, 2, 9, 10, 4294967295, 4294967294, 1000000000, 429496729}[r.IntN(8)]
			s = fmt.Sprintf("%c%d:%s", "ab"[r.IntN(2)], version, base64.RawURLEncoding.EncodeToString(mac))
			if r.IntN(2) == 0 {
				i := r.IntN(len(s))
				switch r.IntN(3) {
				case 0:
					s = s[:i] + alphabet[r.IntN(len(alphabet))] + s[i+1:]
				case 1:
					s = s[:i] + s[i+1:]
				default:
					s = s[:i] + alphabet[r.IntN(len(alphabet))] + s[i:]
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// TestIndexValuePattern: the regular expression that PostgreSQL and MySQL
// match accepts exactly the values that blindindex.Version parses.
func TestIndexValuePattern(t *testing.T) {
	re := regexp.MustCompile(indexValuePattern)
	valid := 0
	for _, v := range indexValueCorpus(20000) {
		_, err := blindindex.Version(v)
		if got := re.MatchString(v); got != (err == nil) {
			t.Errorf("%q: the pattern says %v, blindindex.Version %v", v, got, err)
		}
		if err == nil {
			valid++
			if !isIndexValue([]byte(v)) {
				t.Errorf("%q: isIndexValue says no", v)
			}
		}
	}
	if valid < 1000 {
		t.Fatalf("only %d valid values in the corpus", valid)
	}
	if strings.Contains(indexValuePattern, "?") || strings.Contains(indexValuePattern, "'") || strings.Contains(indexValuePattern, `\`) {
		t.Error("the pattern holds a '?', a quote or a backslash")
	}
}

// TestSQLiteIndexValue: SQLite's condition accepts exactly the values that
// blindindex.Version parses, stored as TEXT or as BLOB.
func TestSQLiteIndexValue(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	if _, err := db.Exec(`CREATE TABLE v (id INTEGER PRIMARY KEY, x)`); err != nil {
		t.Fatal(err)
	}
	corpus := indexValueCorpus(5000)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range corpus {
		if _, err := tx.Exec(`INSERT INTO v VALUES (?, ?), (?, ?)`, 2*i, v, 2*i+1, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT id, typeof(x), ` + sqliteIndexValue(colRef{q: "x"}) + ` FROM v ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var typ string
		var match bool
		if err := rows.Scan(&id, &typ, &match); err != nil {
			t.Fatal(err)
		}
		v := corpus[id/2]
		if want := isIndexValue([]byte(v)); match != want {
			t.Errorf("%q as %s: SQLite says %v, isIndexValue %v", v, typ, match, want)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 2*len(corpus) {
		t.Fatalf("%d rows, %v", n, err)
	}
}

// TestSQLiteUTF16KeepsOrphans: in an SQLite database whose text encoding
// is UTF-16, which the SQL test of an index value does not read, index
// values beside a NULL source are left alone, and counted as no work.
func TestSQLiteUTF16KeepsOrphans(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "u.db")+`?_pragma=encoding("UTF-16le")`)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT)`); err != nil {
		t.Fatal(err)
	}
	var enc string
	if err := db.QueryRow(`PRAGMA encoding`).Scan(&enc); err != nil || !strings.HasPrefix(enc, "UTF-16") {
		t.Skipf("the driver did not make a UTF-16 database: %q, %v", enc, err)
	}
	if _, err := db.Exec(`INSERT INTO t VALUES (1, NULL, 'b1:AAAA')`); err != nil {
		t.Fatal(err)
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Dialect: SQLite, Columns: []Column{
		{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 2}}}}}}, testCodec(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	c, err := j.Census(ctx)
	if err != nil || !c.Done() || c.Indexes[0].Orphaned != 1 || c.Indexes[0].Pending != 0 {
		t.Fatalf("census: %+v, %v", c, err)
	}
	res, err := j.Rotate(ctx, Options{})
	if err != nil || res.Rows != 0 {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
}

// TestCheckErrors: each dialect recognises its database's CHECK
// violation, in a chain of wrapped errors, and the constraint's name, and
// nothing else.
func TestCheckErrors(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("exec: %w", errors.Join(errors.New("other"), err)) }
	for i, c := range []struct {
		d     sqlDialect
		err   error
		check bool
		name  string
	}{
		{postgresDialect{}, wrap(&PgError{Code: "23514", Message: `new row for relation "t" violates check constraint "t_bidx_set"`, Detail: "Failing row contains (1, null, b1:x).", ConstraintName: "t_bidx_set"}), true, "t_bidx_set"},
		{postgresDialect{}, &pqError{Code: "23514", Constraint: "c"}, true, "c"},
		{postgresDialect{}, &PgError{Code: "23514"}, true, ""},
		{postgresDialect{}, &PgError{Code: "23505", ConstraintName: "t_uq"}, false, ""},
		{postgresDialect{}, &PgError{Code: "23502"}, false, ""},
		{mysqlDialect{}, wrap(&mysql.MySQLError{Number: 3819, Message: "Check constraint 't_chk_1' is violated."}), true, "t_chk_1"},
		{mysqlDialect{}, &mysql.MySQLError{Number: 4025, Message: "CONSTRAINT `bidx``set` failed for `test`.`t`"}, true, "bidx`set"},
		{mysqlDialect{}, &mysql.MySQLError{Number: 4025, Message: "something else"}, true, ""},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'b2:x' for key 't_uq'"}, false, ""},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1048, Message: "Column 'a_bidx' cannot be null"}, false, ""},
		{sqliteDialect{}, wrap(&liteError{275, "constraint failed: CHECK constraint failed: bidx_set (275)"}), true, "bidx_set"},
		{sqliteDialect{}, &liteError{275, "CHECK constraint failed: a_bidx IS NOT NULL"}, true, "a_bidx IS NOT NULL"},
		{sqliteDialect{}, &liteError{19, "CHECK constraint failed: c"}, true, "c"},
		{sqliteDialect{}, &liteError{19, "NOT NULL constraint failed: t.a_bidx"}, false, ""},
		{sqliteDialect{}, &liteError{2067, "UNIQUE constraint failed: t.a_bidx"}, false, ""},
	} {
		name, ok := c.d.check(c.err)
		if ok != c.check || name != c.name {
			t.Errorf("%d: %T.check(%v) = %q, %v; want %q, %v", i, c.d, c.err, name, ok, c.name, c.check)
		}
		if _, dup := c.d.duplicate(sqlitePlan(), c.err); ok && dup {
			t.Errorf("%d: a CHECK violation taken for a duplicate", i)
		}
	}
}

// TestStallGuard: the guard stops only after passes that take the same
// rows, at least one, without a failure, three in a row; passes that take
// nothing (rows locked by the application) or other rows, or that find a
// failure, start the count again.
func TestStallGuard(t *testing.T) {
	print := func(pks ...string) passPrint {
		var pp passPrint
		for _, pk := range pks {
			pp.add(pk)
		}
		return pp
	}
	if print("1", "2") != print("2", "1") || print("1", "2") == print("1", "3") || print("12") == print("1", "2") {
		t.Fatal("passPrint does not identify a set of rows")
	}
	var merged passPrint
	merged.merge(print("2"))
	merged.merge(print("1"))
	if merged != print("1", "2") {
		t.Fatal("merge")
	}
	type pass struct {
		taken passPrint
		fails int
		want  bool
	}
	for name, passes := range map[string][]pass{
		"same rows":        {{print("7"), 0, false}, {print("7"), 0, false}, {print("7"), 0, true}},
		"nothing taken":    {{print(), 0, false}, {print(), 0, false}, {print(), 0, false}, {print(), 0, false}},
		"a failure":        {{print("7"), 0, false}, {print("7"), 1, false}, {print("7"), 0, false}, {print("7"), 0, true}},
		"other rows":       {{print("7"), 0, false}, {print("7", "8"), 0, false}, {print("7"), 0, false}, {print("7"), 0, false}, {print("7"), 0, true}},
		"a pass between":   {{print("7"), 0, false}, {print("7"), 0, false}, {print(), 0, false}, {print("7"), 0, false}, {print("7"), 0, false}},
		"stuck among many": {{print("1", "2", "7"), 0, false}, {print("7"), 0, false}, {print("7"), 0, false}, {print("7"), 0, true}},
	} {
		var g stallGuard
		now := time.Now()
		for i, p := range passes {
			// Each pass an hour after the last: patience is never short.
			now = now.Add(time.Hour)
			if got := g.stalled(p.taken, p.fails, now); got != p.want {
				t.Errorf("%s: pass %d: stalled %v, want %v", name, i+1, got, p.want)
			}
		}
	}
	// The same rows, pass after pass, within stallPatience: not yet.
	var g stallGuard
	now := time.Now()
	for i := range 10 {
		if g.stalled(print("7"), 0, now.Add(time.Duration(i)*stallPatience/10)) {
			t.Fatalf("pass %d, %v after the first: stalled before stallPatience (%v)", i+1, time.Duration(i)*stallPatience/10, stallPatience)
		}
	}
	if !g.stalled(print("7"), 0, now.Add(stallPatience)) {
		t.Error("not stalled once stallPatience has passed")
	}
}

// staleSealer is a Cipher that says it writes under version 2 (its Seal
// of an empty plaintext, from which Rotate takes the active version) but
// writes every other value under version 1: a row it rewrites still
// needs work, pass after pass.
type staleSealer struct {
	v1, v2 *encryptedtype.Codec
}

func (s staleSealer) Seal(ctx context.Context, pt []byte) ([]byte, error) {
	if len(pt) == 0 {
		return s.v2.Seal(ctx, pt)
	}
	return s.v1.Seal(ctx, pt)
}

func (s staleSealer) Open(ctx context.Context, v []byte) ([]byte, error) { return s.v2.Open(ctx, v) }

// staleTable returns an SQLite database holding table t of five rows
// under version 1 of v1, and v2, a codec of the same keys with version 2
// active.
func staleTable(t *testing.T) (*sql.DB, *encryptedtype.Codec, *encryptedtype.Codec) {
	t.Helper()
	db := openSQLite(t)
	v1 := testCodec(t, 1, 2)
	v2 := sameKeys(t, v1, 2, 1, 2)
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		v, err := v1.Seal(context.Background(), []byte(fmt.Sprint("secret ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO t VALUES (?, ?)`, i, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	return db, v1, v2
}

// TestRotateStopsWhenStalled: when what Rotate writes does not make a row
// current, it stops with ErrIncomplete, naming the table and the count
// (never a value), after the rest of the table is done, instead of
// looping until ctx ends.
func TestRotateStopsWhenStalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, v1, v2 := staleTable(t)
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Dialect: SQLite, Columns: []Column{{Name: "a"}}}, staleSealer{v1, v2})
	if err != nil {
		t.Fatal(err)
	}
	defer func(p time.Duration) { stallPatience = p }(stallPatience)
	stallPatience = time.Second
	start := time.Now()
	res, err := j.Rotate(ctx, Options{BatchSize: 2})
	took := time.Since(start)
	if !errors.Is(err, ErrIncomplete) || ctx.Err() != nil {
		t.Fatalf("Rotate: %v after %v; want ErrIncomplete", err, took)
	}
	if !strings.Contains(err.Error(), `"t"`) || !strings.Contains(err.Error(), "5 rows") || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q: want the table and the count", err)
	}
	if res.Passes < 3 || len(res.Failures) != 0 || took < stallPatience {
		t.Errorf("Rotate: %d passes in %v, failures %v; want at least 3 passes over stallPatience (%v), no failure", res.Passes, took, res.Failures, stallPatience)
	}
}

// staleForSealer is staleSealer until a moment, then writes under version
// 2 as it says: a writer that puts rows back for a while (an instance
// whose key provider has not reloaded yet), then stops.
type staleForSealer struct {
	staleSealer
	until time.Time
}

func (s staleForSealer) Seal(ctx context.Context, pt []byte) ([]byte, error) {
	if time.Now().Before(s.until) {
		return s.staleSealer.Seal(ctx, pt)
	}
	return s.v2.Seal(ctx, pt)
}

// TestRotateWaitsOutBriefStall: rows put back pass after pass for less
// than stallPatience are no stall: Rotate keeps passing (backing off) and
// finishes once they stay written.
func TestRotateWaitsOutBriefStall(t *testing.T) {
	const brief = 2500 * time.Millisecond
	if brief >= stallPatience {
		t.Fatalf("stallPatience is %v: the test's %v is not brief", stallPatience, brief)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, v1, v2 := staleTable(t)
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Dialect: SQLite, Columns: []Column{{Name: "a"}}},
		staleForSealer{staleSealer{v1, v2}, time.Now().Add(brief)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Rotate(ctx, Options{BatchSize: 2})
	if err != nil || res.Passes < 4 || len(res.Failures) != 0 {
		t.Fatalf("Rotate: %d passes, failures %v, %v; want it to finish after several passes", res.Passes, res.Failures, err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE a LIKE 'v2:%'`).Scan(&n); err != nil || n != 5 {
		t.Errorf("%d rows under version 2, %v; want 5", n, err)
	}
}
