package blindindex_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// value32 is the 32-byte plaintext the benchmarks index.
const value32 = "alice.example+tag@example.com.uk"

func benchKeyring(b *testing.B) *keyprovider.Static {
	b.Helper()
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		b.Fatal(err)
	}
	ks, err := keyprovider.NewStatic(1, k)
	if err != nil {
		b.Fatal(err)
	}
	return ks
}

var sink string

// BenchmarkIndexCompute is Index.Compute of a 32-byte value at full length
// (256 bits), no normaliser. Its floor is BenchmarkRawHMAC.
func BenchmarkIndexCompute(b *testing.B) {
	if len(value32) != 32 {
		b.Fatal("value32 is not 32 bytes")
	}
	ix, err := blindindex.New("users.email", benchKeyring(b), blindindex.Config{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ix.Compute(value32); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(value32)))
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = ix.Compute(value32)
	}
}

// BenchmarkRawHMAC is the floor of BenchmarkIndexCompute: one HMAC-SHA256
// of the same 32 bytes with a reused key and output buffer.
func BenchmarkRawHMAC(b *testing.B) {
	key := make([]byte, 32)
	h := hmac.New(sha256.New, key)
	msg := []byte(value32)
	var sum [sha256.Size]byte
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(msg)
		h.Sum(sum[:0])
	}
}

// BenchmarkRawHMACText is BenchmarkRawHMAC plus what any function that
// returns the MAC as a stored text value must do: base64url-encode it
// behind a "b1:" prefix into a new string. The difference between it and
// BenchmarkRawHMAC is the cost of the output, not of the index.
func BenchmarkRawHMACText(b *testing.B) {
	key := make([]byte, 32)
	h := hmac.New(sha256.New, key)
	msg := []byte(value32)
	var sum [sha256.Size]byte
	var out [3 + 43]byte
	copy(out[:], "b1:")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(msg)
		h.Sum(sum[:0])
		base64.RawURLEncoding.Encode(out[3:], sum[:])
		sink = string(out[:])
	}
}

// BenchmarkIndexComputeEmail adds the e-mail normaliser (TrimSpace, NFKC,
// Fold) to BenchmarkIndexCompute, with a mixed-case ASCII input.
func BenchmarkIndexComputeEmail(b *testing.B) {
	ix, err := blindindex.New("users.email", benchKeyring(b), blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
	})
	if err != nil {
		b.Fatal(err)
	}
	in := "Alice.Example+Tag@Example.COM.uk"
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = ix.Compute(in)
	}
}

// BenchmarkIndexLookup is Index.Lookup with two live root-key versions.
func BenchmarkIndexLookup(b *testing.B) {
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	ks, err := keyprovider.NewStatic(2, k1, k2)
	if err != nil {
		b.Fatal(err)
	}
	ix, err := blindindex.New("users.email", ks, blindindex.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		vs, _ := ix.Lookup(value32)
		sink = vs[0]
	}
}

// BenchmarkIndexComputeSlow is the slow mode with its default parameters
// (Argon2id, t=2, m=19 MiB, p=1): the cost of every write and, per live
// version, of every lookup of a slow index.
func BenchmarkIndexComputeSlow(b *testing.B) {
	ix, err := blindindex.New("users.ssn", benchKeyring(b), blindindex.Config{Slow: &blindindex.Argon2id{}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = ix.Compute("078051120")
	}
}
