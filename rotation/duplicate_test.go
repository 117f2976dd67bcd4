package rotation

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// PgError has the method and field of pgx's *pgconn.PgError that the
// PostgreSQL dialect reads; pqError those of lib/pq's *pq.Error.
type PgError struct {
	Code, Message, Detail, ConstraintName string
}

func (e *PgError) Error() string    { return e.Message + " (SQLSTATE " + e.Code + ")" }
func (e *PgError) SQLState() string { return e.Code }

type pqError struct {
	Code, Message, Detail, Constraint string
}

func (e *pqError) Error() string    { return "pq: " + e.Message }
func (e *pqError) SQLState() string { return e.Code }

// liteError is an SQLite driver's error: its code and message.
type liteError struct {
	code int
	msg  string
}

func (e *liteError) Error() string { return e.msg }
func (e *liteError) Code() int     { return e.code }

// TestDuplicateErrors: each dialect recognises its database's unique
// violation, in a chain of wrapped errors, and what it names (the index,
// or the columns), and nothing else.
func TestDuplicateErrors(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("exec: %w", errors.Join(errors.New("other"), err)) }
	type tc struct {
		d       sqlDialect
		err     error
		dup     bool
		index   string
		columns []string
	}
	lite := sqlitePlan()
	lite.tableName = "t"
	for i, c := range []tc{
		{postgresDialect{}, wrap(&PgError{Code: "23505", Message: `duplicate key value violates unique constraint "t_uq"`, Detail: "Key (a_bidx)=(b2:x) already exists.", ConstraintName: "t_uq"}), true, "t_uq", nil},
		{postgresDialect{}, &pqError{Code: "23505", Constraint: "t_key"}, true, "t_key", nil},
		{postgresDialect{}, &PgError{Code: "23505"}, true, "", nil},
		{postgresDialect{}, &PgError{Code: "23503", ConstraintName: "fk"}, false, "", nil}, // foreign key
		{postgresDialect{}, &PgError{Code: "40P01"}, false, "", nil},
		{postgresDialect{}, errors.New("duplicate key value violates unique constraint"), false, "", nil},
		{mysqlDialect{}, wrap(&mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'b2:x' for key 't.t_uq'"}), true, "t.t_uq", nil},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'b2:x' for key 't_uq'"}, true, "t_uq", nil},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1586, Message: "Duplicate entry 'b2:x' for key 't_uq'"}, true, "t_uq", nil},
		{mysqlDialect{}, &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, false, "", nil},
		{sqliteDialect{}, wrap(&liteError{2067, "constraint failed: UNIQUE constraint failed: t.a_bidx (2067)"}), true, "", []string{"a_bidx"}},
		{sqliteDialect{}, &liteError{2067, "UNIQUE constraint failed: t.a_bidx, t.b"}, true, "", []string{"a_bidx", "b"}},
		{sqliteDialect{}, &liteError{2067, "constraint failed: UNIQUE constraint failed: index 't_lower' (2067)"}, true, "t_lower", nil},
		{sqliteDialect{}, &liteError{19, "UNIQUE constraint failed: t.a_bidx"}, true, "", []string{"a_bidx"}},
		{sqliteDialect{}, &liteError{19, "NOT NULL constraint failed: t.a_bidx"}, false, "", nil},
		{sqliteDialect{}, &liteError{1299, "constraint failed: NOT NULL constraint failed: t.a_bidx (1299)"}, false, "", nil},
		{sqliteDialect{}, &liteError{5, "database is locked (5) (SQLITE_BUSY)"}, false, "", nil},
	} {
		d, ok := c.d.duplicate(lite, c.err)
		if ok != c.dup || d.index != c.index || !reflect.DeepEqual(d.columns, c.columns) {
			t.Errorf("%d: %T.duplicate(%v) = %+v, %v; want %v, index %q, columns %q", i, c.d, c.err, d, ok, c.dup, c.index, c.columns)
		}
		if ok && c.d.transient(c.err) {
			t.Errorf("%d: a unique violation is transient", i)
		}
	}
	// The MySQL error left over, should one stop the job, does not quote
	// the value.
	for _, n := range []uint16{1062, 1586} {
		got := redactDuplicate(&mysql.MySQLError{Number: n, Message: "Duplicate entry 'b2:c2VjcmV0' for key 't_uq'"}).Error()
		if strings.Contains(got, "c2VjcmV0") || !strings.Contains(got, "t_uq") || !strings.Contains(got, fmt.Sprint(n)) {
			t.Errorf("redactDuplicate(%d): %q", n, got)
		}
	}
}

