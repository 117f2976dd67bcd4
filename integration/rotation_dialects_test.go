package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// This file holds the rotation tests that run on MySQL/MariaDB
// (rotation_mysql_test.go) and on SQLite (rotation_sqlite_test.go), against
// a database described by a rotDiaDB. Their table is the one of the
// PostgreSQL rotation tests (rotation_helpers_test.go): email, a blind
// index on it, blob and a NULL-able phone, written under key version 1.

// rotDiaDB is a MySQL or SQLite database for the rotation tests.
type rotDiaDB struct {
	name    string // "MySQL", "SQLite"
	dialect rotation.Dialect
	db      *sql.DB
	quote   func(string) string
	// columns is the table's column list after "id", with %s for the
	// quoted names email, email_bidx, blob and phone.
	columns string
	// idColumn declares "id", the primary key, for a table with explicit
	// ids.
	idColumn string
	// lockRows, when set, holds the rows with the given ids of the quoted
	// table locked (as the application would) until release is called.
	lockRows func(ctx context.Context, table string, ids []int64) (release func(), err error)
	// writerTx begins an application's read-modify-write transaction.
	writerTx func(ctx context.Context, db *sql.DB) (*sql.Tx, error)
	// writerPause is how long a writer waits between writes, and lockIdle
	// how long the locking client waits between lockings. On SQLite they
	// leave the write lock free now and then: its busy handler polls, and
	// a client that takes the lock again at once can starve the others.
	writerPause, lockIdle time.Duration
	// minWrites is the number of writes that must happen during the
	// rotation for the concurrency test to count.
	minWrites int64
}

// rotDiaFixture is one test's table and keys.
type rotDiaFixture struct {
	t     *testing.T
	d     *rotDiaDB
	name  string // unquoted table name
	qt    string // quoted
	keys  *keyring
	ikeys *rotIndexKeys
	index *blindindex.Index
	// blobAsBytes stores the blob column as []byte (a BLOB in SQLite)
	// for even ids, as a string (TEXT) for odd ones.
	blobAsBytes bool
}

// newRotDiaFixture creates the table with n rows written under data key
// version 1 and index key version 1. Rows id%3 == 0 have a NULL phone.
func newRotDiaFixture(t *testing.T, d *rotDiaDB, n int) *rotDiaFixture {
	t.Helper()
	f := &rotDiaFixture{t: t, d: d, keys: newKeyring(t), blobAsBytes: d.dialect == rotation.SQLite}
	f.keys.use(1)
	f.name = uniqueName(t)
	f.qt = d.quote(f.name)
	ctx := testContext(t)
	ddl := fmt.Sprintf("CREATE TABLE %s (%s, %s)", f.qt, d.idColumn,
		fmt.Sprintf(d.columns, d.quote("email"), d.quote("email_bidx"), d.quote("blob"), d.quote("phone")))
	if _, err := d.db.ExecContext(ctx, ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	t.Cleanup(func() { dropTable(t, d.db, f.qt) })
	f.ikeys = newRotIndexKeys(t, 1, 2)
	ix, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	f.index = ix
	f.insert(ctx, n)
	return f
}

// q puts the quoted table name into a query with one %s.
func (f *rotDiaFixture) q(format string) string { return fmt.Sprintf(format, f.qt) }

// values returns the stored values of row id at generation gen, encrypted
// under the default provider: email, its index, blob and phone (nil for
// NULL).
func (f *rotDiaFixture) values(id int64, gen int, phoneNull bool) []any {
	f.t.Helper()
	email, err := encryptedtype.NewString(rotEmail(id, gen)).Value()
	if err != nil {
		f.t.Fatal(err)
	}
	bidx, err := f.index.Compute(rotEmail(id, gen))
	if err != nil {
		f.t.Fatal(err)
	}
	blob, err := encryptedtype.NewBytes(rotBlob(id, gen)).Value()
	if err != nil {
		f.t.Fatal(err)
	}
	if f.blobAsBytes && id%2 == 0 {
		blob = []byte(blob.(string))
	}
	var phone any
	if !phoneNull {
		if phone, err = encryptedtype.NewString(rotPhone(id, gen)).Value(); err != nil {
			f.t.Fatal(err)
		}
	}
	return []any{email, bidx, blob, phone}
}

// insert adds rows 1…n at generation 0, in multi-row INSERTs.
func (f *rotDiaFixture) insert(ctx context.Context, n int) {
	f.t.Helper()
	const per = 200
	cols := fmt.Sprintf("(id, %s, %s, %s, %s)", f.d.quote("email"), f.d.quote("email_bidx"), f.d.quote("blob"), f.d.quote("phone"))
	for start := 0; start < n; start += per {
		var vals []string
		var args []any
		for i := start; i < min(n, start+per); i++ {
			id := int64(i + 1)
			vals = append(vals, "(?, ?, ?, ?, ?)")
			args = append(args, id)
			args = append(args, f.values(id, 0, rotPhoneNull0(id))...)
		}
		if _, err := f.d.db.ExecContext(ctx, f.q("INSERT INTO %s ")+cols+" VALUES "+strings.Join(vals, ", "), args...); err != nil {
			f.t.Fatalf("inserting rows: %v", err)
		}
	}
}

// update writes row id at generation gen through q.
func (f *rotDiaFixture) update(ctx context.Context, q interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}, id int64, gen int, phoneNull bool) error {
	args := append(f.values(id, gen, phoneNull), id)
	_, err := q.ExecContext(ctx, f.q(fmt.Sprintf("UPDATE %%s SET %s = ?, %s = ?, %s = ?, %s = ? WHERE id = ?",
		f.d.quote("email"), f.d.quote("email_bidx"), f.d.quote("blob"), f.d.quote("phone"))), args...)
	return err
}

