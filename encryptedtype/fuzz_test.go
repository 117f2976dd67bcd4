package encryptedtype

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
)

// fuzzSetup returns a codec with the interop keys and the values of the
// committed Node vectors, good and bad, as a seed corpus.
func fuzzSetup(f *testing.F) (*Codec, map[string]bool) {
	data, err := os.ReadFile("testdata/interop/node_vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	vs := loadVectors(f, data)
	good := make(map[string]bool)
	for _, g := range vs.Good {
		good[g.Value] = true
		f.Add([]byte(g.Value))
	}
	for _, b := range vs.Fail {
		f.Add([]byte(b.Value))
	}
	for _, s := range []string{"", "v", "v1", "v1:", "v0:", "v99999999999:AAAA", "v1:\n", "v1:====", "plaintext"} {
		f.Add([]byte(s))
	}
	return NewCodec(vs.provider(f)), good
}

// FuzzOpen feeds arbitrary input to the decryption path. It must never
// panic, and it must never return data for anything but an authentic
// value: with these keys only the committed good vectors authenticate, so
// any other input that decrypts is a forgery (or an accepted re-encoding).
func FuzzOpen(f *testing.F) {
	c, good := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, value []byte) {
		pt, err := c.Open(context.Background(), value)
		if err == nil {
			if !good[string(value)] {
				t.Fatalf("decrypted a value that was never sealed: %q", value)
			}
			return
		}
		if pt != nil {
			t.Fatal("returned data with an error")
		}
		if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotEncrypted) && !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("untyped error: %v", err)
		}
		// The string path agrees with the byte path.
		pt2, err2 := c.openString(string(value))
		if pt2 != nil || (err2 == nil) || err2.Error() != err.Error() {
			t.Fatalf("openString disagrees: %v vs %v", err2, err)
		}
		var s String
		withDefaultCodec(c, func() {
			if s.Scan(value) == nil {
				t.Fatal("Scan accepted what Open refused")
			}
		})
	})
}

// FuzzVersion parses arbitrary input: no panic, and a parsed version is
// always in range and printed back as the same digits.
func FuzzVersion(f *testing.F) {
	fuzzSetup(f)
	f.Fuzz(func(t *testing.T, value []byte) {
		v, err := Version(value)
		if err != nil {
			if v != 0 {
				t.Fatal("version with an error")
			}
			return
		}
		if v == 0 {
			t.Fatal("version 0 accepted")
		}
		if !bytes.HasPrefix(value, []byte("v"+uitoa(v)+":")) {
			t.Fatalf("version %d does not match the prefix of %q", v, value)
		}
	})
}

// FuzzRoundTrip seals arbitrary plaintext and opens it again.
func FuzzRoundTrip(f *testing.F) {
	c, _ := fuzzSetup(f)
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		v, err := c.Seal(context.Background(), plaintext)
		if err != nil {
			t.Fatal(err)
		}
		if !wireFormat.Match(v) {
			t.Fatalf("not wire format: %q", v)
		}
		got, err := c.Open(context.Background(), v)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func uitoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

// withDefaultCodec runs fn with c as the default codec. Fuzz functions run
// sequentially within a worker, so swapping the global is safe here.
func withDefaultCodec(c *Codec, fn func()) {
	old := defaultCodec.Swap(c)
	defer defaultCodec.Store(old)
	fn()
}
