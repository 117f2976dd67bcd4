package integration

import (
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// TestTamperedValues changes stored values with SQL, in a TEXT and a BYTEA
// column, and checks that scanning them fails with the right error, never
// yields plaintext (not even the previous value of the destination is
// replaced), and never puts the plaintext, the stored value or key material
// in the error text.
func TestTamperedValues(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	keys.use(3, 4) // writes under 3; 4 is held too
	ctx := testContext(t)
	table := createTable(t, db, `txt TEXT, bin BYTEA`)
	q := tableQuery(table)

	// 26 bytes: with the 28 bytes of nonce and tag the payload is 54 bytes,
	// a multiple of 3, so every base64 character carries 6 bits of data
	// and flipping any of them is an authentication failure.
	const plaintext = "mallory@example.com secret"
	if (encryptedtype.Overhead+len(plaintext))%3 != 0 {
		t.Fatal("plaintext length must make the payload a multiple of 3 bytes")
	}

	// Each tamper is an SQL expression in which {x} stands for the stored
	// value as text.
	flipAt := func(pos string) string {
		return "overlay({x} placing (CASE WHEN substr({x}, " + pos + ", 1) = 'A' THEN 'B' ELSE 'A' END) from " + pos + " for 1)"
	}
	tampers := []struct {
		name string
		expr string
		want []error
	}{
		{"flip in nonce", flipAt("4"), []error{encryptedtype.ErrAuth}},
		{"flip in ciphertext", flipAt("length({x})/2"), []error{encryptedtype.ErrAuth}},
		{"flip in tag", flipAt("length({x})"), []error{encryptedtype.ErrAuth}},
		{"truncated by 3 bytes", "left({x}, -4)", []error{encryptedtype.ErrAuth}},
		{"truncated by 1 char", "left({x}, -1)", []error{encryptedtype.ErrAuth, encryptedtype.ErrMalformed}},
		{"shorter than nonce and tag", "left({x}, 3 + 20)", []error{encryptedtype.ErrMalformed}},
		{"appended payload", "{x} || 'AAAA'", []error{encryptedtype.ErrAuth}},
		{"other held version", "'v4:' || split_part({x}, ':', 2)", []error{encryptedtype.ErrAuth}},
		{"unknown version", "'v99:' || split_part({x}, ':', 2)", []error{encryptedtype.ErrUnknownVersion}},
		{"version with leading zero", "'v03:' || split_part({x}, ':', 2)", []error{encryptedtype.ErrMalformed}},
		{"version too large", "'v4294967296:' || split_part({x}, ':', 2)", []error{encryptedtype.ErrMalformed}},
		{"non-base64url character", "overlay({x} placing '+' from length({x})/2 for 1)", []error{encryptedtype.ErrMalformed}},
		{"padding", "{x} || '='", []error{encryptedtype.ErrMalformed}},
		{"line break", "overlay({x} placing E'\\n' from length({x})/2 for 0)", []error{encryptedtype.ErrMalformed}},
		{"empty payload", "'v3:'", []error{encryptedtype.ErrMalformed, encryptedtype.ErrNotEncrypted}},
		{"plaintext", "'" + plaintext + "'", []error{encryptedtype.ErrNotEncrypted}},
		{"empty string", "''", []error{encryptedtype.ErrNotEncrypted}},
	}

	for _, tc := range tampers {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var id int64
			if err := db.QueryRowContext(ctx, q("INSERT INTO %s (txt, bin) VALUES ($1, $2) RETURNING id"),
				encryptedtype.NewString(plaintext), encryptedtype.NewBytes([]byte(plaintext))).Scan(&id); err != nil {
				t.Fatal(err)
			}
			before := rawText(t, db, q("SELECT txt FROM %s WHERE id = $1"), id)
			beforeBin := rawText(t, db, q("SELECT encode(bin, 'escape') FROM %s WHERE id = $1"), id)
			assertCiphertext(t, before, 3, []byte(plaintext))
			assertCiphertext(t, beforeBin, 3, []byte(plaintext))

			textExpr := strings.ReplaceAll(tc.expr, "{x}", "txt")
			binExpr := "decode(" + strings.ReplaceAll(tc.expr, "{x}", "encode(bin, 'escape')") + ", 'escape')"
			upd := q("UPDATE %s SET txt = " + textExpr + ", bin = " + binExpr + " WHERE id = $1")
			if _, err := db.ExecContext(ctx, upd, id); err != nil {
				t.Fatalf("%s: %v", upd, err)
			}
			after := rawText(t, db, q("SELECT txt FROM %s WHERE id = $1"), id)
			afterBin := rawText(t, db, q("SELECT encode(bin, 'escape') FROM %s WHERE id = $1"), id)
			if after == before || afterBin == beforeBin {
				t.Fatalf("tampering did not work: text %q -> %q, bytea %q -> %q", before, after, beforeBin, afterBin)
			}

			secrets := append([]string{plaintext, before, after, beforeBin, afterBin}, keys.secrets()...)
			for _, col := range []string{"txt", "bin"} {
				sel := q("SELECT " + col + " FROM %s WHERE id = $1")

				s := encryptedtype.NewString("previous value")
				err := db.QueryRowContext(ctx, sel, id).Scan(&s)
				assertDecryptError(t, err, secrets, tc.want...)
				if s.Plaintext() != "previous value" {
					t.Errorf("%s: a failed Scan changed the destination to %q", col, s.Plaintext())
				}

				ps := ptr(encryptedtype.NewString("previous value"))
				assertDecryptError(t, db.QueryRowContext(ctx, sel, id).Scan(&ps), secrets, tc.want...)

				var b encryptedtype.Bytes
				assertDecryptError(t, db.QueryRowContext(ctx, sel, id).Scan(&b), secrets, tc.want...)
				if b.Plaintext() != nil {
					t.Errorf("%s: a failed Scan set Bytes to %q", col, b.Plaintext())
				}

				var j encryptedtype.JSON[map[string]any]
				assertDecryptError(t, db.QueryRowContext(ctx, sel, id).Scan(&j), secrets, tc.want...)
			}
			if t.Failed() {
				t.Logf("stored values: %q, %q", after, afterBin)
			}
		})
	}
}
