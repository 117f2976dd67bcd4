package blindindex

import (
	"bytes"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// swapKeyring is a keyring whose keys are swapped while the program runs,
// as a keytable.Provider's are when it reloads: versions are added,
// activated and retired.
type swapKeyring struct {
	cur atomic.Pointer[keyprovider.Static]
}

func newSwapKeyring(t testing.TB, active uint32, keys ...keyprovider.Key) *swapKeyring {
	t.Helper()
	s := &swapKeyring{}
	s.set(t, active, keys...)
	return s
}

func (s *swapKeyring) set(t testing.TB, active uint32, keys ...keyprovider.Key) {
	t.Helper()
	ks, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	s.cur.Store(ks)
}

func (s *swapKeyring) Active() (keyprovider.Key, error)      { return s.cur.Load().Active() }
func (s *swapKeyring) Key(v uint32) (keyprovider.Key, error) { return s.cur.Load().Key(v) }
func (s *swapKeyring) Versions() []uint32                    { return s.cur.Load().Versions() }

// rootKey returns a root key of version v whose bytes are all fill.
func rootKey(t testing.TB, v uint32, fill byte) keyprovider.Key {
	t.Helper()
	k, err := keyprovider.NewKey(v, bytes.Repeat([]byte{fill}, keyprovider.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cached reports whether ix holds a derived key of version v.
func cached(ix *Index, v uint32) bool {
	_, ok := (*ix.cache.Load())[v]
	return ok
}

// An Index drops the per-column key of a root-key version once the keyring
// has retired it, whichever call finds out; Compute alone never checks.
func TestIndexForgetsRetiredVersion(t *testing.T) {
	k1, k2 := rootKey(t, 1, 1), rootKey(t, 2, 2)
	for _, tc := range []struct {
		name string
		call func(*Index) error
	}{
		{"Lookup", func(ix *Index) error { _, err := ix.Lookup("x"); return err }},
		{"LookupPair", func(ix *Index) error { _, _, err := ix.LookupPair("x"); return err }},
		{"ComputeVersion", func(ix *Index) error {
			if _, err := ix.ComputeVersion(1, "x"); !errors.Is(err, ErrUnknownVersion) {
				return errors.New("ComputeVersion of the retired version did not fail with ErrUnknownVersion")
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, slow := range []bool{false, true} {
				cfg := Config{Bits: 64}
				if slow {
					cfg.Slow = &Argon2id{Time: 1, MemoryKiB: 8}
				}
				keys := newSwapKeyring(t, 1, k1)
				ix, err := New("users.email", keys, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := ix.Compute("x"); err != nil {
					t.Fatal(err)
				}
				keys.set(t, 2, k1, k2) // rotation: 2 active, 1 still live
				if _, err := ix.Lookup("x"); err != nil {
					t.Fatal(err)
				}
				if !cached(ix, 1) || !cached(ix, 2) {
					t.Fatal("versions 1 and 2 are not both cached while both are live")
				}
				keys.set(t, 2, k2) // version 1 retired
				if _, err := ix.Compute("x"); err != nil {
					t.Fatal(err)
				}
				if err := tc.call(ix); err != nil {
					t.Fatal(err)
				}
				if cached(ix, 1) {
					t.Errorf("slow %v: %s after version 1 was retired: its derived key is still cached", slow, tc.name)
				}
				if !cached(ix, 2) {
					t.Errorf("slow %v: %s dropped the live version 2", slow, tc.name)
				}
				if a := ix.active.Load(); a != nil && a.key.Version() == 1 {
					t.Errorf("slow %v: the retired version is still the active entry", slow)
				}
			}
		})
	}
}

// unlisting lists only its active version but still holds the others: a
// listing that, for a moment, lags behind the keys.
type unlisting struct{ *keyprovider.Static }

func (u unlisting) Versions() []uint32 {
	k, _ := u.Active()
	return []uint32{k.Version()}
}

// A version that is not listed but that the keyring still holds is kept:
// only a version the keyring has retired (Key fails with
// ErrUnknownVersion) is dropped.
func TestIndexKeepsHeldVersion(t *testing.T) {
	ks, err := keyprovider.NewStatic(2, rootKey(t, 1, 1), rootKey(t, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := New("users.email", unlisting{ks}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.ComputeVersion(1, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Lookup("x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ix.LookupPair("x"); err != nil {
		t.Fatal(err)
	}
	if !cached(ix, 1) {
		t.Error("a version the keyring still holds was dropped because it was not listed")
	}
}

// blindindex.Keyring is keyprovider.Keyring itself, not a second interface
// with the same methods.
func TestKeyringIsKeyproviderKeyring(t *testing.T) {
	if a, b := reflect.TypeFor[Keyring](), reflect.TypeFor[keyprovider.Keyring](); a != b {
		t.Errorf("blindindex.Keyring is %v, want keyprovider.Keyring (%v)", a, b)
	}
}
