package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// TestEncryptExistingDuplicates: encrypt-existing of a plaintext column
// whose blind index column has a UNIQUE index, where the plaintext holds
// addresses that normalise alike. The later row of each pair is listed,
// naming the row and the index column and saying to resolve the
// duplicate, never a value, and is left whole; exit 3. Once resolved, a
// second run exits 0.
func TestEncryptExistingDuplicates(t *testing.T) {
	_, cur := eeKeys(t)
	i1, _ := keyprovider.GenerateKey(1)
	t.Setenv("COLCRYPT_INDEX_KEYS", keyprovider.EncodeKeys(i1))
	t.Setenv("COLCRYPT_ACTIVE_INDEX_KEY", "1")
	file, db := sqliteFile(t)
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, email_bidx TEXT UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	emails := map[int]string{3: "Case@Example.com", 4: "case@example.com", 9: " OTHER@example.com", 17: "other@example.com"}
	for id := 1; id <= 20; id++ {
		e, ok := emails[id]
		if !ok {
			e = fmt.Sprintf("user%d@example.com", id)
		}
		if _, err := db.Exec(`INSERT INTO users (id, email) VALUES (?, ?)`, id, e); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"encrypt-existing", "--progress", "none", "--batch-size", "6", "--database-url", "sqlite://" + file,
		"--table", "users", "--column", "email", "--blind-index", "email_bidx=email,normalize=trimspace+nfkc+fold"}
	code, stdout, stderr := runCLI(t, args...)
	if code != exitFailures || !strings.Contains(stdout, "2 rows could not be fully encrypted") ||
		!strings.Contains(stdout, "another row already holds") || !strings.Contains(stdout, "resolve each duplicate") {
		t.Fatalf("encrypt-existing: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, id := range []int{4, 17} {
		if !strings.Contains(stdout, fmt.Sprintf(`row %d: column "email_bidx": rotation: another row already holds this index value`, id)) {
			t.Errorf("row %d is not listed:\n%s", id, stdout)
		}
	}
	if strings.Contains(stdout+stderr, "xample.com") || strings.Contains(stdout+stderr, "b1:") {
		t.Errorf("the output holds a value:\nstdout: %s\nstderr: %s", stdout, stderr)
	}
	var left int
	if err := db.QueryRow(`SELECT count(*) FROM users WHERE email_bidx IS NULL AND email LIKE '%@example.com' AND id IN (4, 17)`).Scan(&left); err != nil || left != 2 {
		t.Errorf("%d of rows 4 and 17 left as they were, %v", left, err)
	}

	// Resolved: row 4 gets another address, row 17 goes.
	if _, err := db.Exec(`UPDATE users SET email = 'case+4@example.com' WHERE id = 4; DELETE FROM users WHERE id = 17`); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, args...); code != 0 || !strings.Contains(stdout, "rewrote 1 rows") {
		t.Fatalf("encrypt-existing once resolved: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for id, want := range map[int]string{4: "case+4@example.com", 9: " OTHER@example.com"} {
		var email string
		if err := db.QueryRow(`SELECT email FROM users WHERE id = ?`, id).Scan(&email); err != nil {
			t.Fatal(err)
		}
		wantDecrypts(t, cur, fmt.Sprintf("row %d's email", id), &email, want)
	}
}
