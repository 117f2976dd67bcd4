package blindindex_test

import (
	"errors"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
)

// FuzzVersion feeds hostile stored values to the parser: it must not panic,
// must fail only with ErrMalformed, and must agree with IsCurrent.
func FuzzVersion(f *testing.F) {
	for _, s := range []string{"", "b1:AAAA", "a4294967295:" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "b0:", "b01:A", "v1:AAAA", "b1:AA==", "b99999999999:A", "b1:\nAAA"} {
		f.Add(s)
	}
	ks := testKeyring(f, 1, testKey(f, 1, 1))
	ix := mustNew(f, "users.email", ks, blindindex.Config{Bits: 24})
	f.Fuzz(func(t *testing.T, s string) {
		v, err := blindindex.Version(s)
		if err != nil {
			if !errors.Is(err, blindindex.ErrMalformed) {
				t.Fatalf("Version(%q): %v is not ErrMalformed", s, err)
			}
			if _, err2 := ix.IsCurrent(s); !errors.Is(err2, blindindex.ErrMalformed) {
				t.Fatalf("IsCurrent(%q) accepted a value Version rejects: %v", s, err2)
			}
			return
		}
		if v == 0 {
			t.Fatalf("Version(%q) = 0 without error", s)
		}
		_, _ = ix.IsCurrent(s)
	})
}

// FuzzCompute checks that any input, valid UTF-8 or not, gives a
// deterministic, parseable value through every normaliser.
func FuzzCompute(f *testing.F) {
	for _, s := range []string{"", "a@x.com", "Straße", "\xff\xfe", "ＡＢＣ", "+1 (555) 010-9999"} {
		f.Add(s)
	}
	ks := testKeyring(f, 3, testKey(f, 3, 7))
	ix := mustNew(f, "users.email", ks, blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold, blindindex.DigitsOnly),
		Bits:      77,
	})
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ix.Compute(s)
		if err != nil {
			t.Fatal(err)
		}
		if b := mustCompute(t, ix, s); a != b {
			t.Fatalf("not deterministic: %s, %s", a, b)
		}
		if cur, err := ix.IsCurrent(a); err != nil || !cur {
			t.Fatalf("IsCurrent(%s) = %v, %v", a, cur, err)
		}
	})
}