// activate makes data key version 2 and index key version 2 active, with
// version 1 still readable, and returns the Codec a rotation uses.
func (f *rotDiaFixture) activate() *encryptedtype.Codec {
	s := f.keys.use(2, 1)
	f.ikeys.use(f.t, 2)
	return encryptedtype.NewCodec(s)
}

// table describes the fixture's table, with its dialect named or detected.
func (f *rotDiaFixture) table(explicit bool) rotation.Table {
	t := rotation.Table{
		Name:       f.name,
		PrimaryKey: "id",
		Columns: []rotation.Column{
			{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: f.index}}},
			{Name: "blob"},
			{Name: "phone"},
		},
	}
	if explicit {
		t.Dialect = f.d.dialect
	}
	return t
}

func (f *rotDiaFixture) job(codec rotation.Cipher) *rotation.Job {
	f.t.Helper()
	j, err := rotation.New(f.d.db, f.table(true), codec)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// rotDiaRow is a row as stored (raw) and as the application reads it.
type rotDiaRow struct {
	email, blob string
	phone       *string
	bidx        sql.NullString
	raw         [4]sql.NullString // email, email_bidx, blob, phone as stored
}

// read reads every row, decrypting with the column types (any error
// fails the test), and returns them by id.
func (f *rotDiaFixture) read(ctx context.Context) map[int64]rotDiaRow {
	f.t.Helper()
	rows, err := f.d.db.QueryContext(ctx, f.q(fmt.Sprintf("SELECT id, %s, %s, %s, %s FROM %%s ORDER BY id",
		f.d.quote("email"), f.d.quote("email_bidx"), f.d.quote("blob"), f.d.quote("phone"))))
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]rotDiaRow{}
	for rows.Next() {
		var id int64
		var raw [4]any
		if err := rows.Scan(&id, &raw[0], &raw[1], &raw[2], &raw[3]); err != nil {
			f.t.Fatal(err)
		}
		var r rotDiaRow
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				r.raw[k] = sql.NullString{String: v, Valid: true}
			case []byte:
				r.raw[k] = sql.NullString{String: string(v), Valid: true}
			}
		}
		var email encryptedtype.String
		var blob encryptedtype.Bytes
		var phone *encryptedtype.String
		if err := email.Scan(raw[0]); err != nil {
			f.t.Fatalf("row %d: email: %v", id, err)
		}
		if err := blob.Scan(raw[2]); err != nil {
			f.t.Fatalf("row %d: blob: %v", id, err)
		}
		if raw[3] != nil {
			phone = new(encryptedtype.String)
			if err := phone.Scan(raw[3]); err != nil {
				f.t.Fatalf("row %d: phone: %v", id, err)
			}
			p := phone.Plaintext()
			r.phone = &p
		}
		r.email, r.blob, r.bidx = email.Plaintext(), string(blob.Plaintext()), r.raw[1]
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// checkAll checks that every row holds generation gen(id) of its values
// (phone NULL where phoneNull(id)), every stored value under data key
// version wantData and every index value under index key version
// wantIndex and equal to the index of its email.
func (f *rotDiaFixture) checkAll(ctx context.Context, n int, gen func(int64) int, phoneNull func(int64) bool, wantData, wantIndex uint32) {
	f.t.Helper()
	rows := f.read(ctx)
	if len(rows) != n {
		f.t.Errorf("%d rows, want %d", len(rows), n)
	}
	bad := 0
	for id, r := range rows {
		g := gen(id)
		ok := r.email == rotEmail(id, g) && r.blob == string(rotBlob(id, g))
		if phoneNull(id) {
			ok = ok && r.phone == nil
		} else {
			ok = ok && r.phone != nil && *r.phone == rotPhone(id, g)
		}
		want, err := f.index.ComputeVersion(wantIndex, r.email)
		if err != nil {
			f.t.Fatal(err)
		}
		ok = ok && r.bidx.Valid && r.bidx.String == want
		for k, raw := range r.raw {
			if k == 1 || !raw.Valid {
				continue
			}
			if v, err := encryptedtype.Version([]byte(raw.String)); err != nil || v != wantData {
				ok = false
			}
		}
		if !ok {
			if bad++; bad <= 5 {
				f.t.Errorf("row %d: want generation %d (phone NULL: %v) under versions %d/%d; got email right %v, phone NULL %v, index current %v, raw prefixes %s",
					id, g, phoneNull(id), wantData, wantIndex, r.email == rotEmail(id, g), r.phone == nil, r.bidx.String == want, rotDiaPrefixes(r.raw))
			}
		}
	}
	if bad > 5 {
		f.t.Errorf("… and %d more rows", bad-5)
	}
}

