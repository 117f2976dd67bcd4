package integration

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests of a blind-index column with a UNIQUE index, where
// the job's write of a row collides with another row's index value: during
// an index-key rotation (UNIQUE compares the stored values, so an old
// 'Dup@…' under index key 1 and a new 'dup@…' under key 2 coexist until
// the old one is recomputed), and while encrypting plaintext whose index
// column is still NULL (case variants in the data, or a duplicate the
// application inserted meanwhile). The colliding row is a failure of its
// own (rotation.ErrDuplicate, its primary key and the index column, never
// a value), every other row is written, and once the duplicate is
// resolved the next Rotate finishes. Each test runs on PostgreSQL,
// MySQL/MariaDB and SQLite (rotEdgeAll).

// newUniqueFixture is newNSFixture's table with a UNIQUE index on
// email_bidx, whose name it returns.
func newUniqueFixture(t *testing.T, d *rotEdgeDB) (*nsFixture, string) {
	t.Helper()
	f := newNSFixture(t, d, false)
	index := f.name + "_uq"
	ddl := fmt.Sprintf("CREATE UNIQUE INDEX %s ON %s (%s)", d.quote(index), f.qt, d.quote("email_bidx"))
	if _, err := d.db.ExecContext(testContext(t), ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	return f, index
}

// uqEmail is the e-mail address of row id.
func uqEmail(id int) string { return fmt.Sprintf("user%02d@example.com", id) }

// uqCheckQuiet fails t when s holds a plaintext, a stored value or an
// index value.
func uqCheckQuiet(t *testing.T, what, s string, secrets []string) {
	t.Helper()
	for _, v := range secrets {
		if v != "" && strings.Contains(s, v) {
			t.Errorf("%s holds a value (%.12q…): %s", what, v, s)
		}
	}
	for _, v := range []string{"example.com", "Example.com", "b1:", "b2:", "v1:", "v2:"} {
		if strings.Contains(s, v) {
			t.Errorf("%s holds what looks like a value (%q): %s", what, v, s)
		}
	}
}

// uqCheckFailure checks that f is the duplicate failure of row id, on
// email_bidx, saying nothing secret.
func uqCheckFailure(t *testing.T, f rotation.Failure, id int, secrets []string) {
	t.Helper()
	if f.PK != fmt.Sprint(id) || f.Column != "email_bidx" || !errors.Is(f.Err, rotation.ErrDuplicate) {
		t.Errorf("failure %v: want row %d, column email_bidx, ErrDuplicate", f, id)
	}
	uqCheckQuiet(t, "the failure", f.String(), secrets)
}

// TestRotationUniqueIndexKeyRotation: an index-key rotation over a table
// of several batches with a UNIQUE index on the blind index, where the
// application wrote 'dup@example.com' under index key 2 while
// 'Dup@Example.com' is still stored under key 1. Every other row,
// including those of the same batch before and after it, is rotated; the
// old row is a failure (ErrDuplicate, its primary key, the index column,
// no value), and neither colliding row is touched. Running again reports
// it again; once the duplicate is deleted, the next run finishes.
func TestRotationUniqueIndexKeyRotation(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f, index := newUniqueFixture(t, db.open(t))
			const n, dupID, newID = 40, 7, 41
			email := func(id int) string {
				if id == dupID {
					return "Dup@Example.com"
				}
				return uqEmail(id)
			}
			var rows [][]any
			for id := 1; id <= n; id++ {
				var phone any
				if id%2 == 1 {
					phone = f.seal(1, fmt.Sprintf("+44 %d", id))
				}
				rows = append(rows, []any{id, f.seal(1, email(id)), f.bidx(1, email(id)), phone})
			}
			f.insert(rows...)
			// The application, redeployed with index key 2 (and data key
			// 2), inserts the same address in other letter case: its index
			// value is under version 2, the old row's under version 1,
			// and the UNIQUE index takes both.
			f.ikeys.use(t, 2)
			f.insert([]any{newID, f.seal(2, "dup@example.com"), f.bidx(2, "dup@example.com"), f.seal(2, "+44 new")})
			if f.bidx(2, "dup@example.com") != f.bidx(2, "Dup@Example.com") {
				t.Fatal("the two addresses do not normalise alike")
			}
			before := map[string]map[int64]string{"email": f.col("email"), "email_bidx": f.col("email_bidx"), "phone": f.col("phone")}
			secrets := []string{
				f.bidx(1, "Dup@Example.com"), f.bidx(2, "dup@example.com"),
				before["email"][dupID], before["email"][newID], before["phone"][dupID], before["phone"][newID],
			}

			job := f.job(nil)
			var reported []rotation.Failure
			var mu sync.Mutex
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 8, OnFailure: func(fl rotation.Failure) {
				mu.Lock()
				reported = append(reported, fl)
				mu.Unlock()
			}})
			if !errors.Is(err, rotation.ErrFailures) {
				t.Fatalf("Rotate: %v, want ErrFailures (%+v)", err, res)
			}
			uqCheckQuiet(t, "Rotate's error", err.Error(), secrets)
			if len(res.Failures) != 1 || len(reported) != 1 {
				t.Fatalf("Rotate: failures %v (%d reported), want row %d alone", res.Failures, len(reported), dupID)
			}
			uqCheckFailure(t, res.Failures[0], dupID, secrets)
			t.Logf("the failure: %v", res.Failures[0])
			if db.name == "PostgreSQL" || db.name == "MySQL" {
				// The unique index is named (it is schema, not data).
				if !strings.Contains(res.Failures[0].Err.Error(), index) {
					t.Errorf("the failure %q does not name the unique index %s", res.Failures[0].Err, index)
				}
			}
			// Every email, and the phones of the odd rows, but row 7's.
			if wantValues := int64(n - 1 + n/2 - 1); res.Rows != n-1 || res.IndexValues != n-1 || res.Values != wantValues {
				t.Errorf("Rotate: %d rows, %d index values, %d values; want %d, %d and %d", res.Rows, res.IndexValues, res.Values, n-1, n-1, wantValues)
			}

			// The colliding rows are untouched; every other row is under
			// data key 2 and index key 2.
			after := map[string]map[int64]string{"email": f.col("email"), "email_bidx": f.col("email_bidx"), "phone": f.col("phone")}
			for col, vals := range after {
				for _, id := range []int64{dupID, newID} {
					if vals[id] != before[col][id] {
						t.Errorf("row %d: %s was written", id, col)
					}
				}
			}
			for id := 1; id <= n; id++ {
				if id == dupID {
					continue
				}
				e := after["email"][int64(id)]
				if !strings.HasPrefix(e, "v2:") || f.open(e) != email(id) {
					t.Errorf("row %d: email is not its plaintext under data key 2", id)
				}
				if got := after["email_bidx"][int64(id)]; got != f.bidx(2, email(id)) {
					t.Errorf("row %d: email_bidx is %s, want its value under index key 2", id, nsShow(got))
				}
				if p := after["phone"][int64(id)]; id%2 == 1 && (!strings.HasPrefix(p, "v2:") || f.open(p) != fmt.Sprintf("+44 %d", id)) {
					t.Errorf("row %d: phone is not its plaintext under data key 2", id)
				}
			}
			c, err := job.Census(ctx)
			if err != nil || c.Pending != 1 || c.Done() || c.Indexes[0].Versions[1] != 1 {
				t.Errorf("census after: %s, %v; want row %d pending, on index key version 1", nsCensusLine(c), err, dupID)
			}

			// Again: the same failure, nothing written.
			res, err = job.Rotate(ctx, rotation.Options{BatchSize: 8})
			if !errors.Is(err, rotation.ErrFailures) || res.Rows != 0 || len(res.Failures) != 1 {
				t.Fatalf("Rotate again: %d rows, failures %v, %v; want row %d failed again", res.Rows, res.Failures, err, dupID)
			}
			uqCheckFailure(t, res.Failures[0], dupID, secrets)

			// MaxFailures counts it like any failure.
			if _, err := job.Rotate(ctx, rotation.Options{BatchSize: 8, MaxFailures: 1}); !errors.Is(err, rotation.ErrTooManyFailures) {
				t.Errorf("Rotate with MaxFailures 1: %v, want ErrTooManyFailures", err)
			}

			// The duplicate resolved (the new row deleted), the next run
			// finishes.
			if _, err := f.d.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE id = %d", f.qt, newID)); err != nil {
				t.Fatal(err)
			}
			res, err = job.Rotate(ctx, rotation.Options{BatchSize: 8})
			if err != nil || res.Rows != 1 || len(res.Failures) != 0 {
				t.Fatalf("Rotate once resolved: %+v, %v; want row %d written", res, err, dupID)
			}
			if got := f.col("email_bidx")[dupID]; got != f.bidx(2, "Dup@Example.com") {
				t.Errorf("row %d: email_bidx is %s, want its value under index key 2", dupID, nsShow(got))
			}
			if c, err := job.Census(ctx); err != nil || !c.Done() {
				t.Errorf("census at the end: %s, %v; want done", nsCensusLine(c), err)
			}
		})
	}
}

