package encryptedtype

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// Sizes of the parts of an encrypted value.
const (
	NonceSize = 12 // AES-GCM nonce, fresh from crypto/rand for every value
	TagSize   = 16 // AES-GCM authentication tag
	// Overhead is the number of bytes a sealed payload adds to its
	// plaintext, before base64 and the version prefix.
	Overhead = NonceSize + TagSize

	// MaxValueSize is the longest encrypted value, in bytes of wire format,
	// that Open and Scan accept; longer input is rejected as malformed
	// before any work is done. It allows plaintexts of up to about 48 MiB.
	MaxValueSize = 64 << 20
)

var (
	// ErrUnknownVersion is returned (wrapped) when a value names a key
	// version that the provider does not hold. It is the same error as
	// keyprovider.ErrUnknownVersion.
	ErrUnknownVersion = keyprovider.ErrUnknownVersion

	// ErrAuth is returned when a value fails authentication: it was
	// tampered with, truncated, or encrypted under another key.
	ErrAuth = errors.New("colcrypt: message authentication failed")

	// ErrMalformed is returned for a value that starts like the wire format
	// ("v<digits>:") but is not valid: a bad version number, bad base64, a
	// payload too short to hold a nonce and a tag, or an oversized value.
	ErrMalformed = errors.New("colcrypt: malformed encrypted value")

	// ErrNotEncrypted is returned for a value that is not in the wire format
	// at all, such as plaintext that has not been encrypted yet. It is
	// never returned as data.
	ErrNotEncrypted = errors.New("colcrypt: value is not encrypted")

	// ErrNoProvider is returned by the column types when no default
	// provider has been set with SetDefault.
	ErrNoProvider = errors.New("colcrypt: no key provider configured (call encryptedtype.SetDefault at start-up)")
)

var b64 = base64.RawURLEncoding.Strict()

// A Codec encrypts and decrypts values in the colcrypt wire format under
// the keys of one Provider:
//
//	v<version>:<base64url, no padding, of nonce(12) || ciphertext || tag(16)>
//
// with AES-256-GCM, a fresh random nonce per value and no additional data.
// This is byte for byte the format of the seed's Node.js encrypt(plaintext,
// keyVersion, key), so values move freely between the two.
//
// A Codec builds one cipher.AEAD per key version, the first time it meets
// that version, and caches it: after that, encrypting and decrypting do no
// allocation beyond their output and no I/O (as long as the provider does
// none). It asks the provider for the key on every call, so a version the
// provider no longer holds (a retired key) is refused at once, and its AEAD
// is dropped from the cache on the first such refusal. A Codec is safe for
// concurrent use.
type Codec struct {
	p     keyprovider.Provider
	mu    sync.Mutex                              // serialises cache writers
	cache atomic.Pointer[map[uint32]*versionAEAD] // copy on write
	last  atomic.Pointer[versionAEAD]             // most recently used entry
}

type versionAEAD struct {
	key  keyprovider.Key // identity of the key the AEAD was built from
	aead cipher.AEAD
}

// NewCodec returns a Codec that takes its keys from p. A Codec without a
// provider (nil p, a zero Codec or a nil *Codec) fails every call with
// ErrNoProvider.
func NewCodec(p keyprovider.Provider) *Codec {
	c := &Codec{p: p}
	c.cache.Store(&map[uint32]*versionAEAD{})
	return c
}

// Provider returns the provider c takes its keys from.
func (c *Codec) Provider() keyprovider.Provider {
	if c == nil {
		return nil
	}
	return c.p
}

var defaultCodec atomic.Pointer[Codec]

// SetDefault sets the provider that the column types (String, Bytes, JSON)
// use in Value and Scan, and that the package-level Seal and Open use. Call
// it once at start-up, before the first query; it is safe to call
// concurrently with Value and Scan, which see either the old or the new
// provider. SetDefault(nil) removes the default.
func SetDefault(p keyprovider.Provider) {
	if p == nil {
		defaultCodec.Store(nil)
		return
	}
	defaultCodec.Store(NewCodec(p))
}

// Default returns the Codec built from the provider given to SetDefault, or
// nil if there is none.
func Default() *Codec { return defaultCodec.Load() }

func defaultOrErr() (*Codec, error) {
	c := defaultCodec.Load()
	if c == nil {
		return nil, ErrNoProvider
	}
	return c, nil
}

// Seal encrypts plaintext under the default provider's active key. See
// Codec.Seal.
func Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.Seal(ctx, plaintext)
}

// Open decrypts a wire-format value with the default provider. See
// Codec.Open.
func Open(ctx context.Context, value []byte) ([]byte, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.Open(ctx, value)
}

// Seal encrypts plaintext under the provider's active key and returns the
// wire-format value (ASCII). It fails only if ctx is done or the provider
// has no usable active key.
func (c *Codec) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.seal(plaintext)
}