// rotDiaPrefixes shows the version prefixes of raw values, never more.
func rotDiaPrefixes(raw [4]sql.NullString) string {
	var s []string
	for _, r := range raw {
		p, _, _ := strings.Cut(r.String, ":")
		if !r.Valid {
			p = "NULL"
		}
		s = append(s, p)
	}
	return strings.Join(s, "/")
}

// snapshot returns the stored values of the given rows, joined.
func (f *rotDiaFixture) snapshot(ctx context.Context, ids ...int64) map[int64]string {
	f.t.Helper()
	rows := f.read0(ctx)
	out := map[int64]string{}
	for _, id := range ids {
		r := rows[id]
		out[id] = fmt.Sprintf("%q|%q|%q|%q", r[0].String, r[1].String, r[2].String, r[3].String)
	}
	return out
}

// read0 reads every row's stored values without decrypting.
func (f *rotDiaFixture) read0(ctx context.Context) map[int64][4]sql.NullString {
	f.t.Helper()
	rows, err := f.d.db.QueryContext(ctx, f.q(fmt.Sprintf("SELECT id, %s, %s, %s, %s FROM %%s",
		f.d.quote("email"), f.d.quote("email_bidx"), f.d.quote("blob"), f.d.quote("phone"))))
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][4]sql.NullString{}
	for rows.Next() {
		var id int64
		var raw [4]sql.NullString
		if err := rows.Scan(&id, &raw[0], &raw[1], &raw[2], &raw[3]); err != nil {
			f.t.Fatal(err)
		}
		out[id] = raw
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// setRaw overwrites one stored value of row id with plain SQL.
func (f *rotDiaFixture) setRaw(ctx context.Context, id int64, column string, value any) {
	f.t.Helper()
	if _, err := f.d.db.ExecContext(ctx, f.q("UPDATE %s SET "+f.d.quote(column)+" = ? WHERE id = ?"), value, id); err != nil {
		f.t.Fatal(err)
	}
}

// rotDiaIn returns "(?, ?, …)" for ids, and ids as arguments.
func rotDiaIn(ids []int64) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ")", args
}

// rotDiaFlip returns raw with its middle character replaced by another
// base64url character: still in the wire format, no longer authentic.
func rotDiaFlip(raw string) string {
	i := len(raw) / 2
	c := byte('A')
	if raw[i] == 'A' {
		c = 'B'
	}
	return raw[:i] + string(c) + raw[i+1:]
}

