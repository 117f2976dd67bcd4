package keyprovider

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// EnvKEK is the environment variable LocalKEKFromEnv is usually given: it
// holds a 32-byte master key in base64 (generate one with
// `openssl rand -base64 32`).
const EnvKEK = "COLCRYPT_KEK"

// Layout of a key wrapped by a LocalKEK:
//
//	magic "cck1" (4) || KEK id (8) || nonce (12) || AES-256-GCM(key) (32+16)
//
// with additional data magic || KEK id || version (4 bytes, big-endian).
const (
	localMagic      = "cck1"
	localIDSize     = 8
	localNonceSize  = 12
	localTagSize    = 16
	localHeaderSize = len(localMagic) + localIDSize
	// LocalWrappedSize is the size in bytes of a key wrapped by a LocalKEK.
	LocalWrappedSize = localHeaderSize + localNonceSize + KeySize + localTagSize
)

// HKDF-SHA256 info strings that separate the two values derived from a
// master key.
const (
	localWrapInfo = "colcrypt local KEK v1: wrapping key"
	localIDInfo   = "colcrypt local KEK v1: key id"
)

// LocalKEK is a KEK held by the application: a 256-bit master key from the
// environment, a file or a secrets manager. It wraps each data key with
// AES-256-GCM under a fresh random nonce, with the key's version (and the
// KEK's id) as additional authenticated data, so a wrapped key moved to
// another version's row, or altered in any way, fails to unwrap.
//
// The AES key is not the master key itself but one derived from it with
// HKDF-SHA256, and a second HKDF output is the KEK's id: a public 8-byte
// fingerprint, stored in every wrapped key and shown in errors, that tells
// which master key wrapped a key without revealing it.
//
// A LocalKEK never prints its key: fmt verbs and slog show its id only. It
// is safe for concurrent use and does no I/O after it is made.
type LocalKEK struct {
	id   [localIDSize]byte
	aead func() cipher.AEAD // a func, so reflection-based printers show an address
}

// NewLocalKEK returns a LocalKEK from a 32-byte master key, which it does
// not retain (the caller may clear it). Errors wrap ErrInvalidKey.
func NewLocalKEK(master []byte) (*LocalKEK, error) {
	if len(master) != KeySize {
		return nil, fmt.Errorf("%w: KEK master key is %d bytes, want %d", ErrInvalidKey, len(master), KeySize)
	}
	wk, err := hkdf.Key(sha256.New, master, nil, localWrapInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("%w: deriving the KEK wrapping key: %w", ErrInvalidKey, err)
	}
	defer clear(wk)
	id, err := hkdf.Key(sha256.New, master, nil, localIDInfo, localIDSize)
	if err != nil {
		return nil, fmt.Errorf("%w: deriving the KEK id: %w", ErrInvalidKey, err)
	}
	block, err := aes.NewCipher(wk)
	if err != nil {
		return nil, fmt.Errorf("%w: KEK: %w", ErrInvalidKey, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &LocalKEK{aead: func() cipher.AEAD { return gcm }}
	copy(k.id[:], id)
	return k, nil
}

// LocalKEKFromEnv returns a LocalKEK whose master key is the base64 text
// (standard or URL-safe, padded or not) in the environment variable name,
// usually EnvKEK. Errors name the variable, never its value.
func LocalKEKFromEnv(name string) (*LocalKEK, error) {
	raw, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%w: environment variable %s is not set (it should hold a 32-byte KEK in base64, for example from `openssl rand -base64 32`)", ErrInvalidKey, name)
	}
	master, err := decodeKey(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: environment variable %s is not valid base64", ErrInvalidKey, name)
	}
	defer clear(master)
	k, err := NewLocalKEK(master)
	if err != nil {
		return nil, fmt.Errorf("environment variable %s: %w", name, err)
	}
	return k, nil
}

// LocalKEKFromFile returns a LocalKEK whose master key is read from the
// file at path: either exactly 32 raw bytes, or base64 text (standard or
// URL-safe) with surrounding whitespace, such as a trailing newline,
// ignored. This suits secrets mounted as files (Kubernetes, Docker
// secrets). Errors name the file, never its content.
func LocalKEKFromFile(path string) (*LocalKEK, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the KEK file: %w", ErrInvalidKey, err)
	}
	defer clear(data)
	var master []byte
	if len(data) == KeySize {
		master = bytes.Clone(data)
	} else {
		master, err = decodeKey(string(bytes.TrimSpace(data)))
		if err != nil {
			return nil, fmt.Errorf("%w: KEK file %s holds neither 32 raw bytes nor base64 text", ErrInvalidKey, path)
		}
	}
	defer clear(master)
	k, err := NewLocalKEK(master)
	if err != nil {
		return nil, fmt.Errorf("KEK file %s: %w", path, err)
	}
	return k, nil
}

