package keyprovider

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrWrap is returned (wrapped) when a KEK cannot wrap a key: the KMS
	// is unreachable or refuses, or the key is the zero Key.
	ErrWrap = errors.New("colcrypt: cannot wrap key")

	// ErrUnwrap is returned (wrapped) when a KEK cannot unwrap a key: the
	// wrapped key was altered, was wrapped for another version or under
	// another KEK, is not in the KEK's format, or the KMS is unreachable or
	// refuses.
	ErrUnwrap = errors.New("colcrypt: cannot unwrap key")
)

// A KEK (key-encryption key) wraps data keys for storage, for example in a
// key table, and unwraps them when they are loaded. Data keys stay in memory
// only in unwrapped form; what is stored is useless without the KEK.
//
// A KEK binds the key's version into the wrapping: a key wrapped for
// version 3 does not unwrap as any other version, so a wrapped key cannot be
// moved to another version's row.
//
// WrapKey and UnwrapKey may do I/O (a KMS call): they are called when keys
// are added or loaded, never on the hot path of Value and Scan.
// Implementations must be safe for concurrent use, and their errors must
// name the KEK (for example "local KEK 1f2e…" or "cloudkek awskms") and
// never contain key material.
//
// [LocalKEK] is a local AES-256-GCM master key; package
// keyprovider/cloudkek wraps with a cloud KMS or HashiCorp Vault through
// gocloud.dev/secrets.
type KEK interface {
	// WrapKey returns k's material wrapped under the KEK, bound to
	// k.Version(). Errors wrap ErrWrap.
	WrapKey(ctx context.Context, k Key) ([]byte, error)

	// UnwrapKey returns the key of the given version from wrapped, as
	// WrapKey wrote it. Errors wrap ErrUnwrap.
	UnwrapKey(ctx context.Context, version uint32, wrapped []byte) (Key, error)
}

// FallbackKEK returns a KEK that wraps under primary and unwraps with
// primary, then with each of previous in turn, returning the first
// success. It is for rotating the KEK: run every instance with
// FallbackKEK(newKEK, oldKEK), re-wrap the stored keys under newKEK (see
// keytable.Table.Rewrap), then drop oldKEK.
//
// When every KEK fails, the error wraps ErrUnwrap and each KEK's error.
// UnwrapKey skips nil KEKs (and fails, wrapping ErrUnwrap, when all are
// nil); WrapKey uses primary alone, and fails wrapping ErrWrap when it is
// nil.
func FallbackKEK(primary KEK, previous ...KEK) KEK {
	return &fallbackKEK{keks: append([]KEK{primary}, previous...)}
}

type fallbackKEK struct{ keks []KEK }

func (f *fallbackKEK) WrapKey(ctx context.Context, k Key) ([]byte, error) {
	if f.keks[0] == nil {
		return nil, fmt.Errorf("%w: FallbackKEK: nil primary KEK", ErrWrap)
	}
	return f.keks[0].WrapKey(ctx, k)
}

func (f *fallbackKEK) UnwrapKey(ctx context.Context, version uint32, wrapped []byte) (Key, error) {
	errs := make([]error, 0, len(f.keks))
	for _, kek := range f.keks {
		if kek == nil {
			continue
		}
		k, err := kek.UnwrapKey(ctx, version, wrapped)
		if err == nil {
			return k, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		// Every KEK was nil: errors.Join would be nil, and %w of nil
		// prints "%!w(<nil>)".
		return Key{}, fmt.Errorf("%w: version %d: %s has no usable KEK (all are nil)", ErrUnwrap, version, f)
	}
	return Key{}, fmt.Errorf("%w: version %d: no KEK of %s could unwrap it: %w", ErrUnwrap, version, f, errors.Join(errs...))
}

// String names the KEKs, primary first.
func (f *fallbackKEK) String() string {
	names := make([]string, len(f.keks))
	for i, k := range f.keks {
		names[i] = kekName(k)
	}
	return "FallbackKEK(" + strings.Join(names, ", ") + ")"
}

// kekName names a KEK for an error message: its String method if it has
// one, else its type.
func kekName(k KEK) string {
	if s, ok := k.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", k)
}