// testRotDiaEverything rotates a table to new data and index key versions:
// a census before and after, a dry run that writes nothing, then the
// rotation with two workers, with the dialect detected from the driver.
func testRotDiaEverything(t *testing.T, d *rotDiaDB) *rotDiaFixture {
	const n = 1500
	f := newRotDiaFixture(t, d, n)
	ctx := testContext(t)
	codec := f.activate()
	j, err := rotation.New(d.db, f.table(false), codec) // detected from the driver
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Table().Dialect; got != d.dialect {
		t.Fatalf("detected dialect %v, want %v", got, d.dialect)
	}

	phones := int64(n - n/3)
	c, err := j.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Rows != n || c.Pending != n || c.ActiveVersion != 2 || c.Done() ||
		c.Columns[0].Versions[1] != n || c.Columns[1].Versions[1] != n || c.Columns[2].Versions[1] != phones ||
		c.Columns[2].Null != n/3 || c.Columns[0].Pending != n || c.Columns[2].Pending != phones ||
		c.Indexes[0].Versions[1] != n || c.Indexes[0].Pending != n || c.Indexes[0].Active != "b2:" {
		t.Errorf("census before: %+v", c)
	}

	dry, err := j.Rotate(ctx, rotation.Options{DryRun: true, BatchSize: 300})
	if err != nil || dry.Rows != n || !dry.DryRun {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 1, 1)

	var progress atomic.Int64
	res, err := j.Rotate(ctx, rotation.Options{BatchSize: 200, Workers: 2, Progress: func(rotation.Progress) { progress.Add(1) }})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if res.Rows != n || res.Values != n+n+phones || res.IndexValues != n || res.Plaintext != 0 || len(res.Failures) != 0 || res.Passes != 1 {
		t.Errorf("result %+v", res)
	}
	if progress.Load() < n/200 {
		t.Errorf("%d progress reports", progress.Load())
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 2, 2)

	c, err = j.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Done() || c.Columns[0].Versions[2] != n || c.Columns[2].Versions[2] != phones || c.Columns[2].Null != n/3 || c.Indexes[0].Versions[2] != n {
		t.Errorf("census after: %+v", c)
	}
	v, err := j.Verify(ctx, rotation.VerifyOptions{BatchSize: 400})
	if err != nil || v.FailureCount != 0 || v.Rows != n {
		t.Errorf("Verify: %+v, %v", v, err)
	}
	// A second run finds nothing to do.
	res, err = j.Rotate(ctx, rotation.Options{})
	if err != nil || res.Rows != 0 {
		t.Errorf("second Rotate: %+v, %v", res, err)
	}
	return f
}

// testRotDiaConcurrent rotates while writers keep updating random rows,
// each writer owning the rows id%writers == w, so that every row's last
// committed value is known; some writes are read-modify-write transactions,
// and where the database has row locks another client holds random rows
// locked for a while, so that the job has to skip them and come back.
// Afterwards every row holds the last value its writer committed, under
// the new key versions.
func testRotDiaConcurrent(t *testing.T, d *rotDiaDB, n, writers int) {
	f := newRotDiaFixture(t, d, n)
	ctx := testContext(t)
	codec := f.activate() // the application writes under version 2 from now on
	job := f.job(codec)

	gen := make([]int, n+1)
	phoneNull := make([]bool, n+1)
	for id := 1; id <= n; id++ {
		phoneNull[id] = rotPhoneNull0(int64(id))
	}
	var writes, txWrites atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for !stop.Load() {
				id := int64(rng.IntN(n/writers)*writers + w)
				if id == 0 {
					id = int64(writers)
				}
				g := gen[id] + 1
				null := rng.IntN(4) == 0
				var err error
				if rng.IntN(2) == 0 {
					err = f.update(ctx, d.db, id, g, null)
				} else {
					// Read-modify-write in a transaction.
					var tx *sql.Tx
					if tx, err = d.writerTx(ctx, d.db); err == nil {
						var cur encryptedtype.String
						lock := ""
						if d.dialect == rotation.MySQL {
							lock = " FOR UPDATE"
						}
						err = tx.QueryRowContext(ctx, f.q("SELECT "+d.quote("email")+" FROM %s WHERE id = ?"+lock), id).Scan(&cur)
						if err == nil && cur.Plaintext() != rotEmail(id, g-1) {
							t.Errorf("row %d reads generation %q in the writer's transaction, want %d", id, cur.Plaintext(), g-1)
						}
						if err == nil {
							time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
							err = f.update(ctx, tx, id, g, null)
						}
						if err == nil {
							err = tx.Commit()
						} else {
							_ = tx.Rollback()
						}
						if err == nil {
							txWrites.Add(1)
						}
					}
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d, row %d: %w", w, id, err)
					return
				}
				gen[id], phoneNull[id] = g, null
				writes.Add(1)
				time.Sleep(d.writerPause)
			}
		})
	}
	var locks atomic.Int64
	if d.lockRows != nil {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(99, 7))
			for !stop.Load() {
				ids := make([]int64, 10)
				for i := range ids {
					ids[i] = int64(rng.IntN(n) + 1)
				}
				release, err := d.lockRows(ctx, f.qt, ids)
				if err != nil {
					errs <- fmt.Errorf("locking rows: %w", err)
					return
				}
				time.Sleep(20 * time.Millisecond)
				release()
				locks.Add(1)
				time.Sleep(d.lockIdle)
			}
		})
	}

	time.Sleep(20 * time.Millisecond) // let the writers start
	before := writes.Load()
	// The pause between batches leaves the writers room on SQLite, where a
	// batch holds the database's write lock.
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 50, Workers: 2, Pause: 30 * time.Millisecond})
	writesDuring := writes.Load() - before
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%v", err)
	}
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Logf("%s rotation: %d rows, %d passes, %d batches retried, %v; writers: %d writes during it (%d in transactions), %d lockings",
		d.name, res.Rows, res.Passes, res.Retried, res.Elapsed.Round(time.Millisecond), writesDuring, txWrites.Load(), locks.Load())
	if writesDuring < d.minWrites {
		t.Errorf("only %d writes happened during the rotation; the test did not exercise concurrency", writesDuring)
	}
	f.checkAll(ctx, n, func(id int64) int { return gen[id] }, func(id int64) bool { return phoneNull[id] }, 2, 2)
	c, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Done() || c.Columns[0].Versions[2] != int64(n) {
		t.Errorf("census after: %+v", c)
	}
}

