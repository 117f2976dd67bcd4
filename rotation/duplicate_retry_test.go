package rotation

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// b64Indexer is an Indexer that writes "b<version>:" and the base64url of
// the plaintext: an index value (isIndexValue).
type b64Indexer struct{ version int }

func (f b64Indexer) Compute(pt string) (string, error) {
	return fmt.Sprintf("b%d:%s", f.version, base64.RawURLEncoding.EncodeToString([]byte(pt))), nil
}

// TestOrphanClearNotADuplicate: row 1 (plaintext "xxx", index NULL) gets
// b1:eHh4, which row 2 (NULL source) holds as an orphan index value that the
// same batch clears. Row 1 comes first in the batch's order, so its write
// breaks the UNIQUE index until row 2 is cleared; after the batch no two
// rows share a value, and no row may be reported as a duplicate.
func TestOrphanClearNotADuplicate(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	codec := testCodec(t, 1)
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO t VALUES (1, 'xxx', NULL), (2, NULL, 'b1:eHh4'), (3, 'yy', NULL), (4, 'zzzz', 'b1:enp6eg'), (5, 'y', NULL), (6, 'yy', NULL)`); err != nil {
		t.Fatal(err)
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Columns: []Column{
		{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: b64Indexer{version: 1}}}},
	}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Rotate(ctx, Options{BatchSize: 10, EncryptPlaintext: []string{"a"}})
	// Row 6 is a true duplicate of row 3 ("yy"): it alone fails.
	if !errors.Is(err, ErrFailures) || len(res.Failures) != 1 || res.Failures[0].PK != "6" || !errors.Is(res.Failures[0].Err, ErrDuplicate) {
		t.Fatalf("Rotate: failures %v, %v; want row 6 alone, a duplicate", res.Failures, err)
	}
	want := map[int]string{1: "b1:eHh4", 2: "", 3: "b1:eXk", 4: "b1:enp6eg", 5: "b1:eQ", 6: ""}
	for id, w := range want {
		var got *string
		if err := db.QueryRow(`SELECT a_bidx FROM t WHERE id = ?`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if (got == nil) != (w == "") || (got != nil && *got != w) {
			t.Errorf("row %d: a_bidx %v, want %q", id, got, w)
		}
	}
	if res.ClearedIndexValues != 1 {
		t.Errorf("ClearedIndexValues = %d, want 1", res.ClearedIndexValues)
	}
}

// triggerFixture makes table t (with index column a_bidx when withIndex)
// whose rows 1..5 are under version 1 of the codec, and a trigger that
// inserts into audit, whose UNIQUE column a_bidx already holds row 3's
// entry: the rotation's write of row 3 breaks audit's unique index.
func triggerFixture(t *testing.T, withIndex, expr bool) (*Job, error) {
	ctx := context.Background()
	db := openSQLite(t)
	old := testCodec(t, 1, 2)
	codec := sameKeys(t, old, 2, 1, 2)
	cols := "id INTEGER PRIMARY KEY, a TEXT"
	if withIndex {
		cols += ", a_bidx TEXT"
	}
	audit := `CREATE TABLE audit (row_id INTEGER, a_bidx TEXT UNIQUE)`
	if expr {
		audit = `CREATE TABLE audit (row_id INTEGER, a_bidx TEXT); CREATE UNIQUE INDEX audit_lower ON audit (lower(a_bidx))`
	}
	for _, q := range []string{
		`CREATE TABLE t (` + cols + `)`,
		audit,
		`INSERT INTO audit VALUES (3, 'r3')`,
		`CREATE TRIGGER t_audit AFTER UPDATE ON t BEGIN INSERT INTO audit VALUES (NEW.id, 'r' || NEW.id); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for id := 1; id <= 5; id++ {
		p := fmt.Sprint("secret", id)
		ct, err := old.Seal(ctx, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if withIndex {
			_, err = db.Exec(`INSERT INTO t VALUES (?, ?, ?)`, id, string(ct), fmt.Sprintf("b1:%d", len(p)+id))
		} else {
			_, err = db.Exec(`INSERT INTO t VALUES (?, ?)`, id, string(ct))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c := Column{Name: "a"}
	if withIndex {
		c.Indexes = []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 2}}}
	}
	return New(db, Table{Name: "t", PrimaryKey: "id", Columns: []Column{c}}, codec)
}

// TestTriggerUniqueViolationStops: a unique violation that a trigger
// raises on another table is not a duplicate index value of the row: it
// stops the job, as any other error of the database, rather than being
// reported as the row's ErrDuplicate (nor blamed on the rotated table's
// same-named column a_bidx).
func TestTriggerUniqueViolationStops(t *testing.T) {
	for _, c := range []struct{ withIndex, expr bool }{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("index=%v,expr=%v", c.withIndex, c.expr), func(t *testing.T) {
			j, err := triggerFixture(t, c.withIndex, c.expr)
			if err != nil {
				t.Fatal(err)
			}
			res, err := j.Rotate(context.Background(), Options{BatchSize: 10})
			if err == nil || errors.Is(err, ErrFailures) || errors.Is(err, ErrDuplicate) {
				t.Fatalf("Rotate: failures %v, err %v; want the database's error", res.Failures, err)
			}
			if len(res.Failures) > 0 {
				t.Errorf("failures %v, want none", res.Failures)
			}
			want := "UNIQUE constraint failed: audit.a_bidx"
			if c.expr {
				want = "UNIQUE constraint failed: index 'audit_lower'"
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want the unique violation of audit", err)
			}
		})
	}
}

// TestSQLiteDuplicateOtherTable: SQLite's message naming another table's
// column is not taken for this table's column of the same name.
func TestSQLiteDuplicateOtherTable(t *testing.T) {
	p := &plan{tableName: "t"}
	for _, c := range []struct {
		msg   string
		other bool
		cols  []string
	}{
		{"UNIQUE constraint failed: t.a_bidx", false, []string{"a_bidx"}},
		{"UNIQUE constraint failed: T.a_bidx", false, []string{"a_bidx"}},
		{"UNIQUE constraint failed: audit.a_bidx", true, nil},
		{"UNIQUE constraint failed: t.a, audit.a_bidx", true, nil},
	} {
		d, ok := sqliteDialect{}.duplicate(p, &liteError{2067, c.msg})
		if !ok || d.other != c.other || fmt.Sprint(d.columns) != fmt.Sprint(c.cols) {
			t.Errorf("%q: %+v, %v; want other %v, columns %q", c.msg, d, ok, c.other, c.cols)
		}
	}
}
