package integration

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests of the rule for index values beside a NULL source
// ("orphans"): only a value that blindindex.Version
// parses is an orphan; Rotate clears it in an index column that can hold
// NULL, and leaves it (counted, neither pending nor a failure) in one
// declared NOT NULL; any other value beside a NULL source, such as the
// empty string of a NOT NULL DEFAULT column, is left alone. A CHECK
// constraint that refuses the NULL fails the row (ErrOrphanIndex) rather
// than the batch. Each test runs on PostgreSQL, MySQL/MariaDB and SQLite
// (rotEdgeAll).

// revBulkInsert inserts rows of values for the named columns in one
// transaction, many rows a statement.
func revBulkInsert(t *testing.T, d *rotEdgeDB, qt string, cols []string, rows [][]any) {
	t.Helper()
	ctx := testContext(t)
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	const chunk = 200
	for start := 0; start < len(rows); start += chunk {
		var q strings.Builder
		fmt.Fprintf(&q, "INSERT INTO %s (%s) VALUES ", qt, strings.Join(cols, ", "))
		var args []any
		for i, r := range rows[start:min(len(rows), start+chunk)] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(")
			for k, v := range r {
				if k > 0 {
					q.WriteString(", ")
				}
				args = append(args, v)
				q.WriteString(d.ph(len(args)))
			}
			q.WriteString(")")
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			t.Fatalf("inserting rows: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// revRawValues returns column col of every row as raw bytes, by id; a
// NULL is nil (and an empty value a non-nil empty slice).
func revRawValues(t *testing.T, d *rotEdgeDB, qt, col string) map[int64][]byte {
	t.Helper()
	rows, err := d.db.QueryContext(testContext(t), fmt.Sprintf("SELECT id, %s FROM %s", d.quote(col), qt))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][]byte{}
	for rows.Next() {
		var id int64
		var v any
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case nil:
			out[id] = nil
		case string:
			out[id] = []byte(v)
		case []byte:
			out[id] = append([]byte{}, v...)
		default:
			t.Fatalf("row %d: %s is a %T", id, col, v)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRotationEmptyIndexNotNull: an index column declared NOT NULL
// with an empty default (common in MySQL and sqlc schemas) holds the empty string
// beside 1200 NULL sources, and three index values beside NULL sources,
// before ten rows under the old index key. The empty strings are no
// index values: neither work nor failures. The three index values cannot
// be cleared in a NOT NULL column: counted (Orphaned), not pending. Rotate
// recomputes the ten rows and ends without an error; the census is done.
// (Before the fix, every one of these rows failed with ErrOrphanIndex:
// ErrTooManyFailures stopped Rotate at 1000, before the ten rows.)
func TestRotationEmptyIndexNotNull(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			f := &nsFixture{t: t, d: d}
			f.v1, f.v2 = rotEdgeCodecs(t)
			f.name, f.qt = d.create(t, fmt.Sprintf("email %s, email_bidx %s NOT NULL DEFAULT '', phone %s", d.text, nsBidxType(d), d.text))
			f.ikeys = newRotIndexKeys(t, 1, 2)
			ix, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{Normalize: rotNormalize})
			if err != nil {
				t.Fatal(err)
			}
			f.index = ix

			var rows [][]any
			for id := 1; id <= 1200; id++ {
				rows = append(rows, []any{id, nil, "", nil})
			}
			orphans := map[int64]string{}
			for id := 1201; id <= 1203; id++ {
				orphans[int64(id)] = f.bidx(1, fmt.Sprintf("gone%d@example.com", id))
				rows = append(rows, []any{id, nil, orphans[int64(id)], nil})
			}
			for id := 1204; id <= 1213; id++ {
				pt := fmt.Sprintf("u%d@example.com", id)
				rows = append(rows, []any{id, f.seal(1, pt), f.bidx(1, pt), nil})
			}
			revBulkInsert(t, d, f.qt, []string{"id", "email", "email_bidx", "phone"}, rows)
			f.ikeys.use(t, 2)
			job := f.job(nil)

			c, err := job.Census(ctx)
			if err != nil {
				t.Fatal(err)
			}
			const wantBefore = "pending rows 10, done false, index pending 10, v1 13, v2 0, NULL 0, missing 0, orphaned 3, malformed 1200"
			if got := nsCensusLine(c); got != wantBefore {
				t.Errorf("census before:\n got %s\nwant %s", got, wantBefore)
			}
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 100})
			if err != nil || len(res.Failures) != 0 {
				t.Fatalf("Rotate: %v, %d failures; want no error", err, len(res.Failures))
			}
			if res.Rows != 10 || res.IndexValues != 10 || res.Values != 10 || res.ClearedIndexValues != 0 {
				t.Errorf("Rotate: %d rows, %d index values, %d values, %d cleared; want 10, 10, 10, 0", res.Rows, res.IndexValues, res.Values, res.ClearedIndexValues)
			}
			bidx := f.col("email_bidx")
			for id := int64(1); id <= 1200; id++ {
				if bidx[id] != "" {
					t.Fatalf("row %d: email_bidx is %s, want the empty string left as it was", id, nsShow(bidx[id]))
				}
			}
			for id, want := range orphans {
				if bidx[id] != want {
					t.Errorf("row %d: email_bidx is %s, want its index value left as it was", id, nsShow(bidx[id]))
				}
			}
			for id := int64(1204); id <= 1213; id++ {
				if want := f.bidx(2, fmt.Sprintf("u%d@example.com", id)); bidx[id] != want {
					t.Errorf("row %d: email_bidx is %s, want its value under version 2", id, nsShow(bidx[id]))
				}
			}
			const wantAfter = "pending rows 0, done true, index pending 0, v1 3, v2 10, NULL 0, missing 0, orphaned 3, malformed 1200"
			if c, err := job.Census(ctx); err != nil || nsCensusLine(c) != wantAfter {
				t.Errorf("census after:\n got %s, %v\nwant %s", nsCensusLine(c), err, wantAfter)
			}
			if _, err := job.Verify(ctx, rotation.VerifyOptions{}); err != nil {
				t.Errorf("Verify after: %v", err)
			}
			if res, err := job.Rotate(ctx, rotation.Options{}); err != nil || res.Rows != 0 || len(res.Failures) != 0 {
				t.Errorf("Rotate again: %+v, %v; want nothing to do", res, err)
			}
		})
	}
}

