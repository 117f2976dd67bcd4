package integration

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// TestRotationRotatesEverything rotates a table from key version 1 to 2:
// the census before and after, NULLs staying NULL, a dry run writing
// nothing, and a second run finding nothing to do.
func TestRotationRotatesEverything(t *testing.T) {
	const n = 1200
	f := newRotFixture(t, n)
	ctx := testContext(t)
	codec := f.activate()
	job := f.job(codec)

	before, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Rows != n || before.Pending != n || before.ActiveVersion != 2 {
		t.Fatalf("census before: %d rows, %d pending, active %d; want %d, %d, 2", before.Rows, before.Pending, before.ActiveVersion, n, n)
	}
	email, phone := before.Columns[0], before.Columns[2]
	if email.Versions[1] != n || phone.Versions[1] != n-n/3 || phone.Null != n/3 || email.Pending != n {
		t.Errorf("census before: email %+v, phone %+v", email, phone)
	}
	if ix := before.Indexes[0]; ix.Versions[1] != n || ix.Pending != n || ix.Active != "b2:" {
		t.Errorf("census before: index %+v", ix)
	}

	// A dry run counts and writes nothing.
	res, err := job.Rotate(ctx, rotation.Options{DryRun: true, BatchSize: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n || res.Values != int64(3*n-n/3) || res.IndexValues != n {
		t.Errorf("dry run: %+v", res)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 1, 1)

	var last rotation.Progress
	res, err = job.Rotate(ctx, rotation.Options{BatchSize: 250, Workers: 2, Progress: func(p rotation.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != n || res.Values != int64(3*n-n/3) || res.IndexValues != n || res.Passes != 1 || len(res.Failures) != 0 {
		t.Errorf("rotate: %+v", res)
	}
	if last.Done != n || last.Total != n || last.Rate <= 0 {
		t.Errorf("last progress report: %+v", last)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 2, 2)

	after, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Done() || after.Columns[0].Versions[2] != n || after.Columns[2].Null != n/3 {
		t.Errorf("census after: %+v", after)
	}
	if _, err := job.Verify(ctx, rotation.VerifyOptions{}); err != nil {
		t.Errorf("Verify after rotation: %v", err)
	}

	// Idempotent: nothing left to do.
	res, err = job.Rotate(ctx, rotation.Options{})
	if err != nil || res.Rows != 0 {
		t.Errorf("second rotation: %+v, %v", res, err)
	}
}

// TestRotationCorruptedRowsReported corrupts a few rows in different ways:
// they are reported with their id and reason (no plaintext), left exactly
// as they were, the others rotate, and the job ends (with an error) instead
// of looping on them.
func TestRotationCorruptedRowsReported(t *testing.T) {
	const n = 600
	f := newRotFixture(t, n)
	ctx := testContext(t)
	// 7: tampered email; 50: unknown key version; 99: malformed prefix;
	// 200: malformed payload; 300: plaintext in a column not being
	// converted; 451: tampered phone.
	corrupt := map[int64]string{
		7:   "email = " + flipMiddleSQL("email"),
		50:  "email = 'v9' || substr(email, 3)",
		99:  "blob = 'v01:AAAA'::bytea",
		200: "blob = 'v1:@@@@'::bytea",
		300: "email = 'someone@Example.com'",
		451: "phone = " + flipMiddleSQL("phone"),
	}
	for id, set := range corrupt {
		if _, err := f.db.ExecContext(ctx, f.q("UPDATE %s SET "+set+" WHERE id = $1"), id); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() map[int64]string {
		out := map[int64]string{}
		rows, err := f.db.QueryContext(ctx, f.q("SELECT id, concat_ws('|', email, email_bidx, encode(blob, 'hex'), phone) FROM %s WHERE id = ANY($1)"), []int64{7, 50, 99, 200, 300, 451})
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			var s string
			if err := rows.Scan(&id, &s); err != nil {
				t.Fatal(err)
			}
			out[id] = s
		}
		return out
	}
	was := snapshot()

	job := f.job(f.activate())
	var reported []rotation.Failure
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 100, OnFailure: func(fl rotation.Failure) { reported = append(reported, fl) }})
	if !errors.Is(err, rotation.ErrFailures) {
		t.Fatalf("Rotate: got %v, want ErrFailures", err)
	}
	if !strings.Contains(err.Error(), "6 rows") || !rotNoSecrets(err.Error()) {
		t.Errorf("error %q: want the count of failed rows and no plaintext", err)
	}
	if res.Rows != n-6 || len(res.Failures) != 6 || len(reported) != 6 {
		t.Fatalf("rotate: %d rows, failures %v, reported %v", res.Rows, res.Failures, reported)
	}
	wantCol := map[string]string{"7": "email", "50": "email", "99": "blob", "200": "blob", "300": "email", "451": "phone"}
	for _, fl := range res.Failures {
		if wantCol[fl.PK] != fl.Column {
			t.Errorf("failure %v: want column %q", fl, wantCol[fl.PK])
		}
		if fl.Err == nil || !rotNoSecrets(fl.String()) {
			t.Errorf("failure %q: want a reason without plaintext", fl)
		}
	}
	if now := snapshot(); len(now) != 6 {
		t.Errorf("corrupted rows: %v", now)
	} else {
		for id, s := range was {
			if now[id] != s {
				t.Errorf("row %d was written: %q, now %q", id, s, now[id])
			}
		}
	}

	// The rest rotated; the census shows exactly the six left. (Census
	// parses; only Verify finds the bad payload of row 200.)
	c, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending != 6 || c.Columns[0].Plaintext != 1 || c.Columns[1].Malformed != 1 || c.Columns[0].UnknownKey != 1 {
		t.Errorf("census: %d pending, email %+v, blob %+v", c.Pending, c.Columns[0], c.Columns[1])
	}
	vc, err := job.Verify(ctx, rotation.VerifyOptions{})
	if !errors.Is(err, rotation.ErrFailures) || vc.FailureCount != 6 {
		t.Errorf("Verify: %v, %d failures %v", err, vc.FailureCount, vc.Failures)
	}

	// Running again goes straight to the same six, and still ends.
	res, err = job.Rotate(ctx, rotation.Options{BatchSize: 100})
	if !errors.Is(err, rotation.ErrFailures) || res.Rows != 0 || len(res.Failures) != 6 {
		t.Errorf("second rotation: %+v, %v", res, err)
	}
	// MaxFailures stops a job on which too much fails.
	_, err = job.Rotate(ctx, rotation.Options{BatchSize: 100, MaxFailures: 2})
	if !errors.Is(err, rotation.ErrTooManyFailures) {
		t.Errorf("MaxFailures 2: got %v, want ErrTooManyFailures", err)
	}
}

// TestRotationIndexMismatchRefused: an Indexer configured differently from
// the one that wrote the stored index values (here, without the
// normaliser) is refused before anything is written.
func TestRotationIndexMismatchRefused(t *testing.T) {
	f := newRotFixture(t, 50)
	ctx := testContext(t)
	codec := f.activate()
	tbl := f.table()
	other, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{}) // no normaliser
	if err != nil {
		t.Fatal(err)
	}
	tbl.Columns[0].Indexes[0].Indexer = other
	job, err := rotation.New(f.db, tbl, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Rotate(ctx, rotation.Options{})
	if !errors.Is(err, rotation.ErrIndexMismatch) || res.Rows != 0 {
		t.Fatalf("Rotate with a mismatched index: %+v, %v; want ErrIndexMismatch", res, err)
	}
	f.checkAll(ctx, 50, rotGen0, rotPhoneNull0, 1, 1)
}

// TestRotationHostileIdentifiers runs a rotation on a table and columns
// whose names are SQL injection attempts: they are quoted, the table
// rotates, and nothing else happens (the canary table survives). Names
// that are not columns are errors, not SQL.
func TestRotationHostileIdentifiers(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	// Names stay under PostgreSQL's 63 bytes, which it would truncate.
	u := uniqueName(t)
	suffix := u[len(u)-10:]
	canary := `"colcrypt_it_canary_` + suffix + `"`
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+canary+" (x INT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, db, canary) })
	table := `h` + suffix + `"; DROP TABLE ` + canary + `;--`
	col := `e"mail'); DROP TABLE ` + canary + `; --`
	pk := `i"d`
	qt, qc, qpk := `"`+strings.ReplaceAll(table, `"`, `""`)+`"`, `"`+strings.ReplaceAll(col, `"`, `""`)+`"`, `"`+strings.ReplaceAll(pk, `"`, `""`)+`"`
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+qt+" ("+qpk+" BIGINT PRIMARY KEY, "+qc+" TEXT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, db, qt) })
	for i := 1; i <= 30; i++ {
		var v any
		if i%5 != 0 {
			v = encryptedtype.NewString(rotEmail(int64(i), 0))
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+qt+" VALUES ($1, $2)", i, v); err != nil {
			t.Fatal(err)
		}
	}
	codec := encryptedtype.NewCodec(keys.use(2, 1))
	job, err := rotation.New(db, rotation.Table{Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 7})
	if err != nil || res.Rows != 24 {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
	c, err := job.Census(ctx)
	if err != nil || !c.Done() || c.Columns[0].Versions[2] != 24 || c.Columns[0].Null != 6 {
		t.Errorf("census: %+v, %v", c, err)
	}
	if !queryBool(t, db, "SELECT to_regclass($1) IS NOT NULL", canary) {
		t.Fatal("the canary table is gone")
	}

	// Names that do not exist are errors naming them, not SQL.
	for _, tbl := range []rotation.Table{
		{Name: table + "x", PrimaryKey: pk, Columns: []rotation.Column{{Name: col}}},
		{Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col + "; SELECT 1"}}},
		{Name: table, PrimaryKey: "id) OR (1=1", Columns: []rotation.Column{{Name: col}}},
		{Schema: "public; DROP TABLE " + canary, Name: table, PrimaryKey: pk, Columns: []rotation.Column{{Name: col}}},
	} {
		job, err := rotation.New(db, tbl, codec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := job.Rotate(ctx, rotation.Options{}); !errors.Is(err, rotation.ErrInvalidTable) {
			t.Errorf("table %+v: got %v, want ErrInvalidTable", tbl, err)
		}
		if _, err := job.Census(ctx); !errors.Is(err, rotation.ErrInvalidTable) {
			t.Errorf("census of %+v: got %v, want ErrInvalidTable", tbl, err)
		}
	}
	if _, err := rotation.New(db, rotation.Table{Name: "a\x00b", PrimaryKey: "id", Columns: []rotation.Column{{Name: "c"}}}, codec); !errors.Is(err, rotation.ErrInvalidTable) {
		t.Errorf("NUL in a name: got %v, want ErrInvalidTable", err)
	}
	if !queryBool(t, db, "SELECT to_regclass($1) IS NOT NULL", canary) {
		t.Fatal("the canary table is gone")
	}
}

// TestRotationLockedRowsLaterPass holds some rows locked in a transaction
// while the job runs: it skips them instead of waiting, rotates the rest,
// comes back in later passes, and finishes once the lock is released.
func TestRotationLockedRowsLaterPass(t *testing.T) {
	const n = 500
	f := newRotFixture(t, n)
	ctx := testContext(t)
	job := f.job(f.activate())

	locked := []int64{1, 2, 250, 499}
	tx, err := f.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, f.q("SELECT 1 FROM %s WHERE id = ANY($1) FOR UPDATE"), locked); err != nil {
		t.Fatal(err)
	}

	done := rotWaitForSecondPass(t, ctx, job)
	// Everything but the locked rows is rotated; those are untouched.
	v := f.rawVersions(ctx)
	for id := int64(1); id <= n; id++ {
		want := uint32(2)
		if slices.Contains(locked, id) {
			want = 1
		}
		if v[id][0] != want {
			t.Errorf("row %d is under version %d while waiting, want %d", id, v[id][0], want)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || o.res.Rows != n || o.res.Passes < 2 {
		t.Fatalf("Rotate: %+v, %v", o.res, o.err)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 2, 2)
}

// TestRotationTextAndUUIDKeys pages over primary keys that are not
// integers: text keys full of the characters that array literals and SQL
// quote (and a corrupted row among them, so that failed keys are excluded
// from later passes), and UUIDs.
func TestRotationTextAndUUIDKeys(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	for _, typ := range []string{"TEXT", "UUID"} {
		name := uniqueName(t)
		qt := `"` + name + `"`
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+qt+" (k "+typ+" PRIMARY KEY, secret TEXT)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dropTable(t, db, qt) })
		var pks []string
		if typ == "TEXT" {
			pks = []string{`a"b`, `c\d`, `{e,f}`, `NULL`, ``, `g h`, `ñandú`, `'; DROP TABLE x; --`, `x"y\z,{}`, "tab\there"}
			for i := range 200 {
				pks = append(pks, fmt.Sprintf("key %03d", i))
			}
		} else {
			for i := range 150 {
				pks = append(pks, fmt.Sprintf("00000000-0000-4000-8000-%012d", i*7919))
			}
		}
		for i, pk := range pks {
			if _, err := db.ExecContext(ctx, "INSERT INTO "+qt+" VALUES ($1, $2)", pk, encryptedtype.NewString(fmt.Sprint("secret ", i))); err != nil {
				t.Fatal(err)
			}
		}
		bad := pks[8]
		if _, err := db.ExecContext(ctx, "UPDATE "+qt+" SET secret = "+flipMiddleSQL("secret")+" WHERE k = $1", bad); err != nil {
			t.Fatal(err)
		}
		codec := encryptedtype.NewCodec(keys.use(2, 1))
		job, err := rotation.New(db, rotation.Table{Name: name, PrimaryKey: "k", Columns: []rotation.Column{{Name: "secret"}}}, codec)
		if err != nil {
			t.Fatal(err)
		}
		res, err := job.Rotate(ctx, rotation.Options{BatchSize: 7, Workers: 3})
		if !errors.Is(err, rotation.ErrFailures) || res.Rows != int64(len(pks)-1) || len(res.Failures) != 1 || res.Failures[0].PK != bad {
			t.Fatalf("%s keys: %+v, %v", typ, res, err)
		}
		for i, pk := range pks {
			var s encryptedtype.String
			err := db.QueryRowContext(ctx, "SELECT secret FROM "+qt+" WHERE k = $1", pk).Scan(&s)
			if pk == bad {
				if !errors.Is(err, encryptedtype.ErrAuth) {
					t.Errorf("%s key %q: %v", typ, pk, err)
				}
				continue
			}
			if err != nil || s.Plaintext() != fmt.Sprint("secret ", i) {
				t.Errorf("%s key %q: %q, %v", typ, pk, s.Plaintext(), err)
			}
			assertCiphertext(t, rawText(t, db, "SELECT secret FROM "+qt+" WHERE k = $1", pk), 2, []byte(fmt.Sprint("secret ", i)))
		}
		keys.use(1)
	}
}
