package blindindex

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/colcrypt/colcrypt/keyprovider"
)

var (
	// ErrConfig is returned (wrapped) by New for an invalid index name or
	// configuration.
	ErrConfig = errors.New("colcrypt: invalid blind index configuration")

	// ErrMalformed is returned (wrapped) for a stored index value that is
	// not in the format described in the package documentation.
	ErrMalformed = errors.New("colcrypt: malformed blind index value")

	// ErrUnknownVersion is returned (wrapped) when the keyring does not hold
	// a root-key version. It is the same error as
	// keyprovider.ErrUnknownVersion.
	ErrUnknownVersion = keyprovider.ErrUnknownVersion

	// ErrNoVersions is returned (wrapped) by Lookup when the keyring lists
	// no versions.
	ErrNoVersions = errors.New("colcrypt: blind index keyring lists no versions")

	// ErrTooManyVersions is returned (wrapped) by LookupPair when more than
	// two root-key versions are live; Lookup handles any number.
	ErrTooManyVersions = errors.New("colcrypt: more than two blind index key versions are live (use Lookup)")
)

// MaxBits is the length of a full, untruncated index value: the 256 bits of
// an HMAC-SHA256 (or of the slow mode's Argon2id output).
const MaxBits = 256

// MaxNameLen is the longest index name New accepts, in bytes.
const MaxNameLen = 128

// A Keyring supplies the versioned blind-index root keys and lists the live
// versions (every version whose index values may still be stored, the
// active one included), so that a lookup can match values written under
// every one of them. *keyprovider.Static satisfies it.
//
// It is keyprovider.Keyring, declared there once; the name is kept here so
// that code written against blindindex.Keyring compiles unchanged. Like
// every Provider it must be safe for concurrent use and must not block on
// I/O.
type Keyring = keyprovider.Keyring

// Config is the configuration of an Index. The zero Config is a full-length
// (256-bit) HMAC index of the plaintext exactly as given.
//
// Changing Normalize, Bits or Slow changes every index value: the column must
// then be rebuilt (or, to change them without downtime, a new index with a
// new name and column built beside the old one).
type Config struct {
	// Normalize maps a plaintext to the form that is indexed, so that
	// values the application considers equal ("A@x.com" and "a@x.com")
	// get equal index values. Nil indexes the plaintext as it is. Compose
	// normalisers with Chain.
	Normalize Normalizer

	// Bits is the length of the index value, from 1 to MaxBits; 0 means
	// MaxBits. Fewer bits reveal less and return more false positives; see
	// SuggestBits. A UNIQUE constraint needs enough bits that distinct
	// values practically never collide.
	Bits int

	// Slow, when not nil, selects the slow mode: Argon2id keyed with the
	// per-column key instead of HMAC-SHA256, for low-entropy values. Its
	// zero fields take the defaults documented on Argon2id.
	Slow *Argon2id
}

// An Index computes the blind index values of one column. It is safe for
// concurrent use. Create it with New.
//
// An Index derives the per-column key of each root-key version the first
// time it needs it, and caches it. It drops that key once the keyring no
// longer holds the version: when Key fails for it with ErrUnknownVersion in
// ComputeVersion, Lookup or LookupPair, or when Lookup or LookupPair find
// the keyring no longer lists it and Key fails for it. Compute, the hot
// path, makes no such check. A dropped key, and the HMAC states built from
// it, are left to the garbage collector, as a dropped encryptedtype.Codec
// AEAD is: crypto/hmac offers no way to wipe a state.
type Index struct {
	name   string
	keys   Keyring
	norm   Normalizer
	bits   int
	nbytes int  // ceil(bits/8)
	mask   byte // applied to the last byte of the truncated MAC
	mode   byte // 'b' (HMAC) or 'a' (Argon2id)
	slow   Argon2id
	info   string // HKDF info, binding name and parameters

	mu     sync.Mutex                          // serialises cache writers
	cache  atomic.Pointer[map[uint32]*derived] // copy on write
	active atomic.Pointer[derived]             // the active version's entry, last seen
}

