package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// The environment of the tests that run on PostgreSQL and MySQL (as in
// package integration): without the URLs they skip those databases,
// unless COLCRYPT_REQUIRE_DB=1.
const (
	envTestPostgres = "COLCRYPT_TEST_DATABASE_URL"
	envTestMySQL    = "COLCRYPT_TEST_MYSQL_URL"
	envRequireDB    = "COLCRYPT_REQUIRE_DB"
)

// testDB is a database that a test runs the CLI against.
type testDB struct {
	name  string // sqlite, postgres, mysql
	url   string // for --database-url
	db    *sql.DB
	table string // a table made for the test, dropped when it ends
}

// ph returns the i-th (from 1) placeholder of the database's SQL.
func (d testDB) ph(i int) string {
	if d.name == "postgres" {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

// exec runs a statement with "%s" standing for the table's name.
func (d testDB) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := d.db.Exec(fmt.Sprintf(query, d.table), args...); err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
}

// values returns the table's email and note columns by id, NULL as nil.
func (d testDB) values(t *testing.T) map[int64][2]*string {
	t.Helper()
	rows, err := d.db.Query(fmt.Sprintf("SELECT id, email, note FROM %s", d.table))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64][2]*string{}
	for rows.Next() {
		var id int64
		var email, note sql.NullString
		if err := rows.Scan(&id, &email, &note); err != nil {
			t.Fatal(err)
		}
		var v [2]*string
		for i, ns := range []sql.NullString{email, note} {
			if ns.Valid {
				v[i] = &ns.String
			}
		}
		got[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// forEachDatabase runs f on SQLite, and on PostgreSQL and MySQL when their
// test URLs are set, each time with a new table
// (id INTEGER PRIMARY KEY, email TEXT, note TEXT).
func forEachDatabase(t *testing.T, f func(t *testing.T, d testDB)) {
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			d := testDB{name: name, table: "users"}
			switch name {
			case "sqlite":
				file, db := sqliteFile(t)
				d.url, d.db = "sqlite://"+file, db
			case "postgres", "mysql":
				env, driver, scheme := envTestPostgres, "pgx", ""
				if name == "mysql" {
					env, driver, scheme = envTestMySQL, "mysql", "mysql://"
				}
				dsn := os.Getenv(env)
				if dsn == "" {
					msg := fmt.Sprintf("%s is not set: not run on %s", env, name)
					if os.Getenv(envRequireDB) == "1" {
						t.Fatal(msg)
					}
					t.Skip(msg)
				}
				db, err := sql.Open(driver, dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = db.Close() })
				var r [5]byte
				_, _ = rand.Read(r[:])
				d.url, d.db, d.table = scheme+dsn, db, "colcrypt_cli_"+hex.EncodeToString(r[:])
				t.Cleanup(func() {
					if _, err := db.Exec("DROP TABLE IF EXISTS " + d.table); err != nil {
						t.Errorf("dropping %s: %v", d.table, err)
					}
				})
			}
			d.exec(t, "CREATE TABLE %s (id INTEGER PRIMARY KEY, email TEXT, note TEXT)")
			f(t, d)
		})
	}
}

// countingCipher counts the values the job decrypts.
type countingCipher struct {
	*encryptedtype.Codec
	opens atomic.Int64
}

func (c *countingCipher) Open(ctx context.Context, value []byte) ([]byte, error) {
	c.opens.Add(1)
	return c.Codec.Open(ctx, value)
}

// countDecryptions makes the table commands of t decrypt through a
// countingCipher, which it returns once a command has made it.
func countDecryptions(t *testing.T) func() *countingCipher {
	t.Helper()
	var last *countingCipher
	prev := newCipher
	newCipher = func(keys keyprovider.Provider) rotation.Cipher {
		last = &countingCipher{Codec: encryptedtype.NewCodec(keys)}
		return last
	}
	t.Cleanup(func() { newCipher = prev })
	return func() *countingCipher { return last }
}

// eeKeys returns data keys 1 and 2, puts them in the environment with 2
// active, and returns Codecs writing under each, the second holding both.
func eeKeys(t *testing.T) (v1, v2 *encryptedtype.Codec) {
	t.Helper()
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	s1, _ := keyprovider.NewStatic(1, k1)
	s2, _ := keyprovider.NewStatic(2, k1, k2)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1, k2))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "2")
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	t.Setenv("DATABASE_URL", "")
	return encryptedtype.NewCodec(s1), encryptedtype.NewCodec(s2)
}

