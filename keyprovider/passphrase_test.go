package keyprovider

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// pbkdf2Vectors is testdata/pbkdf2_vectors.json, written by the seed's
// deriveKey in Node.js (testdata/make_pbkdf2_vectors.mjs).
type pbkdf2Vectors struct {
	Iterations int    `json:"iterations"`
	Digest     string `json:"digest"`
	KeyLength  int    `json:"key_length"`
	Vectors    []struct {
		Name          string `json:"name"`
		Passphrase    string `json:"passphrase"`
		PassphraseHex string `json:"passphrase_hex"`
		SaltHex       string `json:"salt_hex"`
		KeyHex        string `json:"key_hex"`
	} `json:"vectors"`
}

func loadPBKDF2Vectors(t *testing.T) pbkdf2Vectors {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "pbkdf2_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v pbkdf2Vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) == 0 {
		t.Fatal("no vectors in testdata/pbkdf2_vectors.json")
	}
	return v
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// shortVectors are the Node.js vectors checked under -short: each costs a
// full derivation, about 2s under -race.
var shortVectors = map[string]bool{"ascii": true, "emoji_astral": true, "nfd_e_acute": true, "longer_than_block": true}

// TestDeriveKeyNodeVectors checks DeriveKey against keys the seed's Node.js
// deriveKey wrote.
func TestDeriveKeyNodeVectors(t *testing.T) {
	vs := loadPBKDF2Vectors(t)
	if vs.Iterations != PBKDF2Iterations || vs.Digest != "sha-512" || vs.KeyLength != KeySize {
		t.Fatalf("vectors made with %d iterations of %s to %d bytes, want %d, sha-512, %d",
			vs.Iterations, vs.Digest, vs.KeyLength, PBKDF2Iterations, KeySize)
	}
	for _, v := range vs.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			if (testing.Short() || raceEnabled) && !shortVectors[v.Name] {
				t.Skip("-short or -race: checking only some vectors (run without -race for all)")
			}
			t.Parallel()
			passphrase := []byte(v.Passphrase)
			// Go's UTF-8 and Node's are the same bytes.
			if got := hex.EncodeToString(passphrase); got != v.PassphraseHex {
				t.Fatalf("UTF-8 of the passphrase is %s in Go, %s in Node", got, v.PassphraseHex)
			}
			salt := mustHex(t, v.SaltHex)
			k, err := DeriveKey(3, passphrase, salt)
			if err != nil {
				t.Fatal(err)
			}
			if string(passphrase) != v.Passphrase || hex.EncodeToString(salt) != v.SaltHex {
				t.Error("DeriveKey changed its inputs")
			}
			if k.Version() != 3 {
				t.Errorf("version %d, want 3", k.Version())
			}
			if got := hex.EncodeToString(k.Bytes()); got != v.KeyHex {
				t.Errorf("DeriveKey = %s, Node's pbkdf2Sync = %s", got, v.KeyHex)
			}
		})
	}
}