// ID returns the KEK's public id in hex: 16 characters, a fingerprint of
// the master key that is stored in every key it wraps.
func (k *LocalKEK) ID() string {
	if k == nil {
		return ""
	}
	return hex.EncodeToString(k.id[:])
}

// String returns "local KEK <id>".
func (k *LocalKEK) String() string { return "local KEK " + k.ID() }

// GoString is like String, so that %#v shows no key either.
func (k *LocalKEK) GoString() string { return k.String() }

// Format implements fmt.Formatter: every verb prints String.
func (k *LocalKEK) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue implements slog.LogValuer: logs show the id only.
func (k *LocalKEK) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kek", "local"), slog.String("id", k.ID()))
}

func (k *LocalKEK) additionalData(id []byte, version uint32) []byte {
	ad := make([]byte, 0, localHeaderSize+4)
	ad = append(ad, localMagic...)
	ad = append(ad, id...)
	return binary.BigEndian.AppendUint32(ad, version)
}

// WrapKey wraps key under the KEK, bound to key's version. It fails only
// for the zero Key.
func (k *LocalKEK) WrapKey(_ context.Context, key Key) ([]byte, error) {
	if k == nil || k.aead == nil {
		return nil, fmt.Errorf("%w: zero LocalKEK (make one with NewLocalKEK)", ErrWrap)
	}
	if !key.Valid() {
		return nil, fmt.Errorf("%w: %s: zero Key", ErrWrap, k)
	}
	out := make([]byte, localHeaderSize+localNonceSize, LocalWrappedSize)
	copy(out, localMagic)
	copy(out[len(localMagic):], k.id[:])
	nonce := out[localHeaderSize:]
	rand.Read(nonce) // never fails (crypto/rand, Go 1.24+)
	secret := key.secret.bytes()
	return k.aead().Seal(out, nonce, secret[:], k.additionalData(k.id[:], key.version)), nil
}

// UnwrapKey unwraps a key that WrapKey wrapped for the given version.
// Errors wrap ErrUnwrap and say why: not a LocalKEK wrapping, wrapped under
// another LocalKEK (naming its id), or failed authentication (altered, or
// wrapped for another version).
func (k *LocalKEK) UnwrapKey(_ context.Context, version uint32, wrapped []byte) (Key, error) {
	if k == nil || k.aead == nil {
		return Key{}, fmt.Errorf("%w: zero LocalKEK (make one with NewLocalKEK)", ErrUnwrap)
	}
	if len(wrapped) != LocalWrappedSize || string(wrapped[:len(localMagic)]) != localMagic {
		return Key{}, fmt.Errorf("%w: %s: version %d: not a key wrapped by a local KEK", ErrUnwrap, k, version)
	}
	id := wrapped[len(localMagic):localHeaderSize]
	if !bytes.Equal(id, k.id[:]) {
		return Key{}, fmt.Errorf("%w: %s: version %d is wrapped under local KEK %s", ErrUnwrap, k, version, hex.EncodeToString(id))
	}
	nonce := wrapped[localHeaderSize : localHeaderSize+localNonceSize]
	secret, err := k.aead().Open(nil, nonce, wrapped[localHeaderSize+localNonceSize:], k.additionalData(id, version))
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s: version %d failed authentication (altered, or wrapped for another version)", ErrUnwrap, k, version)
	}
	defer clear(secret)
	key, err := NewKey(version, secret)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s: %w", ErrUnwrap, k, err)
	}
	return key, nil
}

var (
	_ KEK = (*LocalKEK)(nil)
	_ KEK = (*fallbackKEK)(nil)
)