func seal(t *testing.T, c *encryptedtype.Codec, plaintext string) string {
	t.Helper()
	v, err := c.Seal(context.Background(), []byte(plaintext))
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// wantDecrypts checks that a stored value is a ciphertext under version 2
// of want.
func wantDecrypts(t *testing.T, c *encryptedtype.Codec, what string, got *string, want string) {
	t.Helper()
	if got == nil {
		t.Errorf("%s is NULL, want a ciphertext", what)
		return
	}
	if v, err := encryptedtype.Version([]byte(*got)); err != nil || v != 2 {
		t.Errorf("%s is not under key version 2 (%d, %v)", what, v, err)
		return
	}
	pt, err := c.Open(context.Background(), []byte(*got))
	if err != nil || string(pt) != want {
		t.Errorf("%s does not decrypt to what it held (%v)", what, err)
	}
}

// TestEncryptExistingReportsLookAlikes: encrypt-existing makes no Verify
// pass of its own, so what Rotate's passes take for done must be found by
// Rotate: values that start like one of the active version ("v2:…" with
// version 2 active) but do not decrypt (plaintext that looks like a
// ciphertext, a random payload, a damaged ciphertext) are listed, exit 3,
// and left as they are, while the rest of the table, other columns of
// their rows included, is encrypted. A look-alike of an old version fails
// in the passes and leaves its whole row alone. Once they are fixed by
// hand, a second run exits 0 and every value decrypts.
func TestEncryptExistingReportsLookAlikes(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, d testDB) {
		old, cur := eeKeys(t)
		tampered := []byte(seal(t, cur, "erin@example.com"))
		if mid := len(tampered) / 2; tampered[mid] == 'A' {
			tampered[mid] = 'B'
		} else {
			tampered[mid] = 'A'
		}
		random := make([]byte, 48)
		_, _ = rand.Read(random)
		text := func(s string) *string { return &s }
		rows := map[int]struct {
			email, note *string
		}{
			1: {text("alice@example.com"), nil},
			2: {text(seal(t, old, "bob@example.com")), text("note two")},
			3: {text("v2:looks-like-wire"), text("note three")}, // a look-alike of the active version
			4: {text("v2:" + base64.RawURLEncoding.EncodeToString(random)), nil},
			5: {text(string(tampered)), nil},
			6: {text("v1:hello-world"), text("note six")}, // a look-alike of an old version
			7: {nil, nil},
			8: {text(seal(t, cur, "carol@example.com")), nil},
		}
		const n = 40 // more rows of plaintext, over several batches
		insert := fmt.Sprintf("INSERT INTO %%s (id, email, note) VALUES (%s, %s, %s)", d.ph(1), d.ph(2), d.ph(3))
		for id, r := range rows {
			d.exec(t, insert, id, r.email, r.note)
		}
		for id := 9; id <= n; id++ {
			d.exec(t, insert, id, fmt.Sprintf("user%d@example.com", id), fmt.Sprintf("note %d", id))
		}
		before := d.values(t)
		table := []string{"--database-url", d.url, "--table", d.table, "--column", "email", "--column", "note"}

		code, stdout, stderr := runCLI(t, append([]string{"encrypt-existing", "--progress", "none", "--batch-size", "7"}, table...)...)
		bad := []int{3, 4, 5, 6}
		// Row 6 fails in a pass and keeps its plaintext note, which is not
		// listed: the header must say that such a row is left whole.
		if code != exitFailures || !strings.Contains(stdout, fmt.Sprintf("%d rows could not be fully encrypted", len(bad))) ||
			!strings.Contains(stdout, "left whole, its other columns too (they may still hold plaintext)") ||
			strings.Contains(stdout, "resolve each duplicate") || strings.Contains(stdout, "now under key version") {
			t.Fatalf("encrypt-existing: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		for _, id := range bad {
			if !strings.Contains(stdout, fmt.Sprintf("row %d: column \"email\"", id)) {
				t.Errorf("row %d is not listed:\n%s", id, stdout)
			}
		}
		if got := strings.Count(stdout, "\n  row "); got != len(bad) {
			t.Errorf("%d rows listed, want %d:\n%s", got, len(bad), stdout)
		}
		for _, secret := range []string{"example.com", "note ", "looks-like", "hello-world", base64.RawURLEncoding.EncodeToString(random)[:12]} {
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("the output holds a stored value (%q):\nstdout: %s\nstderr: %s", secret, stdout, stderr)
			}
		}

		after := d.values(t)
		for id := int64(1); id <= n; id++ {
			email, note := after[id][0], after[id][1]
			switch id {
			case 3, 4, 5, 6: // left as they are
				if *email != *before[id][0] {
					t.Errorf("row %d: the failed email value was rewritten", id)
				}
			default:
				wantEmail := fmt.Sprintf("user%d@example.com", id)
				switch id {
				case 1:
					wantEmail = "alice@example.com"
				case 2:
					wantEmail = "bob@example.com"
				case 8:
					wantEmail = "carol@example.com"
					if *email != *before[id][0] {
						t.Errorf("row 8: a value under the active version was rewritten")
					}
				}
				if id == 7 {
					if email != nil {
						t.Errorf("row 7: NULL email became a value")
					}
				} else {
					wantDecrypts(t, cur, fmt.Sprintf("row %d email", id), email, wantEmail)
				}
			}
			switch {
			case id == 6: // its row failed in a pass: nothing of it is written
				if note == nil || *note != "note six" {
					t.Errorf("row 6: the note of a row that failed in a pass was rewritten")
				}
			case before[id][1] == nil:
				if note != nil {
					t.Errorf("row %d: NULL note became a value", id)
				}
			default:
				// Row 3's look-alike is found after the passes, which
				// encrypted its note.
				wantDecrypts(t, cur, fmt.Sprintf("row %d note", id), note, *before[id][1])
			}
		}

		// Fixed by hand, as the application would write them: the second
		// run encrypts them and exits 0; every value decrypts.
		update := fmt.Sprintf("UPDATE %%s SET email = %s WHERE id = %s", d.ph(1), d.ph(2))
		for _, id := range bad {
			d.exec(t, update, fmt.Sprintf("fixed%d@example.com", id), id)
		}
		code, stdout, stderr = runCLI(t, append([]string{"encrypt-existing", "--progress", "none", "--batch-size", "7"}, table...)...)
		if code != 0 || !strings.Contains(stdout, "5 plaintext values encrypted") || !strings.Contains(stdout, "now under key version 2") {
			t.Fatalf("encrypt-existing after the fix: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		after = d.values(t)
		for _, id := range bad {
			wantDecrypts(t, cur, fmt.Sprintf("row %d email", id), after[int64(id)][0], fmt.Sprintf("fixed%d@example.com", id))
		}
		wantDecrypts(t, cur, "row 6 note", after[6][1], "note six")
		if code, stdout, stderr := runCLI(t, append([]string{"verify"}, table...)...); code != 0 {
			t.Errorf("verify after encrypt-existing exited 0: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
	})
}

// TestEncryptExistingDecryptsOnce: encrypt-existing reads back and
// decrypts every value it leaves (the check that makes a Verify pass
// needless), and decrypts no value a second time: a stored value is
// decrypted once, plus once before it is re-encrypted when it was under
// an old version. A Verify after Rotate would decrypt every value again.
func TestEncryptExistingDecryptsOnce(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, d testDB) {
		old, cur := eeKeys(t)
		cipher := countDecryptions(t)
		const n = 60
		var values, oldValues int64
		insert := fmt.Sprintf("INSERT INTO %%s (id, email, note) VALUES (%s, %s, %s)", d.ph(1), d.ph(2), d.ph(3))
		for id := 1; id <= n; id++ {
			var email, note any
			switch id % 3 {
			case 0:
				email = fmt.Sprintf("user%d@example.com", id)
			case 1:
				email = seal(t, old, fmt.Sprintf("user%d@example.com", id))
				oldValues++
			case 2:
				email = seal(t, cur, fmt.Sprintf("user%d@example.com", id))
			}
			values++
			if id%4 != 0 {
				note = fmt.Sprintf("note %d", id)
				values++
			}
			d.exec(t, insert, id, email, note)
		}
		table := []string{"--database-url", d.url, "--table", d.table, "--column", "email", "--column", "note"}
		code, stdout, stderr := runCLI(t, append([]string{"encrypt-existing", "--progress", "none", "--batch-size", "16"}, table...)...)
		if code != 0 || !strings.Contains(stdout, "now under key version 2") {
			t.Fatalf("encrypt-existing: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		c := cipher()
		if c == nil {
			t.Fatal("encrypt-existing did not make its Cipher with newCipher")
		}
		if got := c.opens.Load(); got < values || got > values+oldValues {
			t.Errorf("encrypt-existing decrypted %d times: want from %d (every value read back) to %d (and each value of version 1 before re-encrypting it)",
				got, values, values+oldValues)
		}
		for id, v := range d.values(t) {
			for i, s := range v {
				if s == nil {
					continue
				}
				if ver, err := encryptedtype.Version([]byte(*s)); err != nil || ver != 2 {
					t.Errorf("row %d column %d is not under version 2", id, i)
				} else if _, err := cur.Open(context.Background(), []byte(*s)); err != nil {
					t.Errorf("row %d column %d does not decrypt: %v", id, i, err)
				}
			}
		}
	})
}