// revOrphanCorpus returns values beside a NULL source for the corpus
// test: the edges of what blindindex.Version accepts, and random ones,
// half of them built valid and then changed. PostgreSQL's text holds no
// NUL, so noNUL leaves those out.
func revOrphanCorpus(noNUL bool) []string {
	long := strings.Repeat("A", 40)
	out := []string{
		"", " ", "b", "b1:", "b1:A", "b1:AA", "b1:AB", "b1:Ag", "b1:Ah", "b1:AAA", "b1:AAB", "b1:AA8", "b1:AAAA",
		"b1:AAAAA", "b1:AAAAAA", "B1:AAAA", "b1:aaaa", "c1:AAAA", "a1:AAAA", "a7:_-_-", "b0:AAAA", "b01:AAAA",
		"b4294967295:AAAA", "b4294967296:AAAA", "b9999999999:AAAA", "b12345678901:AAAA", "b1:AAAA\n",
		"b1:AA\nAA", "b1:AAAA\r", "b1:AAAA ", " b1:AAAA", "b1:AA+A", "b1:AA/A", "b1:AA==", "b1:AAA=", "b1:AAAAé",
		"b1:AAAA\x00", "ｂ1:AAAA", "b１:AAAA", "b1:ＡＡＡＡ", "b1::AAAA", "b1:AAAA:", "b1:" + long + "AAA",
		"b1:" + long + "AAAA", "b1:" + long + "AAB", "b4294967295:" + long + "AAA", "v1:AAAA", "not an index value",
	}
	r := rand.New(rand.NewPCG(7, 11))
	alphabet := []string{"a", "b", "B", "0", "1", "4", "9", ":", "A", "Q", "g", "w", "z", "_", "-", "+", "=", "\n", " ", "é", "8"}
	for range 300 {
		mac := make([]byte, 1+r.IntN(32))
		for i := range mac {
			mac[i] = byte(r.UintN(256))
		}
		s := fmt.Sprintf("%c%d:%s", "ab"[r.IntN(2)], []uint32{1, 2, 9, 4294967295, 1000000000}[r.IntN(5)], base64.RawURLEncoding.EncodeToString(mac))
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
		out = append(out, s)
	}
	if noNUL {
		kept := out[:0]
		for _, s := range out {
			if !strings.Contains(s, "\x00") {
				kept = append(kept, s)
			}
		}
		out = kept
	}
	return out
}

