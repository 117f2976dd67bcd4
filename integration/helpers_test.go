package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// queryTimeout bounds every test's database work.
const queryTimeout = 2 * time.Minute

// testContext returns a context that ends when t ends or after
// queryTimeout.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ---------------------------------------------------------------------------
// Keys.

// defaultMu serialises the tests of this package that set encryptedtype's
// process-wide default provider: two tests with different keys must not
// run at the same time in one process. Tests in different processes (other
// packages, CI jobs sharing a database) do not share the default and use
// their own tables, so they can run in parallel.
var defaultMu sync.Mutex

// keyring hands out fresh random keys by version and installs Static
// providers built from them as encryptedtype's default.
type keyring struct {
	t    testing.TB
	keys map[uint32]keyprovider.Key
}

// newKeyring gives t exclusive use of encryptedtype's default provider until
// t ends, when the previous default is restored.
func newKeyring(t testing.TB) *keyring {
	t.Helper()
	defaultMu.Lock()
	prev := encryptedtype.Default()
	t.Cleanup(func() {
		if prev != nil {
			encryptedtype.SetDefault(prev.Provider())
		} else {
			encryptedtype.SetDefault(nil)
		}
		defaultMu.Unlock()
	})
	return &keyring{t: t, keys: make(map[uint32]keyprovider.Key)}
}

// key returns the keyring's key of the given version, generating it on
// first use.
func (k *keyring) key(version uint32) keyprovider.Key {
	k.t.Helper()
	if key, ok := k.keys[version]; ok {
		return key
	}
	key, err := keyprovider.GenerateKey(version)
	if err != nil {
		k.t.Fatalf("GenerateKey(%d): %v", version, err)
	}
	k.keys[version] = key
	return key
}

// use makes the default provider a Static keyring holding the keys of
// versions (and of active, which need not be repeated), writing under
// active. Versions seen before keep their key.
func (k *keyring) use(active uint32, versions ...uint32) *keyprovider.Static {
	k.t.Helper()
	keys := []keyprovider.Key{k.key(active)}
	for _, v := range versions {
		if v != active {
			keys = append(keys, k.key(v))
		}
	}
	return k.useKeys(active, keys...)
}

// useKeys makes the default provider a Static keyring of exactly keys.
func (k *keyring) useKeys(active uint32, keys ...keyprovider.Key) *keyprovider.Static {
	k.t.Helper()
	p, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		k.t.Fatalf("NewStatic(%d, …): %v", active, err)
	}
	encryptedtype.SetDefault(p)
	return p
}

// secrets returns the text forms of every key the keyring generated, for
// checking that they appear in no error message or log.
func (k *keyring) secrets() []string {
	var out []string
	for _, key := range k.keys {
		b := key.Bytes()
		out = append(out,
			base64.StdEncoding.EncodeToString(b),
			base64.RawURLEncoding.EncodeToString(b),
			hex.EncodeToString(b),
		)
		clear(b)
	}
	return out
}

// ---------------------------------------------------------------------------
// Databases and tables.

// openSQL opens a database/sql pool on the test database through pgx's
// stdlib driver. It is closed when t ends.
func openSQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ctx := testContext(t)
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("connecting to the test database (%s): %v", envDSN, err)
	}
	return db
}

var nameSanitizer = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName returns a new lower-case SQL identifier derived from t's name
// and a random suffix, so that tests, reruns and concurrent runs against
// one database never share a table.
func uniqueName(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nameSanitizer.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	base = strings.TrimPrefix(base, "test")
	base = strings.Trim(base, "_")
	if len(base) > 32 {
		base = base[:32]
	}
	var r [5]byte
	_, _ = rand.Read(r[:])
	return "colcrypt_it_" + base + "_" + hex.EncodeToString(r[:]) // ≤ 12+32+1+10 = 55 < 63
}

// createTable creates a table with a unique name and the given column
// definitions (after an "id BIGINT … PRIMARY KEY" column), drops it when t
// ends, and returns its quoted name.
func createTable(t testing.TB, db *sql.DB, columns string) string {
	t.Helper()
	name := pgx.Identifier{uniqueName(t)}.Sanitize()
	ctx := testContext(t)
	ddl := fmt.Sprintf("CREATE TABLE %s (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, %s)", name, columns)
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	t.Cleanup(func() { dropTable(t, db, name) })
	return name
}

