package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests of a blind-index value beside a NULL source value (an
// "orphaned" index value): data that the gormcrypt plugin never writes, but
// that hand-written SQL setting the source to NULL leaves behind. The
// index of NULL is NULL: Rotate clears such a value, Census and Verify
// count it as work left, and status --check (Census.Done) is not done
// while one is left. Each test runs on PostgreSQL, MySQL/MariaDB and
// SQLite (rotEdgeAll).

// nsFixture is one test's table: id, email (encrypted, NULL-able),
// email_bidx (its blind index) and phone (encrypted, NULL-able, no index).
type nsFixture struct {
	t      *testing.T
	d      *rotEdgeDB
	name   string // unquoted
	qt     string // quoted
	v1, v2 *encryptedtype.Codec
	ikeys  *rotIndexKeys
	index  *blindindex.Index
}

// nsBidxType is the type of the index column on d.
func nsBidxType(d *rotEdgeDB) string {
	if d.dialect == rotation.MySQL {
		return mysqlBidxType
	}
	return "TEXT"
}

// newNSFixture creates the table, with email_bidx declared NOT NULL when
// bidxNotNull, under data and index key version 1 (version 2 known).
func newNSFixture(t *testing.T, d *rotEdgeDB, bidxNotNull bool) *nsFixture {
	t.Helper()
	f := &nsFixture{t: t, d: d}
	f.v1, f.v2 = rotEdgeCodecs(t)
	notNull := ""
	if bidxNotNull {
		notNull = " NOT NULL"
	}
	f.name, f.qt = d.create(t, fmt.Sprintf("email %s, email_bidx %s%s, phone %s", d.text, nsBidxType(d), notNull, d.text))
	f.ikeys = newRotIndexKeys(t, 1, 2)
	ix, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	f.index = ix
	return f
}

// seal encrypts pt under data key version v (1 or 2).
func (f *nsFixture) seal(v int, pt string) string {
	f.t.Helper()
	c := f.v1
	if v == 2 {
		c = f.v2
	}
	return rotEdgeSeal(f.t, c, pt)
}

// bidx is the index value of pt under index key version v.
func (f *nsFixture) bidx(v uint32, pt string) string {
	f.t.Helper()
	s, err := f.index.ComputeVersion(v, pt)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// insert inserts rows of id, email, email_bidx, phone (nil for NULL).
func (f *nsFixture) insert(rows ...[]any) {
	f.t.Helper()
	f.d.insert(f.t, f.qt, []string{"id", "email", "email_bidx", "phone"}, rows...)
}

// table describes the table for package rotation.
func (f *nsFixture) table() rotation.Table {
	return rotation.Table{Name: f.name, PrimaryKey: "id", Dialect: f.d.dialect, Columns: []rotation.Column{
		{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: f.index}}},
		{Name: "phone"},
	}}
}

