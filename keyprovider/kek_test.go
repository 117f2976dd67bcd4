package keyprovider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustLocalKEK(t testing.TB, seed byte) *LocalKEK {
	t.Helper()
	k, err := NewLocalKEK(testSecret(seed))
	if err != nil {
		t.Fatalf("NewLocalKEK: %v", err)
	}
	return k
}

func TestLocalKEKRoundTrip(t *testing.T) {
	ctx := context.Background()
	kek := mustLocalKEK(t, 0x40)
	secret := testSecret(1)
	key := mustKey(t, 7, secret)
	w, err := kek.WrapKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != LocalWrappedSize {
		t.Errorf("wrapped key is %d bytes, want %d", len(w), LocalWrappedSize)
	}
	assertNoSecret(t, "wrapped key", string(w), secret)
	got, err := kek.UnwrapKey(ctx, 7, w)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 7 || !bytes.Equal(got.Bytes(), secret) {
		t.Fatalf("UnwrapKey = %v, material equal %v", got, bytes.Equal(got.Bytes(), secret))
	}
	// A fresh nonce each time.
	w2, _ := kek.WrapKey(ctx, key)
	if bytes.Equal(w, w2) {
		t.Error("two wrappings of one key are equal")
	}
	// The same master key gives the same KEK.
	again := mustLocalKEK(t, 0x40)
	if again.ID() != kek.ID() {
		t.Errorf("ID changed: %s then %s", kek.ID(), again.ID())
	}
	if _, err := again.UnwrapKey(ctx, 7, w); err != nil {
		t.Errorf("a LocalKEK from the same master key cannot unwrap: %v", err)
	}
}

func TestLocalKEKBindsVersion(t *testing.T) {
	ctx := context.Background()
	kek := mustLocalKEK(t, 0x40)
	secret := testSecret(1)
	w, err := kek.WrapKey(ctx, mustKey(t, 3, secret))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint32{1, 2, 4, 1 << 24 /* a byte elsewhere */, MaxVersion} {
		_, err := kek.UnwrapKey(ctx, v, w)
		if !errors.Is(err, ErrUnwrap) {
			t.Errorf("UnwrapKey(version %d) of a key wrapped for 3 = %v, want ErrUnwrap", v, err)
		} else {
			assertNoSecret(t, "error", err.Error(), secret)
		}
	}
}

func TestLocalKEKRejects(t *testing.T) {
	ctx := context.Background()
	kek := mustLocalKEK(t, 0x40)
	other := mustLocalKEK(t, 0x41)
	secret := testSecret(1)
	w, _ := kek.WrapKey(ctx, mustKey(t, 1, secret))

	flip := func(i int) []byte {
		b := bytes.Clone(w)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name    string
		kek     *LocalKEK
		wrapped []byte
		want    string
	}{
		{"other KEK", other, w, "wrapped under local KEK " + kek.ID()},
		{"empty", kek, nil, "not a key wrapped by a local KEK"},
		{"truncated", kek, w[:len(w)-1], "not a key wrapped by a local KEK"},
		{"extended", kek, append(bytes.Clone(w), 0), "not a key wrapped by a local KEK"},
		{"magic", kek, flip(0), "not a key wrapped by a local KEK"},
		{"id", kek, flip(5), "wrapped under local KEK"},
		{"nonce", kek, flip(localHeaderSize), "failed authentication"},
		{"ciphertext", kek, flip(localHeaderSize + localNonceSize + 3), "failed authentication"},
		{"tag", kek, flip(len(w) - 1), "failed authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.kek.UnwrapKey(ctx, 1, tt.wrapped)
			if !errors.Is(err, ErrUnwrap) || k.Valid() {
				t.Fatalf("UnwrapKey = %v, %v; want ErrUnwrap", k, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.kek.String()) {
				t.Errorf("error %q does not say %q and name %s", err, tt.want, tt.kek)
			}
			assertNoSecret(t, "error", err.Error(), secret)
			assertNoSecret(t, "error", err.Error(), testSecret(0x40))
		})
	}

	var zero LocalKEK
	if _, err := zero.WrapKey(ctx, mustKey(t, 1, secret)); !errors.Is(err, ErrWrap) {
		t.Errorf("zero LocalKEK WrapKey = %v", err)
	}
	if _, err := zero.UnwrapKey(ctx, 1, w); !errors.Is(err, ErrUnwrap) {
		t.Errorf("zero LocalKEK UnwrapKey = %v", err)
	}
	if _, err := kek.WrapKey(ctx, Key{}); !errors.Is(err, ErrWrap) {
		t.Errorf("WrapKey(zero Key) = %v", err)
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewLocalKEK(make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewLocalKEK(%d bytes) = %v, want ErrInvalidKey", n, err)
		}
	}
}

