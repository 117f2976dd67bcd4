package integration

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// sqlProfile is stored as encrypted JSON.
type sqlProfile struct {
	Name  string `json:"name"`
	Score int    `json:"score"`
}

// TestDatabaseSQL uses the column types through database/sql with pgx's
// stdlib driver, in TEXT and BYTEA columns.
func TestDatabaseSQL(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	const version = 7
	keys.use(version)
	ctx := testContext(t)

	table := createTable(t, db, `
		email   TEXT NOT NULL,
		phone   TEXT,
		profile TEXT,
		blob    BYTEA NOT NULL,
		note    BYTEA`)
	q := tableQuery(table)

	const (
		email = "dora@example.com"
		phone = "+33 1 23 45 67 89"
		note  = "key ceremony: 2 of 3 <ok>"
	)
	blob := []byte("\x00\xffbinary secret\x10")
	profile := sqlProfile{Name: "Dora the Explorer", Score: 42}
	profileJSON := []byte(`{"name":"Dora the Explorer","score":42}`)
	secrets := append([]string{email, phone, note, string(blob), profile.Name}, keys.secrets()...)

	insert := q("INSERT INTO %s (email, phone, profile, blob, note) VALUES ($1, $2, $3, $4, $5) RETURNING id")
	var id1, id2 int64
	err := db.QueryRowContext(ctx, insert,
		encryptedtype.NewString(email),
		ptr(encryptedtype.NewString(phone)),
		encryptedtype.NewJSON(profile),
		encryptedtype.NewBytes(blob),
		ptr(encryptedtype.NewString(note)),
	).Scan(&id1)
	if err != nil {
		t.Fatalf("INSERT: %v", err)
	}
	// Row 2: empty values and NULLs, written from nil pointers.
	err = db.QueryRowContext(ctx, insert,
		encryptedtype.NewString(""),
		(*encryptedtype.String)(nil),
		(*encryptedtype.JSON[sqlProfile])(nil),
		encryptedtype.NewBytes(nil),
		(*encryptedtype.String)(nil),
	).Scan(&id2)
	if err != nil {
		t.Fatalf("INSERT with NULLs: %v", err)
	}

	t.Run("Raw", func(t *testing.T) {
		assertCiphertext(t, rawText(t, db, q("SELECT email FROM %s WHERE id = $1"), id1), version, []byte(email))
		assertCiphertext(t, rawText(t, db, q("SELECT phone FROM %s WHERE id = $1"), id1), version, []byte(phone))
		assertCiphertext(t, rawText(t, db, q("SELECT profile FROM %s WHERE id = $1"), id1), version, profileJSON, profile.Name)
		assertCiphertext(t, rawText(t, db, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id1), version, blob)
		assertCiphertext(t, rawText(t, db, q("SELECT encode(note, 'escape') FROM %s WHERE id = $1"), id1), version, []byte(note))
		// The BYTEA column holds the ASCII of the wire format, byte for
		// byte, not some other encoding of it.
		if !queryBool(t, db, q("SELECT octet_length(blob) = length(encode(blob, 'escape')) AND encode(blob, 'escape') ~ '^v[0-9]+:[A-Za-z0-9_-]+$' FROM %s WHERE id = $1"), id1) {
			t.Errorf("BYTEA column does not hold the bare wire-format bytes")
		}

		assertCiphertext(t, rawText(t, db, q("SELECT email FROM %s WHERE id = $1"), id2), version, nil)
		assertCiphertext(t, rawText(t, db, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id2), version, nil)
		for _, col := range []string{"phone", "profile", "note"} {
			if !queryBool(t, db, q("SELECT "+col+" IS NULL FROM %s WHERE id = $1"), id2) {
				t.Errorf("%s: a nil pointer was not written as NULL", col)
			}
		}
	})

	t.Run("Scan", func(t *testing.T) {
		var (
			gotEmail   encryptedtype.String
			gotPhone   *encryptedtype.String
			gotProfile *encryptedtype.JSON[sqlProfile]
			gotBlob    encryptedtype.Bytes
			gotNote    *encryptedtype.String
		)
		sel := q("SELECT email, phone, profile, blob, note FROM %s WHERE id = $1")
		if err := db.QueryRowContext(ctx, sel, id1).Scan(&gotEmail, &gotPhone, &gotProfile, &gotBlob, &gotNote); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if gotEmail.Plaintext() != email {
			t.Errorf("email = %q, want %q", gotEmail.Plaintext(), email)
		}
		if gotPhone == nil || gotPhone.Plaintext() != phone {
			t.Errorf("phone = %v, want %q", gotPhone, phone)
		}
		if gotProfile == nil || !reflect.DeepEqual(gotProfile.Plaintext(), profile) {
			t.Errorf("profile = %v, want %+v", gotProfile, profile)
		}
		if !bytes.Equal(gotBlob.Plaintext(), blob) {
			t.Errorf("blob = %q, want %q", gotBlob.Plaintext(), blob)
		}
		if gotNote == nil || gotNote.Plaintext() != note {
			t.Errorf("note = %v, want %q", gotNote, note)
		}

		// Row 2: NULL reads as nil, "" as a non-nil "".
		if err := db.QueryRowContext(ctx, sel, id2).Scan(&gotEmail, &gotPhone, &gotProfile, &gotBlob, &gotNote); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if gotEmail.Plaintext() != "" {
			t.Errorf("email = %q, want \"\"", gotEmail.Plaintext())
		}
		if gotPhone != nil || gotProfile != nil || gotNote != nil {
			t.Errorf("phone, profile, note = %v, %v, %v; want nil for NULL", gotPhone, gotProfile, gotNote)
		}
		if p := gotBlob.Plaintext(); p == nil || len(p) != 0 {
			t.Errorf("blob = %#v, want empty and non-nil", p)
		}
	})

	t.Run("NullIntoNonPointer", func(t *testing.T) {
		var s encryptedtype.String
		err := db.QueryRowContext(ctx, q("SELECT phone FROM %s WHERE id = $1"), id2).Scan(&s)
		assertDecryptError(t, err, secrets, encryptedtype.ErrNull)
		var b encryptedtype.Bytes
		err = db.QueryRowContext(ctx, q("SELECT note FROM %s WHERE id = $1"), id2).Scan(&b)
		assertDecryptError(t, err, secrets, encryptedtype.ErrNull)
	})

	t.Run("SameBytesInTextAndBytea", func(t *testing.T) {
		// Copy the stored bytes between a TEXT and a BYTEA column in SQL;
		// both still decrypt.
		if _, err := db.ExecContext(ctx, q("UPDATE %s SET note = convert_to(email, 'UTF8'), phone = encode(blob, 'escape') WHERE id = $1"), id1); err != nil {
			t.Fatal(err)
		}
		var fromBytea, fromText encryptedtype.String
		var fromTextBytes encryptedtype.Bytes
		if err := db.QueryRowContext(ctx, q("SELECT note, phone, phone FROM %s WHERE id = $1"), id1).Scan(&fromBytea, &fromText, &fromTextBytes); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if fromBytea.Plaintext() != email {
			t.Errorf("TEXT value copied to BYTEA reads %q, want %q", fromBytea.Plaintext(), email)
		}
		if fromText.Plaintext() != string(blob) || !bytes.Equal(fromTextBytes.Plaintext(), blob) {
			t.Errorf("BYTEA value copied to TEXT reads %q, want %q", fromTextBytes.Plaintext(), blob)
		}
	})

	t.Run("PreparedInTransaction", func(t *testing.T) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		stmt, err := tx.PrepareContext(ctx, q("INSERT INTO %s (email, blob, note) VALUES ($1, $2, $3)"))
		if err != nil {
			t.Fatal(err)
		}
		plain := []string{"eve@example.com", "frank@example.com", "grace@example.com"}
		for _, p := range plain {
			if _, err := stmt.ExecContext(ctx, encryptedtype.NewString(p), encryptedtype.NewBytes([]byte(p)), ptr(encryptedtype.NewString(p))); err != nil {
				t.Fatalf("prepared INSERT: %v", err)
			}
		}
		if err := stmt.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}

		rows, err := db.QueryContext(ctx, q("SELECT email, encode(blob, 'escape'), blob, note FROM %s WHERE id > $1 ORDER BY id"), id2)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		i := 0
		for rows.Next() {
			var (
				e    encryptedtype.String
				raw  string
				b    encryptedtype.Bytes
				n    *encryptedtype.String
				want = plain[i]
			)
			if err := rows.Scan(&e, &raw, &b, &n); err != nil {
				t.Fatalf("row %d: Scan: %v", i, err)
			}
			assertCiphertext(t, raw, version, []byte(want))
			if e.Plaintext() != want || string(b.Plaintext()) != want || n == nil || n.Plaintext() != want {
				t.Errorf("row %d: got %q, %q, %v; want %q", i, e.Plaintext(), b.Plaintext(), n, want)
			}
			i++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if i != len(plain) {
			t.Errorf("read %d rows, want %d", i, len(plain))
		}
	})

	t.Run("Tampered", func(t *testing.T) {
		if _, err := db.ExecContext(ctx, q("UPDATE %s SET email = "+flipMiddleSQL("email")+
			", blob = decode("+flipMiddleSQL("encode(blob, 'escape')")+", 'escape') WHERE id = $1"), id1); err != nil {
			t.Fatal(err)
		}
		assertCiphertext(t, rawText(t, db, q("SELECT email FROM %s WHERE id = $1"), id1), version, []byte(email))
		assertCiphertext(t, rawText(t, db, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id1), version, blob)
		var s encryptedtype.String
		err := db.QueryRowContext(ctx, q("SELECT email FROM %s WHERE id = $1"), id1).Scan(&s)
		assertDecryptError(t, err, secrets, encryptedtype.ErrAuth)
		var b *encryptedtype.Bytes
		err = db.QueryRowContext(ctx, q("SELECT blob FROM %s WHERE id = $1"), id1).Scan(&b)
		assertDecryptError(t, err, secrets, encryptedtype.ErrAuth)
	})
}