// TestRotationOrphanCorpus: beside NULL sources, a text and a
// binary index column (that can hold NULL) hold values that are index
// values, nearly are, or are not. The database's test (the batch SELECT,
// the count of rows left, the UPDATE) and Go's (Census, the batch's
// work) agree on each: Rotate clears exactly the values that
// blindindex.Version parses, leaves every other value as it was, ends
// without an error (no row taken again and again), and the census is
// done. Text is compared in a case-insensitive collation on MySQL.
func TestRotationOrphanCorpus(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			text, binary := "TEXT", "BLOB"
			switch d.dialect {
			case rotation.Postgres:
				binary = "BYTEA"
			case rotation.MySQL:
				text, binary = "VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", "VARBINARY(200)"
			}
			name, qt := d.create(t, fmt.Sprintf("email %s, email_bidx %s, email_bin %s", d.text, text, binary))
			v1, v2 := rotEdgeCodecs(t)
			ikeys := newRotIndexKeys(t, 1, 2)
			ix, err := blindindex.New(name+".email", ikeys, blindindex.Config{Normalize: rotNormalize})
			if err != nil {
				t.Fatal(err)
			}
			corpus := revOrphanCorpus(d.dialect == rotation.Postgres)
			paired, _ := ix.ComputeVersion(1, "a@example.com")
			rows := [][]any{{1, rotEdgeSeal(t, v1, "a@example.com"), paired, []byte(paired)}}
			valid := 0
			for i, v := range corpus {
				rows = append(rows, []any{i + 2, nil, v, []byte(v)})
				if _, err := blindindex.Version(v); err == nil {
					valid++
				}
			}
			if valid < 50 || len(corpus)-valid < 50 {
				t.Fatalf("the corpus holds %d index values and %d others; want at least 50 of each", valid, len(corpus)-valid)
			}
			revBulkInsert(t, d, qt, []string{"id", "email", "email_bidx", "email_bin"}, rows)
			ikeys.use(t, 2)
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{
				{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: ix}, {Column: "email_bin", Indexer: ix}}},
			}}, v2)
			if err != nil {
				t.Fatal(err)
			}
			c, err := job.Census(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c.Pending != int64(valid)+1 || c.Indexes[0].Orphaned != int64(valid) || c.Indexes[1].Orphaned != int64(valid) {
				t.Errorf("census before: %d rows pending, %d and %d orphaned; want %d and %d", c.Pending, c.Indexes[0].Orphaned, c.Indexes[1].Orphaned, valid+1, valid)
			}
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 50})
			if err != nil || len(res.Failures) != 0 {
				t.Fatalf("Rotate: %v, failures %v", err, res.Failures)
			}
			if res.ClearedIndexValues != int64(2*valid) || res.Rows != int64(valid)+1 {
				t.Errorf("Rotate: %d rows, %d index values cleared; want %d and %d", res.Rows, res.ClearedIndexValues, valid+1, 2*valid)
			}
			for _, col := range []string{"email_bidx", "email_bin"} {
				got := revRawValues(t, d, qt, col)
				for i, v := range corpus {
					_, perr := blindindex.Version(v)
					switch g := got[int64(i+2)]; {
					case perr == nil && g != nil:
						t.Errorf("%s, row %d: the index value %q was not cleared", col, i+2, v)
					case perr != nil && (g == nil || !bytes.Equal(g, []byte(v))):
						t.Errorf("%s, row %d: %q, which is no index value, became %q", col, i+2, v, g)
					}
				}
			}
			if c, err := job.Census(ctx); err != nil || !c.Done() || c.Pending != 0 || c.Indexes[0].Orphaned != 0 || c.Indexes[1].Orphaned != 0 {
				t.Errorf("census after: %+v, %v; want done", c, err)
			}
			if res, err := job.Rotate(ctx, rotation.Options{}); err != nil || res.Rows != 0 {
				t.Errorf("Rotate again: %+v, %v; want nothing to do", res, err)
			}
		})
	}
}