// job returns a job over the table with c (f.v2 when nil).
func (f *nsFixture) job(c rotation.Cipher) *rotation.Job {
	f.t.Helper()
	if c == nil {
		c = f.v2
	}
	j, err := rotation.New(f.d.db, f.table(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// col returns column col of every row, by id ("<NULL>" for NULL).
func (f *nsFixture) col(col string) map[int64]string {
	f.t.Helper()
	return f.d.values(f.t, f.qt, col)
}

// open decrypts a stored value with f.v2, which holds both data keys.
func (f *nsFixture) open(raw string) string {
	f.t.Helper()
	pt, err := f.v2.Open(context.Background(), []byte(raw))
	if err != nil {
		f.t.Fatalf("a stored value does not decrypt: %v", err)
	}
	return string(pt)
}

// nsCensusLine sums up what the census says of the index column, without
// values: the rows pending, whether it is done, and the index values by
// version and NULL.
func nsCensusLine(c *rotation.Census) string {
	ic := c.Indexes[0]
	return fmt.Sprintf("pending rows %d, done %v, index pending %d, v1 %d, v2 %d, NULL %d, missing %d, orphaned %d, malformed %d",
		c.Pending, c.Done(), ic.Pending, ic.Versions[1], ic.Versions[2], ic.Null, ic.Missing, ic.Orphaned, ic.Malformed)
}

// TestRotationNullSourceIndexCleared: index values beside a NULL source
// (under the old index key or the active one) are counted by Census and
// Verify as work left and cleared by Rotate, in every row, including one
// the job also rewrites for another column; a value beside a NULL source
// that is no index value is left alone, and is no work; an index value
// beside a non-NULL source is recomputed as before. A Rotate stopped
// half-way is finished by the next one, and a finished table is done.
func TestRotationNullSourceIndexCleared(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newNSFixture(t, db.open(t), false)
			f.insert(
				[]any{1, f.seal(1, "a@example.com"), f.bidx(1, "a@example.com"), nil}, // old: recomputed
				[]any{2, nil, f.bidx(1, "gone@example.com"), nil},                     // orphaned, old index key
				[]any{3, nil, f.bidx(2, "gone2@example.com"), nil},                    // orphaned, active index key
				[]any{4, nil, nil, nil},                                               // nothing to do
				[]any{5, nil, "not an index value", nil},                              // no index value: left alone
				[]any{6, f.seal(1, "b@example.com"), nil, nil},                        // missing: computed
				[]any{7, nil, f.bidx(1, "c@example.com"), f.seal(1, "+44 1")},         // orphaned, and phone old
				[]any{8, f.seal(2, "d@example.com"), f.bidx(2, "d@example.com"), nil}, // current: nothing to do
			)
			f.ikeys.use(t, 2)
			job := f.job(nil)

			// Before: rows 1, 2, 3, 6 and 7 need work, and the index
			// column five values.
			const wantBefore = "pending rows 5, done false, index pending 5, v1 3, v2 2, NULL 2, missing 1, orphaned 3, malformed 1"
			c, err := job.Census(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := nsCensusLine(c); got != wantBefore {
				t.Errorf("census before:\n got %s\nwant %s", got, wantBefore)
			}
			v, err := job.Verify(ctx, rotation.VerifyOptions{})
			if err != nil {
				t.Fatalf("Verify before: %v (an orphaned index value is work left, not a failure)", err)
			}
			if got := nsCensusLine(v); got != wantBefore {
				t.Errorf("Verify before:\n got %s\nwant %s", got, wantBefore)
			}

			// A Rotate stopped after its first batch of two rows.
			sctx, cancel := context.WithCancel(ctx)
			res, err := job.Rotate(sctx, rotation.Options{BatchSize: 2, Progress: func(p rotation.Progress) {
				if p.Done >= 2 {
					cancel()
				}
			}})
			cancel()
			if !errors.Is(err, context.Canceled) || res.Rows != 2 {
				t.Fatalf("stopped Rotate: %d rows, %v; want 2 rows and context.Canceled", res.Rows, err)
			}
			if c, err := job.Census(ctx); err != nil || c.Pending != 3 {
				t.Fatalf("census after the stopped Rotate: %v, %v; want 3 rows pending", nsCensusLine(c), err)
			}

			// The next one finishes.
			res, err = job.Rotate(ctx, rotation.Options{BatchSize: 2})
			if err != nil || res.Rows != 3 || len(res.Failures) != 0 {
				t.Fatalf("Rotate: %+v, %v; want 3 rows", res, err)
			}
			// Rows 1 and 2 were the stopped Rotate's: this one cleared
			// the index values of rows 3 and 7, computed row 6's, and
			// re-encrypted row 6's email and row 7's phone.
			if res.ClearedIndexValues != 2 || res.IndexValues != 1 || res.Values != 2 {
				t.Errorf("Rotate: %d index values cleared, %d recomputed, %d values; want 2, 1 and 2", res.ClearedIndexValues, res.IndexValues, res.Values)
			}
			email, bidx, phone := f.col("email"), f.col("email_bidx"), f.col("phone")
			for id, want := range map[int64]string{
				1: f.bidx(2, "a@example.com"), 2: "<NULL>", 3: "<NULL>", 4: "<NULL>", 5: "not an index value",
				6: f.bidx(2, "b@example.com"), 7: "<NULL>", 8: f.bidx(2, "d@example.com"),
			} {
				if bidx[id] != want {
					t.Errorf("row %d: email_bidx is %s, want %s", id, nsShow(bidx[id]), nsShow(want))
				}
			}
			for id, pt := range map[int64]string{1: "a@example.com", 6: "b@example.com", 8: "d@example.com"} {
				if got := f.open(email[id]); got != pt || !bytes.HasPrefix([]byte(email[id]), []byte("v2:")) {
					t.Errorf("row %d: email is not its plaintext under version 2", id)
				}
			}
			for _, id := range []int64{2, 3, 4, 5, 7} {
				if email[id] != "<NULL>" {
					t.Errorf("row %d: email is no longer NULL", id)
				}
			}
			if got := f.open(phone[7]); got != "+44 1" || !bytes.HasPrefix([]byte(phone[7]), []byte("v2:")) {
				t.Errorf("row 7: phone is not its plaintext under version 2")
			}

			// After: done, and nothing left on index key version 1.
			const wantAfter = "pending rows 0, done true, index pending 0, v1 0, v2 3, NULL 4, missing 0, orphaned 0, malformed 1"
			if c, err := job.Census(ctx); err != nil || nsCensusLine(c) != wantAfter {
				t.Errorf("census after:\n got %s, %v\nwant %s", nsCensusLine(c), err, wantAfter)
			}
			if v, err := job.Verify(ctx, rotation.VerifyOptions{}); err != nil || nsCensusLine(v) != wantAfter {
				t.Errorf("Verify after:\n got %s, %v\nwant %s", nsCensusLine(v), err, wantAfter)
			}
			if res, err := job.Rotate(ctx, rotation.Options{}); err != nil || res.Rows != 0 {
				t.Errorf("Rotate again: %+v, %v; want nothing to do", res, err)
			}
		})
	}
}

// nsShow shows an index value in a test message: NULL, or its version.
func nsShow(s string) string {
	if s == "<NULL>" {
		return s
	}
	if v, err := blindindex.Version(s); err == nil {
		return fmt.Sprintf("a value under index key version %d", v)
	}
	return "a malformed value"
}

// TestRotationNullSourceNotNullIndex: in an index column declared NOT
// NULL, an index value beside a NULL source cannot be cleared, and is
// left as it is: counted by Census (Orphaned), but neither work left nor a
// failure. Rotate rewrites the rest of its row (phone) and the rest of
// the table, and ends without an error; the census is done.
func TestRotationNullSourceNotNullIndex(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newNSFixture(t, db.open(t), true)
			gone := f.bidx(1, "gone@example.com")
			f.insert(
				[]any{1, f.seal(1, "a@example.com"), f.bidx(1, "a@example.com"), nil},
				[]any{2, nil, gone, f.seal(1, "+44 2")}, // orphaned, and phone old
				[]any{3, f.seal(1, "c@example.com"), f.bidx(1, "c@example.com"), nil},
			)
			f.ikeys.use(t, 2)
			job := f.job(nil)
			const wantBefore = "pending rows 3, done false, index pending 2, v1 3, v2 0, NULL 0, missing 0, orphaned 1, malformed 0"
			if c, err := job.Census(ctx); err != nil || nsCensusLine(c) != wantBefore {
				t.Fatalf("census before:\n got %s, %v\nwant %s", nsCensusLine(c), err, wantBefore)
			}
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 1})
			if err != nil || len(res.Failures) != 0 || res.Rows != 3 || res.ClearedIndexValues != 0 {
				t.Fatalf("Rotate: %+v, %v; want 3 rows, nothing cleared, no failure", res, err)
			}
			if f.col("email_bidx")[2] != gone {
				t.Error("row 2: its index value was changed")
			}
			if got := f.open(f.col("phone")[2]); got != "+44 2" || !bytes.HasPrefix([]byte(f.col("phone")[2]), []byte("v2:")) {
				t.Error("row 2: phone is not its plaintext under version 2")
			}
			const wantAfter = "pending rows 0, done true, index pending 0, v1 1, v2 2, NULL 0, missing 0, orphaned 1, malformed 0"
			if c, err := job.Census(ctx); err != nil || nsCensusLine(c) != wantAfter {
				t.Errorf("census after:\n got %s, %v\nwant %s", nsCensusLine(c), err, wantAfter)
			}
		})
	}
}

