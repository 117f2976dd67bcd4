package rotation

import (
	"context"
	"testing"
)

// TestClearOnlyWhereSourceIsNull runs a batch's UPDATE on SQLite after the
// source of one of its rows was set behind the batch's back (which its
// lock prevents; this checks the statement alone): the index value of the
// row whose source is still NULL is cleared, the other row's source and
// index value, as the writer left them, are not, and neither are values
// beside a NULL source that are not index values ("" and "b1:x"). Census
// counts the index values beside a NULL source as orphaned and pending,
// before and not after, and the others as malformed only.
func TestClearOnlyWhereSourceIsNull(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	codec := testCodec(t, 1)
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, a_bidx TEXT, b TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO t VALUES (1, NULL, 'b1:AAAA', NULL), (2, NULL, 'b1:QUFB', NULL), (3, NULL, NULL, NULL), (4, NULL, '', NULL), (5, NULL, 'b1:x', NULL)`); err != nil {
		t.Fatal(err)
	}
	j, err := New(db, Table{Name: "t", PrimaryKey: "id", Dialect: SQLite, Columns: []Column{
		{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 2}}}}, {Name: "b"},
	}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := j.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ic := c.Indexes[0]; c.Pending != 2 || c.Done() || ic.Orphaned != 2 || ic.Pending != 2 || ic.Malformed != 2 || ic.Null != 1 || ic.Versions[1] != 2 {
		t.Errorf("census before: pending %d, index %+v", c.Pending, ic)
	}

	p, err := resolve(ctx, db, j.table, nil)
	if err != nil {
		t.Fatal(err)
	}
	pre, _, err := activePrefixes(ctx, codec, p)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{j: j, p: p, pre: pre, opts: Options{BatchSize: 10}, failed: map[string]bool{}}
	b := newBatch(p, 10)
	rows, err := db.Query(`SELECT ` + p.selectList() + ` FROM ` + p.qtable + ` WHERE ` + p.pendingSQL(pre) + ` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.read(rows); err != nil {
		t.Fatal(err)
	}
	st, fails, err := r.transform(ctx, b)
	if err != nil || len(fails) != 0 || st.rows != 2 || st.cleared != 2 {
		t.Fatalf("transform: %+v, %v, %v", st, fails, err)
	}
	// The writer, between the read and the write.
	v, err := codec.Seal(ctx, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE t SET a = ?, a_bidx = 'b2:3' WHERE id = 2`, string(v)); err != nil {
		t.Fatal(err)
	}
	q, args := r.writeSQL(b)
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	rs, err := db.Query(`SELECT id, coalesce(a_bidx, 'NULL'), a IS NOT NULL FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var id int
		var ix string
		var set bool
		if err := rs.Scan(&id, &ix, &set); err != nil {
			t.Fatal(err)
		}
		got[id] = ix
		if set != (id == 2) {
			t.Errorf("row %d: a set: %v", id, set)
		}
	}
	if got[1] != "NULL" || got[2] != "b2:3" || got[3] != "NULL" || got[4] != "" || got[5] != "b1:x" {
		t.Errorf("index values after the write: %v; want row 1 cleared, row 2 the writer's, rows 4 and 5 (no index values) as they were", got)
	}
	c, err = j.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ic := c.Indexes[0]; c.Pending != 0 || !c.Done() || ic.Orphaned != 0 || ic.Malformed != 3 {
		t.Errorf("census after: pending %d, index %+v", c.Pending, ic)
	}
}
