// Package keyprovider supplies the versioned 256-bit keys that colcrypt
// encrypts column values under.
//
// Every stored value names the version of the key that wrote it, so a
// [Provider] answers two questions: which key should new values be written
// under ([Provider.Active]), and which key is version N ([Provider.Key]).
// Rotating a key is adding a new version, making it active, and re-saving old
// values (see package rotation); old versions stay readable until they are
// retired.
//
// A version names one key forever: once a version has been used to write
// data, its key material must never change. Reusing a version number for a
// different key makes every value written under the old key unreadable.
//
// Providers are called on the hot path of every Value and Scan, which take no
// context, so their methods must not block on I/O. Providers that load keys
// from a database or a KMS do that work up front or in the background.
//
// [Static] is a fixed keyring; [FromEnv] builds one from environment
// variables, and [GenerateKey] and [EncodeKeys] make the text those variables
// hold. [NewPassphrase] derives keys from passphrases as the original Node.js
// design did. Package keytable keeps keys in a database table, wrapped by a
// [KEK] ([LocalKEK] here, a cloud KMS in package cloudkek), and refreshes
// them in the background.
package keyprovider

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
)

// KeySize is the size in bytes of every key: AES-256 and HMAC-SHA256 keys
// are 32 bytes.
const KeySize = 32

// MaxVersion is the largest key version. Versions run from 1 to MaxVersion.
const MaxVersion = 1<<32 - 1

var (
	// ErrUnknownVersion is returned (wrapped) by Provider.Key for a version
	// the provider does not hold.
	ErrUnknownVersion = errors.New("colcrypt: unknown key version")

	// ErrInvalidKey is returned (wrapped) for unusable key configuration:
	// key material of the wrong size, a version outside 1 … MaxVersion, a
	// bad passphrase, salt or Argon2 parameter, or an empty keyring.
	ErrInvalidKey = errors.New("colcrypt: invalid key")

	// ErrReloadThrottled is returned (wrapped) by a Reloader that declines
	// to load because it loaded very recently (it rate-limits reloads, so
	// that values naming bogus versions cannot make every read do I/O).
	// The keys it holds are then as current as that recent load, and a
	// version it lacks is taken as unknown.
	ErrReloadThrottled = errors.New("colcrypt: reload throttled")
)

// A Provider supplies versioned keys.
//
// Implementations must be safe for concurrent use and must not block on I/O:
// they are called from driver.Valuer and sql.Scanner methods, which take no
// context.
type Provider interface {
	// Active returns the key that new values are written under.
	Active() (Key, error)

	// Key returns the key of the given version. For a version it does not
	// hold it returns an error that wraps ErrUnknownVersion.
	Key(version uint32) (Key, error)
}

// A Keyring is a Provider that also lists the versions it holds.
//
// Versions returns every version whose key may still be needed, the active
// one included: the versions for which Key succeeds. Both users of the list
// rely on that. A blind index (package blindindex) computes a lookup value
// under each listed version, so that a query matches values written under
// every live version; keytable.Table.Import copies each listed version into
// the key table. A version that a Keyring no longer lists and for which Key
// fails is retired: callers may drop anything derived from its key.
//
// *Static and *keytable.Provider are Keyrings; both list versions in
// ascending order. Like every Provider, a Keyring must be safe for
// concurrent use and must not block on I/O.
type Keyring interface {
	Provider

	// Versions returns the versions the keyring holds, the active one
	// included.
	Versions() []uint32
}

// A Reloader is a Provider whose keys can change while the program runs,
// for example because they are read from a table that another instance
// updates. Reload fetches the current keys and swaps them in atomically;
// on failure the provider keeps serving the keys it had.
//
// encryptedtype.Open calls Reload once when it meets a version the provider
// does not hold yet. A Reloader that rate-limits reloads returns an error
// wrapping ErrReloadThrottled when it declines to load.
type Reloader interface {
	Reload(ctx context.Context) error
}

// Key is one version of a 256-bit secret key. The zero Key is not valid.
//
// A Key never prints its material: fmt verbs and slog show only its
// version. Use [Key.Bytes] to get the material.
type Key struct {
	version uint32
	secret  *keyMaterial
}

// keyMaterial holds a key's bytes behind a func value, which every
// reflection-based printer shows only as an address. A plain pointer to the
// bytes is not enough: fmt prints a Key that sits in an unexported field
// (inside a Static, or a caller's struct) by reflection, without calling
// Format, and for a verb that does not fit, such as %s, it dereferences the
// pointer and prints every byte; go-spew, which testify uses for its
// diffs, follows every pointer. The pointer to keyMaterial keeps Key
// comparable, with == meaning the same key value.
type keyMaterial struct {
	bytes func() *[KeySize]byte
}

