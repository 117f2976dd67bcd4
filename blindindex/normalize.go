package blindindex

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// A Normalizer maps a plaintext to the form that an index sees, so that
// values the application treats as equal get equal index values. TrimSpace,
// Fold, NFKC and DigitsOnly are Normalizers, and so is any function of the
// same signature; Chain composes them.
//
// A Normalizer must be deterministic and must not change over the life of
// the index: the same input must give the same output on every machine and
// in every release of the program, or stored index values stop matching.
// It must not panic; it should not log its input.
type Normalizer func(string) string

// Chain returns a Normalizer that applies ns in order, left to right. Nil
// elements are skipped; Chain() is the identity. For an e-mail address:
//
//	blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)
func Chain(ns ...Normalizer) Normalizer {
	fs := make([]Normalizer, 0, len(ns))
	for _, n := range ns {
		if n != nil {
			fs = append(fs, n)
		}
	}
	return func(s string) string {
		for _, f := range fs {
			s = f(s)
		}
		return s
	}
}

// TrimSpace removes leading and trailing white space, as defined by
// Unicode (strings.TrimSpace).
func TrimSpace(s string) string { return strings.TrimSpace(s) }

// NFKC returns s in Unicode Normalization Form KC (compatibility
// composition): "ｆｕｌｌｗｉｄｔｈ" becomes "fullwidth", "ﬁ" becomes "fi",
// and a precomposed "é" and "e" followed by a combining acute accent become
// the same string. Invalid UTF-8 is passed through unchanged.
func NFKC(s string) string {
	if isASCII(s) {
		return s // ASCII is always in NFKC
	}
	return norm.NFKC.String(s)
}

// Fold applies Unicode full case folding (the C and F mappings of
// CaseFolding.txt), the mapping meant for case-insensitive comparison. It is
// more than lower-casing: "Straße" and "STRASSE" both fold to "strasse", and
// the Kelvin sign "K" folds to "k". For ASCII it is lower-casing. Case
// folding is stable across Unicode versions for assigned characters.
//
// Folding can leave a string that is not in a normal form; for full
// caseless matching of arbitrary Unicode text use Chain(NFKC, Fold, NFKC).
func Fold(s string) string {
	if isASCII(s) {
		return asciiLower(s)
	}
	return folder.String(s)
}

// folder is stateless and safe for concurrent use (see cases.Fold).
var folder = cases.Fold()

// DigitsOnly keeps the ASCII digits 0-9 of s and drops every other
// character, for phone numbers, card numbers and the like: "+44 (20) 7946-0958"
// becomes "442079460958". Chain NFKC before it to turn fullwidth digits into
// ASCII ones first.
func DigitsOnly(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			n++
		}
	}
	if n == len(s) {
		return s
	}
	b := make([]byte, 0, n)
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lower-cases an ASCII string, without allocating when there is
// nothing to change.
func asciiLower(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}