// nsGate is a Cipher whose Open of one value blocks until released, so
// that a test can act while a batch holds its rows (read and locked, not
// yet written).
type nsGate struct {
	rotation.Cipher
	trigger []byte
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *nsGate) Open(ctx context.Context, v []byte) ([]byte, error) {
	if bytes.Equal(v, g.trigger) {
		g.once.Do(func() {
			close(g.reached)
			select {
			case <-g.release:
			case <-ctx.Done():
			}
		})
	}
	return g.Cipher.Open(ctx, v)
}

// TestRotationNullSourceLiveWriter: the application sets the source (and
// its index) of a row with an orphaned index value while a batch holds
// that row, read but not yet written. Its write waits for the batch (a row
// lock, or SQLite's write lock) and wins: the index value it wrote is not
// cleared. The batch's other orphaned index value is.
func TestRotationNullSourceLiveWriter(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newNSFixture(t, db.open(t), false)
			trigger := f.seal(1, "+44 1")
			f.insert(
				[]any{1, nil, nil, trigger},                        // phone old: the batch decrypts it
				[]any{2, nil, f.bidx(1, "gone@example.com"), nil},  // orphaned; the application sets it
				[]any{3, nil, f.bidx(1, "gone3@example.com"), nil}, // orphaned
				[]any{4, f.seal(1, "d@example.com"), f.bidx(1, "d@example.com"), nil},
			)
			f.ikeys.use(t, 2)
			gate := &nsGate{Cipher: f.v2, trigger: []byte(trigger), reached: make(chan struct{}), release: make(chan struct{})}
			done := make(chan rotOutcome, 1)
			go func() {
				res, err := f.job(gate).Rotate(ctx, rotation.Options{BatchSize: 10})
				done <- rotOutcome{res, err}
			}()
			select {
			case <-gate.reached:
			case o := <-done:
				close(gate.release)
				t.Fatalf("Rotate returned before decrypting row 1: %+v, %v", o.res, o.err)
			}

			// The batch holds rows 1 to 4: the application's write waits.
			newEmail, newBidx := f.seal(2, "new@example.com"), f.bidx(2, "new@example.com")
			wrote := make(chan error, 1)
			go func() {
				q := fmt.Sprintf("UPDATE %s SET email = %s, email_bidx = %s WHERE id = 2", f.qt, f.d.ph(1), f.d.ph(2))
				_, err := f.d.db.ExecContext(ctx, q, newEmail, newBidx)
				wrote <- err
			}()
			select {
			case err := <-wrote:
				close(gate.release)
				t.Fatalf("the application's write did not wait for the batch: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			close(gate.release)
			o := <-done
			if o.err != nil || len(o.res.Failures) != 0 {
				t.Fatalf("Rotate: %+v, %v", o.res, o.err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("the application's write: %v", err)
			}
			email, bidx := f.col("email"), f.col("email_bidx")
			if email[2] != newEmail || bidx[2] != newBidx {
				t.Errorf("row 2: the application's write was lost (email_bidx %s)", nsShow(bidx[2]))
			}
			if bidx[3] != "<NULL>" {
				t.Errorf("row 3: email_bidx is %s, want NULL", nsShow(bidx[3]))
			}
			if bidx[4] != f.bidx(2, "d@example.com") {
				t.Errorf("row 4: email_bidx is %s, want its value under version 2", nsShow(bidx[4]))
			}
			if c, err := f.job(nil).Census(ctx); err != nil || !c.Done() {
				t.Errorf("census at the end: %s, %v; want done", nsCensusLine(c), err)
			}
		})
	}
}

