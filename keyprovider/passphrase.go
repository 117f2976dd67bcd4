package keyprovider

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/crypto/argon2"
)

const (
	// PBKDF2Iterations is the PBKDF2-HMAC-SHA-512 iteration count DeriveKey
	// uses: 600,000, the seed's value. It is part of the derived key, so it
	// is fixed: changing it would make every key derived with it different.
	// (OWASP's current figure for PBKDF2-HMAC-SHA-512 is 210,000; 600,000 is
	// its figure for SHA-256, so this count is above the recommendation.)
	PBKDF2Iterations = 600_000

	// SaltSize is the size in bytes of the salts GenerateSalt returns, and
	// the size the seed uses: 32 bytes.
	SaltSize = 32

	// MinSaltSize is the shortest salt DeriveKey, DeriveKeyArgon2id and
	// NewPassphrase accept: 16 bytes (128 bits), the minimum NIST SP 800-132
	// sets and the length RFC 9106 recommends.
	MinSaltSize = 16
)

// GenerateSalt returns SaltSize random bytes from crypto/rand, like the
// seed's generateSalt. A salt is not secret, but it must be stored: the same
// passphrase with a different salt derives a different key.
func GenerateSalt() []byte {
	salt := make([]byte, SaltSize)
	rand.Read(salt) // never fails (crypto/rand, Go 1.24+)
	return salt
}

// DeriveKey derives the key of the given version from a passphrase and a
// salt with PBKDF2-HMAC-SHA-512, PBKDF2Iterations iterations and a 32-byte
// output: exactly the seed's deriveKey, so
//
//	pbkdf2Sync(passphrase, salt, 600000, 32, 'sha-512')
//
// in Node.js and DeriveKey(v, []byte(passphrase), salt) in Go give the same
// key. A JavaScript string passphrase is the UTF-8 encoding of the string;
// passphrase is used exactly as given, neither trimmed nor Unicode-normalised
// (Node.js does neither), so a trailing newline read from a file changes the
// key.
//
// The version only labels the key: as in the seed, it is not an input to the
// derivation, so one passphrase and salt give the same key material under
// any version. salt must be at least MinSaltSize bytes (GenerateSalt makes
// SaltSize bytes) and the passphrase must not be empty. Errors wrap ErrInvalidKey and
// never contain the passphrase or the salt.
//
// A passphrase has far less entropy than a random key: for a new deployment
// prefer a key from GenerateKey, supplied through FromEnv. DeriveKey is for
// reading data the seed's code wrote, and for teams that can only hold a
// passphrase. It is slow by design (a few hundred milliseconds): call it
// once, when the program starts, never per value. The standard library's PBKDF2
// takes the passphrase as a string, so a copy of it that cannot be cleared
// stays in memory until the garbage collector reuses it.
func DeriveKey(version uint32, passphrase, salt []byte) (Key, error) {
	if err := checkPassphrase(version, passphrase, salt); err != nil {
		return Key{}, err
	}
	secret, err := pbkdf2.Key(sha512.New, string(passphrase), salt, PBKDF2Iterations, KeySize)
	if err != nil {
		// Only FIPS 140-only mode makes PBKDF2 fail here; its errors do not
		// contain the passphrase.
		return Key{}, fmt.Errorf("%w: deriving version %d with PBKDF2: %w", ErrInvalidKey, version, err)
	}
	defer clear(secret)
	return NewKey(version, secret)
}

// Argon2Params are the cost parameters of Argon2id. They are part of the
// derived key, like the salt: store them beside it, and never change them
// for a version that has written data.
type Argon2Params struct {
	// Time is the number of passes over the memory; at least 1 and at
	// most 1000.
	Time uint32
	// MemoryKiB is the memory used, in KiB (1024 bytes); at least
	// 8 × Threads and at most 4194304 (4 GiB).
	MemoryKiB uint32
	// Threads is the degree of parallelism (Argon2's lanes); at least 1
	// (at most 255, Argon2's limit, which the type enforces).
	// It changes the derived key, not only the speed: a key derived with 4
	// threads on a one-core machine is the same key, computed more slowly.
	Threads uint8
}

// Upper bounds on Argon2Params, the same as package blindindex's: a
// mistyped parameter fails at once instead of allocating tens of GiB or
// running for hours.
const (
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB, twice RFC 9106's first option
	maxArgon2Time      = 1000
)

// DefaultArgon2Params returns the parameters DeriveKeyArgon2id should be
// used with unless there is a reason to differ: Time 3, MemoryKiB 65536
// (64 MiB), Threads 4, the second recommended option of RFC 9106, section 4
// (the first asks for 2 GiB).
//
// They are heavier than OWASP's password-storage minimum (19 MiB, 2 passes,
// 1 thread) on purpose: that minimum is sized for a server that hashes a
// password on every login, while colcrypt derives each key version once,
// when the program starts, so it can afford 64 MiB and tens to hundreds of
// milliseconds per version, and an attacker guessing passphrases pays the
// same price per guess.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}
}

