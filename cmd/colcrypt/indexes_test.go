package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// indexTable makes an SQLite database file with a table "users" of n rows,
// email encrypted under data key k1 and email_bidx computed under index key
// i1 with the normalisers trimspace+nfkc+fold, and points DATABASE_URL at
// it.
func indexTable(t *testing.T, n int, k1, i1 keyprovider.Key) {
	t.Helper()
	ctx := context.Background()
	file, db := sqliteFile(t)
	keys, _ := keyprovider.NewStatic(1, k1)
	codec := encryptedtype.NewCodec(keys)
	ix := testIndex(t, "users.email", i1, blindindex.Config{Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)})
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, email_bidx TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		email := fmt.Sprintf(" User%d@Example.COM ", i)
		v, err := codec.Seal(ctx, []byte(email))
		if err != nil {
			t.Fatal(err)
		}
		b, err := ix.Compute(email)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO users VALUES (?, ?, ?)`, i, string(v), b); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DATABASE_URL", "sqlite://"+file)
}

// TestIndexKeyRotationWithoutBlindIndex is the index-key rotation run
// without --blind-index: status, rotate and verify warn on stderr, naming
// COLCRYPT_INDEX_KEYS and --blind-index, none says everything is done, and
// status --check exits 3. With the --blind-index, the same commands rotate
// the index values and status --check exits 0, without the warning.
func TestIndexKeyRotationWithoutBlindIndex(t *testing.T) {
	k1, _ := keyprovider.GenerateKey(1)
	i1, _ := keyprovider.GenerateKey(1)
	i2, _ := keyprovider.GenerateKey(2)
	indexTable(t, 30, k1, i1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "1")
	t.Setenv("COLCRYPT_INDEX_KEYS", keyprovider.EncodeKeys(i1, i2))
	t.Setenv("COLCRYPT_ACTIVE_INDEX_KEY", "2")
	table := []string{"--table", "users", "--column", "email"}
	withIndex := append(append([]string(nil), table...), "--blind-index", "email_bidx=email,normalize=trimspace+nfkc+fold")
	secrets := []string{keyprovider.EncodeKeys(k1)[2:], keyprovider.EncodeKeys(i1)[2:], keyprovider.EncodeKeys(i2)[2:], "Example.COM"}
	warned := func(what string, code int, stdout, stderr string) {
		t.Helper()
		if !strings.Contains(stderr, "WARNING: COLCRYPT_INDEX_KEYS holds index key versions 1, 2") || !strings.Contains(stderr, "no --blind-index was given") ||
			!strings.Contains(stderr, `Column "email_bidx" holds blind index values but no --blind-index names it (16 of 16 sampled values`) {
			t.Errorf("%s: no warning on stderr: %d\nstdout: %s\nstderr: %s", what, code, stdout, stderr)
		}
		if strings.Contains(stdout, "Every value is under the active key versions") {
			t.Errorf("%s: says everything is done:\n%s", what, stdout)
		}
		for _, s := range secrets {
			if strings.Contains(stdout+stderr, s) {
				t.Errorf("%s: the output holds a secret or a plaintext", what)
			}
		}
	}

	code, stdout, stderr := runCLI(t, append([]string{"status"}, table...)...)
	warned("status", code, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, `the blind index columns were not looked at (no --blind-index, while COLCRYPT_INDEX_KEYS holds versions 1, 2): column "email_bidx" holds blind index values`) {
		t.Errorf("status: %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"status", "--check"}, table...)...)
	warned("status --check", code, stdout, stderr)
	if code != exitFailures || !strings.Contains(stderr, `colcrypt status: not done in "users": the blind index columns were not checked (no --blind-index`) ||
		!strings.Contains(stderr, "status --check cannot vouch for index values it was not told about") {
		t.Errorf("status --check: %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"rotate", "--progress", "none"}, table...)...)
	warned("rotate", code, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, "rotated 0 rows") || !strings.Contains(stdout, `the blind index columns were not rotated (no --blind-index, while COLCRYPT_INDEX_KEYS holds versions 1, 2): column "email_bidx" holds blind index values`) ||
		strings.Count(stderr, "WARNING") != 2 {
		t.Errorf("rotate: %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"verify"}, table...)...)
	warned("verify", code, stdout, stderr)
	if code != 0 || !strings.Contains(stdout, `the blind index columns were not checked (no --blind-index, while COLCRYPT_INDEX_KEYS holds versions 1, 2): column "email_bidx" holds blind index values`) {
		t.Errorf("verify: %d\n%s\n%s", code, stdout, stderr)
	}

	// With the --blind-index: the index values are counted, rotated and
	// checked, and no warning.
	code, stdout, stderr = runCLI(t, append([]string{"status", "--check"}, withIndex...)...)
	if code != exitFailures || strings.Contains(stderr, "WARNING") || !strings.Contains(stderr, "30 rows are still to rotate") {
		t.Errorf("status --check --blind-index before: %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"rotate", "--progress", "none"}, withIndex...)...)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "30 index values recomputed") ||
		!strings.Contains(stdout, "every value of \"users\" is now under key version 1, and every blind index value under index key version 2") {
		t.Errorf("rotate --blind-index: %d\n%s\n%s", code, stdout, stderr)
	}
	checkDone(t, "status --check --blind-index after", append([]string{"status", "--check"}, withIndex...)...)
	// A table without blind indexes: COLCRYPT_INDEX_KEYS unset for the
	// command.
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	checkDone(t, "status --check, COLCRYPT_INDEX_KEYS unset", append([]string{"status", "--check"}, table...)...)
	// A single index key version is no rotation: no warning.
	t.Setenv("COLCRYPT_INDEX_KEYS", keyprovider.EncodeKeys(i2))
	code, stdout, stderr = runCLI(t, append([]string{"status", "--check"}, table...)...)
	if code != 0 || stderr != "" {
		t.Errorf("status --check, one index key: %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestBlindIndexMismatch checks that status checks the --blind-index
// settings as rotate does, and fails (exit 3) when they do not reproduce
// the stored index values; and that rotate, which refuses to run with them,
// prints no summary that reads like success.
func TestBlindIndexMismatch(t *testing.T) {
	k1, _ := keyprovider.GenerateKey(1)
	i1, _ := keyprovider.GenerateKey(1)
	indexTable(t, 3, k1, i1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "1")
	t.Setenv("COLCRYPT_INDEX_KEYS", keyprovider.EncodeKeys(i1))
	t.Setenv("COLCRYPT_ACTIVE_INDEX_KEY", "1")
	for _, spec := range []string{"email_bidx=email,normalize=trimspace", "email_bidx=email,normalize=trimspace+nfkc+fold,name=people.email"} {
		flags := []string{"--table", "users", "--column", "email", "--blind-index", spec}
		for _, cmd := range [][]string{{"status"}, {"status", "--check"}, {"status", "--decrypt"}} {
			code, stdout, stderr := runCLI(t, append(cmd, flags...)...)
			if code != exitFailures || strings.Contains(stdout, "Every value is under the active key versions") ||
				!strings.Contains(stdout, "The --blind-index settings do not reproduce the stored index values") ||
				!strings.Contains(stderr, "3 of the 3 stored values checked differ") || !strings.Contains(stderr, "rotate refuses to run") {
				t.Errorf("%s %s: %d\n%s\n%s", strings.Join(cmd, " "), spec, code, stdout, stderr)
			}
		}
		code, stdout, stderr := runCLI(t, append([]string{"rotate", "--progress", "none"}, flags...)...)
		if code != exitError || stdout != "" || !strings.Contains(stderr, "3 of the 3 stored values checked differ") || !strings.Contains(stderr, "nothing was written") {
			t.Errorf("rotate %s: %d\nstdout: %q\nstderr: %s", spec, code, stdout, stderr)
		}
	}
	// The application's settings pass.
	flags := []string{"--table", "users", "--column", "email", "--blind-index", "email_bidx=email,normalize=trimspace+nfkc+fold"}
	if code, stdout, stderr := runCLI(t, append([]string{"status", "--check"}, flags...)...); code != 0 || !strings.Contains(stdout, "Every value is under the active key versions.") {
		t.Errorf("status --check with the right settings: %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestRotateClearsOrphanIndex checks that status --check counts a blind
// index value beside a NULL source as work left, and that rotate clears it
// and says so in its summary.
func TestRotateClearsOrphanIndex(t *testing.T) {
	k1, _ := keyprovider.GenerateKey(1)
	i1, _ := keyprovider.GenerateKey(1)
	file, db := sqliteFile(t)
	keys, _ := keyprovider.NewStatic(1, k1)
	v, err := encryptedtype.NewCodec(keys).Seal(context.Background(), []byte("a@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	ix := testIndex(t, "users.email", i1, blindindex.Config{})
	b, err := ix.Compute("a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, email_bidx TEXT)`); err != nil {
		t.Fatal(err)
	}
	// Row 2 had its email set to NULL by hand, its index left behind.
	if _, err := db.Exec(`INSERT INTO users VALUES (1, ?, ?), (2, NULL, ?)`, string(v), b, b); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", "sqlite://"+file)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "1")
	t.Setenv("COLCRYPT_INDEX_KEYS", keyprovider.EncodeKeys(i1))
	t.Setenv("COLCRYPT_ACTIVE_INDEX_KEY", "1")
	args := []string{"--table", "users", "--column", "email", "--blind-index", "email_bidx=email"}

	code, stdout, stderr := runCLI(t, append([]string{"status", "--check"}, args...)...)
	if code != exitFailures || !strings.Contains(stderr, "1 rows are still to rotate") {
		t.Errorf("status --check before: %d\n%s\n%s", code, stdout, stderr)
	}
	// The index table counts it in its own column: v1, NULL, MISSING,
	// BESIDE NULL, MALFORMED, TO ROTATE.
	if !regexp.MustCompile(`(?m)^INDEX +SOURCE +v1 \(active\) +NULL +MISSING +BESIDE NULL +MALFORMED +TO ROTATE\n"?email_bidx"? +"?email"? +2 +0 +0 +1 +0 +1 *$`).MatchString(stdout) {
		t.Errorf("status: the index table does not count the value beside NULL:\n%s", stdout)
	}
	code, stdout, stderr = runCLI(t, append([]string{"rotate", "--progress", "none"}, args...)...)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "1 index values beside a NULL source cleared") || strings.Contains(stdout+stderr, b) {
		t.Errorf("rotate: %d\n%s\n%s", code, stdout, stderr)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM users WHERE email_bidx IS NULL`).Scan(&n); err != nil || n != 1 {
		t.Errorf("index values cleared: %d, %v; want 1", n, err)
	}
	checkDone(t, "status --check after", append([]string{"status", "--check"}, args...)...)
}