// derived holds what one root-key version gives an index.
type derived struct {
	key    keyprovider.Key // identity of the root key this was derived from
	secret []byte          // the per-column key; never leaves the package
	prefix string          // "b<version>:", the start of every value
	// One state is kept in slot, which an uncontended caller takes and
	// returns with two atomic swaps; concurrent callers fall back to pool.
	slot atomic.Pointer[macState]
	pool sync.Pool // of *macState, fast mode only
}

// macState is the per-call scratch space of the fast mode, pooled so that
// computing an index value allocates only its result.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// maxValueLen is the length of the longest index value:
// "b4294967295:" and 43 base64url characters.
const maxValueLen = 12 + 43

var b64 = base64.RawURLEncoding.Strict()

// New returns the index called name, computing values under the root keys of
// keys as configured by cfg.
//
// The name identifies the index in key derivation; it is conventionally
// "<table>.<column>", and must be 1 to MaxNameLen bytes of ASCII letters,
// digits and the characters . _ - /. Renaming an index changes every value.
// Two columns must never share a name.
func New(name string, keys Keyring, cfg Config) (*Index, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if keys == nil {
		return nil, fmt.Errorf("%w: index %q: nil keyring", ErrConfig, name)
	}
	bits := cfg.Bits
	if bits == 0 {
		bits = MaxBits
	}
	if bits < 1 || bits > MaxBits {
		return nil, fmt.Errorf("%w: index %q: Bits is %d, want 1 to %d (or 0 for %d)", ErrConfig, name, cfg.Bits, MaxBits, MaxBits)
	}
	ix := &Index{
		name:   name,
		keys:   keys,
		norm:   cfg.Normalize,
		bits:   bits,
		nbytes: (bits + 7) / 8,
		mask:   byte(0xff << uint((8-bits%8)%8)),
		mode:   'b',
	}
	if cfg.Slow != nil {
		p, err := cfg.Slow.withDefaults()
		if err != nil {
			return nil, fmt.Errorf("%w: index %q: %w", ErrConfig, name, err)
		}
		ix.mode, ix.slow = 'a', p
		ix.info = "colcrypt/blindindex/v1|argon2id|t=" + strconv.FormatUint(uint64(p.Time), 10) +
			"|m=" + strconv.FormatUint(uint64(p.MemoryKiB), 10) +
			"|p=" + strconv.FormatUint(uint64(p.Threads), 10) +
			"|bits=" + strconv.Itoa(bits) + "|name=" + name
	} else {
		ix.info = "colcrypt/blindindex/v1|hmac-sha256|bits=" + strconv.Itoa(bits) + "|name=" + name
	}
	ix.cache.Store(&map[uint32]*derived{})
	return ix, nil
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w: index name must be 1 to %d bytes long", ErrConfig, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == '/':
		default:
			return fmt.Errorf("%w: index name %q: byte %d is not an ASCII letter, digit, '.', '_', '-' or '/'", ErrConfig, name, i)
		}
	}
	return nil
}

// Name returns the index's name.
func (ix *Index) Name() string { return ix.name }

// Bits returns the length of the index's values in bits.
func (ix *Index) Bits() int { return ix.bits }

// Slow reports whether the index uses the slow (Argon2id) mode.
func (ix *Index) Slow() bool { return ix.mode == 'a' }

// Normalize returns plaintext as the index sees it: the result of the
// configured normaliser, or plaintext itself when there is none.
func (ix *Index) Normalize(plaintext string) string {
	if ix == nil || ix.norm == nil {
		return plaintext
	}
	return ix.norm(plaintext)
}

// Equal reports whether a and b are equal after normalisation, that is,
// whether they are the same value as far as the index is concerned. Use it
// to drop the false positives of a truncated index after decryption, or use
// Filter.
func (ix *Index) Equal(a, b string) bool { return ix.Normalize(a) == ix.Normalize(b) }

// usable reports an Index that was not made by New (nil or zero).
func (ix *Index) usable() error {
	if ix == nil || ix.keys == nil {
		return fmt.Errorf("%w: the Index was not made by New", ErrConfig)
	}
	return nil
}

