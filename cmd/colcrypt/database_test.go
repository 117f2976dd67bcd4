package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

func TestParseDatabase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.db")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url, driver  string
		wantDriver   string
		wantDSN      string
		wantDialect  rotation.Dialect
		wantErr      string
		wantNotInErr string
	}{
		{url: "postgres://u:p@h/db", wantDriver: "pgx", wantDSN: "postgres://u:p@h/db", wantDialect: rotation.Postgres},
		{url: "host=h dbname=db", wantDriver: "pgx", wantDSN: "host=h dbname=db", wantDialect: rotation.Postgres},
		{url: "mysql://root:pw@tcp(127.0.0.1:3306)/test?parseTime=true", wantDriver: "mysql", wantDSN: "root:pw@tcp(127.0.0.1:3306)/test?parseTime=true", wantDialect: rotation.MySQL},
		{url: "MySQL://root@tcp(h:3306)/t", wantDriver: "mysql", wantDSN: "root@tcp(h:3306)/t", wantDialect: rotation.MySQL},
		{url: "root@tcp(h:3306)/t", driver: "mysql", wantDriver: "mysql", wantDSN: "root@tcp(h:3306)/t", wantDialect: rotation.MySQL},
		{url: "root@tcp(h:3306)/t", driver: "MariaDB", wantDriver: "mysql", wantDSN: "root@tcp(h:3306)/t", wantDialect: rotation.MySQL},
		{url: "mysql://root:hunter2@tcp(h:3306)t", wantErr: "not a MySQL DSN", wantNotInErr: "hunter2"},
		{url: "sqlite://" + file, wantDriver: "sqlite", wantDSN: "file:" + file, wantDialect: rotation.SQLite},
		{url: "sqlite3://" + file + "?_pragma=busy_timeout(9000)", wantDriver: "sqlite", wantDSN: "file:" + file + "?_pragma=busy_timeout(9000)", wantDialect: rotation.SQLite},
		{url: "file:" + file + "?_pragma=busy_timeout(9000)", wantDriver: "sqlite", wantDSN: "file:" + file + "?_pragma=busy_timeout(9000)", wantDialect: rotation.SQLite},
		{url: "file://" + file, wantDriver: "sqlite", wantDSN: "file://" + file, wantDialect: rotation.SQLite},
		{url: file, driver: "sqlite", wantDriver: "sqlite", wantDSN: "file:" + file, wantDialect: rotation.SQLite},
		{url: "sqlite://" + file + ".missing", wantErr: "no SQLite database file at"},
		{url: "file:" + file + ".missing", wantErr: "no SQLite database file at"},
		{url: "sqlite://", wantErr: "names a file"},
		{url: "sqlite://:memory:", wantErr: "names a file"},
		{url: "file::memory:", wantErr: "must be a file"},
		{url: "postgres://h/db", driver: "oracle", wantErr: "--driver must be postgres, mysql or sqlite"},
		{url: "postgres://h/db", driver: "detect", wantErr: "--driver must be"},
		{url: "mysql://root@tcp(h)/t", driver: "postgres", wantErr: "with a MySQL or SQLite URL"},
	} {
		db, err := parseDatabase(tc.url, tc.driver)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseDatabase(%q, %q): %v, want an error with %q", tc.url, tc.driver, err, tc.wantErr)
			}
			if err != nil && tc.wantNotInErr != "" && strings.Contains(err.Error(), tc.wantNotInErr) {
				t.Errorf("parseDatabase(%q): the error repeats the password: %v", tc.url, err)
			}
			continue
		}
		if err != nil || db.driver != tc.wantDriver || db.dsn != tc.wantDSN || db.dialect != tc.wantDialect {
			t.Errorf("parseDatabase(%q, %q) = %+v, %v; want %s %s %v", tc.url, tc.driver, db, err, tc.wantDriver, tc.wantDSN, tc.wantDialect)
		}
	}
}