// TestRelockSQL: the query that takes a batch's rows again locks them as
// the batch's own SELECT does, by key, and only those that still need
// work.
func TestRelockSQL(t *testing.T) {
	pre := prefixes{value: "v2:", index: []string{"b3:"}}
	p := &plan{
		table: Table{Name: "t"}, qtable: `"s"."t"`, qpk: `"id"`, pkType: "bigint",
		cols: []colPlan{{name: "a", q: `"a"`, idx: []int{0}}, {name: "b", q: `"b"`, bytea: true}},
		idx:  []idxPlan{{name: "a_bidx", q: `"a_bidx"`, src: 0, ix: fakeIndexer{version: 3}}},
	}
	r := &runner{p: p, pre: pre}
	q, args := r.relockSQL([]any{"1", `x"y`})
	want := `SELECT "id"::text AS colcrypt_pk, "a", "b", "a_bidx" FROM "s"."t" WHERE ` + p.pendingSQL(pre) +
		` AND "id" = ANY ($1::text::bigint[]) ORDER BY "id" FOR UPDATE SKIP LOCKED`
	if q != want || !reflect.DeepEqual(args, []any{`{"1","x\"y"}`}) {
		t.Errorf("PostgreSQL relockSQL:\n got %s %v\nwant %s", q, args, want)
	}
	r.p = mysqlPlan(keySigned)
	q, args = r.relockSQL([]any{"1", "2"})
	want = "SELECT CAST(`id` AS CHAR), `a`, `b`, `a_bidx` FROM `s`.`t` WHERE " + r.p.pendingSQL(pre) +
		" AND `id` IN (CAST(? AS SIGNED), CAST(? AS SIGNED)) ORDER BY `s`.`t`.`id` FOR UPDATE SKIP LOCKED"
	if q != want || !reflect.DeepEqual(args, []any{"1", "2"}) {
		t.Errorf("MySQL relockSQL:\n got %s %v\nwant %s", q, args, want)
	}
	r.p = sqlitePlan()
	q, args = r.relockSQL([]any{int64(1), "k"})
	want = `SELECT "id", "a", "b", "a_bidx" FROM "main"."t" WHERE ` + r.p.pendingSQL(pre) + ` AND "id" IN (?, ?) ORDER BY "id"`
	if q != want || !reflect.DeepEqual(args, []any{int64(1), "k"}) {
		t.Errorf("SQLite relockSQL:\n got %s %v\nwant %s", q, args, want)
	}
}

