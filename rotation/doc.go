// Package rotation re-saves encrypted columns under a new key version while
// the application keeps running, encrypts columns that still hold
// plaintext, and counts and verifies what a table holds. It works over
// database/sql on PostgreSQL, MySQL 8 / MariaDB 10.6+ and SQLite 3.33+ (see
// Databases).
//
// # Rotating a key
//
//  1. Add the new key version to every application instance's keyring and
//     make it active (COLCRYPT_KEYS="1:…,2:…", COLCRYPT_ACTIVE_KEY=2): new
//     writes use it, old values stay readable.
//  2. Run Rotate (or `colcrypt rotate`) with the same keyring. It re-saves
//     every value that is not under the active version, recomputes every
//     blind-index value not under the active index-key version, and sets
//     to NULL every blind-index value beside a NULL source value (in an
//     index column that can hold NULL).
//  3. When Census (`colcrypt status`) shows nothing left on the old version,
//     remove it from the keyrings.
//
// Describe the table with a Table (or derive it from a GORM model with
// package gormrotation), then make a Job:
//
//	codec := encryptedtype.NewCodec(keys) // holds versions 1 and 2, writes 2
//	job, err := rotation.New(db, rotation.Table{
//		Name:       "users",
//		PrimaryKey: "id",
//		Columns: []rotation.Column{
//			{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: emailIndex}}},
//			{Name: "phone"},
//		},
//	}, codec)
//	res, err := job.Rotate(ctx, rotation.Options{BatchSize: 1000})
//
// # Guarantees
//
// Rotate pages over the primary key (never OFFSET) in batches, one
// transaction per batch: it locks the next rows that need work with SELECT
// … FOR UPDATE SKIP LOCKED (on SQLite, it holds the database's write lock
// instead), decrypts and re-encrypts them in Go, writes the batch back with
// one UPDATE and commits. From that follow:
//
//   - Concurrent writers lose nothing. A value is only overwritten with the
//     re-encryption of what the same transaction read under lock: a write
//     the application committed before is what gets re-encrypted, and one
//     it makes after waits for the commit and wins. Rows the application
//     holds locked are skipped, and picked up by a later pass (on SQLite
//     the batch waits for the application's transaction instead).
//   - Stopping is always safe. Rotate keeps no state outside the data:
//     killed at any moment, every row is untouched or rewritten, and
//     running it again finishes the job.
//   - A value that does not decrypt is never written, nor is anything else
//     in its row; nor is a row whose new value (ciphertext or blind-index
//     value) would not fit its column's declared length (ErrValueTooLong),
//     so that no value is ever cut short; nor a row whose new blind-index
//     value another row already holds in a unique index (ErrDuplicate: the
//     same normalised plaintext); nor a row whose index value beside a
//     NULL source a CHECK constraint keeps from being set to NULL
//     (ErrOrphanIndex). The row is reported (primary key and reason,
//     never the value), later passes leave it alone, and Rotate ends with
//     an error wrapping ErrFailures. One exception: in a column
//     being converted (Options.EncryptPlaintext), a value that looks like
//     a ciphertext of the active version is only found not to decrypt
//     after the passes, which may have rewritten the row's other columns;
//     that value itself is never written.
//   - A duplicate is found by the write: the batch's UPDATE fails with
//     the database's unique violation, and its transaction is rolled
//     back. The batch is then made again in a transaction of its own,
//     with the same guarantees: its rows are locked and read again (those
//     that the application now holds locked are left to a later pass),
//     re-encrypted from what was read, and written one statement per row,
//     each in a savepoint; a row that breaks a unique index is rolled
//     back to its savepoint and tried again once the others are written
//     (one of them may give the value up: an index value cleared beside
//     a NULL source), and reported if it still breaks it; every other
//     row is written. A unique violation counts as a duplicate only when
//     it is of a unique index of the table on a column that the row's
//     write changes; any other (a trigger's insert into another table,
//     say) stops Rotate as any error of the database does. On
//     SQLite the batch UPDATE is UPDATE OR ABORT, so that a conflict
//     clause of the table (ON CONFLICT REPLACE would delete the other
//     row) never applies. A batch without a duplicate costs what it did.
//   - An error of the key provider that is not about a value (it cannot
//     be reached, say) stops Rotate with that error, the batch in
//     progress rolled back; running Rotate again resumes. So does any
//     error of the database that is not a unique violation (nor a CHECK
//     violation by a row that clears an index value, below).
//   - NULL stays NULL, and so does the blind index of NULL: an index value
//     found beside a NULL source value (left by SQL that set the source to
//     NULL without its index; the gormcrypt plugin writes NULL) is set to
//     NULL, whatever its index-key version, in an index column that can
//     hold NULL. An index value is one that blindindex.Version parses
//     ("b<N>:…", "a<N>:…"); anything else beside a NULL source, such as
//     the empty string of a column declared NOT NULL with an empty
//     default, is left alone and is no work. In an index column declared NOT NULL, index values
//     beside a NULL source are left alone too: Census counts them
//     (IndexCensus.Orphaned), as neither work left nor failures. Where
//     Rotate clears them, Census and Verify count them as work left, so
//     that a census is not done while one is left. The batch clears one
//     only where the source is still NULL as it writes the row, under its
//     lock. A CHECK constraint that refuses the NULL fails the row
//     (ErrOrphanIndex), the rest of the batch written row by row as for a
//     duplicate. An index column that holds index values only beside NULL
//     sources is not cleared: Rotate refuses to start (ErrIndexMismatch),
//     the description most likely naming the wrong source column.
//   - Rotate ends: passes that keep taking the same rows without making
//     them current or finding them failed (three or more in a row, over
//     ten seconds or more) stop it with ErrIncomplete, rather than loop; rows the application holds locked
//     are waited for as long as ctx allows.
//   - No ORM hooks run.
//
// # Databases
//
// Table.Dialect names the database's SQL dialect: Postgres, MySQL (which
// is MariaDB too) or SQLite. Left at DetectDialect it is taken from the
// type of the *sql.DB's driver: a type from a package whose import path
// contains "mysql" (github.com/go-sql-driver/mysql) is MySQL, "sqlite"
// (modernc.org/sqlite, github.com/glebarez/go-sqlite,
// github.com/mattn/go-sqlite3) SQLite, and anything else PostgreSQL (pgx's
// stdlib, lib/pq). Set it when the driver is wrapped, by tracing for
// instance, so that its type names another package. gormrotation sets it
// from the GORM dialector.
//
// PostgreSQL takes a batch with SELECT … FOR UPDATE SKIP LOCKED in a READ
// COMMITTED transaction and writes it back with one UPDATE … FROM
// unnest($1::text::T[], …), arrays passed as text so that every driver
// can send them.
//
// MySQL and MariaDB (InnoDB) take a batch the same way, FOR UPDATE SKIP
// LOCKED in READ COMMITTED, and write it back with one UPDATE joined to a
// derived table of the new values (UPDATE t JOIN (SELECT ? AS k, ? AS c1
// UNION ALL SELECT ?, ? …) v ON t.id = v.k SET t.c1 = v.c1): only rows that
// exist and that the batch holds locked are written, and no row is ever
// inserted. Every column of the batch's rows is written, with its new
// value or with the value the batch read under its lock, which changes
// nothing. Primary keys may be integers, character strings (compared in
// the column's collation) or binary strings. Names are quoted with
// backquotes; names with non-ASCII characters need a connection character
// set such as utf8mb4 (not gbk, big5, sjis, cp932 or gb18030, in which a
// backquote byte can be part of a character). Encrypting plaintext
// (Options.EncryptPlaintext), and a character-string primary key, need the
// connection's character sets (client, results and connection) to be
// utf8mb4, as go-sql-driver/mysql sets them by default: through a narrower
// one such as latin1 or utf8 (utf8mb3), the characters it cannot hold
// would be read as '?'. Set charset=utf8mb4 in the DSN; the job refuses
// (ErrInvalidTable) otherwise. A batch writes 1 + the
// number of columns parameters a row, within MySQL's 65535, which bounds
// BatchSize; the values of a batch must also fit max_allowed_packet.
//
// SQLite has neither row locks nor SKIP LOCKED: it has one write lock for
// the whole database, and each batch takes it first (BEGIN IMMEDIATE on a
// connection of its own), then reads its rows and writes them back with one
// UPDATE … FROM (VALUES …) before it commits, so that no other write can
// come in between, which is what the row locks give elsewhere. The
// application's writes wait for a batch (so set a busy timeout, such as
// _pragma=busy_timeout(10000) with modernc.org/sqlite; WAL mode lets reads
// go on meanwhile), and Rotate retries a batch that found the database busy
// for longer than that. Workers beyond one gain nothing on SQLite. The
// database must be a file, not :memory:, so that the job's connections and
// the application's share it. A new value keeps the
// storage class, TEXT or BLOB, of the one it replaces. Primary keys are
// passed back as the driver returned them; they must not be of a type the
// driver reads as a time (DATE, DATETIME, TIMESTAMP), and must be declared
// NOT NULL unless they are INTEGER PRIMARY KEY. A batch writes 1 + the
// number of columns parameters a row, within SQLite's default limit of
// 32766.
//
// On MySQL and SQLite, names are looked up as the database compares them:
// a column (and on SQLite a table) named with other letter case is found
// when the catalog has only one such name.
//
// # Encrypting existing plaintext
//
// Columns named in Options.EncryptPlaintext are being converted: their
// values that are not in the wire format at all are encrypted like the
// rest. It is never the default, so that in other columns a damaged value
// is reported rather than mistaken for plaintext. In these columns Rotate
// also decrypts, once its passes are over, every value that starts like a
// value of the active version, which the passes and Census take to be
// done: a plaintext that happens to start with "v2:" (version 2 active) is
// reported as a failure, never taken for a ciphertext. A value that this
// check finds not under the active version (a plaintext written after the
// passes by an application that still writes some) makes Rotate pass over
// the table again, up to three checks, after which it stops with
// ErrIncomplete: a nil error means that every value the last check read
// was under the active version. While a column is being
// converted, the application reads it with MigratingString (or
// MigratingBytes), which accepts both forms and always writes ciphertext.
//
// # Names
//
// Table, column and index names are quoted by the package, in the
// dialect's quoting; any string is safe to pass, and one that is not an
// existing column is an error wrapping ErrInvalidTable. Every name is
// checked against the catalog before it is used in a statement.
package rotation