// NewKey returns a key of the given version holding a copy of secret, which
// must be KeySize bytes long. The version must be between 1 and MaxVersion.
func NewKey(version uint32, secret []byte) (Key, error) {
	if version == 0 {
		return Key{}, fmt.Errorf("%w: version 0 (versions start at 1)", ErrInvalidKey)
	}
	if len(secret) != KeySize {
		return Key{}, fmt.Errorf("%w: version %d is %d bytes, want %d", ErrInvalidKey, version, len(secret), KeySize)
	}
	b := new([KeySize]byte)
	copy(b[:], secret)
	return Key{version: version, secret: &keyMaterial{bytes: func() *[KeySize]byte { return b }}}, nil
}

// Version returns the key's version.
func (k Key) Version() uint32 { return k.version }

// Valid reports whether k holds key material (the zero Key does not).
func (k Key) Valid() bool { return k.secret != nil }

// Bytes returns a copy of the secret key material, or nil for the zero Key.
// Treat the result as secret: never log it or put it in an error.
func (k Key) Bytes() []byte {
	if k.secret == nil {
		return nil
	}
	b := make([]byte, KeySize)
	copy(b, k.secret.bytes()[:])
	return b
}

// Equal reports whether k and o are the same key: the same version and the
// same material. It compares the material in constant time
// (crypto/subtle), without copying it out. A zero Key equals only a zero
// Key. Keys made separately from equal bytes (two NewKey calls, or a key
// loaded again from a store) are Equal, though they are not ==.
func (k Key) Equal(o Key) bool {
	if k.secret == nil || o.secret == nil {
		return k.secret == nil && o.secret == nil && k.version == o.version
	}
	if k.version != o.version {
		return false
	}
	if k.secret == o.secret {
		return true
	}
	return subtle.ConstantTimeCompare(k.secret.bytes()[:], o.secret.bytes()[:]) == 1
}

// String returns a redacted description of the key naming only its version.
func (k Key) String() string {
	return "keyprovider.Key{version: " + strconv.FormatUint(uint64(k.version), 10) + ", secret: REDACTED}"
}

// GoString is like String, so that %#v is redacted too.
func (k Key) GoString() string { return k.String() }

// Format implements fmt.Formatter: every verb prints the redacted form.
func (k Key) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer: logs show the version only.
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.Uint64("version", uint64(k.version)), slog.String("secret", "REDACTED"))
}

// Static is a fixed, in-memory keyring with one active version. It is safe
// for concurrent use and never does I/O.
type Static struct {
	active Key
	keys   map[uint32]Key
}

// NewStatic returns a keyring holding keys, writing under the version
// active. It rejects an empty keyring, invalid keys, two keys with the same
// version, and an active version that is not among keys.
func NewStatic(active uint32, keys ...Key) (*Static, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys given", ErrInvalidKey)
	}
	s := &Static{keys: make(map[uint32]Key, len(keys))}
	for _, k := range keys {
		if !k.Valid() {
			return nil, fmt.Errorf("%w: zero Key", ErrInvalidKey)
		}
		if _, dup := s.keys[k.version]; dup {
			return nil, fmt.Errorf("%w: version %d given twice", ErrInvalidKey, k.version)
		}
		s.keys[k.version] = k
	}
	a, ok := s.keys[active]
	if !ok {
		return nil, fmt.Errorf("%w: active version %d is not among the keys given", ErrUnknownVersion, active)
	}
	s.active = a
	return s, nil
}

// Active returns the active key.
func (s *Static) Active() (Key, error) {
	if s == nil || !s.active.Valid() {
		return Key{}, fmt.Errorf("%w: empty keyring (build a Static with NewStatic)", ErrInvalidKey)
	}
	return s.active, nil
}

// Key returns the key of the given version.
func (s *Static) Key(version uint32) (Key, error) {
	if s == nil {
		return Key{}, fmt.Errorf("%w: %d (empty keyring)", ErrUnknownVersion, version)
	}
	k, ok := s.keys[version]
	if !ok {
		// The versions held (not secret: every value names its own) tell
		// an operator which key is missing from the environment.
		return Key{}, fmt.Errorf("%w: %d (the keyring holds %s)", ErrUnknownVersion, version, versionList(s.Versions()))
	}
	return k, nil
}

// versionList formats versions as "1, 2 and 5".
func versionList(vs []uint32) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = strconv.FormatUint(uint64(v), 10)
	}
	if len(parts) < 2 {
		return "version " + strings.Join(parts, "")
	}
	return "versions " + strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// Versions returns the versions the keyring holds, in ascending order.
func (s *Static) Versions() []uint32 {
	if s == nil {
		return nil
	}
	vs := make([]uint32, 0, len(s.keys))
	for v := range s.keys {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

var _ Keyring = (*Static)(nil)