// Compute returns the index value of plaintext under the active root key,
// the value to store beside the encrypted column. It fails only when the
// keyring has no usable active key, or (ErrConfig) for an Index not made by
// New.
func (ix *Index) Compute(plaintext string) (string, error) {
	if err := ix.usable(); err != nil {
		return "", err
	}
	k, err := ix.keys.Active()
	if err != nil {
		return "", err
	}
	d, err := ix.activeFor(k)
	if err != nil {
		return "", err
	}
	return ix.compute(d, k.Version(), plaintext), nil
}

// ComputeVersion returns the index value of plaintext under the given
// root-key version, which need not be the active one.
func (ix *Index) ComputeVersion(version uint32, plaintext string) (string, error) {
	if err := ix.usable(); err != nil {
		return "", err
	}
	d, err := ix.derivedVersion(version)
	if err != nil {
		return "", err
	}
	return ix.compute(d, version, plaintext), nil
}

// derivedVersion returns the per-column key of root-key version v, which
// the keyring must hold under that version. When the keyring says it does
// not hold v (any more), the cached key of v is dropped.
func (ix *Index) derivedVersion(v uint32) (*derived, error) {
	k, err := ix.keys.Key(v)
	if err != nil {
		if errors.Is(err, keyprovider.ErrUnknownVersion) {
			ix.forget(v)
		}
		return nil, err
	}
	if k.Version() != v {
		return nil, fmt.Errorf("%w: keyring returned version %d for version %d", keyprovider.ErrInvalidKey, k.Version(), v)
	}
	return ix.derivedFor(k)
}

// Lookup returns the index values of plaintext under every live root-key
// version (Keyring.Versions), in the keyring's order: the values a query
// matches to find every row holding plaintext, whichever version wrote its
// index. With database/sql and pgx, or sqlc:
//
//	values, err := emailIndex.Lookup(email)
//	rows, err := db.QueryContext(ctx, "SELECT id, email FROM users WHERE email_bidx = ANY($1)", values)
//
// With a driver that cannot bind arrays, use "email_bidx IN (…)" with one
// placeholder per value. With a truncated index the rows found include false
// positives: drop them after decryption with Filter or Equal.
//
// PostgreSQL plans a prepared "= ANY($1)" again on every execution; see
// LookupPair for a form it plans once.
func (ix *Index) Lookup(plaintext string) ([]string, error) {
	if err := ix.usable(); err != nil {
		return nil, err
	}
	versions := ix.keys.Versions()
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: index %q", ErrNoVersions, ix.name)
	}
	norm := ix.Normalize(plaintext)
	out := make([]string, 0, len(versions))
	for _, v := range versions {
		d, err := ix.derivedVersion(v)
		if err != nil {
			return nil, err
		}
		out = append(out, ix.computeNormalized(d, v, norm))
	}
	ix.forgetUnlisted(versions)
	return out, nil
}

// LookupPair returns the index values of plaintext for a query of fixed
// shape with two parameters:
//
//	SELECT id, email FROM users WHERE email_bidx IN ($1, $2)
//
// active is the value under the active root-key version and other the value
// under the other live version, or active again when only one version is
// live. It fails with an error wrapping ErrTooManyVersions when more than
// two versions are live, as they should not be for longer than a rotation.
//
// Use it on hot paths in place of Lookup and "= ANY($1)": PostgreSQL never
// caches a generic plan for a prepared "= ANY($1)" (it cannot cost an array
// of unknown length), so it plans that query again on every execution, which
// costs tens of microseconds. "IN ($1, $2)" and "= $1" are planned once.
func (ix *Index) LookupPair(plaintext string) (active, other string, err error) {
	if err := ix.usable(); err != nil {
		return "", "", err
	}
	k, err := ix.keys.Active()
	if err != nil {
		return "", "", err
	}
	norm := ix.Normalize(plaintext)
	d, err := ix.activeFor(k)
	if err != nil {
		return "", "", err
	}
	active = ix.computeNormalized(d, k.Version(), norm)
	other = active
	seen := false
	versions := ix.keys.Versions()
	for _, v := range versions {
		if v == k.Version() {
			continue
		}
		if seen {
			return "", "", fmt.Errorf("%w: index %q", ErrTooManyVersions, ix.name)
		}
		seen = true
		do, err := ix.derivedVersion(v)
		if err != nil {
			return "", "", err
		}
		other = ix.computeNormalized(do, v, norm)
	}
	ix.forgetUnlisted(versions)
	return active, other, nil
}

