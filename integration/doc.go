// Package integration holds colcrypt's tests against real databases:
// PostgreSQL, MySQL/MariaDB and SQLite. It has no API: everything is in its
// _test.go files.
//
// The tests use the column types of package encryptedtype through GORM
// (gorm.io/gorm with gorm.io/driver/postgres), database/sql with pgx's
// stdlib driver, and native pgx v5 (pgx.Conn in every query execution mode,
// and pgxpool.Pool), in TEXT and BYTEA columns. Every test reads the stored
// values back with plain SQL and checks that they are ciphertext in the wire
// format, under the expected key version, and do not contain the
// plaintext. They also cover NULL versus the empty string, key rotation at
// read time, and tampered values.
//
// # Running
//
// The tests find a database in this order:
//
//  1. The DSN in COLCRYPT_TEST_DATABASE_URL, when it is set. Any PostgreSQL
//     will do; the tests only create and drop their own tables, each named
//     with a random part (most start with colcrypt_it_).
//  2. Otherwise a postgres:16-alpine container started with
//     testcontainers-go, once per test binary and terminated when it ends.
//     This needs a working Docker (or Podman) engine.
//  3. Otherwise the tests skip, saying how to run them. With
//     COLCRYPT_REQUIRE_DB=1 (as in CI) they fail instead.
//
// MySQL and MariaDB tests run against the go-sql-driver DSN in
// COLCRYPT_TEST_MYSQL_URL (for example root@tcp(127.0.0.1:3306)/test?parseTime=true)
// and skip without it, or fail with COLCRYPT_REQUIRE_DB=1. SQLite tests use
// the pure-Go driver on a temporary file and always run.
//
// The tests also cover blind indexes (lookups, EXPLAIN, UNIQUE, index-key
// rotation), the key table provider, the rotation job and CLI, pgx batches
// and CopyFrom. Benchmarks of bulk loads, lookups and rotation are here too;
// BENCHMARKS.md gives the commands.
//
// For example, against local servers:
//
//	COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	COLCRYPT_TEST_MYSQL_URL='root@tcp(127.0.0.1:3306)/test?parseTime=true' \
//	COLCRYPT_REQUIRE_DB=1 go test -race -count=1 ./integration/...
//
// or, with Docker running:
//
//	go test -count=1 ./integration/...
//
// The column types encrypt with a process-wide default provider
// (encryptedtype.SetDefault), and each test installs its own fresh keys, so
// the tests of this package take turns rather than running in parallel with
// each other. Separate test processes, such as two CI jobs sharing one
// database, do not interfere: every test works in its own tables.
package integration