// TestRotationCheckConstraint: an index column that can hold NULL
// as the catalog declares it, but whose CHECK constraint refuses NULL.
// The write that clears an index value beside a NULL source breaks it:
// that row fails (ErrOrphanIndex, naming the index column and never the
// value) and nothing of it is written, while the rest of its batch is
// written, and Rotate ends with ErrFailures. (Before the fix, the whole
// batch failed with the database's CHECK violation, and so did every
// run.)
func TestRotationCheckConstraint(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			f := &nsFixture{t: t, d: d}
			f.v1, f.v2 = rotEdgeCodecs(t)
			f.name, f.qt = d.create(t, fmt.Sprintf("email %s, email_bidx %s, phone %s, CONSTRAINT %s CHECK (email_bidx IS NOT NULL)",
				d.text, nsBidxType(d), d.text, d.quote("bidx_set")))
			f.ikeys = newRotIndexKeys(t, 1, 2)
			ix, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{Normalize: rotNormalize})
			if err != nil {
				t.Fatal(err)
			}
			f.index = ix
			gone2, gone3 := f.bidx(1, "gone2@example.com"), f.bidx(2, "gone3@example.com")
			phone2 := f.seal(1, "+44 2")
			f.insert(
				[]any{1, f.seal(1, "a@example.com"), f.bidx(1, "a@example.com"), f.seal(1, "+44 1")},
				[]any{2, nil, gone2, phone2}, // orphaned, and phone old
				[]any{3, nil, gone3, nil},    // orphaned, active index key
				[]any{4, f.seal(1, "d@example.com"), f.bidx(1, "d@example.com"), nil},
				[]any{5, nil, "", f.seal(1, "+44 5")}, // no index value: left alone; phone old
			)
			f.ikeys.use(t, 2)
			job := f.job(nil)
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 10})
			if !errors.Is(err, rotation.ErrFailures) {
				t.Fatalf("Rotate: %v; want ErrFailures", err)
			}
			fails := rotEdgeFailures(res.Failures)
			if len(res.Failures) != 2 || res.Rows != 3 {
				t.Fatalf("Rotate: %d rows, failures %v; want 3 rows and rows 2 and 3 failed", res.Rows, res.Failures)
			}
			for _, pk := range []string{"2", "3"} {
				fl, ok := fails[pk+"/email_bidx"]
				if !ok || !errors.Is(fl.Err, rotation.ErrOrphanIndex) || !strings.Contains(fl.Err.Error(), "bidx_set") {
					t.Errorf("row %s: %v; want ErrOrphanIndex on email_bidx naming the constraint", pk, fl)
				}
				if msg := fl.String(); strings.Contains(msg, gone2) || strings.Contains(msg, gone3) {
					t.Errorf("the failure %q holds an index value", msg)
				}
			}
			bidx, phone := f.col("email_bidx"), f.col("phone")
			if bidx[2] != gone2 || bidx[3] != gone3 || phone[2] != phone2 {
				t.Error("a row that failed was written")
			}
			if bidx[1] != f.bidx(2, "a@example.com") || bidx[4] != f.bidx(2, "d@example.com") || bidx[5] != "" {
				t.Errorf("rows 1, 4 and 5: email_bidx %s, %s, %s; want 1 and 4 under version 2, 5 left empty", nsShow(bidx[1]), nsShow(bidx[4]), nsShow(bidx[5]))
			}
			for _, id := range []int64{1, 5} {
				if !strings.HasPrefix(phone[id], "v2:") {
					t.Errorf("row %d: phone is not under version 2", id)
				}
			}
		})
	}
}