// TestRotationNullSourceWrongSource: when no row holds both the source and
// an index value, yet index values stand beside NULL source values, the
// description most likely names the wrong source column (or the index is
// computed from another): Rotate refuses (ErrIndexMismatch) rather than
// clear every index value, and writes nothing.
func TestRotationNullSourceWrongSource(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newNSFixture(t, db.open(t), false)
			// email_bidx is the index of phone here, not of email (NULL
			// throughout); the description says email.
			f.insert(
				[]any{1, nil, f.bidx(1, "+44 1"), f.seal(1, "+44 1")},
				[]any{2, nil, f.bidx(1, "+44 2"), f.seal(1, "+44 2")},
			)
			f.ikeys.use(t, 2)
			before, beforePhone := f.col("email_bidx"), f.col("phone")
			job := f.job(nil)
			res, err := job.Rotate(ctx, rotation.Options{})
			if !errors.Is(err, rotation.ErrIndexMismatch) || res.Rows != 0 {
				t.Fatalf("Rotate: %d rows, %v; want ErrIndexMismatch and nothing written", res.Rows, err)
			}
			if err := job.CheckIndexes(ctx); !errors.Is(err, rotation.ErrIndexMismatch) {
				t.Errorf("CheckIndexes: %v, want ErrIndexMismatch", err)
			}
			if after, afterPhone := f.col("email_bidx"), f.col("phone"); fmt.Sprint(after) != fmt.Sprint(before) || fmt.Sprint(afterPhone) != fmt.Sprint(beforePhone) {
				t.Error("the table was written")
			}
		})
	}
}
