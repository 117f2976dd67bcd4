package keyprovider

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The environment variables that FromEnv reads.
const (
	// EnvKeys holds the keyring: comma-separated "version:base64key" pairs,
	// for example "1:3q2+7w…=,2:q83vEj…=". See EncodeKeys.
	EnvKeys = "COLCRYPT_KEYS"
	// EnvActiveKey holds the version new values are written under. It may
	// be left unset when EnvKeys holds exactly one key.
	EnvActiveKey = "COLCRYPT_ACTIVE_KEY"
)

// FromEnv returns a Static keyring read from the environment variables
// COLCRYPT_KEYS and COLCRYPT_ACTIVE_KEY. It is FromEnvVars(EnvKeys,
// EnvActiveKey).
func FromEnv() (*Static, error) { return FromEnvVars(EnvKeys, EnvActiveKey) }

// FromEnvVars returns a Static keyring read from the environment variable
// keysVar, in the format of EncodeKeys, writing under the version held by
// activeVar. activeVar may be unset when keysVar holds exactly one key.
//
// Errors name the variable that is wrong, never its value.
func FromEnvVars(keysVar, activeVar string) (*Static, error) {
	raw, ok := os.LookupEnv(keysVar)
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, fmt.Errorf("%w: environment variable %s is not set (generate a key with keyprovider.GenerateKey or `colcrypt keygen`)", ErrInvalidKey, keysVar)
	}
	keys, err := ParseKeys(raw)
	if err != nil {
		return nil, fmt.Errorf("environment variable %s: %w", keysVar, err)
	}
	var active uint32
	switch a, ok := os.LookupEnv(activeVar); {
	case ok && strings.TrimSpace(a) != "":
		v, err := parseVersion(strings.TrimSpace(a))
		if err != nil {
			return nil, fmt.Errorf("environment variable %s: %w", activeVar, err)
		}
		active = v
	case len(keys) == 1:
		active = keys[0].version
	default:
		return nil, fmt.Errorf("%w: environment variable %s is not set and %s holds %d keys: say which version is active", ErrInvalidKey, activeVar, keysVar, len(keys))
	}
	s, err := NewStatic(active, keys...)
	if err != nil {
		return nil, fmt.Errorf("environment variables %s and %s: %w", keysVar, activeVar, err)
	}
	return s, nil
}

// ParseKeys parses comma-separated "version:base64key" pairs as written by
// EncodeKeys. The key may be in standard or URL-safe base64, with or without
// padding, and must decode to KeySize bytes. Whitespace around pairs is
// ignored. Errors name the position of a bad pair, never its content.
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		vs, b64, ok := strings.Cut(pair, ":")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d is not version:base64key", ErrInvalidKey, i+1)
		}
		v, err := parseVersion(strings.TrimSpace(vs))
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		secret, err := decodeKey(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d (version %d) is not valid base64", ErrInvalidKey, i+1, v)
		}
		k, err := NewKey(v, secret)
		clear(secret)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKey)
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, base64.CorruptInputError(0)
	}
	// At most the canonical padding of a 32-byte key ("=").
	if t := strings.TrimSuffix(s, "="); !strings.HasSuffix(t, "=") {
		s = t
	}
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// parseVersion parses a decimal key version: 1 … MaxVersion, no sign, no
// leading zeros.
func parseVersion(s string) (uint32, error) {
	if s == "" || s[0] == '0' || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%w: key version must be a decimal number from 1 to %d", ErrInvalidKey, uint32(MaxVersion))
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: key version must be a decimal number from 1 to %d", ErrInvalidKey, uint32(MaxVersion))
	}
	return uint32(v), nil
}

// GenerateKey returns a new random key of the given version, read from
// crypto/rand.
func GenerateKey(version uint32) (Key, error) {
	var secret [KeySize]byte
	rand.Read(secret[:]) // never fails (crypto/rand, Go 1.24+)
	k, err := NewKey(version, secret[:])
	clear(secret[:])
	return k, err
}

// EncodeKeys returns keys in the text format that ParseKeys and FromEnv
// read: "version:base64key" pairs (standard base64, padded) joined by
// commas. Zero Keys are skipped. The result is secret.
func EncodeKeys(keys ...Key) string {
	var b strings.Builder
	for _, k := range keys {
		if !k.Valid() {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(k.version), 10))
		b.WriteByte(':')
		b.WriteString(base64.StdEncoding.EncodeToString(k.secret.bytes()[:]))
	}
	return b.String()
}