// TestRotationUniqueEncryptPlaintext: encrypting a plaintext column whose
// blind index (UNIQUE) is still NULL, where the data holds two case
// variants of an address in one batch and two in different batches, and
// the application has meanwhile inserted an indexed duplicate of an
// unindexed old row. The later row of each pair, and the old row, are
// failures (ErrDuplicate, no value) and keep their plaintext, NULL index
// and old phone; every other row is encrypted and indexed. Once the
// duplicates are resolved, the next run finishes and Verify finds every
// value.
func TestRotationUniqueEncryptPlaintext(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			f, _ := newUniqueFixture(t, db.open(t))
			const n = 30
			email := map[int]string{
				4: "Case@Example.com", 6: "case@example.com", // one batch (1-8)
				10: "  Spaced@Example.com", 27: "spaced@example.com", // two batches
				12: "Late@Example.com", // the application inserts row 31
			}
			var rows [][]any
			for id := 1; id <= n; id++ {
				e, ok := email[id]
				if !ok {
					e = uqEmail(id)
					email[id] = e
				}
				rows = append(rows, []any{id, e, nil, f.seal(1, fmt.Sprintf("+44 %d", id))})
			}
			f.insert(rows...)
			email[31] = "late@example.com"
			f.insert([]any{31, f.seal(1, email[31]), f.bidx(1, email[31]), nil})
			before := map[string]map[int64]string{"email": f.col("email"), "email_bidx": f.col("email_bidx"), "phone": f.col("phone")}
			secrets := []string{f.bidx(1, "case@example.com"), f.bidx(1, "spaced@example.com"), f.bidx(1, "late@example.com"), before["email"][31]}
			for _, id := range []int64{6, 12, 27} {
				secrets = append(secrets, before["phone"][id])
			}

			job := f.job(f.v1)
			opts := rotation.Options{BatchSize: 8, EncryptPlaintext: []string{"email"}}
			res, err := job.Rotate(ctx, opts)
			if !errors.Is(err, rotation.ErrFailures) {
				t.Fatalf("Rotate: %v, want ErrFailures (%+v)", err, res)
			}
			uqCheckQuiet(t, "Rotate's error", err.Error(), secrets)
			bad := []int{6, 12, 27}
			if len(res.Failures) != len(bad) {
				t.Fatalf("Rotate: failures %v, want rows %v", res.Failures, bad)
			}
			for k, id := range bad {
				uqCheckFailure(t, res.Failures[k], id, secrets)
			}
			if res.Rows != int64(n-len(bad)) || res.Plaintext != int64(n-len(bad)) {
				t.Errorf("Rotate: %d rows, %d plaintext values; want %d", res.Rows, res.Plaintext, n-len(bad))
			}
			after := map[string]map[int64]string{"email": f.col("email"), "email_bidx": f.col("email_bidx"), "phone": f.col("phone")}
			for id := int64(1); id <= n+1; id++ {
				failed := id == 6 || id == 12 || id == 27
				if failed || id == 31 {
					for col, vals := range after {
						if vals[id] != before[col][id] {
							t.Errorf("row %d: %s was written", id, col)
						}
					}
					continue
				}
				e := after["email"][id]
				if !strings.HasPrefix(e, "v1:") || f.open(e) != email[int(id)] {
					t.Errorf("row %d: email is not encrypted", id)
				}
				if got := after["email_bidx"][id]; got != f.bidx(1, email[int(id)]) {
					t.Errorf("row %d: email_bidx is %s, want the index of its email", id, nsShow(got))
				}
			}

			// Resolved: row 6 gets another address, rows 27 and 31 go.
			q := fmt.Sprintf("UPDATE %s SET email = %s WHERE id = 6", f.qt, f.d.ph(1))
			if _, err := f.d.db.ExecContext(ctx, q, "case+6@example.com"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.d.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE id IN (27, 31)", f.qt)); err != nil {
				t.Fatal(err)
			}
			res, err = job.Rotate(ctx, opts)
			if err != nil || res.Rows != 2 || len(res.Failures) != 0 {
				t.Fatalf("Rotate once resolved: %+v, %v; want rows 6 and 12 written", res, err)
			}
			bidx := f.col("email_bidx")
			for id, e := range map[int64]string{6: "case+6@example.com", 12: "Late@Example.com"} {
				if bidx[id] != f.bidx(1, e) {
					t.Errorf("row %d: email_bidx is %s, want the index of its email", id, nsShow(bidx[id]))
				}
			}
			v, err := job.Verify(ctx, rotation.VerifyOptions{})
			if err != nil || !v.Done() || v.Rows != n-1 {
				t.Errorf("Verify at the end: %s, %d rows, %v; want done, %d rows", nsCensusLine(v), v.Rows, err, n-1)
			}
		})
	}
}

