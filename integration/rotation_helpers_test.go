package integration

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// This file holds what the rotation tests (rotation_*_test.go) share: a
// table of users with three encrypted columns (email TEXT, blob BYTEA,
// phone TEXT NULL) and a blind index on email, written under key version 1,
// and the keys to rotate it to version 2.

// rotColumns is the layout of the rotation tests' tables.
const rotColumns = `email TEXT NOT NULL, email_bidx TEXT, blob BYTEA NOT NULL, phone TEXT`

// rotIndexKeys is a blind-index keyring whose active version can be
// switched while indexes built on it are in use.
type rotIndexKeys struct {
	keys map[uint32]keyprovider.Key
	cur  atomic.Pointer[keyprovider.Static]
}

func newRotIndexKeys(t testing.TB, versions ...uint32) *rotIndexKeys {
	t.Helper()
	k := &rotIndexKeys{keys: map[uint32]keyprovider.Key{}}
	for _, v := range versions {
		key, err := keyprovider.GenerateKey(v)
		if err != nil {
			t.Fatal(err)
		}
		k.keys[v] = key
	}
	k.use(t, versions[0])
	return k
}

// use makes active the active version; every version stays known.
func (k *rotIndexKeys) use(t testing.TB, active uint32) {
	t.Helper()
	var all []keyprovider.Key
	for _, key := range k.keys {
		all = append(all, key)
	}
	s, err := keyprovider.NewStatic(active, all...)
	if err != nil {
		t.Fatal(err)
	}
	k.cur.Store(s)
}

func (k *rotIndexKeys) Active() (keyprovider.Key, error)      { return k.cur.Load().Active() }
func (k *rotIndexKeys) Key(v uint32) (keyprovider.Key, error) { return k.cur.Load().Key(v) }
func (k *rotIndexKeys) Versions() []uint32                    { return k.cur.Load().Versions() }

// rotNormalize is the e-mail index's normaliser.
var rotNormalize = blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)

// rotFixture is one rotation test's table and keys.
type rotFixture struct {
	t      testing.TB
	db     *sql.DB
	name   string // unquoted table name
	q      func(string) string
	keys   *keyring // data keys, installed as encryptedtype's default
	ikeys  *rotIndexKeys
	index  *blindindex.Index // name "<table>.email"
	static *keyprovider.Static
}

// newRotFixture creates a table of n rows written under data key version 1
// and index key version 1. Rows i%3 == 0 have a NULL phone.
func newRotFixture(t testing.TB, n int) *rotFixture {
	t.Helper()
	db := openSQL(t, databaseURL(t))
	f := &rotFixture{t: t, db: db, keys: newKeyring(t)}
	f.static = f.keys.use(1)
	quoted := createTable(t, db, rotColumns)
	f.name = strings.Trim(quoted, `"`)
	f.q = tableQuery(quoted)
	f.ikeys = newRotIndexKeys(t, 1, 2)
	ix, err := blindindex.New(f.name+".email", f.ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	f.index = ix
	f.insert(n)
	return f
}

// rotEmail, rotBlob and rotPhone are the plaintexts of row i (1-based id)
// at write generation gen.
func rotEmail(id int64, gen int) string { return fmt.Sprintf("User%06d.G%d@Example.com", id, gen) }
func rotBlob(id int64, gen int) []byte  { return fmt.Appendf(nil, "blob %d/%d \x00\xff", id, gen) }
func rotPhone(id int64, gen int) string { return fmt.Sprintf("+44 20 %07d %d", id, gen) }

// insert adds n rows at generation 0, in multi-row INSERTs.
func (f *rotFixture) insert(n int) {
	f.t.Helper()
	ctx := testContext(f.t)
	const per = 250
	for start := 0; start < n; start += per {
		var vals []string
		var args []any
		for i := start; i < min(n, start+per); i++ {
			id := int64(i + 1) // identity values start at 1
			var phone *encryptedtype.String
			if id%3 != 0 {
				phone = ptr(encryptedtype.NewString(rotPhone(id, 0)))
			}
			bidx, err := f.index.Compute(rotEmail(id, 0))
			if err != nil {
				f.t.Fatal(err)
			}
			k := len(args)
			vals = append(vals, fmt.Sprintf("($%d, $%d, $%d, $%d)", k+1, k+2, k+3, k+4))
			args = append(args, encryptedtype.NewString(rotEmail(id, 0)), bidx, encryptedtype.NewBytes(rotBlob(id, 0)), phone)
		}
		if _, err := f.db.ExecContext(ctx, f.q("INSERT INTO %s (email, email_bidx, blob, phone) VALUES ")+strings.Join(vals, ", "), args...); err != nil {
			f.t.Fatalf("inserting rows: %v", err)
		}
	}
}

// activate makes data key version 2 and index key version 2 active, with
// version 1 still readable, as the application is redeployed before a
// rotation. It returns the Codec a rotation uses.
func (f *rotFixture) activate() *encryptedtype.Codec {
	f.static = f.keys.use(2, 1)
	f.ikeys.use(f.t, 2)
	return encryptedtype.NewCodec(f.static)
}

// table describes the fixture's table for package rotation.
func (f *rotFixture) table() rotation.Table {
	return rotation.Table{
		Name:       f.name,
		PrimaryKey: "id",
		Columns: []rotation.Column{
			{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: f.index}}},
			{Name: "blob"},
			{Name: "phone"},
		},
	}
}