// IsCurrent reports whether value, a stored index value of this index, was
// computed under the active root-key version, so that a rotation job can
// tell which values to recompute. It returns an error wrapping ErrMalformed
// for a value that does not parse, or that is not of this index's mode or
// length.
func (ix *Index) IsCurrent(value string) (bool, error) {
	if err := ix.usable(); err != nil {
		return false, err
	}
	mode, v, mac, err := parseValue(value)
	if err != nil {
		return false, err
	}
	if mode != ix.mode || len(mac) != ix.nbytes {
		return false, fmt.Errorf("%w: index %q: value is not of this index's mode and length", ErrMalformed, ix.name)
	}
	k, err := ix.keys.Active()
	if err != nil {
		return false, err
	}
	return k.Version() == v, nil
}

// Version returns the root-key version a stored index value names, without
// any key. Errors wrap ErrMalformed.
func Version(value string) (uint32, error) {
	_, v, _, err := parseValue(value)
	return v, err
}

// compute normalises plaintext and computes its index value.
func (ix *Index) compute(d *derived, version uint32, plaintext string) string {
	if ix.norm != nil {
		plaintext = ix.norm(plaintext)
	}
	return ix.computeNormalized(d, version, plaintext)
}

// computeNormalized computes the index value of an already normalised
// plaintext.
func (ix *Index) computeNormalized(d *derived, version uint32, s string) string {
	if ix.mode == 'a' {
		return ix.computeSlow(d, version, s)
	}
	st := d.slot.Swap(nil)
	if st == nil {
		st = d.pool.Get().(*macState)
	}
	st.h.Reset()
	// hash.Hash.Write neither keeps nor changes its argument, so the
	// string's bytes can be hashed in place.
	st.h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
	sum := st.h.Sum(st.sum[:0])[:ix.nbytes]
	sum[len(sum)-1] &= ix.mask
	// One allocation: the value, encoded straight into its final buffer.
	out := make([]byte, len(d.prefix)+b64.EncodedLen(len(sum)))
	b64.Encode(out[copy(out, d.prefix):], sum)
	if !d.slot.CompareAndSwap(nil, st) {
		d.pool.Put(st)
	}
	return unsafe.String(unsafe.SliceData(out), len(out))
}

// encode writes the stored form of the MAC sum under version into out and
// returns its length. It truncates and masks sum in place.
func (ix *Index) encode(out []byte, version uint32, sum []byte) int {
	sum = sum[:ix.nbytes]
	sum[len(sum)-1] &= ix.mask
	p := strconv.AppendUint(append(out[:0], ix.mode), uint64(version), 10)
	p = append(p, ':')
	n := len(p) + b64.EncodedLen(len(sum))
	b64.Encode(out[len(p):n], sum)
	return n
}

// derivedFor returns the cached per-column key of root key k, deriving it
// on first use.
func (ix *Index) derivedFor(k keyprovider.Key) (*derived, error) {
	if d, ok := (*ix.cache.Load())[k.Version()]; ok && d.key == k {
		return d, nil
	}
	return ix.derive(k)
}

// activeFor is derivedFor for the active key, with a one-entry fast path.
func (ix *Index) activeFor(k keyprovider.Key) (*derived, error) {
	if d := ix.active.Load(); d != nil && d.key == k {
		return d, nil
	}
	d, err := ix.derivedFor(k)
	if err == nil {
		ix.active.Store(d)
	}
	return d, err
}

