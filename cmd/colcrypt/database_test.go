package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
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
		// A keyword=value string whose password holds "@/" or "@(" is not
		// a MySQL DSN.
		{url: "password=p@/x host=127.0.0.1 dbname=test", wantDriver: "pgx", wantDSN: "password=p@/x host=127.0.0.1 dbname=test", wantDialect: rotation.Postgres},
		{url: "user=me@(corp) host=h dbname=d", driver: "postgres", wantDriver: "pgx", wantDSN: "user=me@(corp) host=h dbname=d", wantDialect: rotation.Postgres},
		// A well-formed URL naming a file that cannot be read is not a
		// syntax error, and the error says so without the password.
		{url: "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", wantErr: "names a file", wantNotInErr: "hunter2"},
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
		{url: "mysql://root@tcp(h)/t", driver: "postgres", wantErr: "--driver postgres with a mysql:// URL"},
		{url: "sqlite://" + file, driver: "postgres", wantErr: "--driver postgres with a sqlite:// URL"},
		{url: "file:" + file, driver: "postgres", wantErr: "--driver postgres with an SQLite file: URI"},
		{url: "http://u:hunter2@h/db", wantErr: "the database URL is a http:// URL", wantNotInErr: "hunter2"},
		{url: "root:hunter2@tcp(h:3306)/t", wantErr: "looks like a MySQL DSN: write mysql://", wantNotInErr: "hunter2"},
		{url: "root:hunter2@/t", driver: "postgres", wantErr: "looks like a MySQL DSN", wantNotInErr: "hunter2"},
		{url: "postgres://u:hunter2@h/db", driver: "mysql", wantErr: "--driver mysql with a postgres:// URL", wantNotInErr: "hunter2"},
		// --driver sqlite with another database's URL: refused, and neither
		// the URL nor the stat error (which repeats the path) is printed.
		{url: "postgres://app:hunter2@db/prod", driver: "sqlite", wantErr: "--driver sqlite with a postgres:// URL: give the path of an SQLite database file", wantNotInErr: "hunter2"},
		{url: "postgresql://app:hunter2@db/prod", driver: "sqlite", wantErr: "with a postgresql:// URL", wantNotInErr: "hunter2"},
		{url: "mysql://app:hunter2@tcp(db:3306)/prod", driver: "sqlite", wantErr: "with a mysql:// URL", wantNotInErr: "hunter2"},
		{url: "app:hunter2@tcp(db:3306)/prod", driver: "sqlite", wantErr: "--driver sqlite with what looks like a MySQL DSN", wantNotInErr: "hunter2"},
		{url: "app:hunter2@unix(/run/mysqld.sock)/prod", driver: "sqlite", wantErr: "looks like a MySQL DSN", wantNotInErr: "hunter2"},
		{url: "host=db user=app password=hunter2 dbname=prod", driver: "sqlite", wantErr: "looks like a PostgreSQL keyword=value string", wantNotInErr: "hunter2"},
		{url: filepath.Join(filepath.Dir(file), "hunter2", "app.db"), driver: "sqlite", wantErr: "no SQLite database file at the path of the database URL", wantNotInErr: "hunter2"},
		{url: "sqlite://" + filepath.Join(filepath.Dir(file), "hunter2.db"), wantErr: "no SQLite database file", wantNotInErr: "hunter2"},
		{url: "file:" + filepath.Join(filepath.Dir(file), "hunter2.db") + "?mode=ro", wantErr: "no SQLite database file", wantNotInErr: "hunter2"},
		{url: "sqlite://" + filepath.Dir(file), wantErr: "is a directory"},
		// pgx quotes what it cannot parse, redacting only what it
		// recognises as a password.
		{url: "app:hunter2@db/prod", wantErr: "not a PostgreSQL URL or keyword=value string", wantNotInErr: "hunter2"},
		{url: "postgres://app:hunter2@[bad/prod", wantErr: "not a PostgreSQL URL", wantNotInErr: "hunter2"},
		{url: file, wantErr: "not a PostgreSQL URL"},
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
	file, db := sqliteFile(t)
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
	if code != exitFailures || !strings.Contains(stdout, "60 rows could not be rewritten") || strings.Contains(stdout, "plain note") {
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

// TestPasswordNeverPrinted runs status with database URLs of every kind,
// holding a password, under every --driver: whatever fails (a refused URL,
// a parse error, a connection error, a missing SQLite file), the password
// is not in the output.
func TestPasswordNeverPrinted(t *testing.T) {
	const pw = "S3cretPW"
	key, _ := keyprovider.GenerateKey(1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(key))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "")
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	dir := t.TempDir()
	urls := []string{
		"postgres://app:" + pw + "@127.0.0.1:1/prod?connect_timeout=2",
		"postgresql://app:" + pw + "@127.0.0.1:1/prod?sslmode=bogus",
		"postgres://app:" + pw + "@[bad/prod",
		"host=127.0.0.1 port=1 user=app password=" + pw + " dbname=prod connect_timeout=2",
		"mysql://app:" + pw + "@tcp(127.0.0.1:1)/prod?timeout=2s",
		"app:" + pw + "@tcp(127.0.0.1:1)/prod?timeout=2s",
		"app:" + pw + "@/prod",
		"mysql://app:" + pw + "@tcp(h:3306)prod",
		"sqlite://" + filepath.Join(dir, pw+".db"),
		"file:" + filepath.Join(dir, pw+".db"),
		filepath.Join(dir, pw, "app.db"),
		"https://app:" + pw + "@example.com/prod",
	}
	for _, driver := range []string{"", "postgres", "mysql", "sqlite"} {
		for _, url := range urls {
			args := []string{"status", "--database-url", url, "--table", "t", "--column", "c"}
			if driver != "" {
				args = append(args, "--driver", driver)
			}
			code, stdout, stderr := runCLI(t, args...)
			if code == 0 {
				t.Errorf("--driver %q, URL %d: exit 0", driver, slices.Index(urls, url))
			}
			if strings.Contains(stdout+stderr, pw) {
				t.Errorf("--driver %q: the password is in the output: %q", driver, stderr)
			}
		}
	}
	// The same through DATABASE_URL.
	t.Setenv("DATABASE_URL", urls[0])
	if code, stdout, stderr := runCLI(t, "status", "--driver", "sqlite", "--table", "t", "--column", "c"); code != exitUsage ||
		!strings.Contains(stderr, "--driver sqlite with a postgres:// URL") || strings.Contains(stdout+stderr, pw) {
		t.Errorf("DATABASE_URL with --driver sqlite: %d %q", code, stderr)
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

// newSQLiteTable makes an SQLite database with table users(id, email):
// rows 1 to n encrypted under key version 1, then the plaintexts given,
// and points DATABASE_URL and the keys at them.
func newSQLiteTable(t *testing.T, n int, plaintexts ...string) {
	t.Helper()
	file, db := sqliteFile(t)
	k1, _ := keyprovider.GenerateKey(1)
	s1, _ := keyprovider.NewStatic(1, k1)
	codec := encryptedtype.NewCodec(s1)
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		v, _ := codec.Seal(context.Background(), fmt.Append(nil, "user", i, "@example.com"))
		if _, err := db.Exec(`INSERT INTO users VALUES (?, ?)`, i, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range plaintexts {
		if _, err := db.Exec(`INSERT INTO users VALUES (?, ?)`, n+1+i, p); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DATABASE_URL", "sqlite://"+file)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k1))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "1")
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
}

// TestStatusCheckPlaintext: with every encrypted value under the active key
// but plaintext left, status --check exits 3 and says that values are
// plaintext, not that 0 rows are to rotate.
func TestStatusCheckPlaintext(t *testing.T) {
	newSQLiteTable(t, 3, "a@example.com", "b@example.com")
	code, stdout, stderr := runCLI(t, "status", "--check", "--table", "users", "--column", "email")
	if code != exitFailures || !strings.Contains(stderr, "2 values are plaintext") || strings.Contains(stderr, "0 rows") ||
		strings.Contains(stdout+stderr, "example.com") {
		t.Errorf("status --check: %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// cancelWriter cancels a context at its first write.
type cancelWriter struct {
	cancel context.CancelFunc
	buf    strings.Builder
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	return w.buf.Write(p)
}

// TestInterrupted: every command stopped by SIGINT (its context cancelled)
// exits 130, before it starts and, for verify, while it runs.
func TestInterrupted(t *testing.T) {
	newSQLiteTable(t, 50)
	table := []string{"--table", "users", "--column", "email", "--progress", "none"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, args := range [][]string{
		append([]string{"status"}, table[:4]...),
		append([]string{"status", "--check"}, table[:4]...),
		append([]string{"status", "--decrypt"}, table[:4]...),
		append([]string{"verify"}, table[:4]...),
		append([]string{"rotate"}, table...),
		append([]string{"encrypt-existing"}, table...),
	} {
		var stdout, stderr bytes.Buffer
		want := "interrupted; nothing was written"
		if args[0] == "rotate" || args[0] == "encrypt-existing" {
			want = "interrupted; every row is intact"
		}
		if code := run(ctx, args, &stdout, &stderr); code != exitInterrupted || !strings.Contains(stderr.String(), want) {
			t.Errorf("colcrypt %q, interrupted: exit %d, stderr %q", args, code, stderr.String())
		}
	}

	// verify, interrupted at its first failure: with a keyring that lacks
	// version 1, every row fails, and each is printed as it is found.
	k2, _ := keyprovider.GenerateKey(2)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(k2))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "2")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	stdout := &cancelWriter{cancel: cancel}
	var stderr bytes.Buffer
	code := run(ctx, []string{"verify", "--batch-size", "1", "--table", "users", "--column", "email"}, stdout, &stderr)
	if code != exitInterrupted || !strings.Contains(stderr.String(), "interrupted") || strings.Contains(stdout.buf.String(), "row 50") {
		t.Errorf("verify interrupted while running: exit %d\nstdout: %s\nstderr: %s", code, stdout.buf.String(), stderr.String())
	}
}

// sqliteFile creates an SQLite database file in t's temporary directory and
// returns its path and a pool on it, closed when t ends.
func sqliteFile(t *testing.T) (string, *sql.DB) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", "file:"+file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return file, db
}

// testIndex returns the blind index called name under a keyring of key
// alone.
func testIndex(t *testing.T, name string, key keyprovider.Key, cfg blindindex.Config) *blindindex.Index {
	t.Helper()
	ks, err := keyprovider.NewStatic(key.Version(), key)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := blindindex.New(name, ks, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}