// dropTable drops a table at the end of a test, with a fresh context (the
// test's own may have ended).
func dropTable(t testing.TB, db *sql.DB, quotedName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+quotedName); err != nil {
		t.Errorf("dropping %s: %v", quotedName, err)
	}
}

// tableQuery returns a function that puts the quoted table name into a
// query with one %s.
func tableQuery(quotedTable string) func(format string) string {
	return func(format string) string { return fmt.Sprintf(format, quotedTable) }
}

// ---------------------------------------------------------------------------
// Raw values.

// wireFormat is the shape of every stored value: v<version>:<base64url>.
var wireFormat = regexp.MustCompile(`^v[0-9]+:[A-Za-z0-9_-]+$`)

// rawText reads one value with plain SQL, as text, and fails t if it is
// NULL. query should select one text expression, such as a TEXT column or
// encode(bytea_column, 'escape').
func rawText(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	var s sql.NullString
	if err := db.QueryRowContext(testContext(t), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if !s.Valid {
		t.Fatalf("%s: got NULL, want an encrypted value", query)
	}
	return s.String
}

// queryBool returns the one boolean result of a plain SQL query, such as
// "SELECT col IS NULL …".
func queryBool(t testing.TB, db *sql.DB, query string, args ...any) bool {
	t.Helper()
	var b bool
	if err := db.QueryRowContext(testContext(t), query, args...).Scan(&b); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return b
}

// assertCiphertext checks that raw, a value read from the database with
// plain SQL, is in the wire format, under key version wantVersion, that its
// payload has exactly the size of an AES-GCM encryption of plaintext, and
// that neither plaintext nor any of mustNotContain appears in it.
func assertCiphertext(t testing.TB, raw string, wantVersion uint32, plaintext []byte, mustNotContain ...string) {
	t.Helper()
	if !wireFormat.MatchString(raw) {
		t.Errorf("stored value %q does not match %s", raw, wireFormat)
		return
	}
	v, err := encryptedtype.Version([]byte(raw))
	if err != nil {
		t.Errorf("Version(%q): %v", raw, err)
	} else if v != wantVersion {
		t.Errorf("stored value is under key version %d, want %d", v, wantVersion)
	}
	_, payload, _ := strings.Cut(raw, ":")
	n := base64.RawURLEncoding.DecodedLen(len(payload))
	if want := encryptedtype.NonceSize + len(plaintext) + encryptedtype.TagSize; n != want {
		t.Errorf("stored payload is %d bytes, want nonce+%d bytes of ciphertext+tag = %d", n, len(plaintext), want)
	}
	if len(plaintext) > 0 && strings.Contains(raw, string(plaintext)) {
		t.Errorf("stored value %q contains the plaintext", raw)
	}
	for _, s := range mustNotContain {
		if s != "" && strings.Contains(raw, s) {
			t.Errorf("stored value %q contains %q", raw, s)
		}
	}
}

// assertDecryptError checks that err wraps one of want and that its text
// contains none of secrets (plaintexts, key material, the stored value).
func assertDecryptError(t testing.TB, err error, secrets []string, want ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("got no error, want one wrapping %v", want)
		return
	}
	ok := false
	for _, w := range want {
		ok = ok || errors.Is(err, w)
	}
	if !ok {
		t.Errorf("got error %q, want one wrapping %v", err, want)
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error text %q contains the secret %q", msg, s)
		}
	}
}

// flipMiddleSQL returns an SQL expression that is the text expression expr
// with the character in its middle replaced by another base64url
// character: still in the wire format, but no longer authentic.
func flipMiddleSQL(expr string) string {
	return fmt.Sprintf(
		"overlay(%[1]s placing (CASE WHEN substr(%[1]s, length(%[1]s)/2, 1) = 'A' THEN 'B' ELSE 'A' END) from length(%[1]s)/2 for 1)",
		expr)
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// indexOf returns the index value of plaintext under ix's active key.
func indexOf(t testing.TB, ix *blindindex.Index, plaintext string) string {
	t.Helper()
	v, err := ix.Compute(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