// Open authenticates and decrypts a wire-format value. Errors wrap
// ErrNotEncrypted, ErrMalformed, ErrUnknownVersion or ErrAuth; they never
// contain the value or the key.
//
// When the value names a version the provider does not hold and the
// provider is a keyprovider.Reloader, Open reloads it once, with ctx, and
// tries again: a key activated by another instance is picked up without
// waiting for the next background refresh.
func (c *Codec) Open(ctx context.Context, value []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pt, err := c.open(value)
	if errors.Is(err, ErrUnknownVersion) {
		if r, ok := c.p.(keyprovider.Reloader); ok { // c.p is set: open found a version
			// Try again whatever Reload returned: it may report a
			// problem with another version, or be refused because a
			// reload that loaded this one has just run.
			rerr := r.Reload(ctx)
			pt, err = c.open(value)
			// A throttled reload is no failure: the provider loaded a
			// moment ago, and the version is simply unknown.
			if rerr != nil && errors.Is(err, ErrUnknownVersion) && !errors.Is(rerr, keyprovider.ErrReloadThrottled) {
				return nil, fmt.Errorf("%w (reloading the provider failed: %w)", err, rerr)
			}
		}
	}
	return pt, err
}

// Version returns the key version a wire-format value was written under,
// without decrypting it. Errors wrap ErrNotEncrypted or ErrMalformed.
func Version(value []byte) (uint32, error) {
	v, _, err := parse(value)
	return v, err
}

// aeadFor returns the cached AEAD for k, building it on first use.
func (c *Codec) aeadFor(k keyprovider.Key) (cipher.AEAD, error) {
	// Nearly every call is for the active version: check the last entry
	// before the map.
	if e := c.last.Load(); e != nil && e.key == k {
		return e.aead, nil
	}
	if m := c.cache.Load(); m != nil {
		if e, ok := (*m)[k.Version()]; ok && e.key == k {
			c.last.Store(e)
			return e.aead, nil
		}
	}
	return c.buildAEAD(k)
}

func (c *Codec) buildAEAD(k keyprovider.Key) (cipher.AEAD, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("%w: provider returned a zero key", keyprovider.ErrInvalidKey)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[uint32]*versionAEAD
	if m := c.cache.Load(); m != nil { // nil in a zero Codec
		old = *m
	}
	if e, ok := old[k.Version()]; ok {
		if e.key == k {
			return e.aead, nil
		}
		// The provider handed out a new Key value for a version we know,
		// as a reloading provider does. Reuse the AEAD if the material is
		// the same; if it is not, the provider is the source of truth.
		if e.key.Equal(k) {
			return c.store(old, k, e.aead), nil
		}
	}
	secret := k.Bytes()
	block, err := aes.NewCipher(secret)
	clear(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: version %d", keyprovider.ErrInvalidKey, k.Version())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return c.store(old, k, aead), nil
}

// forget drops the AEAD of a version that the provider no longer holds
// (a retired key), so that the Codec does not keep its key schedule.
func (c *Codec) forget(version uint32) {
	m := c.cache.Load()
	if m == nil {
		return
	}
	if _, ok := (*m)[version]; !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.cache.Load()
	if _, ok := old[version]; !ok {
		return
	}
	next := make(map[uint32]*versionAEAD, len(old))
	for v, e := range old {
		if v != version {
			next[v] = e
		}
	}
	c.cache.Store(&next)
	if e := c.last.Load(); e != nil && e.key.Version() == version {
		c.last.CompareAndSwap(e, nil)
	}
}

// store publishes a new cache map with k's AEAD; c.mu must be held.
func (c *Codec) store(old map[uint32]*versionAEAD, k keyprovider.Key, aead cipher.AEAD) cipher.AEAD {
	m := make(map[uint32]*versionAEAD, len(old)+1)
	for v, e := range old {
		m[v] = e
	}
	m[k.Version()] = &versionAEAD{key: k, aead: aead}
	c.cache.Store(&m)
	return aead
}

func (c *Codec) seal(plaintext []byte) ([]byte, error) { return seal(c, plaintext) }

// sealString is seal for a string, returning a string. The result shares
// the memory of the buffer that seal allocated, which nothing else
// references, so no copy is made.
func (c *Codec) sealString(plaintext string) (string, error) {
	v, err := seal(c, plaintext)
	if err != nil {
		return "", err
	}
	return ownedString(v), nil
}

// seal encrypts plaintext under the active key into a new wire-format
// value. It is the whole write path after the column type: one provider
// call, one cached AEAD, one allocation.
func seal[T string | []byte](c *Codec, plaintext T) ([]byte, error) {
	if c == nil || c.p == nil {
		return nil, ErrNoProvider
	}
	k, err := c.p.Active()
	if err != nil {
		return nil, err
	}
	aead, err := c.aeadFor(k)
	if err != nil {
		return nil, err
	}
	rawLen := NonceSize + len(plaintext) + TagSize
	var prefix [12]byte // "v" + up to 10 digits + ":"
	p := strconv.AppendUint(append(prefix[:0], 'v'), uint64(k.Version()), 10)
	p = append(p, ':')
	// The whole value must be one that Open accepts. (rawLen first, so
	// that EncodedLen cannot overflow an int of 32 bits.)
	if rawLen > MaxValueSize || len(p)+b64.EncodedLen(rawLen) > MaxValueSize {
		return nil, fmt.Errorf("%w: plaintext of %d bytes is too long (values are at most %d bytes)", ErrMalformed, len(plaintext), MaxValueSize)
	}
	encLen := len(p) + b64.EncodedLen(rawLen)

	// One buffer: the encoded value at the front, the raw payload behind it.
	buf := make([]byte, encLen+rawLen)
	raw := buf[encLen:]
	nonce := raw[:NonceSize]
	rand.Read(nonce) // never fails (crypto/rand, Go 1.24+)
	copy(raw[NonceSize:], plaintext)
	aead.Seal(raw[NonceSize:NonceSize], nonce, raw[NonceSize:NonceSize+len(plaintext)], nil)
	copy(buf, p)
	b64.Encode(buf[len(p):encLen], raw)
	return buf[:encLen:encLen], nil
}

// open decrypts a wire-format value given as a string or a byte slice.
func (c *Codec) open(value []byte) ([]byte, error) {
	version, payload, err := parse(value)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, b64.DecodedLen(len(payload)))
	n, err := b64.Decode(raw, payload)
	if err != nil || !decodedExactly(len(payload), n) {
		return nil, fmt.Errorf("%w: version %d: invalid base64url payload", ErrMalformed, version)
	}
	return c.openRaw(version, raw[:n])
}

