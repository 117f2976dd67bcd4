// Package blindindex computes keyed blind indexes over encrypted columns, so
// that a database can answer equality lookups ("email = x") and enforce
// uniqueness on values it only ever sees encrypted.
//
// # Construction
//
// An [Index] belongs to one column and has a name, such as "users.email".
// For every version of the blind-index root key it derives a per-column key
//
//	K_col = HKDF-SHA256(secret = root key, salt = none, info, 32 bytes)
//	info  = "colcrypt/blindindex/v1|hmac-sha256|bits=<bits>|name=<name>"
//
// and the index value of a plaintext is
//
//	HMAC-SHA256(K_col, normalise(plaintext)), truncated to <bits> bits.
//
// The info string binds the index name and every parameter that changes the
// output, so equal plaintexts in two indexes (two names, or one name with
// different parameters) never produce equal index values, and a short index
// value is not a prefix of a longer one.
//
// The root keys come from their own [Keyring]: they must be separate keys
// from the data keys that encrypt the columns (for example
// keyprovider.FromEnvVars("COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY")).
// A data key must never be used as a root key.
//
// # Stored format
//
// An index value is ASCII text that names the root-key version it was
// computed under:
//
//	b<version>:<base64url, no padding, of the truncated MAC>
//	a<version>:<base64url, no padding, of the truncated Argon2id output>
//
// "b" is the fast HMAC mode and "a" the slow Argon2id mode (see [Argon2id]).
// The version is decimal without leading zeros, 1 … 4294967295. The MAC is
// truncated to ceil(bits/8) bytes; when bits is not a multiple of 8 the
// unused low-order bits of the last byte are zero. With the full 256 bits a
// value is at most 55 bytes long ("b4294967295:" and 43 characters), so a
// TEXT or VARCHAR(64) column with a B-tree index holds it.
//
// # Rotation
//
// Because each value names its version, the index key can be rotated in
// place: add a new root-key version, make it active, and new writes use it
// while [Index.Lookup] returns one value per live version, to be matched with
// "email_bidx = ANY($1)" or "IN (…)". A rotation job recomputes old values
// ([Index.IsCurrent] tells which) and the old version is retired when none
// is left. Once the keyring neither lists nor holds it, each Index drops
// the per-column key it derived from it, at its next Lookup, LookupPair or
// ComputeVersion.
//
// A UNIQUE constraint on an index column compares stored values, so while
// two versions are live it only rejects duplicates written under the same
// version: a value inserted under the new version is not compared with an
// equal one still stored under the old version. The same holds for rows
// whose index column is still NULL while a plaintext column is being
// encrypted and indexed. The duplicate surfaces when the rotation job
// (package rotation) recomputes the old row: the job writes every other
// row, leaves that one untouched and reports it as a failure wrapping
// rotation.ErrDuplicate, naming its primary key and the index column,
// never the value; resolve the duplicate and run the job again. Where
// that matters, check with a lookup (under every live version) before
// inserting, or keep rotations short.
//
// # What an index reveals
//
// A blind index reveals which rows hold equal (normalised) values, and how
// often each value occurs. Truncating it to fewer bits ([Config.Bits],
// [SuggestBits]) hides some of that: many plaintexts share each index value,
// at the cost of false positives, which the caller removes after decryption
// ([Filter]). Low-entropy values (birth dates, national ID numbers, PINs)
// can be guessed by anyone who holds the root key and the database; the slow
// mode makes each guess cost an Argon2id computation.
//
// An Index does no I/O: the root keys come from the keyring, which must not
// block, and the per-column key of each version is derived once and cached
// until the keyring no longer holds that version (see [Index]).
package blindindex
