package integration

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// Package pgxcodec with rotation's column types for tables being migrated
// from plaintext (rotation.MigratingString and rotation.MigratingBytes):
// they are written as encryptedtype.String and encryptedtype.Bytes are, by
// CopyFrom and by a parameterised INSERT, into TEXT and BYTEA columns. Run
// them with
//
//	COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	COLCRYPT_REQUIRE_DB=1 go test -count=1 -run PgxcodecMigrating ./integration/

// migEncryptCounter counts the encryptions (calls of Active) of the
// provider it wraps.
type migEncryptCounter struct {
	*keyprovider.Static
	n atomic.Int64
}

func (c *migEncryptCounter) Active() (keyprovider.Key, error) {
	c.n.Add(1)
	return c.Static.Active()
}

// migPlain is the plaintext of one row of a migrating table; a nil pointer
// is NULL.
type migPlain struct {
	s  string
	b  []byte
	ps *string
	pb []byte // nil: NULL
}

// migColumns are the columns of a migrating table: each of the two types,
// as a value and through a pointer, into a TEXT and a BYTEA column.
var migColumns = []string{"s_text", "s_bytea", "b_text", "b_bytea", "ps_text", "ps_bytea", "pb_text", "pb_bytea"}

const migColumnDefs = `
	s_text   TEXT NOT NULL,
	s_bytea  BYTEA NOT NULL,
	b_text   TEXT NOT NULL,
	b_bytea  BYTEA NOT NULL,
	ps_text  TEXT,
	ps_bytea BYTEA,
	pb_text  TEXT,
	pb_bytea BYTEA`

// migPlaintexts returns the rows of the tests: values in every column, the
// empty string and empty bytes (which are not NULL), and NULLs.
func migPlaintexts() []migPlain {
	return []migPlain{
		{s: "ada@example.com", b: []byte("\x00api token \xff"), ps: ptr("+44 20 7946 0000"), pb: []byte("door code 4711")},
		{s: "", b: []byte{}, ps: ptr(""), pb: []byte{}},
		{s: "bob@example.com", b: []byte("bob's token"), ps: nil, pb: nil},
	}
}

// migArgs returns the arguments of one row, in the order of migColumns.
func migArgs(p migPlain) []any {
	var ps *rotation.MigratingString
	if p.ps != nil {
		ps = ptr(rotation.NewMigratingString(*p.ps))
	}
	var pb *rotation.MigratingBytes
	if p.pb != nil {
		pb = ptr(rotation.NewMigratingBytes(p.pb))
	}
	return []any{
		rotation.NewMigratingString(p.s), rotation.NewMigratingString(p.s),
		rotation.NewMigratingBytes(p.b), rotation.NewMigratingBytes(p.b),
		ps, ps,
		pb, pb,
	}
}

// migValues returns the number of non-NULL values of rows: what writing
// them must encrypt, once each.
func migValues(rows []migPlain) int64 {
	var n int64
	for _, p := range rows {
		n += 4
		if p.ps != nil {
			n += 2
		}
		if p.pb != nil {
			n += 2
		}
	}
	return n
}

// migSecrets returns every plaintext of rows, for leak checks.
func migSecrets(rows []migPlain) []string {
	var out []string
	for _, p := range rows {
		out = append(out, p.s, string(p.b), string(p.pb))
		if p.ps != nil {
			out = append(out, *p.ps)
		}
	}
	return out
}