// TestSQLiteCommands runs status, rotate, verify and encrypt-existing on an
// SQLite database file, in process.
func TestSQLiteCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	s1, _ := keyprovider.NewStatic(1, k1)
	old := encryptedtype.NewCodec(s1)
	if _, err := db.Exec(`CREATE TABLE "we""ird users" (id INTEGER PRIMARY KEY, email TEXT NOT NULL, note TEXT)`); err != nil {
		t.Fatal(err)
	}
	const n = 120
	for i := 1; i <= n; i++ {
		v, _ := old.Seal(ctx, fmt.Append(nil, "user", i, "@example.com"))
		var note any
		if i%2 == 0 {
			note = fmt.Sprint("plain note ", i)
		}
		if _, err := db.Exec(`INSERT INTO "we""ird users" VALUES (?, ?, ?)`, i, string(v), note); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DATABASE_URL", "sqlite://"+file)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1, k2))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "2")
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	flags := []string{"--table", `we"ird users`, "--column", "email", "--progress", "none"}

	code, stdout, stderr := runCLI(t, append([]string{"status"}, flags[:4]...)...)
	if code != 0 || !strings.Contains(stdout, "120 rows") || !strings.Contains(stdout, "120 rows still to rotate") {
		t.Fatalf("status: %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"rotate", "--batch-size", "25"}, flags...)...)
	if code != 0 || !strings.Contains(stdout, "rotated 120 rows") || !strings.Contains(stdout, "now under key version 2") {
		t.Fatalf("rotate: %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"status", "--check"}, flags[:4]...)...)
	if code != 0 || !strings.Contains(stdout, "Every value is under the active key versions") {
		t.Fatalf("status --check after: %d %q %q", code, stdout, stderr)
	}

	// The plaintext notes: refused by rotate, encrypted by
	// encrypt-existing; then verify decrypts everything.
	both := []string{"--driver", "sqlite", "--database-url", file, "--table", `we"ird users`, "--column", "email", "--column", "note", "--progress", "none"}
	code, stdout, _ = runCLI(t, append([]string{"rotate"}, both...)...)
	if code != exitFailures || !strings.Contains(stdout, "60 rows could not be decrypted") || strings.Contains(stdout, "plain note") {
		t.Fatalf("rotate with plaintext: %d %q", code, stdout)
	}
	code, stdout, stderr = runCLI(t, append([]string{"encrypt-existing"}, both...)...)
	if code != 0 || !strings.Contains(stdout, "60 plaintext values encrypted") {
		t.Fatalf("encrypt-existing: %d %q %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, append([]string{"verify"}, both[:len(both)-2]...)...)
	if code != 0 || !strings.Contains(stdout, "verified 120 rows") {
		t.Fatalf("verify: %d %q %q", code, stdout, stderr)
	}

	// A file that does not exist is not created.
	code, _, stderr = runCLI(t, "status", "--database-url", "sqlite://"+filepath.Join(dir, "nope.db"), "--table", "t", "--column", "c")
	if code != exitError || !strings.Contains(stderr, "no SQLite database file") {
		t.Errorf("missing file: %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); err == nil {
		t.Error("the missing database file was created")
	}
}

// TestMySQLConnectionError checks that a MySQL DSN's password does not
// appear in the error when the server cannot be reached.
func TestMySQLConnectionError(t *testing.T) {
	key, _ := keyprovider.GenerateKey(1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(key))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "")
	code, _, stderr := runCLI(t, "status", "--database-url", "mysql://nobody:hunter2@tcp(127.0.0.1:1)/none?timeout=2s", "--table", "t", "--column", "c")
	if code != exitError || !strings.Contains(stderr, "connecting to the database") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("the password is in the error: %q", stderr)
	}
}

// TestEncryptExistingVerifies: plaintext that starts like the wire format
// is taken as encrypted by the job's prefix test; encrypt-existing must not
// then claim that every value is encrypted.
func TestEncryptExistingVerifies(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users VALUES (1, 'a@example.com'), (2, 'v1:looks-like-wire'), (3, NULL)`); err != nil {
		t.Fatal(err)
	}
	k1, _ := keyprovider.GenerateKey(1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "1")
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	code, stdout, stderr := runCLI(t, "encrypt-existing", "--database-url", "sqlite://"+file, "--table", "users", "--column", "email", "--progress", "none")
	if code != exitFailures || !strings.Contains(stdout, "1 values still do not decrypt") || strings.Contains(stdout, "now under key version") || strings.Contains(stdout, "looks-like-wire") {
		t.Fatalf("encrypt-existing: %d %q %q", code, stdout, stderr)
	}
	var email string
	if err := db.QueryRow(`SELECT email FROM users WHERE id = 1`).Scan(&email); err != nil || !strings.HasPrefix(email, "v1:") || strings.Contains(email, "example") {
		t.Fatalf("row 1 was not encrypted: %v", err)
	}
}
