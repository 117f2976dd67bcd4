package keytable

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// renumberingKEK "wraps" a key as its plain material (tests only) and
// unwraps it as the key of version+shift: a broken KEK that hands back the
// right material under the wrong version.
type renumberingKEK struct{ shift uint32 }

func (renumberingKEK) WrapKey(_ context.Context, k keyprovider.Key) ([]byte, error) {
	return k.Bytes(), nil
}

func (r renumberingKEK) UnwrapKey(_ context.Context, version uint32, wrapped []byte) (keyprovider.Key, error) {
	return keyprovider.NewKey(version+r.shift, wrapped)
}

// wrapChecked accepts only a wrapping that unwraps to the same key, and a
// key is its version as well as its material: a KEK that unwraps the right
// bytes under another version is refused before anything is stored.
func TestWrapCheckedComparesVersionAndMaterial(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5a}, keyprovider.KeySize)
	k, err := keyprovider.NewKey(7, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrapChecked(t.Context(), renumberingKEK{}, k); err != nil {
		t.Fatalf("wrapChecked with a KEK that round-trips: %v", err)
	}
	_, err = wrapChecked(t.Context(), renumberingKEK{shift: 1}, k)
	if !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("wrapChecked with a KEK that renumbers the key: %v, want ErrUnwrap", err)
	}
	if strings.Contains(err.Error(), "5a5a") || strings.Contains(err.Error(), string(secret[:8])) {
		t.Errorf("error leaks key material: %q", err)
	}
}

// keytable.Keyring is keyprovider.Keyring itself, not a second interface
// with the same methods.
func TestKeyringIsKeyproviderKeyring(t *testing.T) {
	if a, b := reflect.TypeFor[Keyring](), reflect.TypeFor[keyprovider.Keyring](); a != b {
		t.Errorf("keytable.Keyring is %v, want keyprovider.Keyring (%v)", a, b)
	}
}
