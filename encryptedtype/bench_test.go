package encryptedtype

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"strings"
	"testing"
)

// The column benchmarks and their floors, measured in the same run:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./encryptedtype
//
// BenchmarkStringValue and BenchmarkStringScan go through the column type,
// the default provider, the AEAD cache and the wire format.
// BenchmarkRawGCMSeal and BenchmarkRawGCMOpen are the floor: the same
// primitives called directly with an AEAD built once.

var plaintext32 = strings.Repeat("s", 32)

func BenchmarkStringValue(b *testing.B) {
	withDefault(b, newStatic(b, 1, newKey(b, 1)))
	s := NewString(plaintext32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Value(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStringScan(b *testing.B) {
	withDefault(b, newStatic(b, 1, newKey(b, 1)))
	v, err := NewString(plaintext32).Value()
	if err != nil {
		b.Fatal(err)
	}
	var src any = []byte(v.(string)) // as lib/pq, MySQL and bytea columns hand it over
	var s String
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Scan(src); err != nil {
			b.Fatal(err)
		}
	}
}

func rawAEAD(b *testing.B) cipher.AEAD {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead
}

// BenchmarkRawGCMSeal is the floor of BenchmarkStringValue: one crypto/rand
// nonce, one GCM seal with a cached AEAD, one base64url encode.
func BenchmarkRawGCMSeal(b *testing.B) {
	aead := rawAEAD(b)
	pt := []byte(plaintext32)
	b.ReportAllocs()
	for b.Loop() {
		raw := make([]byte, NonceSize, NonceSize+len(pt)+TagSize)
		rand.Read(raw)
		raw = aead.Seal(raw, raw[:NonceSize], pt, nil)
		_ = b64.EncodeToString(raw)
	}
}

// BenchmarkRawGCMOpen is the floor of BenchmarkStringScan: one base64url
// decode, one GCM open.
func BenchmarkRawGCMOpen(b *testing.B) {
	aead := rawAEAD(b)
	raw := make([]byte, NonceSize, NonceSize+32+TagSize)
	rand.Read(raw)
	raw = aead.Seal(raw, raw[:NonceSize], []byte(plaintext32), nil)
	enc := []byte(b64.EncodeToString(raw))
	b.ReportAllocs()
	for b.Loop() {
		dec := make([]byte, b64.DecodedLen(len(enc)))
		n, err := b64.Decode(dec, enc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := aead.Open(dec[NonceSize:NonceSize], dec[:NonceSize], dec[NonceSize:n], nil); err != nil {
			b.Fatal(err)
		}
	}
}