// DeriveKeyArgon2id derives the key of the given version from a passphrase
// and a salt with Argon2id (RFC 9106, version 0x13) and a 32-byte output,
// with no secret key and no associated data. It is the second choice after
// DeriveKey: use it for new deployments that must start from a passphrase
// and do not need to share keys with the seed's Node.js code, because
// Argon2id's memory cost makes guessing a passphrase on GPUs and ASICs far
// more expensive than PBKDF2. Use DefaultArgon2Params unless there is a
// reason to differ.
//
// The passphrase is used exactly as given, the salt must be at least
// MinSaltSize bytes, and params must satisfy the limits documented on
// Argon2Params. Errors wrap ErrInvalidKey and never contain the passphrase
// or the salt.
func DeriveKeyArgon2id(version uint32, passphrase, salt []byte, params Argon2Params) (Key, error) {
	if err := checkPassphrase(version, passphrase, salt); err != nil {
		return Key{}, err
	}
	if err := params.check(); err != nil {
		return Key{}, err
	}
	secret := argon2idKey(passphrase, salt, params)
	defer clear(secret)
	return NewKey(version, secret)
}

// check enforces the limits documented on Argon2Params. Errors wrap
// ErrInvalidKey.
func (p Argon2Params) check() error {
	switch {
	case p.Time < 1:
		return fmt.Errorf("%w: Argon2id time must be at least 1", ErrInvalidKey)
	case p.Time > maxArgon2Time:
		return fmt.Errorf("%w: Argon2id time is %d, want at most %d", ErrInvalidKey, p.Time, maxArgon2Time)
	case p.Threads < 1:
		return fmt.Errorf("%w: Argon2id threads must be at least 1", ErrInvalidKey)
	case p.MemoryKiB < 8*uint32(p.Threads):
		return fmt.Errorf("%w: Argon2id memory is %d KiB, want at least 8 KiB per thread (%d KiB)",
			ErrInvalidKey, p.MemoryKiB, 8*uint32(p.Threads))
	case p.MemoryKiB > maxArgon2MemoryKiB:
		return fmt.Errorf("%w: Argon2id memory is %d KiB, want at most %d KiB (4 GiB)",
			ErrInvalidKey, p.MemoryKiB, maxArgon2MemoryKiB)
	}
	return nil
}

// argon2idKey is the Argon2id derivation without DeriveKeyArgon2id's checks,
// so that the reference implementation's test vectors (with an 8-byte salt)
// can be checked against it.
func argon2idKey(passphrase, salt []byte, p Argon2Params) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
}

// NewPassphrase returns a Static keyring whose keys are derived with
// DeriveKey from passphrases (one per version) and one application-wide
// salt, the layout the seed describes, writing under the version active.
//
// Two versions with the same passphrase are rejected: they would derive the
// same key, so "rotating" to the newer one would change nothing. Every
// version, passphrase and the salt is checked before anything is derived, so
// a mistake costs no derivation time; then each key is derived in turn, a
// few hundred milliseconds per version. The caller may clear the
// passphrases when NewPassphrase returns. Errors wrap ErrInvalidKey, or
// ErrUnknownVersion when active is not among the versions, and name
// versions, never passphrases or the salt.
//
// For Argon2id, derive each key with DeriveKeyArgon2id and pass them to
// NewStatic.
func NewPassphrase(active uint32, salt []byte, passphrases map[uint32][]byte) (*Static, error) {
	if len(passphrases) == 0 {
		return nil, fmt.Errorf("%w: no passphrases given", ErrInvalidKey)
	}
	if _, ok := passphrases[active]; !ok {
		return nil, fmt.Errorf("%w: active version %d is not among the passphrases given", ErrUnknownVersion, active)
	}
	versions := slices.Sorted(maps.Keys(passphrases))
	for i, v := range versions {
		if err := checkPassphrase(v, passphrases[v], salt); err != nil {
			return nil, err
		}
		for _, w := range versions[:i] {
			if bytes.Equal(passphrases[w], passphrases[v]) {
				return nil, fmt.Errorf("%w: versions %d and %d have the same passphrase, so they would be the same key", ErrInvalidKey, w, v)
			}
		}
	}
	keys := make([]Key, 0, len(versions))
	for _, v := range versions {
		k, err := DeriveKey(v, passphrases[v], salt)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return NewStatic(active, keys...)
}

// checkPassphrase does the checks shared by the derivations, before any
// expensive work.
func checkPassphrase(version uint32, passphrase, salt []byte) error {
	if version == 0 {
		return fmt.Errorf("%w: version 0 (versions start at 1)", ErrInvalidKey)
	}
	if len(passphrase) == 0 {
		return fmt.Errorf("%w: passphrase for version %d is empty", ErrInvalidKey, version)
	}
	if len(salt) < MinSaltSize {
		return fmt.Errorf("%w: salt is %d bytes, want at least %d (see GenerateSalt)", ErrInvalidKey, len(salt), MinSaltSize)
	}
	return nil
}