// testRotDiaCorrupted corrupts rows in different ways: the census counts
// them, the rotation reports each with its id and reason (no plaintext),
// leaves them exactly as they were, rotates the rest and ends instead of
// looping; a second run goes straight to the same rows.
func testRotDiaCorrupted(t *testing.T, d *rotDiaDB) {
	const n = 600
	f := newRotDiaFixture(t, d, n)
	ctx := testContext(t)
	raw := f.read0(ctx)
	// 7: tampered email; 50: unknown key version; 99: malformed blob;
	// 300: plaintext in a column not being converted; 451: tampered phone.
	f.setRaw(ctx, 7, "email", rotDiaFlip(raw[7][0].String))
	f.setRaw(ctx, 50, "email", "v9"+strings.TrimPrefix(raw[50][0].String, "v1"))
	f.setRaw(ctx, 99, "blob", []byte("v01:AAAA"))
	f.setRaw(ctx, 300, "email", "someone@Example.com")
	f.setRaw(ctx, 451, "phone", rotDiaFlip(raw[451][3].String))
	bad := []int64{7, 50, 99, 300, 451}
	was := f.snapshot(ctx, bad...)

	job := f.job(f.activate())
	c, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	email, blob, phone := c.Columns[0], c.Columns[1], c.Columns[2]
	if c.Rows != n || c.Pending != n ||
		email.Versions[1] != n-2 || email.Versions[9] != 1 || email.UnknownKey != 1 || email.Plaintext != 1 || email.Undecryptable != 1 ||
		blob.Versions[1] != n-1 || blob.Malformed != 1 || blob.Undecryptable != 1 ||
		phone.Versions[1] != n-n/3 || phone.Null != n/3 {
		t.Errorf("census of the corrupted table: %+v", c)
	}

	var reported []rotation.Failure
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 64, OnFailure: func(fl rotation.Failure) { reported = append(reported, fl) }})
	if !errors.Is(err, rotation.ErrFailures) {
		t.Fatalf("Rotate: got %v, want ErrFailures", err)
	}
	if !strings.Contains(err.Error(), "5 rows") || !rotNoSecrets(err.Error()) {
		t.Errorf("error %q: want the count of failed rows and no plaintext", err)
	}
	if res.Rows != n-5 || len(res.Failures) != 5 || len(reported) != 5 {
		t.Fatalf("rotate: %d rows, failures %v, reported %v", res.Rows, res.Failures, reported)
	}
	wantCol := map[string]string{"7": "email", "50": "email", "99": "blob", "300": "email", "451": "phone"}
	wantErr := map[string]error{"7": encryptedtype.ErrAuth, "50": encryptedtype.ErrUnknownVersion, "99": encryptedtype.ErrMalformed,
		"300": encryptedtype.ErrNotEncrypted, "451": encryptedtype.ErrAuth}
	for _, fl := range res.Failures {
		if wantCol[fl.PK] != fl.Column || !errors.Is(fl.Err, wantErr[fl.PK]) {
			t.Errorf("failure %v: want column %q and %v", fl, wantCol[fl.PK], wantErr[fl.PK])
		}
		if !rotNoSecrets(fl.String()) {
			t.Errorf("failure %q holds plaintext", fl)
		}
	}
	now := f.snapshot(ctx, bad...)
	for id, s := range was {
		if now[id] != s {
			t.Errorf("row %d was written: %s, now %s", id, s, now[id])
		}
	}
	c, err = job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The five rows are untouched: their index values too.
	if c.Pending != 5 || c.Columns[0].Versions[2] != n-5 || c.Indexes[0].Versions[2] != n-5 || c.Indexes[0].Versions[1] != 5 {
		t.Errorf("census after: %+v", c)
	}
	vc, err := job.Verify(ctx, rotation.VerifyOptions{})
	if !errors.Is(err, rotation.ErrFailures) || vc.FailureCount != 5 {
		t.Errorf("Verify: %v, %d failures %v", err, vc.FailureCount, vc.Failures)
	}

	// Running again goes straight to the same five, and still ends.
	res, err = job.Rotate(ctx, rotation.Options{BatchSize: 2, Workers: 3})
	if !errors.Is(err, rotation.ErrFailures) || res.Rows != 0 || len(res.Failures) != 5 {
		t.Errorf("second rotation: %+v, %v", res, err)
	}
	// A failed row that the application rewrites meanwhile (here after the
	// first batch, outside any of the job's transactions) is not reported
	// at the end.
	var once sync.Once
	res, err = job.Rotate(ctx, rotation.Options{BatchSize: 100, Progress: func(p rotation.Progress) {
		if p.Done > 0 {
			once.Do(func() {
				if err := f.update(ctx, d.db, 7, 0, false); err != nil {
					t.Error(err)
				}
			})
		}
	}})
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != 4 {
		t.Errorf("rotation with row 7 rewritten meanwhile: %+v, %v", res.Failures, err)
	}
	for _, fl := range res.Failures {
		if fl.PK == "7" {
			t.Errorf("row 7 was rewritten by the application, and is still reported: %v", fl)
		}
	}
	if _, err := job.Rotate(ctx, rotation.Options{BatchSize: 100, MaxFailures: 2}); !errors.Is(err, rotation.ErrTooManyFailures) {
		t.Errorf("MaxFailures 2: got %v, want ErrTooManyFailures", err)
	}
}