// TestPgxcodecMigrating writes rotation.MigratingString and
// rotation.MigratingBytes values, and pointers to them (nil among them),
// into TEXT and BYTEA columns on connections with package pgxcodec
// registered: with a parameterised INSERT on a pgx.Conn in every query
// execution mode and on a pool, and with CopyFrom (which always uses the
// binary format). It checks that every value is encrypted exactly once,
// that the stored values are the bare wire format under the active key and
// NULL exactly for nil pointers, and reads them back decrypted through the
// Migrating types and through encryptedtype's.
func TestPgxcodecMigrating(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	keys := newKeyring(t) // restores the default provider when t ends
	const version = 7
	counter := &migEncryptCounter{Static: keys.use(version)}
	encryptedtype.SetDefault(counter)

	plains := migPlaintexts()
	secrets := append(migSecrets(plains), keys.secrets()...)
	want := migValues(plains)

	for _, target := range bulkTargets(dsn, allExecModes...) {
		t.Run("Insert/"+target.name, func(t *testing.T) {
			q := target.open(t, true)
			ctx := testContext(t)
			table := createTable(t, db, migColumnDefs)
			insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", table, strings.Join(migColumns, ", "))
			counter.n.Store(0)
			for i, p := range plains {
				if _, err := q.Exec(ctx, insert, migArgs(p)...); err != nil {
					assertNoSecrets(t, err, secrets)
					t.Fatalf("INSERT of row %d: %v", i, err)
				}
			}
			if got := counter.n.Load(); got != want {
				t.Errorf("INSERT encrypted %d times for %d values, want once each", got, want)
			}
			checkMigTable(t, q, table, plains, version)
		})
	}

	for _, target := range bulkTargets(dsn, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol) {
		t.Run("CopyFrom/"+target.name, func(t *testing.T) {
			q := target.open(t, true)
			table := createTable(t, db, migColumnDefs)
			rows := make([][]any, len(plains))
			for i, p := range plains {
				rows[i] = migArgs(p)
			}
			counter.n.Store(0)
			n, err := q.CopyFrom(testContext(t), pgx.Identifier{strings.Trim(table, `"`)}, migColumns, pgx.CopyFromRows(rows))
			if err != nil || n != int64(len(plains)) {
				assertNoSecrets(t, err, secrets)
				t.Fatalf("CopyFrom: %d rows, %v", n, err)
			}
			if got := counter.n.Load(); got != want {
				t.Errorf("CopyFrom encrypted %d times for %d values, want once each", got, want)
			}
			checkMigTable(t, q, table, plains, version)
		})
	}
}

