package encryptedtype

import (
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// newKey returns a key of the given version, failing the test on error.
func newKey(t testing.TB, version uint32) keyprovider.Key {
	t.Helper()
	k, err := keyprovider.GenerateKey(version)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newStatic returns a keyring writing under active.
func newStatic(t testing.TB, active uint32, keys ...keyprovider.Key) *keyprovider.Static {
	t.Helper()
	p, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withDefault sets the default provider for the duration of the test.
// Tests that use it must not call t.Parallel.
func withDefault(t testing.TB, p keyprovider.Provider) {
	t.Helper()
	old := Default()
	SetDefault(p)
	t.Cleanup(func() {
		if old == nil {
			SetDefault(nil)
		} else {
			defaultCodec.Store(old)
		}
	})
}
