package integration

import (
	"fmt"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// TestKeyRotationAtReadTime writes rows under key version 1, switches the
// default provider to one that holds versions 1 and 2 and writes under 2,
// and checks that old rows still read, new and re-saved rows are under
// version 2, and that retiring version 1 (or replacing its key) makes the
// old rows fail cleanly.
func TestKeyRotationAtReadTime(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	table := createTable(t, db, `email TEXT NOT NULL, blob BYTEA NOT NULL, phone TEXT`)
	q := tableQuery(table)

	plain := func(i int) string { return fmt.Sprintf("user %d@rotation.example", i) }
	insert := func(i int) int64 {
		t.Helper()
		var phone *encryptedtype.String
		if i%2 == 1 {
			phone = ptr(encryptedtype.NewString(plain(i) + " phone"))
		}
		var id int64
		if err := db.QueryRowContext(ctx, q("INSERT INTO %s (email, blob, phone) VALUES ($1, $2, $3) RETURNING id"),
			encryptedtype.NewString(plain(i)), encryptedtype.NewBytes([]byte(plain(i))), phone).Scan(&id); err != nil {
			t.Fatalf("INSERT: %v", err)
		}
		return id
	}
	// read returns the error of reading row id, after checking the
	// plaintext when there is none.
	read := func(id int64, i int) error {
		t.Helper()
		var (
			e encryptedtype.String
			b encryptedtype.Bytes
			p *encryptedtype.String
		)
		if err := db.QueryRowContext(ctx, q("SELECT email, blob, phone FROM %s WHERE id = $1"), id).Scan(&e, &b, &p); err != nil {
			return err
		}
		if e.Plaintext() != plain(i) || string(b.Plaintext()) != plain(i) {
			t.Errorf("row %d reads %q, %q; want %q", id, e.Plaintext(), b.Plaintext(), plain(i))
		}
		if (p == nil) != (i%2 == 0) || (p != nil && p.Plaintext() != plain(i)+" phone") {
			t.Errorf("row %d: phone %v", id, p)
		}
		return nil
	}
	assertVersion := func(id int64, i int, want uint32) {
		t.Helper()
		assertCiphertext(t, rawText(t, db, q("SELECT email FROM %s WHERE id = $1"), id), want, []byte(plain(i)))
		assertCiphertext(t, rawText(t, db, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id), want, []byte(plain(i)))
		if i%2 == 1 {
			assertCiphertext(t, rawText(t, db, q("SELECT phone FROM %s WHERE id = $1"), id), want, []byte(plain(i)+" phone"))
		} else if !queryBool(t, db, q("SELECT phone IS NULL FROM %s WHERE id = $1"), id) {
			t.Errorf("row %d: phone is not NULL", id)
		}
	}

	// Under version 1.
	ids := map[int]int64{}
	for i := range 4 {
		ids[i] = insert(i)
		assertVersion(ids[i], i, 1)
	}

	// Version 2 becomes active; version 1 stays readable.
	keys.use(2, 1)
	for i := range 4 {
		if err := read(ids[i], i); err != nil {
			t.Fatalf("reading a version 1 row after the switch: %v", err)
		}
		assertVersion(ids[i], i, 1) // reading does not rewrite
	}
	for i := 4; i < 6; i++ {
		ids[i] = insert(i)
		assertVersion(ids[i], i, 2)
		if err := read(ids[i], i); err != nil {
			t.Fatal(err)
		}
	}

	// Re-saving an old row (read, write back) moves it to version 2.
	var e encryptedtype.String
	var b encryptedtype.Bytes
	var p *encryptedtype.String
	if err := db.QueryRowContext(ctx, q("SELECT email, blob, phone FROM %s WHERE id = $1"), ids[1]).Scan(&e, &b, &p); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, q("UPDATE %s SET email = $1, blob = $2, phone = $3 WHERE id = $4"), e, b, p, ids[1]); err != nil {
		t.Fatal(err)
	}
	assertVersion(ids[1], 1, 2)
	if err := read(ids[1], 1); err != nil {
		t.Fatal(err)
	}

	// Census with plain SQL: rows 0, 2, 3 are still under version 1.
	var v1, v2 int
	if err := db.QueryRowContext(ctx, q(`SELECT count(*) FILTER (WHERE email LIKE 'v1:%%'), count(*) FILTER (WHERE email LIKE 'v2:%%') FROM %s`)).Scan(&v1, &v2); err != nil {
		t.Fatal(err)
	}
	if v1 != 3 || v2 != 3 {
		t.Errorf("census: %d rows under v1, %d under v2; want 3 and 3", v1, v2)
	}

	secrets := keys.secrets()
	for i := range 6 {
		secrets = append(secrets, plain(i))
	}

	// Retiring version 1 before the old rows are re-saved: they fail with
	// ErrUnknownVersion, the others still read.
	keys.use(2)
	for i := range 6 {
		err := read(ids[i], i)
		if i == 1 || i >= 4 {
			if err != nil {
				t.Errorf("row %d (version 2) after retiring version 1: %v", i, err)
			}
			continue
		}
		assertDecryptError(t, err, secrets, encryptedtype.ErrUnknownVersion)
	}

	// A different key under the number 1 (a reused version number) is an
	// authentication failure, not garbage.
	foreign, err := keyprovider.GenerateKey(1)
	if err != nil {
		t.Fatal(err)
	}
	keys.useKeys(2, foreign, keys.key(2))
	assertDecryptError(t, read(ids[0], 0), secrets, encryptedtype.ErrAuth)
	if err := read(ids[4], 4); err != nil {
		t.Errorf("version 2 row with a foreign version 1 key: %v", err)
	}
}
