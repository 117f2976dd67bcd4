package blindindex_test

import (
	"bytes"
	"fmt"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// exampleKeyring returns a fixed keyring so that the examples' output is
// stable. Real root keys come from keyprovider.GenerateKey, and are kept
// apart from the data keys, for example in COLCRYPT_INDEX_KEYS.
func exampleKeyring(active uint32, versions ...uint32) *keyprovider.Static {
	var keys []keyprovider.Key
	for _, v := range versions {
		k, _ := keyprovider.NewKey(v, bytes.Repeat([]byte{byte(v)}, keyprovider.KeySize))
		keys = append(keys, k)
	}
	ks, _ := keyprovider.NewStatic(active, keys...)
	return ks
}

func Example() {
	// In production: keyprovider.FromEnvVars("COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY").
	indexKeys := exampleKeyring(1, 1)

	emails, err := blindindex.New("users.email", indexKeys, blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
	})
	if err != nil {
		panic(err)
	}

	// Stored in users.email_bidx beside the encrypted users.email.
	stored, _ := emails.Compute("Alice@Example.com")
	fmt.Println(stored)

	// The values to match with "WHERE email_bidx = ANY($1)".
	lookup, _ := emails.Lookup("  alice@example.COM")
	fmt.Println(lookup)
	// Output:
	// b1:O6KnMBdcQNmp3GoqVdrkdTGadJ3A4izzSc8dyXFPYp0
	// [b1:O6KnMBdcQNmp3GoqVdrkdTGadJ3A4izzSc8dyXFPYp0]
}

// During a rotation of the index key, new values are written under the
// active version and a lookup matches every live one.
func ExampleIndex_Lookup_rotation() {
	before, _ := blindindex.New("users.email", exampleKeyring(1, 1), blindindex.Config{Normalize: blindindex.Fold})
	old, _ := before.Compute("bob@example.com")

	during, _ := blindindex.New("users.email", exampleKeyring(2, 1, 2), blindindex.Config{Normalize: blindindex.Fold})
	fresh, _ := during.Compute("bob@example.com")
	lookup, _ := during.Lookup("Bob@Example.com")
	fmt.Println(lookup[0] == old, lookup[1] == fresh)

	current, _ := during.IsCurrent(old)
	fmt.Println("old value current:", current)
	// Output:
	// true true
	// old value current: false
}

// A truncated index leaks less, and its lookups return false positives that
// are dropped after decryption.
func ExampleFilter() {
	bits := blindindex.SuggestBits(1_000_000, 2) // about two wrong values per lookup
	emails, _ := blindindex.New("users.email", exampleKeyring(1, 1), blindindex.Config{
		Normalize: blindindex.Fold,
		Bits:      bits,
	})
	v, _ := emails.Compute("carol@example.com")
	fmt.Println(bits, v)

	// The rows a lookup returned, decrypted:
	type user struct{ ID, Email string }
	rows := []user{{"7", "Carol@example.com"}, {"42", "zed@example.net"}}
	for _, u := range blindindex.Filter(emails, rows, "carol@example.com", func(u user) string { return u.Email }) {
		fmt.Println(u.ID)
	}
	// Output:
	// 19 b1:MSuA
	// 7
}