// TestRotationUniqueDeferredPostgres: on PostgreSQL a UNIQUE constraint
// declared DEFERRABLE INITIALLY DEFERRED is checked at COMMIT, not by the
// batch's UPDATE: the duplicate is a failure of its row all the same, and
// the rest of its batch is written.
func TestRotationUniqueDeferredPostgres(t *testing.T) {
	ctx := testContext(t)
	f := newNSFixture(t, rotEdgePostgres(t), false)
	constraint := f.name + "_uq"
	ddl := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (email_bidx) DEFERRABLE INITIALLY DEFERRED", f.qt, quoteIdentPG(constraint))
	if _, err := f.d.db.ExecContext(ctx, ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	const n, dupID, newID = 12, 3, 13
	email := func(id int) string {
		if id == dupID {
			return "Dup@Example.com"
		}
		return uqEmail(id)
	}
	for id := 1; id <= n; id++ {
		f.insert([]any{id, f.seal(1, email(id)), f.bidx(1, email(id)), nil})
	}
	f.ikeys.use(t, 2)
	f.insert([]any{newID, f.seal(2, "dup@example.com"), f.bidx(2, "dup@example.com"), nil})
	before := f.col("email_bidx")

	job := f.job(nil)
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 4})
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != 1 || res.Rows != n-1 {
		t.Fatalf("Rotate: %d rows, failures %v, %v; want %d rows and row %d failed", res.Rows, res.Failures, err, n-1, dupID)
	}
	uqCheckFailure(t, res.Failures[0], dupID, []string{before[dupID], before[newID]})
	if !strings.Contains(res.Failures[0].Err.Error(), constraint) {
		t.Errorf("the failure %q does not name the constraint", res.Failures[0].Err)
	}
	after := f.col("email_bidx")
	for id := int64(1); id <= newID; id++ {
		switch {
		case id == dupID || id == newID:
			if after[id] != before[id] {
				t.Errorf("row %d was written", id)
			}
		case after[id] != f.bidx(2, email(int(id))):
			t.Errorf("row %d: email_bidx is %s, want its value under index key 2", id, nsShow(after[id]))
		}
	}
}
