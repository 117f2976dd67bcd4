// Package encryptedtype provides column types that are encrypted when they
// are written to a database and decrypted when they are read.
//
// A model field of type [String], [Bytes] or [JSON] implements
// driver.Valuer and sql.Scanner, so it works wherever database/sql values
// work: GORM struct fields, sqlc generated code, pgx v5, plain database/sql.
// The database only ever holds ciphertext:
//
//	type User struct {
//		ID    int64
//		Email encryptedtype.String  // NOT NULL column
//		Phone *encryptedtype.String // nullable column: nil is NULL
//	}
//
//	keys, err := keyprovider.FromEnv() // COLCRYPT_KEYS, COLCRYPT_ACTIVE_KEY
//	...
//	encryptedtype.SetDefault(keys)     // once, at start-up
//
// # Wire format
//
// Every value is stored as ASCII text, in a TEXT, VARCHAR or BYTEA column:
//
//	v<version>:<base64url, no padding, of nonce(12) || ciphertext || tag(16)>
//
// version is the decimal key version (1 … 4294967295, no leading zeros)
// that names the key in the provider. The cipher is AES-256-GCM with a
// fresh random 96-bit nonce for every value and a 128-bit tag; there is no
// additional authenticated data. This is exactly what the seed's Node.js
// encrypt(plaintext, keyVersion, key) writes, so a value written by either
// side decrypts on the other (testdata/interop holds the vectors and the
// scripts that check both directions).
//
// The prefix "v" always means this construction. A future algorithm gets a
// new prefix letter.
//
// # Keys
//
// Keys come from a keyprovider.Provider. New values are written under the
// provider's active version; a value is read with the version it names, so
// old values stay readable after a new key is activated, until the rotation
// job (package rotation) has re-saved them.
//
// Value and Scan take no context, so they use the process-wide provider set
// with [SetDefault]. They do no I/O: a [Codec] builds one cipher.AEAD per
// key version the first time it sees it and caches it. Callers that have a
// context use [Seal] and [Open], or a [Codec] of their own.
//
// # NULL and the empty string
//
// SQL NULL is not the empty string. String, Bytes and JSON always hold a
// value: the zero String is "", which is encrypted like any other string,
// and scanning NULL into one fails with [ErrNull]. For a nullable column use
// a pointer (*String, *Bytes, *JSON[T]): database/sql, GORM and pgx write a
// nil pointer as NULL and scan NULL as nil.
//
// # Errors
//
// A value that cannot be decrypted is an error, never data: [ErrNotEncrypted]
// for a value that is not in the wire format (for example plaintext awaiting
// migration), [ErrMalformed] for a damaged one, [ErrUnknownVersion] for a key
// the provider does not hold, and [ErrAuth] for a value that was tampered
// with, truncated or written under another key. Errors never contain the
// value, its plaintext or key material, and no input makes this package
// panic.
//
// # Printing
//
// The column types do not print their plaintext by accident. Every fmt
// verb, slog (as an attribute or inside a logged struct) and encoding/json
// show [REDACTED]; Plaintext returns the value. The plaintext is held
// behind an unsafe.Pointer, so printers that walk fields by reflection
// (fmt on an unexported field, go-spew in test diffs) show an address and
// not the data. Errors of encoding/json, which can quote data, are
// replaced by ones that name types and offsets only.
//
// JSON is redacted too, because a model logged as JSON (slog's JSON
// handler, zap, zerolog) is the most common way secrets reach logs. A
// response that must carry the value copies Plaintext into its own type.
// UnmarshalJSON reads plaintext, so request bodies decode into models, and
// refuses the marker itself ([ErrRedacted]) so that a redacted document
// sent back cannot overwrite the real value.
//
// # What it does not protect
//
// Encryption protects against anyone who holds a database connection, a
// dump, a backup, a replica or a log. It does not protect against a
// compromised application process, which holds the keys, nor against
// someone with write access copying a whole encrypted value from one row or
// column to another under the same key: values carry no table, column or
// row binding, so the copy decrypts normally.
//
// # Concurrency
//
// SetDefault, Seal, Open, Codec methods and the Value and Scan methods of
// distinct values are safe for concurrent use.
package encryptedtype