// testRotDiaPlaintext converts a table whose email and phone columns hold
// plaintext, with an empty blind-index column: without EncryptPlaintext
// the plaintext rows are failures; with it they are encrypted and the
// index filled in, while a damaged value that merely looks encrypted is
// reported, not taken as plaintext.
func testRotDiaPlaintext(t *testing.T, d *rotDiaDB, textType, bidxType string) {
	const n = 800
	keys := newKeyring(t)
	codec := encryptedtype.NewCodec(keys.use(1))
	ctx := testContext(t)
	name := uniqueName(t)
	qt := d.quote(name)
	if _, err := d.db.ExecContext(ctx, fmt.Sprintf("CREATE TABLE %s (%s, email %s NOT NULL, email_bidx %s, phone %s)", qt, d.idColumn, textType, bidxType, textType)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, d.db, qt) })
	ikeys := newRotIndexKeys(t, 1)
	index, err := blindindex.New(name+".email", ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	email := func(id int64) string { return fmt.Sprintf("Plain%05d@Example.com ", id) }
	phone := func(id int64) *string {
		switch {
		case id == 8:
			return ptr("")
		case id%4 == 0:
			return nil
		}
		return ptr(fmt.Sprintf("+44 20 %07d", id))
	}
	for start := int64(1); start <= n; start += 200 {
		var vals []string
		var args []any
		for id := start; id < start+200 && id <= n; id++ {
			vals = append(vals, "(?, ?, ?)")
			args = append(args, id, email(id), phone(id))
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO "+qt+" (id, email, phone) VALUES "+strings.Join(vals, ", "), args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.db.ExecContext(ctx, "UPDATE "+qt+" SET email = 'v1:not base64!' WHERE id = 77"); err != nil {
		t.Fatal(err)
	}
	tbl := rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{
		{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: index}}},
		{Name: "phone"},
	}}
	job, err := rotation.New(d.db, tbl, codec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Census reads only the prefix of row 77's damaged value: version 1.
	if c.Columns[0].Plaintext != n-1 || c.Columns[0].Versions[1] != 1 || c.Columns[1].Plaintext != n-n/4+1 || c.Columns[1].Null != n/4-1 || c.Indexes[0].Missing != n {
		t.Errorf("census before: %+v", c)
	}

	// Not named in EncryptPlaintext: plaintext is a failure.
	_, err = job.Rotate(ctx, rotation.Options{MaxFailures: 10})
	if !errors.Is(err, rotation.ErrTooManyFailures) {
		t.Errorf("Rotate without EncryptPlaintext: got %v, want ErrTooManyFailures", err)
	}
	if _, err := job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"nope"}}); !errors.Is(err, rotation.ErrInvalidTable) {
		t.Errorf("EncryptPlaintext of a column not described: %v", err)
	}

	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 150, Workers: 2, EncryptPlaintext: []string{"email", "phone"}})
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != 1 || res.Failures[0].PK != "77" || !errors.Is(res.Failures[0].Err, encryptedtype.ErrMalformed) {
		t.Fatalf("EncryptPlaintext: %+v, %v", res, err)
	}
	if res.Rows != n-1 || res.Plaintext != int64(n-1+n-n/4+1-1) || res.IndexValues != n-1 {
		t.Errorf("EncryptPlaintext result: %+v", res)
	}
	rows, err := d.db.QueryContext(ctx, "SELECT id, email, email_bidx, phone FROM "+qt+" WHERE id <> 77")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	count := 0
	for rows.Next() {
		var id int64
		var e encryptedtype.String
		var bidx string
		var p *encryptedtype.String
		if err := rows.Scan(&id, &e, &bidx, &p); err != nil {
			t.Fatalf("row %d: %v", id, err)
		}
		want, _ := index.Compute(email(id))
		wp := phone(id)
		if e.Plaintext() != email(id) || bidx != want || (wp == nil) != (p == nil) || (p != nil && p.Plaintext() != *wp) {
			t.Errorf("row %d after the migration: index ok %v, phone %v", id, bidx == want, p != nil)
		}
		count++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if count != n-1 {
		t.Errorf("%d rows read", count)
	}
	c, err = job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Row 77 is left as it was, its plaintext phone too.
	if c.Columns[0].Plaintext != 0 || c.Columns[0].Versions[1] != n ||
		c.Columns[1].Plaintext != 1 || c.Columns[1].Versions[1] != n-n/4 || c.Indexes[0].Versions[1] != n-1 || c.Pending != 1 {
		t.Errorf("census after: %+v", c)
	}
}