// openString is open for a string, without copying it to a byte slice.
func (c *Codec) openString(value string) ([]byte, error) {
	version, payload, err := parse(value)
	if err != nil {
		return nil, err
	}
	raw, err := b64.DecodeString(payload)
	if err != nil || !decodedExactly(len(payload), len(raw)) {
		return nil, fmt.Errorf("%w: version %d: invalid base64url payload", ErrMalformed, version)
	}
	return c.openRaw(version, raw)
}

// openRaw authenticates and decrypts raw (nonce || ciphertext || tag) in
// place.
func (c *Codec) openRaw(version uint32, raw []byte) ([]byte, error) {
	if c == nil || c.p == nil {
		return nil, ErrNoProvider
	}
	if len(raw) < Overhead {
		return nil, fmt.Errorf("%w: version %d: payload of %d bytes is shorter than nonce and tag (%d)", ErrMalformed, version, len(raw), Overhead)
	}
	k, err := c.p.Key(version)
	if err != nil {
		if errors.Is(err, ErrUnknownVersion) {
			c.forget(version)
		}
		return nil, err
	}
	aead, err := c.aeadFor(k)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(raw[NonceSize:NonceSize], raw[:NonceSize], raw[NonceSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w (key version %d)", ErrAuth, version)
	}
	return pt, nil
}

// parse splits a wire-format value into its key version and its base64url
// payload. It checks the shape only; the payload is decoded by the caller.
func parse[T string | []byte](value T) (uint32, T, error) {
	var zero T
	if len(value) > MaxValueSize {
		return 0, zero, fmt.Errorf("%w: %d bytes is longer than the limit of %d", ErrMalformed, len(value), MaxValueSize)
	}
	// "v", 1 to 10 digits, ":".
	if len(value) < 3 || value[0] != 'v' || !isDigit(value[1]) {
		return 0, zero, ErrNotEncrypted
	}
	i := 1
	for i < len(value) && i <= 11 && isDigit(value[i]) {
		i++
	}
	if i >= len(value) || value[i] != ':' {
		if i > 11 {
			return 0, zero, fmt.Errorf("%w: key version is too long", ErrMalformed)
		}
		return 0, zero, ErrNotEncrypted
	}
	digits := value[1:i]
	if digits[0] == '0' {
		return 0, zero, fmt.Errorf("%w: key version has a leading zero", ErrMalformed)
	}
	var v uint64
	for j := 0; j < len(digits); j++ {
		v = v*10 + uint64(digits[j]-'0')
	}
	if v > keyprovider.MaxVersion {
		return 0, zero, fmt.Errorf("%w: key version is larger than %d", ErrMalformed, uint32(keyprovider.MaxVersion))
	}
	return uint32(v), value[i+1:], nil
}

// decodedExactly reports whether decoding an encoded payload of encLen
// bytes gave n bytes, as it does only when every byte of the payload was
// base64url. The decoder skips CR and LF, which the format does not allow;
// a skipped byte shows as a shorter result (or, one case, a length that is
// 1 modulo 4, which no canonical payload has).
func decodedExactly(encLen, n int) bool {
	return encLen%4 != 1 && n == b64.DecodedLen(encLen)
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
