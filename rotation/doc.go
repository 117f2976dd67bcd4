// Package rotation re-saves encrypted columns under a new key version while
// the application keeps running, encrypts columns that still hold
// plaintext, and counts and verifies what a table holds. It works over
// database/sql on PostgreSQL, with any driver.
//
// # Rotating a key
//
//  1. Add the new key version to every application instance's keyring and
//     make it active (COLCRYPT_KEYS="1:…,2:…", COLCRYPT_ACTIVE_KEY=2): new
//     writes use it, old values stay readable.
//  2. Run Rotate (or `colcrypt rotate`) with the same keyring. It re-saves
//     every value that is not under the active version, and recomputes
//     every blind-index value not under the active index-key version.
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
// … FOR UPDATE SKIP LOCKED, decrypts and re-encrypts them in Go, writes the
// batch back with one UPDATE and commits. From that follow:
//
//   - Concurrent writers lose nothing. A value is only overwritten with the
//     re-encryption of what the same transaction read under lock: a write
//     the application committed before is what gets re-encrypted, and one
//     it makes after waits for the commit and wins. Rows the application
//     holds locked are skipped, and picked up by a later pass.
//   - Stopping is always safe. Rotate keeps no state outside the data:
//     killed at any moment, every row is untouched or rewritten, and
//     running it again finishes the job.
//   - A value that does not decrypt is never written, nor is anything else
//     in its row. The row is reported (primary key and reason, never the
//     value), later passes leave it alone, and Rotate ends with an error
//     wrapping ErrFailures.
//   - NULL stays NULL. No ORM hooks run.
//
// # Encrypting existing plaintext
//
// Columns named in Options.EncryptPlaintext are being converted: their
// values that are not in the wire format at all are encrypted like the
// rest. It is never the default, so that in other columns a damaged value
// is reported rather than mistaken for plaintext. While a column is being
// converted, the application reads it with MigratingString (or
// MigratingBytes), which accepts both forms and always writes ciphertext.
//
// # Names
//
// Table, column and index names are quoted by the package; any string is
// safe to pass, and one that is not an existing column is an error wrapping
// ErrInvalidTable.
package rotation