// TestDeriveKeyLiveNode derives a fresh random vector with the seed's code in
// a live Node.js and compares.
func TestDeriveKeyLiveNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: skipping the live Node.js comparison (testdata/pbkdf2_vectors.json is still checked)")
	}
	if testing.Short() {
		t.Skip("-short: skipping the live Node.js comparison")
	}
	passphrase := randomPassphrase(t)
	salt := GenerateSalt()
	input, err := json.Marshal(map[string]string{"passphrase": passphrase, "salt_hex": hex.EncodeToString(salt)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "make_pbkdf2_vectors.mjs", "--stdin")
	cmd.Dir = "testdata"
	cmd.Stdin = bytes.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res struct {
		KeyHex string `json:"key_hex"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	k, err := DeriveKey(1, []byte(passphrase), salt)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(k.Bytes()); got != res.KeyHex {
		t.Errorf("passphrase %+q, salt %x: DeriveKey = %s, Node = %s", passphrase, salt, got, res.KeyHex)
	}
}

// randomPassphrase returns 8 to 40 random characters drawn from ASCII,
// Latin, Greek, CJK and emoji, so that 1- to 4-byte UTF-8 sequences occur.
func randomPassphrase(t *testing.T) string {
	t.Helper()
	alphabet := []rune("abcXYZ019 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t\näöüßéñçΩλπЖж鍵秘密合言葉😀🔑🔐👍")
	n := 8 + randInt(t, 33)
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[randInt(t, len(alphabet))])
	}
	return b.String()
}

func randInt(t *testing.T, n int) int {
	t.Helper()
	i, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		t.Fatal(err)
	}
	return int(i.Int64())
}

const passphraseCanary = "Hunter2-PassphraseCanary"

// checkDeriveError checks err wraps ErrInvalidKey and contains neither the
// passphrase nor the salt.
func checkDeriveError(t *testing.T, err error, passphrase, salt []byte) {
	t.Helper()
	if !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("error = %v, want ErrInvalidKey", err)
	}
	msg := err.Error()
	if len(passphrase) > 0 && strings.Contains(msg, string(passphrase)) {
		t.Errorf("error %q contains the passphrase", msg)
	}
	if strings.Contains(msg, passphraseCanary) {
		t.Errorf("error %q contains the passphrase canary", msg)
	}
	if len(salt) >= 4 && (strings.Contains(msg, hex.EncodeToString(salt[:4])) || strings.Contains(msg, string(salt))) {
		t.Errorf("error %q contains the salt", msg)
	}
}

func TestDeriveKeyRejects(t *testing.T) {
	salt := bytes.Repeat([]byte{0xab}, SaltSize)
	pass := []byte(passphraseCanary)
	tests := []struct {
		name       string
		version    uint32
		passphrase []byte
		salt       []byte
	}{
		{"version 0", 0, pass, salt},
		{"nil passphrase", 1, nil, salt},
		{"empty passphrase", 1, []byte{}, salt},
		{"nil salt", 1, pass, nil},
		{"empty salt", 1, pass, []byte{}},
		{"15-byte salt", 1, pass, salt[:15]},
		{"8-byte salt", 1, pass, []byte("somesalt")},
	}
	derivers := map[string]func(uint32, []byte, []byte) (Key, error){
		"DeriveKey": DeriveKey,
		"DeriveKeyArgon2id": func(v uint32, p, s []byte) (Key, error) {
			return DeriveKeyArgon2id(v, p, s, DefaultArgon2Params())
		},
	}
	for dname, derive := range derivers {
		for _, tt := range tests {
			t.Run(dname+"/"+tt.name, func(t *testing.T) {
				k, err := derive(tt.version, tt.passphrase, tt.salt)
				checkDeriveError(t, err, tt.passphrase, tt.salt)
				if k.Valid() {
					t.Error("returned a valid key with its error")
				}
			})
		}
	}
}

func TestGenerateSalt(t *testing.T) {
	a, b := GenerateSalt(), GenerateSalt()
	if len(a) != SaltSize || len(b) != SaltSize {
		t.Fatalf("GenerateSalt returned %d and %d bytes, want %d", len(a), len(b), SaltSize)
	}
	if bytes.Equal(a, b) {
		t.Fatal("GenerateSalt returned the same salt twice")
	}
}

// nodeVector returns the vector named name from the Node.js file.
func nodeVector(t *testing.T, vs pbkdf2Vectors, name string) (passphrase string, salt, key []byte) {
	t.Helper()
	for _, v := range vs.Vectors {
		if v.Name == name {
			return v.Passphrase, mustHex(t, v.SaltHex), mustHex(t, v.KeyHex)
		}
	}
	t.Fatalf("no vector %q", name)
	return "", nil, nil
}

func TestNewPassphrase(t *testing.T) {
	// Two Node.js vectors share a salt: versions 1 and 2 of one keyring.
	vs := loadPBKDF2Vectors(t)
	p1, salt, key1 := nodeVector(t, vs, "ascii")
	p2, salt2, key2 := nodeVector(t, vs, "trailing_newline")
	if !bytes.Equal(salt, salt2) {
		t.Fatal("the ascii and trailing_newline vectors no longer share a salt")
	}
	s, err := NewPassphrase(2, salt, map[uint32][]byte{1: []byte(p1), 2: []byte(p2)})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Active()
	if a.Version() != 2 || !bytes.Equal(a.Bytes(), key2) {
		t.Errorf("Active() = %v, not Node's key for version 2", a)
	}
	k1, err := s.Key(1)
	if err != nil || !bytes.Equal(k1.Bytes(), key1) {
		t.Errorf("Key(1) = %v, %v; not Node's key", k1, err)
	}
	if _, err := s.Key(3); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("Key(3) = %v, want ErrUnknownVersion", err)
	}
}

func TestNewPassphraseRejects(t *testing.T) {
	salt := bytes.Repeat([]byte{0xcd}, SaltSize)
	pass := func(s string) []byte { return []byte(passphraseCanary + s) }
	tests := []struct {
		name        string
		active      uint32
		salt        []byte
		passphrases map[uint32][]byte
		want        error
	}{
		{"nil map", 1, salt, nil, ErrInvalidKey},
		{"empty map", 1, salt, map[uint32][]byte{}, ErrInvalidKey},
		{"active not present", 3, salt, map[uint32][]byte{1: pass("1"), 2: pass("2")}, ErrUnknownVersion},
		{"active 0", 0, salt, map[uint32][]byte{1: pass("1")}, ErrUnknownVersion},
		{"version 0", 1, salt, map[uint32][]byte{0: pass("0"), 1: pass("1")}, ErrInvalidKey},
		{"empty passphrase", 1, salt, map[uint32][]byte{1: pass("1"), 2: {}}, ErrInvalidKey},
		{"nil passphrase", 2, salt, map[uint32][]byte{1: nil, 2: pass("2")}, ErrInvalidKey},
		{"short salt", 1, salt[:15], map[uint32][]byte{1: pass("1")}, ErrInvalidKey},
		{"nil salt", 1, nil, map[uint32][]byte{1: pass("1")}, ErrInvalidKey},
		{"same passphrase twice", 2, salt, map[uint32][]byte{1: pass("x"), 2: pass("x"), 3: pass("y")}, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every check runs before any derivation, so these cases are fast.
			s, err := NewPassphrase(tt.active, tt.salt, tt.passphrases)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewPassphrase = %v, want %v", err, tt.want)
			}
			if s != nil {
				t.Error("NewPassphrase returned a keyring with its error")
			}
			msg := err.Error()
			if strings.Contains(msg, passphraseCanary) {
				t.Errorf("error %q contains a passphrase", msg)
			}
			if len(tt.salt) >= 4 && strings.Contains(msg, hex.EncodeToString(tt.salt[:4])) {
				t.Errorf("error %q contains the salt", msg)
			}
		})
	}
}

// argon2Vectors are argon2id (version 0x13) known answers from the reference
// implementation, phc-winner-argon2 src/test.c: password "password", salt
// "somesalt", 32-byte tag. They are independent of x/crypto, and the
// parameters differ one at a time, so swapping time and memory is caught.
var argon2Vectors = []struct {
	params Argon2Params
	want   string
}{
	{Argon2Params{Time: 2, MemoryKiB: 1 << 16, Threads: 1}, "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"},
	{Argon2Params{Time: 2, MemoryKiB: 1 << 8, Threads: 1}, "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe"},
	{Argon2Params{Time: 2, MemoryKiB: 1 << 8, Threads: 2}, "6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037"},
	{Argon2Params{Time: 1, MemoryKiB: 1 << 16, Threads: 1}, "f6a5adc1ba723dddef9b5ac1d464e180fcd9dffc9d1cbf76cca2fed795d9ca98"},
	{Argon2Params{Time: 4, MemoryKiB: 1 << 16, Threads: 1}, "9025d48e68ef7395cca9079da4c4ec3affb3c8911fe4f86d1a2520856f63172c"},
}

// TestArgon2idReferenceVectors checks the derivation DeriveKeyArgon2id uses
// against the reference implementation. The reference salt is 8 bytes,
// below MinSaltSize, so the unchecked helper is called.
func TestArgon2idReferenceVectors(t *testing.T) {
	for _, v := range argon2Vectors {
		got := hex.EncodeToString(argon2idKey([]byte("password"), []byte("somesalt"), v.params))
		if got != v.want {
			t.Errorf("%+v: got %s, want %s", v.params, got, v.want)
		}
	}
}

func TestDeriveKeyArgon2id(t *testing.T) {
	passphrase, salt := []byte("password"), []byte("somesaltsomesalt")
	params := Argon2Params{Time: 2, MemoryKiB: 256, Threads: 2}
	k, err := DeriveKeyArgon2id(6, passphrase, salt, params)
	if err != nil {
		t.Fatal(err)
	}
	want := argon2.IDKey(passphrase, salt, 2, 256, 2, 32)
	if k.Version() != 6 || !bytes.Equal(k.Bytes(), want) {
		t.Fatalf("DeriveKeyArgon2id = %v, not argon2.IDKey with the same parameters", k)
	}
	// Each parameter is part of the key.
	for _, p := range []Argon2Params{
		{Time: 3, MemoryKiB: 256, Threads: 2},
		{Time: 2, MemoryKiB: 512, Threads: 2},
		{Time: 2, MemoryKiB: 256, Threads: 1},
	} {
		other, err := DeriveKeyArgon2id(6, passphrase, salt, p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(other.Bytes(), k.Bytes()) {
			t.Errorf("%+v derives the same key as %+v", p, params)
		}
	}
}

func TestDefaultArgon2Params(t *testing.T) {
	// RFC 9106, section 4, second recommended option.
	if got, want := DefaultArgon2Params(), (Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}); got != want {
		t.Fatalf("DefaultArgon2Params() = %+v, want %+v", got, want)
	}
	k, err := DeriveKeyArgon2id(1, []byte(passphraseCanary), GenerateSalt(), DefaultArgon2Params())
	if err != nil || !k.Valid() {
		t.Fatalf("DeriveKeyArgon2id with the defaults = %v, %v", k, err)
	}
}

func TestDeriveKeyArgon2idRejectsParams(t *testing.T) {
	for _, p := range []Argon2Params{
		{},
		{Time: 0, MemoryKiB: 1024, Threads: 1},
		{Time: 1, MemoryKiB: 1024, Threads: 0},
		{Time: 1, MemoryKiB: 0, Threads: 1},
		{Time: 1, MemoryKiB: 7, Threads: 1},
		{Time: 1, MemoryKiB: 31, Threads: 4},
		{Time: 1, MemoryKiB: 2039, Threads: 255},
		{Time: 1001, MemoryKiB: 8, Threads: 1},
		{Time: math.MaxUint32, MemoryKiB: 64 * 1024, Threads: 4},
		{Time: 1, MemoryKiB: 4<<20 + 1, Threads: 1},
		{Time: 1, MemoryKiB: math.MaxUint32, Threads: 255},
	} {
		// x/crypto panics on zero time or threads: the checks come first.
		_, err := DeriveKeyArgon2id(1, []byte(passphraseCanary), GenerateSalt(), p)
		checkDeriveError(t, err, []byte(passphraseCanary), nil)
	}
	// The upper bounds are inclusive. Only the checks run for the largest
	// memory; 1000 passes over 8 KiB take milliseconds.
	for _, p := range []Argon2Params{
		{Time: 1000, MemoryKiB: 4 << 20, Threads: 255},
		{Time: 1, MemoryKiB: 4 << 20, Threads: 1},
	} {
		if err := p.check(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	if _, err := DeriveKeyArgon2id(1, []byte(passphraseCanary), GenerateSalt(), Argon2Params{Time: 1000, MemoryKiB: 8, Threads: 1}); err != nil {
		t.Errorf("Time 1000: %v", err)
	}
	for _, p := range []Argon2Params{{Time: 1001, MemoryKiB: 8, Threads: 1}, {Time: 1, MemoryKiB: 4<<20 + 1, Threads: 1}} {
		err := p.check()
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "at most") {
			t.Errorf("%+v: %v", p, err)
		}
	}
	// The smallest valid memory is 8 KiB per thread.
	if _, err := DeriveKeyArgon2id(1, []byte(passphraseCanary), GenerateSalt(), Argon2Params{Time: 1, MemoryKiB: 32, Threads: 4}); err != nil {
		t.Errorf("8 KiB per thread: %v", err)
	}
}

// Benchmarks. The derivations are slow by design; each has its floor, the
// bare primitive with the same parameters, beside it.

func BenchmarkDeriveKeyPBKDF2(b *testing.B) {
	passphrase, salt := []byte("correct horse battery staple"), GenerateSalt()
	for b.Loop() {
		if _, err := DeriveKey(1, passphrase, salt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPBKDF2Floor(b *testing.B) {
	passphrase, salt := "correct horse battery staple", GenerateSalt()
	for b.Loop() {
		if _, err := pbkdf2.Key(sha512.New, passphrase, salt, PBKDF2Iterations, KeySize); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeriveKeyArgon2id(b *testing.B) {
	passphrase, salt, p := []byte("correct horse battery staple"), GenerateSalt(), DefaultArgon2Params()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DeriveKeyArgon2id(1, passphrase, salt, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkArgon2idFloor(b *testing.B) {
	passphrase, salt, p := []byte("correct horse battery staple"), GenerateSalt(), DefaultArgon2Params()
	b.ReportAllocs()
	for b.Loop() {
		argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	}
}