// job returns a rotation job over the fixture's table with codec.
func (f *rotFixture) job(codec rotation.Cipher) *rotation.Job {
	f.t.Helper()
	j, err := rotation.New(f.db, f.table(), codec)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// rotRow is a row as the application reads it.
type rotRow struct {
	email string
	bidx  sql.NullString
	blob  []byte
	phone *string
}

// read reads every row with the column types, failing the test on any
// error, and returns them by id.
func (f *rotFixture) read(ctx context.Context) map[int64]rotRow {
	f.t.Helper()
	rows, err := f.db.QueryContext(ctx, f.q("SELECT id, email, email_bidx, blob, phone FROM %s ORDER BY id"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]rotRow{}
	for rows.Next() {
		var (
			id    int64
			email encryptedtype.String
			blob  encryptedtype.Bytes
			phone *encryptedtype.String
			r     rotRow
		)
		if err := rows.Scan(&id, &email, &r.bidx, &blob, &phone); err != nil {
			f.t.Fatalf("reading row after id %d: %v", id, err)
		}
		r.email, r.blob = email.Plaintext(), blob.Plaintext()
		if phone != nil {
			p := phone.Plaintext()
			r.phone = &p
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// rawVersions returns, for every id, the key versions its stored email,
// blob and phone (0 for NULL) are under, and its index value's version.
func (f *rotFixture) rawVersions(ctx context.Context) map[int64][4]uint32 {
	f.t.Helper()
	rows, err := f.db.QueryContext(ctx, f.q("SELECT id, email, encode(blob, 'escape'), phone, email_bidx FROM %s"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64][4]uint32{}
	for rows.Next() {
		var id int64
		var email, blob string
		var phone, bidx sql.NullString
		if err := rows.Scan(&id, &email, &blob, &phone, &bidx); err != nil {
			f.t.Fatal(err)
		}
		var v [4]uint32
		for k, s := range []string{email, blob, phone.String} {
			if k == 2 && !phone.Valid {
				continue
			}
			ver, err := encryptedtype.Version([]byte(s))
			if err != nil {
				f.t.Errorf("row %d: column %d is not in the wire format: %v", id, k, err)
			}
			v[k] = ver
		}
		if bidx.Valid {
			ver, err := blindindex.Version(bidx.String)
			if err != nil {
				f.t.Errorf("row %d: index value: %v", id, err)
			}
			v[3] = ver
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// checkAll checks that every row holds generation gen(id) of its values
// (phone NULL where phoneNull(id)), that every stored value is under data
// key version wantData and every index value under index key version
// wantIndex, and that every index value is the index of its email.
func (f *rotFixture) checkAll(ctx context.Context, n int, gen func(int64) int, phoneNull func(int64) bool, wantData, wantIndex uint32) {
	f.t.Helper()
	rows := f.read(ctx)
	if len(rows) != n {
		f.t.Errorf("%d rows, want %d", len(rows), n)
	}
	versions := f.rawVersions(ctx)
	bad := 0
	for id, r := range rows {
		g := gen(id)
		ok := r.email == rotEmail(id, g) && string(r.blob) == string(rotBlob(id, g))
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
		v := versions[id]
		ok = ok && v[0] == wantData && v[1] == wantData && v[3] == wantIndex
		ok = ok && (phoneNull(id) && v[2] == 0 || !phoneNull(id) && v[2] == wantData)
		if !ok {
			if bad++; bad <= 5 {
				f.t.Errorf("row %d: want generation %d (phone NULL: %v) under versions %d/%d; got versions %v, phone NULL %v, index current %v",
					id, g, phoneNull(id), wantData, wantIndex, v, r.phone == nil, r.bidx.String == want)
			}
		}
	}
	if bad > 5 {
		f.t.Errorf("… and %d more rows", bad-5)
	}
}

// rotGen0 and rotPhoneNull0 describe the rows as inserted.
func rotGen0(int64) int           { return 0 }
func rotPhoneNull0(id int64) bool { return id%3 == 0 }
func rotNoSecrets(s string) bool {
	return !strings.Contains(s, "@Example.com") && !strings.Contains(s, "+44 20")
}

// rotOutcome is what a Rotate run in the background returned.
type rotOutcome struct {
	res *rotation.Result
	err error
}

// rotWaitForSecondPass starts job.Rotate in the background and returns once
// the job has begun its second pass, that is, once it is waiting for rows
// that were locked during the first. It fails t if Rotate returns first.
// The channel delivers Rotate's result.
func rotWaitForSecondPass(t *testing.T, ctx context.Context, job *rotation.Job) <-chan rotOutcome {
	t.Helper()
	waiting := make(chan struct{})
	var once sync.Once
	done := make(chan rotOutcome, 1)
	go func() {
		res, err := job.Rotate(ctx, rotation.Options{BatchSize: 64, Progress: func(p rotation.Progress) {
			if p.Pass >= 2 {
				once.Do(func() { close(waiting) })
			}
		}})
		done <- rotOutcome{res, err}
	}()
	select {
	case <-waiting:
	case o := <-done:
		t.Fatalf("Rotate returned while rows were locked: %+v, %v", o.res, o.err)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return done
}