// testRotDiaHostile rotates a table and columns whose names are SQL
// injection attempts in the dialect's quoting: they are quoted, the table
// rotates, and nothing else happens (the canary table survives). Names
// that are not columns are errors, not SQL.
func testRotDiaHostile(t *testing.T, d *rotDiaDB, quoteChar string, exists func(table string) bool) {
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	u := uniqueName(t)
	suffix := u[len(u)-10:]
	canary := "colcrypt_it_canary_" + suffix
	if _, err := d.db.ExecContext(ctx, "CREATE TABLE "+d.quote(canary)+" (x INT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, d.db, d.quote(canary)) })
	q := quoteChar
	table := "h" + suffix + q + "; DROP TABLE " + canary + "; -- " + q + q
	col := "e" + q + "mail'); DROP TABLE " + canary + "; --"
	pk := "i" + q + "d\\"
	bidx := "b" + q + "\"'`idx"
	qt := d.quote(table)
	if _, err := d.db.ExecContext(ctx, "CREATE TABLE "+qt+" ("+d.quote(pk)+" BIGINT NOT NULL PRIMARY KEY, "+d.quote(col)+" TEXT, "+d.quote(bidx)+" VARCHAR(80))"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, d.db, qt) })
	ikeys := newRotIndexKeys(t, 1)
	index, err := blindindex.New("hostile", ikeys, blindindex.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 30; i++ {
		var v any
		if i%5 != 0 {
			if v, err = encryptedtype.NewString(rotEmail(i, 0)).Value(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO "+qt+" ("+d.quote(pk)+", "+d.quote(col)+") VALUES (?, ?)", i, v); err != nil {
			t.Fatal(err)
		}
	}
	codec := encryptedtype.NewCodec(keys.use(2, 1))
	tbl := rotation.Table{Name: table, PrimaryKey: pk, Dialect: d.dialect, Columns: []rotation.Column{{Name: col, Indexes: []rotation.Index{{Column: bidx, Indexer: index}}}}}
	job, err := rotation.New(d.db, tbl, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 7, Workers: 2})
	if err != nil || res.Rows != 24 || res.IndexValues != 24 {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
	c, err := job.Census(ctx)
	if err != nil || !c.Done() || c.Columns[0].Versions[2] != 24 || c.Columns[0].Null != 6 || c.Indexes[0].Versions[1] != 24 {
		t.Errorf("census: %+v, %v", c, err)
	}
	if !exists(canary) {
		t.Fatal("the canary table is gone")
	}
	for _, bad := range []rotation.Table{
		{Name: table + "x", PrimaryKey: pk, Columns: []rotation.Column{{Name: col}}},
		{Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col + "; SELECT 1"}}},
		{Name: table, PrimaryKey: "id) OR (1=1", Columns: []rotation.Column{{Name: col}}},
		{Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col, Indexes: []rotation.Index{{Column: bidx + q + " = 1; --", Indexer: index}}}}},
		{Schema: "x" + q + "; DROP TABLE " + canary, Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col}}},
	} {
		bad.Dialect = d.dialect
		job, err := rotation.New(d.db, bad, codec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Rotate(ctx, rotation.Options{}); !errors.Is(err, rotation.ErrInvalidTable) {
			t.Errorf("table %+v: got %v, want ErrInvalidTable", bad, err)
		}
		if _, err := job.Census(ctx); !errors.Is(err, rotation.ErrInvalidTable) {
			t.Errorf("census of %+v: got %v, want ErrInvalidTable", bad, err)
		}
	}
	if !exists(canary) {
		t.Fatal("the canary table is gone")
	}
}