func TestLocalKEKDoesNotPrintKey(t *testing.T) {
	master := testSecret(0x40)
	kek := mustLocalKEK(t, 0x40)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("kek", "kek", kek)
	holder := struct {
		k *LocalKEK
		v LocalKEK
	}{kek, *kek}
	for _, out := range []string{
		fmt.Sprint(kek), fmt.Sprintf("%v %+v %#v %s %x %q", kek, kek, kek, kek, kek, kek),
		fmt.Sprintf("%+v %#v", holder, holder), fmt.Sprintf("%v", *kek),
		logged.String(),
	} {
		assertNoSecret(t, "printed KEK", out, master)
	}
	if !strings.Contains(fmt.Sprint(kek), kek.ID()) || !strings.Contains(logged.String(), kek.ID()) {
		t.Errorf("printed KEK does not show its id: %q, %q", fmt.Sprint(kek), logged.String())
	}
}

func TestLocalKEKFromEnvAndFile(t *testing.T) {
	ctx := context.Background()
	master := testSecret(0x40)
	want := mustLocalKEK(t, 0x40).ID()
	w, _ := mustLocalKEK(t, 0x40).WrapKey(ctx, mustKey(t, 1, testSecret(1)))

	for name, text := range map[string]string{
		"std":        base64.StdEncoding.EncodeToString(master),
		"raw url":    base64.RawURLEncoding.EncodeToString(master),
		"whitespace": "  " + base64.StdEncoding.EncodeToString(master) + "\n",
	} {
		t.Run("env "+name, func(t *testing.T) {
			t.Setenv("COLCRYPT_TEST_KEK", text)
			k, err := LocalKEKFromEnv("COLCRYPT_TEST_KEK")
			if err != nil {
				t.Fatal(err)
			}
			if k.ID() != want {
				t.Fatalf("id %s, want %s", k.ID(), want)
			}
			if _, err := k.UnwrapKey(ctx, 1, w); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("env missing or bad", func(t *testing.T) {
		t.Setenv("COLCRYPT_TEST_KEK", "")
		_, err := LocalKEKFromEnv("COLCRYPT_TEST_KEK")
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "COLCRYPT_TEST_KEK") {
			t.Errorf("unset: %v", err)
		}
		bad := base64.StdEncoding.EncodeToString(master[:31])
		t.Setenv("COLCRYPT_TEST_KEK", bad)
		_, err = LocalKEKFromEnv("COLCRYPT_TEST_KEK")
		if !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), bad) {
			t.Errorf("31 bytes: %v", err)
		}
		t.Setenv("COLCRYPT_TEST_KEK", "!!not base64!!")
		_, err = LocalKEKFromEnv("COLCRYPT_TEST_KEK")
		if !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), "!!not") {
			t.Errorf("not base64: %v", err)
		}
	})

	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"raw":    master,
		"base64": []byte(base64.StdEncoding.EncodeToString(master) + "\n"),
	} {
		t.Run("file "+name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LocalKEKFromFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if k.ID() != want {
				t.Fatalf("id %s, want %s", k.ID(), want)
			}
		})
	}
	t.Run("file bad", func(t *testing.T) {
		p := filepath.Join(dir, "bad")
		_ = os.WriteFile(p, []byte("short but not base64 ###"), 0o600)
		_, err := LocalKEKFromFile(p)
		if !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), "###") {
			t.Errorf("bad file: %v", err)
		}
		_, err = LocalKEKFromFile(filepath.Join(dir, "missing"))
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("missing file: %v", err)
		}
	})
}

// failingKEK fails every call.
type failingKEK struct{ calls int }

func (f *failingKEK) WrapKey(context.Context, Key) ([]byte, error) {
	f.calls++
	return nil, fmt.Errorf("%w: failing", ErrWrap)
}

func (f *failingKEK) UnwrapKey(context.Context, uint32, []byte) (Key, error) {
	f.calls++
	return Key{}, fmt.Errorf("%w: failing", ErrUnwrap)
}

func TestFallbackKEK(t *testing.T) {
	ctx := context.Background()
	oldKEK, newKEK := mustLocalKEK(t, 0x40), mustLocalKEK(t, 0x41)
	secret := testSecret(1)
	key := mustKey(t, 2, secret)
	wOld, _ := oldKEK.WrapKey(ctx, key)

	f := FallbackKEK(newKEK, oldKEK)
	got, err := f.UnwrapKey(ctx, 2, wOld)
	if err != nil || !bytes.Equal(got.Bytes(), secret) {
		t.Fatalf("unwrap with the previous KEK: %v, %v", got, err)
	}
	wNew, err := f.WrapKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newKEK.UnwrapKey(ctx, 2, wNew); err != nil {
		t.Fatalf("FallbackKEK did not wrap with the primary: %v", err)
	}

	failing := &failingKEK{}
	_, err = FallbackKEK(failing, mustLocalKEK(t, 0x42)).UnwrapKey(ctx, 2, wOld)
	if !errors.Is(err, ErrUnwrap) || failing.calls != 1 {
		t.Fatalf("all failing: %v (calls %d)", err, failing.calls)
	}
	for _, want := range []string{"failing", "local KEK " + mustLocalKEK(t, 0x42).ID(), "FallbackKEK("} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	assertNoSecret(t, "error", err.Error(), secret)
}