// TestOutRow: the statement that writes one row of a batch by itself is
// the batch's, with that row alone.
func TestOutRow(t *testing.T) {
	p := mysqlPlan(keySigned)
	b := newBatch(p, 10)
	b.pks = []string{"1", "2"}
	b.vals = [][]byte{[]byte("v1:a"), []byte("v1:b"), []byte("b1:i"), []byte("v1:c"), nil, []byte("b1:j")}
	b.nulls = []bool{false, false, false, false, true, false}
	b.blobs = []bool{false, true, false, false, false, false}
	b.resetOut()
	b.rowOut[0], b.rowOut[1], b.rowOut[2] = []byte("v2:A"), nil, []byte("b3:I")
	b.addOut(0)
	b.rowOut[0], b.rowOut[1], b.rowOut[2] = []byte("v2:C"), nil, []byte("b3:J")
	b.addOut(1)
	q, args := mysqlUpdate(p, b.outRow(1))
	if strings.Contains(q, "UNION ALL") || !reflect.DeepEqual(args, []any{"2", "v2:C", nil, "b3:J"}) {
		t.Errorf("MySQL, row 2 alone: %s %#v", q, args)
	}
	got := b.outRow(0).args()
	if want := []any{`{"1"}`, `{"v2:A"}`, `{NULL}`, `{"b3:I"}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("PostgreSQL arrays of row 1 alone: %q, want %q", got, want)
	}
	// The batch itself is unchanged.
	if _, args := mysqlUpdate(p, b); len(args) != 8 {
		t.Errorf("the batch's statement has %d arguments, want 8", len(args))
	}
}

// TestSQLiteDuplicates: on SQLite, whatever conflict clause the UNIQUE
// index of the blind-index column declares, a row whose new index value
// another row holds (an earlier batch's, or one of its own batch) is a
// failure (ErrDuplicate) and is left as it was; the other rows of its
// batch, before and after it, are written, and no row is deleted (ON
// CONFLICT REPLACE would delete the other row) or skipped silently. The
// pool has one connection, which the batch gives back and takes again to
// write its rows one by one.
func TestSQLiteDuplicates(t *testing.T) {
	ctx := context.Background()
	for _, clause := range []string{"", "ON CONFLICT REPLACE", "ON CONFLICT IGNORE", "ON CONFLICT FAIL", "ON CONFLICT ROLLBACK", "expression"} {
		t.Run(strings.TrimSpace("unique "+clause), func(t *testing.T) {
			db := openSQLite(t)
			db.SetMaxOpenConns(1)
			old := testCodec(t, 1, 2)
			codec := sameKeys(t, old, 2, 1, 2)
			ddl := `CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT UNIQUE ` + clause + `, b TEXT)`
			if clause == "expression" {
				ddl = `CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT, b TEXT); CREATE UNIQUE INDEX t_lower ON t (lower(a_bidx))`
			}
			if _, err := db.Exec(ddl); err != nil {
				t.Fatal(err)
			}
			// fakeIndexer's values are the plaintext's length: row 5
			// collides with row 3 (the batch before), row 7 with row 6
			// (its own batch).
			plain := func(id int) string {
				switch id {
				case 5:
					return "yyy"
				case 7:
					return "zzzzzz"
				}
				return strings.Repeat("x", id)
			}
			const n = 12
			stored := map[int][3]string{}
			for id := 1; id <= n; id++ {
				b, _ := old.Seal(ctx, fmt.Append(nil, "secret ", id))
				if _, err := db.Exec(`INSERT INTO t VALUES (?, ?, NULL, ?)`, id, plain(id), string(b)); err != nil {
					t.Fatal(err)
				}
				stored[id] = [3]string{plain(id), "<NULL>", string(b)}
			}
			j, err := New(db, Table{Name: "t", PrimaryKey: "id", Columns: []Column{
				{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 1}}}}, {Name: "b"},
			}}, codec)
			if err != nil {
				t.Fatal(err)
			}
			var reported int
			res, err := j.Rotate(ctx, Options{BatchSize: 4, EncryptPlaintext: []string{"a"}, OnFailure: func(Failure) { reported++ }})
			if !errors.Is(err, ErrFailures) {
				t.Fatalf("Rotate: %+v, %v; want ErrFailures", res, err)
			}
			wantCol := "a_bidx"
			if clause == "expression" {
				wantCol = "" // SQLite names the index, on lower(a_bidx)
			}
			if len(res.Failures) != 2 || reported != 2 {
				t.Fatalf("failures %v (%d reported), want rows 5 and 7", res.Failures, reported)
			}
			for k, id := range []string{"5", "7"} {
				f := res.Failures[k]
				if f.PK != id || f.Column != wantCol || !errors.Is(f.Err, ErrDuplicate) {
					t.Errorf("failure %v: want row %s, column %q, ErrDuplicate", f, id, wantCol)
				}
				if s := f.String(); strings.Contains(s, "b1:") || strings.Contains(s, "yyy") || strings.Contains(s, "v1:") {
					t.Errorf("the failure holds a value: %s", s)
				}
				if clause == "expression" && (!strings.Contains(f.String(), `unique index "t_lower"`) || !strings.Contains(f.String(), "cannot be known")) {
					t.Errorf("the failure %s should name the index, and say the column is not known", f)
				}
			}
			if res.Rows != n-2 || res.Plaintext != n-2 || res.Values != n-2 || res.IndexValues != n-2 {
				t.Errorf("Rotate: %+v; want %d rows", res, n-2)
			}
			rows, err := db.Query(`SELECT id, a, coalesce(a_bidx, '<NULL>'), b FROM t ORDER BY id`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			seen := 0
			for rows.Next() {
				var id int
				var v [3]string
				if err := rows.Scan(&id, &v[0], &v[1], &v[2]); err != nil {
					t.Fatal(err)
				}
				seen++
				if id == 5 || id == 7 {
					if v != stored[id] {
						t.Errorf("row %d, which failed, was written", id)
					}
					continue
				}
				pa, erra := codec.Open(ctx, []byte(v[0]))
				_, errb := codec.Open(ctx, []byte(v[2]))
				if erra != nil || string(pa) != plain(id) || v[1] != fmt.Sprintf("b1:%d", len(plain(id))) || !strings.HasPrefix(v[2], "v2:") || errb != nil {
					t.Errorf("row %d was not written: index %s, a %v, b %.3s %v", id, v[1], erra, v[2], errb)
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if seen != n {
				t.Errorf("%d rows left of %d", seen, n)
			}
		})
	}
}

// TestSQLiteDuplicatesMaxFailures: a duplicate counts towards
// MaxFailures; the batch in progress still writes its rows that did not
// fail, and Rotate stops.
func TestSQLiteDuplicatesMaxFailures(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	codec := testCodec(t, 1)
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	// Rows 2 and 3 collide with row 1; rows 4 to 8 are of other lengths.
	for id, a := range []string{"a", "b", "c", "dd", "eee", "ffff", "ggggg", "hhhhhh"} {
		if _, err := db.Exec(`INSERT INTO t VALUES (?, ?, NULL)`, id+1, a); err != nil {
			t.Fatal(err)
		}
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Columns: []Column{
		{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 1}}}},
	}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Rotate(ctx, Options{BatchSize: 4, MaxFailures: 1, EncryptPlaintext: []string{"a"}})
	if !errors.Is(err, ErrTooManyFailures) || len(res.Failures) != 1 || res.Failures[0].PK != "2" || res.Rows != 2 {
		t.Fatalf("Rotate: %d rows, failures %v, %v; want rows 1 and 4 written, row 2 failed, ErrTooManyFailures", res.Rows, res.Failures, err)
	}
	var written int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE a_bidx IS NOT NULL`).Scan(&written); err != nil || written != 2 {
		t.Errorf("%d rows indexed, %v; want 2", written, err)
	}
}