func (ix *Index) derive(k keyprovider.Key) (*derived, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("%w: keyring returned a zero key", keyprovider.ErrInvalidKey)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := *ix.cache.Load()
	if d, ok := old[k.Version()]; ok {
		if d.key == k {
			return d, nil
		}
		// A reloading keyring handed out a new Key value for a version we
		// know: keep the derived key if it is the same key.
		if d.key.Equal(k) {
			nd := &derived{key: k, secret: d.secret, prefix: d.prefix}
			nd.pool.New = d.pool.New
			return ix.store(old, nd), nil
		}
	}
	root := k.Bytes()
	defer clear(root)
	secret, err := hkdf.Key(sha256.New, root, nil, ix.info, 32)
	if err != nil {
		return nil, fmt.Errorf("colcrypt: blind index %q: deriving the key of version %d: %w", ix.name, k.Version(), err)
	}
	d := &derived{key: k, secret: secret, prefix: string(ix.mode) + strconv.FormatUint(uint64(k.Version()), 10) + ":"}
	if ix.mode == 'b' {
		d.pool.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
	}
	return ix.store(old, d), nil
}

// forget drops the cached per-column key of root-key version v, which the
// keyring no longer holds.
func (ix *Index) forget(v uint32) {
	if _, ok := (*ix.cache.Load())[v]; !ok {
		return
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := *ix.cache.Load()
	if _, ok := old[v]; !ok {
		return
	}
	next := make(map[uint32]*derived, len(old))
	for u, d := range old {
		if u != v {
			next[u] = d
		}
	}
	ix.cache.Store(&next)
	if a := ix.active.Load(); a != nil && a.key.Version() == v {
		ix.active.CompareAndSwap(a, nil)
	}
}

// forgetUnlisted drops the cached keys of versions that are not in listed,
// the keyring's Versions, and that the keyring no longer holds. Lookup and
// LookupPair call it after deriving the key of every listed version, so the
// cache holds more versions than listed only when one has been retired:
// otherwise the check is one length comparison. A version not listed that
// Key still returns (a listing taken just before a version was added) is
// kept.
func (ix *Index) forgetUnlisted(listed []uint32) {
	m := *ix.cache.Load()
	if len(m) <= len(listed) {
		return
	}
	for v := range m {
		if slices.Contains(listed, v) {
			continue
		}
		if _, err := ix.keys.Key(v); errors.Is(err, keyprovider.ErrUnknownVersion) {
			ix.forget(v)
		}
	}
}

// store publishes a new cache map holding d; ix.mu must be held.
func (ix *Index) store(old map[uint32]*derived, d *derived) *derived {
	m := make(map[uint32]*derived, len(old)+1)
	for v, e := range old {
		m[v] = e
	}
	m[d.key.Version()] = d
	ix.cache.Store(&m)
	return d
}

// parseValue splits a stored index value into its mode letter, version and
// raw (truncated) MAC.
func parseValue(value string) (mode byte, version uint32, mac []byte, err error) {
	if len(value) > maxValueLen {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes is longer than any index value", ErrMalformed, len(value))
	}
	if len(value) < 4 || (value[0] != 'b' && value[0] != 'a') {
		return 0, 0, nil, fmt.Errorf("%w: does not start with b<version>: or a<version>:", ErrMalformed)
	}
	i := 1
	for i < len(value) && '0' <= value[i] && value[i] <= '9' {
		i++
	}
	digits := value[1:i]
	if i == len(value) || value[i] != ':' || len(digits) == 0 {
		return 0, 0, nil, fmt.Errorf("%w: does not start with b<version>: or a<version>:", ErrMalformed)
	}
	if digits[0] == '0' || len(digits) > 10 {
		return 0, 0, nil, fmt.Errorf("%w: version is not a number from 1 to %d", ErrMalformed, uint32(keyprovider.MaxVersion))
	}
	v, perr := strconv.ParseUint(digits, 10, 32)
	if perr != nil {
		return 0, 0, nil, fmt.Errorf("%w: version is not a number from 1 to %d", ErrMalformed, uint32(keyprovider.MaxVersion))
	}
	payload := value[i+1:]
	for j := 0; j < len(payload); j++ {
		if payload[j] == '\r' || payload[j] == '\n' {
			return 0, 0, nil, fmt.Errorf("%w: line break in value", ErrMalformed)
		}
	}
	mac, derr := b64.DecodeString(payload)
	if derr != nil || len(mac) == 0 || len(mac) > sha256.Size {
		return 0, 0, nil, fmt.Errorf("%w: version %d: payload is not 1 to %d bytes of base64url", ErrMalformed, v, sha256.Size)
	}
	return value[0], uint32(v), mac, nil
}