// TestFallbackKEKNoUsableKEK checks the error when every KEK is nil:
// there is no error to join, and the message must not print "%!w(<nil>)".
func TestFallbackKEKNoUsableKEK(t *testing.T) {
	ctx := context.Background()
	for name, f := range map[string]KEK{
		"nil primary only":  FallbackKEK(nil),
		"all nil":           FallbackKEK(nil, nil, nil),
		"nil, empty spread": FallbackKEK(nil, []KEK{}...),
	} {
		_, err := f.UnwrapKey(ctx, 3, []byte("wrapped"))
		if !errors.Is(err, ErrUnwrap) {
			t.Errorf("%s: UnwrapKey: %v, want ErrUnwrap", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "no usable KEK") || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "version 3") {
			t.Errorf("%s: UnwrapKey error %q does not say why", name, err)
		}
		if _, err := f.WrapKey(ctx, mustKey(t, 3, testSecret(3))); !errors.Is(err, ErrWrap) || strings.Contains(err.Error(), "%!") {
			t.Errorf("%s: WrapKey: %v", name, err)
		}
	}
	// A nil previous KEK beside a usable one is skipped.
	kek := mustLocalKEK(t, 0x43)
	key := mustKey(t, 4, testSecret(4))
	w, err := kek.WrapKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := FallbackKEK(nil, nil, kek).UnwrapKey(ctx, 4, w); err != nil || !bytes.Equal(got.Bytes(), testSecret(4)) {
		t.Errorf("nil KEKs before a usable one: %v", err)
	}
}

// TestLocalKEKVector unwraps a key wrapped by an independent implementation
// (Python's cryptography package: HKDF-SHA256 and AES-GCM), so that the
// format is pinned: master 00…1f, key 20…3f, version 5, nonce a0…ab.
//
//	wk  = HKDF(SHA256, 32, salt=None, info="colcrypt local KEK v1: wrapping key").derive(master)
//	kid = HKDF(SHA256, 8, salt=None, info="colcrypt local KEK v1: key id").derive(master)
//	hdr = b"cck1" + kid
//	w   = hdr + nonce + AESGCM(wk).encrypt(nonce, key, hdr + struct.pack(">I", 5))
const localKEKVector = "63636b31ed3d01f0c47ad092a0a1a2a3a4a5a6a7a8a9aaab024dd6983d9940df9a2dde51aa990366f592a57a9d588dd0908b42a096bf9e06522f7517218fff950796ca59e0826965"

func TestLocalKEKVector(t *testing.T) {
	master := make([]byte, 32)
	want := make([]byte, 32)
	for i := range master {
		master[i], want[i] = byte(i), byte(0x20+i)
	}
	w, _ := hex.DecodeString(localKEKVector)
	kek, err := NewLocalKEK(master)
	if err != nil {
		t.Fatal(err)
	}
	if kek.ID() != "ed3d01f0c47ad092" {
		t.Errorf("ID = %s, want ed3d01f0c47ad092", kek.ID())
	}
	k, err := kek.UnwrapKey(context.Background(), 5, w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Bytes(), want) {
		t.Fatal("unwrapped the wrong key")
	}
}

// FuzzLocalKEKUnwrap: no input makes UnwrapKey panic, and only the exact
// wrapping of the key, for its version, unwraps. It uses the fixed vector
// of TestLocalKEKVector, because fuzz workers run in processes of their
// own and a fresh wrapping would differ in each.
func FuzzLocalKEKUnwrap(f *testing.F) {
	ctx := context.Background()
	master := make([]byte, 32)
	secret := make([]byte, 32)
	for i := range master {
		master[i], secret[i] = byte(i), byte(0x20+i)
	}
	kek, err := NewLocalKEK(master)
	if err != nil {
		f.Fatal(err)
	}
	w, _ := hex.DecodeString(localKEKVector)
	f.Add(uint32(5), w)
	f.Add(uint32(4), w)
	f.Add(uint32(5), w[:len(w)-1])
	f.Add(uint32(0), []byte{})
	f.Add(uint32(5), []byte(localMagic))
	f.Fuzz(func(t *testing.T, version uint32, wrapped []byte) {
		k, err := kek.UnwrapKey(ctx, version, wrapped)
		if err != nil {
			if !errors.Is(err, ErrUnwrap) || k.Valid() {
				t.Fatalf("UnwrapKey = %v, %v", k, err)
			}
			assertNoSecret(t, "error", err.Error(), secret)
			return
		}
		if version != 5 || !bytes.Equal(wrapped, w) || !bytes.Equal(k.Bytes(), secret) {
			t.Fatalf("UnwrapKey accepted version %d, %x", version, wrapped)
		}
	})
}