// testRotDiaKeys pages over primary keys other than integers (the table
// is created by the caller, with columns k and secret): every key is
// passed back into SQL exactly (the corrupted row among them is excluded
// from later passes by its key), and every other row is rotated.
func testRotDiaKeys(t *testing.T, d *rotDiaDB, keys *keyring, name string, pks []any) {
	ctx := testContext(t)
	qt := d.quote(name)
	for i, pk := range pks {
		v, err := encryptedtype.NewString(fmt.Sprint("secret ", i)).Value()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.db.ExecContext(ctx, "INSERT INTO "+qt+" (k, secret) VALUES (?, ?)", pk, v); err != nil {
			t.Fatalf("key %q: %v", pk, err)
		}
	}
	badAt := len(pks) / 2
	if _, err := d.db.ExecContext(ctx, "UPDATE "+qt+" SET secret = 'v1:AAAA' WHERE k = ?", pks[badAt]); err != nil {
		t.Fatal(err)
	}
	codec := encryptedtype.NewCodec(keys.use(2, 1))
	job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "k", Dialect: d.dialect, Columns: []rotation.Column{{Name: "secret"}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 7, Workers: 3})
	if !errors.Is(err, rotation.ErrFailures) || res.Rows != int64(len(pks)-1) || len(res.Failures) != 1 {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
	for i, pk := range pks {
		var s any
		if err := d.db.QueryRowContext(ctx, "SELECT secret FROM "+qt+" WHERE k = ?", pk).Scan(&s); err != nil {
			t.Fatalf("key %q: %v", pk, err)
		}
		var str encryptedtype.String
		err := str.Scan(s)
		if i == badAt {
			if !errors.Is(err, encryptedtype.ErrMalformed) {
				t.Errorf("corrupted key %q: %v", pk, err)
			}
			continue
		}
		raw, _ := s.([]byte)
		if str, ok := s.(string); ok {
			raw = []byte(str)
		}
		if v, verr := encryptedtype.Version(raw); err != nil || str.Plaintext() != fmt.Sprint("secret ", i) || verr != nil || v != 2 {
			t.Errorf("key %q: %v, version %d", pk, err, v)
		}
	}
	c, err := job.Census(ctx)
	if err != nil || c.Pending != 1 || c.Rows != int64(len(pks)) || c.Columns[0].Versions[2] != int64(len(pks)-1) {
		t.Errorf("census: %+v, %v", c, err)
	}
}