// checkMigTable reads every row of table with plain SQL and checks that it
// holds exactly want, in id order: the bare wire format under key version
// version in every column (the same bytes in TEXT and BYTEA), NULL exactly
// where the plaintext is nil. Then it reads the rows into the Migrating
// types, and into encryptedtype's, and compares the plaintexts.
func checkMigTable(t testing.TB, q pgxQuerier, table string, want []migPlain, version uint32) {
	t.Helper()
	ctx := testContext(t)

	// Raw: BYTEA columns as the text of their bytes, with a check that
	// those bytes are exactly that text (no hex or escape encoding). NULL
	// stays NULL through the CASE (NULL <> NULL is not true).
	exprs := make([]string, len(migColumns))
	for i, c := range migColumns {
		exprs[i] = c
		if strings.HasSuffix(c, "_bytea") {
			exprs[i] = fmt.Sprintf("CASE WHEN octet_length(%[1]s) <> length(encode(%[1]s, 'escape')) THEN 'not the bare wire format' ELSE encode(%[1]s, 'escape') END", c)
		}
	}
	rows, err := q.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([8]*string, error) {
		var v [8]*string
		err := r.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7])
		return v, err
	})
	if err != nil {
		t.Fatalf("reading %s raw: %v", table, err)
	}
	if len(raws) != len(want) {
		t.Fatalf("%s holds %d rows, want %d", table, len(raws), len(want))
	}
	for i, raw := range raws {
		w := want[i]
		plain := [8]*string{&w.s, &w.s, ptr(string(w.b)), ptr(string(w.b)), w.ps, w.ps, nil, nil}
		if w.pb != nil {
			plain[6], plain[7] = ptr(string(w.pb)), ptr(string(w.pb))
		}
		for c := range raw {
			switch {
			case plain[c] == nil && raw[c] != nil:
				t.Errorf("row %d: %s = %q, want NULL", i, migColumns[c], *raw[c])
			case plain[c] != nil && raw[c] == nil:
				t.Errorf("row %d: %s is NULL", i, migColumns[c])
			case plain[c] != nil:
				assertCiphertext(t, *raw[c], version, []byte(*plain[c]))
			}
		}
	}
	if t.Failed() {
		return
	}

	// Decrypted, through the Migrating types.
	sel := "SELECT " + strings.Join(migColumns, ", ") + " FROM " + table + " ORDER BY id"
	rows, err = q.Query(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		var (
			sText, sBytea   rotation.MigratingString
			bText, bBytea   rotation.MigratingBytes
			psText, psBytea *rotation.MigratingString
			pbText, pbBytea *rotation.MigratingBytes
		)
		if err := rows.Scan(&sText, &sBytea, &bText, &bBytea, &psText, &psBytea, &pbText, &pbBytea); err != nil {
			t.Fatalf("row %d: Scan into the Migrating types: %v", i, err)
		}
		w := want[i]
		for _, s := range []rotation.MigratingString{sText, sBytea} {
			if s.Plaintext() != w.s || !s.WasEncrypted() {
				t.Errorf("row %d: MigratingString read back wrong (encrypted: %v)", i, s.WasEncrypted())
			}
		}
		for _, b := range []rotation.MigratingBytes{bText, bBytea} {
			if !bytes.Equal(b.Plaintext(), w.b) || b.Plaintext() == nil || !b.WasEncrypted() {
				t.Errorf("row %d: MigratingBytes read back wrong (encrypted: %v)", i, b.WasEncrypted())
			}
		}
		for _, ps := range []*rotation.MigratingString{psText, psBytea} {
			if (ps == nil) != (w.ps == nil) || (ps != nil && (ps.Plaintext() != *w.ps || !ps.WasEncrypted())) {
				t.Errorf("row %d: *MigratingString read back wrong (nil: %v, want nil: %v)", i, ps == nil, w.ps == nil)
			}
		}
		for _, pb := range []*rotation.MigratingBytes{pbText, pbBytea} {
			if (pb == nil) != (w.pb == nil) || (pb != nil && (!bytes.Equal(pb.Plaintext(), w.pb) || !pb.WasEncrypted())) {
				t.Errorf("row %d: *MigratingBytes read back wrong (nil: %v, want nil: %v)", i, pb == nil, w.pb == nil)
			}
		}
		i++
	}
	rows.Close()
	if err := rows.Err(); err != nil || i != len(want) {
		t.Fatalf("decrypting %s: %d rows, %v", table, i, err)
	}

	// The same values are what encryptedtype.String and Bytes read: the
	// table needs no Migrating type once the migration is done.
	rows, err = q.Query(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i = 0
	for rows.Next() {
		var (
			sText, sBytea   encryptedtype.String
			bText, bBytea   encryptedtype.Bytes
			psText, psBytea *encryptedtype.String
			pbText, pbBytea *encryptedtype.Bytes
		)
		if err := rows.Scan(&sText, &sBytea, &bText, &bBytea, &psText, &psBytea, &pbText, &pbBytea); err != nil {
			t.Fatalf("row %d: Scan into encryptedtype's types: %v", i, err)
		}
		w := want[i]
		ok := sText.Plaintext() == w.s && sBytea.Plaintext() == w.s &&
			bytes.Equal(bText.Plaintext(), w.b) && bytes.Equal(bBytea.Plaintext(), w.b) &&
			(psText == nil) == (w.ps == nil) && (psBytea == nil) == (w.ps == nil) &&
			(pbText == nil) == (w.pb == nil) && (pbBytea == nil) == (w.pb == nil)
		if ok && w.ps != nil {
			ok = psText.Plaintext() == *w.ps && psBytea.Plaintext() == *w.ps
		}
		if ok && w.pb != nil {
			ok = bytes.Equal(pbText.Plaintext(), w.pb) && bytes.Equal(pbBytea.Plaintext(), w.pb)
		}
		if !ok {
			t.Errorf("row %d: encryptedtype's types read back other values", i)
		}
		i++
	}
	if err := rows.Err(); err != nil || i != len(want) {
		t.Fatalf("decrypting %s into encryptedtype's types: %d rows, %v", table, i, err)
	}
}
