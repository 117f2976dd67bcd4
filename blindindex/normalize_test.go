package blindindex_test

import (
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
)

func TestNormalizers(t *testing.T) {
	upper := func(s string) string { return s + "!" }
	for _, c := range []struct {
		name string
		n    blindindex.Normalizer
		in   string
		want string
	}{
		{"trim", blindindex.TrimSpace, " \t a b \n", "a b"},
		{"fold ascii", blindindex.Fold, "Alice@EXAMPLE.com", "alice@example.com"},
		{"fold ascii unchanged", blindindex.Fold, "alice", "alice"},
		{"fold sharp s", blindindex.Fold, "STRASSE Straße", "strasse strasse"},
		{"fold kelvin", blindindex.Fold, "\u212a", "k"},
		{"fold sigma", blindindex.Fold, "ΟΔΟΣ οδος", "οδοσ οδοσ"},
		{"nfkc fullwidth", blindindex.NFKC, "ＡＢＣ１２３", "ABC123"},
		{"nfkc ligature", blindindex.NFKC, "ﬁle", "file"},
		{"nfkc compose", blindindex.NFKC, "e\u0301", "\u00e9"},
		{"digits", blindindex.DigitsOnly, "+44 (20) 7946-0958", "442079460958"},
		{"digits only digits", blindindex.DigitsOnly, "123", "123"},
		{"digits none", blindindex.DigitsOnly, "abc", ""},
		{"digits fullwidth needs nfkc", blindindex.DigitsOnly, "１２", ""},
		{"chain nfkc digits", blindindex.Chain(blindindex.NFKC, blindindex.DigitsOnly), "１-2", "12"},
		{"chain empty", blindindex.Chain(), " X ", " X "},
		{"chain nil", blindindex.Chain(nil, blindindex.TrimSpace, nil), " X ", "X"},
		{"chain order", blindindex.Chain(blindindex.TrimSpace, upper), " x ", "x!"},
		{"chain order reversed", blindindex.Chain(upper, blindindex.TrimSpace), " x ", "x !"},
		{"user function", blindindex.Normalizer(upper), "x", "x!"},
	} {
		if got := c.n(c.in); got != c.want {
			t.Errorf("%s: %q → %q, want %q", c.name, c.in, got, c.want)
		}
	}
}

func TestNormalizersInvalidUTF8(t *testing.T) {
	for _, in := range []string{"\xff", "a\xc3", "\xed\xa0\x80", "A\x00B"} {
		for _, n := range []blindindex.Normalizer{blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold, blindindex.DigitsOnly} {
			a, b := n(in), n(in)
			if a != b {
				t.Errorf("normaliser is not deterministic on %q", in)
			}
		}
	}
}
