package keyprovider

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Variable names used by these tests, so that they never read a real
// keyring from the environment the tests run in.
const (
	testKeysVar   = "COLCRYPT_TEST_KEYPROVIDER_KEYS"
	testActiveVar = "COLCRYPT_TEST_KEYPROVIDER_ACTIVE"
)

// unsetEnv removes name from the environment for the duration of the test.

func unsetEnv(t *testing.T, name string) {
	t.Setenv(name, "") // restores the old value when the test ends
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func b64(secret []byte) string { return base64.StdEncoding.EncodeToString(secret) }

func TestFromEnvVars(t *testing.T) {
	k1, k2 := mustKey(t, 1, testSecret(1)), mustKey(t, 2, testSecret(2))
	t.Setenv(testKeysVar, EncodeKeys(k1, k2))
	t.Setenv(testActiveVar, "2")
	s, err := FromEnvVars(testKeysVar, testActiveVar)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Active(); a.Version() != 2 || !bytes.Equal(a.Bytes(), testSecret(2)) {
		t.Errorf("Active() = %v", a)
	}
	if k, err := s.Key(1); err != nil || !bytes.Equal(k.Bytes(), testSecret(1)) {
		t.Errorf("Key(1) = %v, %v", k, err)
	}
	if got := s.Versions(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("Versions() = %v", got)
	}
}

func TestFromEnvVarsActive(t *testing.T) {
	one := EncodeKeys(mustKey(t, 7, testSecret(7)))
	two := EncodeKeys(mustKey(t, 1, testSecret(1)), mustKey(t, 2, testSecret(2)))
	tests := []struct {
		name   string
		keys   string
		active *string // nil: unset
		want   uint32
	}{
		{"one key, active unset", one, nil, 7},
		{"one key, active empty", one, ptr(""), 7},
		{"one key, active blank", one, ptr("  "), 7},
		{"one key, active named", one, ptr("7"), 7},
		{"two keys, active 1", two, ptr("1"), 1},
		{"two keys, active with spaces", two, ptr(" 2\t"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(testKeysVar, tt.keys)
			if tt.active == nil {
				unsetEnv(t, testActiveVar)
			} else {
				t.Setenv(testActiveVar, *tt.active)
			}
			s, err := FromEnvVars(testKeysVar, testActiveVar)
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := s.Active(); a.Version() != tt.want {
				t.Errorf("active version %d, want %d", a.Version(), tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestFromEnvDefaultNames(t *testing.T) {
	k := mustKey(t, 3, testSecret(3))
	t.Setenv(EnvKeys, EncodeKeys(k))
	unsetEnv(t, EnvActiveKey)
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Active(); a.Version() != 3 {
		t.Errorf("active version %d, want 3", a.Version())
	}

	unsetEnv(t, EnvKeys)
	if _, err := FromEnv(); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), EnvKeys) {
		t.Errorf("FromEnv with %s unset = %v", EnvKeys, err)
	}
}

// TestFromEnvVarsErrors checks that every bad environment is refused with an
// error that names the variable at fault and never contains its value.
func TestFromEnvVarsErrors(t *testing.T) {
	good1, good2 := b64(testSecret(1)), b64(testSecret(2))
	short, long := b64(testSecret(3)[:31]), b64(append(testSecret(4), 0xee))
	const canary = "SeCrEtCaNaRy"
	type names int
	const (
		keysVar names = 1 << iota
		activeVar
	)
	tests := []struct {
		name    string
		keys    *string // nil: unset
		active  *string // nil: unset
		want    error
		mention names // the variables the error must name
	}{
		{"keys unset", nil, nil, ErrInvalidKey, keysVar},
		{"keys empty", ptr(""), nil, ErrInvalidKey, keysVar},
		{"keys blank", ptr(" \t\n"), nil, ErrInvalidKey, keysVar},
		{"only commas", ptr(" , ,"), nil, ErrInvalidKey, keysVar},
		{"no colon", ptr(canary + good1), nil, ErrInvalidKey, keysVar},
		{"second pair has no colon", ptr("1:" + good1 + "," + canary + good2), ptr("1"), ErrInvalidKey, keysVar},
		{"semicolon separator", ptr("1:" + good1 + ";2:" + good2), ptr("1"), ErrInvalidKey, keysVar},
		{"empty version", ptr(":" + good1), nil, ErrInvalidKey, keysVar},
		{"version not a number", ptr(canary + ":" + good1), nil, ErrInvalidKey, keysVar},
		{"version 0", ptr("0:" + good1), nil, ErrInvalidKey, keysVar},
		{"version leading zero", ptr("01:" + good1), nil, ErrInvalidKey, keysVar},
		{"version signed", ptr("+1:" + good1), nil, ErrInvalidKey, keysVar},
		{"version negative", ptr("-1:" + good1), nil, ErrInvalidKey, keysVar},
		{"version overflow", ptr("4294967296:" + good1), nil, ErrInvalidKey, keysVar},
		{"version hex", ptr("0x1:" + good1), nil, ErrInvalidKey, keysVar},
		{"empty key", ptr("1:"), nil, ErrInvalidKey, keysVar},
		{"bad base64", ptr("1:" + canary + "!!" + good1[8:]), nil, ErrInvalidKey, keysVar},
		{"base64 with inner space", ptr("1:" + good1[:20] + " " + good1[20:]), nil, ErrInvalidKey, keysVar},
		{"mixed base64 alphabets", ptr("1:+" + good1[1:30] + "-" + good1[31:]), nil, ErrInvalidKey, keysVar},
		{"key 31 bytes", ptr("1:" + short), nil, ErrInvalidKey, keysVar},
		{"key 33 bytes", ptr("1:" + long), nil, ErrInvalidKey, keysVar},
		{"key hex not base64", ptr("1:" + strings.Repeat("ab", 32)), nil, ErrInvalidKey, keysVar},
		{"duplicate version", ptr("1:" + good1 + ",1:" + good2), ptr("1"), ErrInvalidKey, keysVar},
		{"active not present", ptr("1:" + good1 + ",2:" + good2), ptr("3"), ErrUnknownVersion, keysVar | activeVar},
		{"active unset, two keys", ptr("1:" + good1 + ",2:" + good2), nil, ErrInvalidKey, keysVar | activeVar},
		{"active empty, two keys", ptr("1:" + good1 + ",2:" + good2), ptr(""), ErrInvalidKey, keysVar | activeVar},
		{"active leading zero", ptr("1:" + good1), ptr("01"), ErrInvalidKey, activeVar},
		{"active 0", ptr("1:" + good1), ptr("0"), ErrInvalidKey, activeVar},
		{"active non-numeric", ptr("1:" + good1), ptr(canary), ErrInvalidKey, activeVar},
		{"active overflow", ptr("1:" + good1), ptr("4294967296"), ErrInvalidKey, activeVar},
		{"active huge", ptr("1:" + good1), ptr("184467440737095516160"), ErrInvalidKey, activeVar},
		{"active negative", ptr("1:" + good1), ptr("-1"), ErrInvalidKey, activeVar},
		{"active signed", ptr("1:" + good1), ptr("+1"), ErrInvalidKey, activeVar},
		{"active decimal point", ptr("1:" + good1), ptr("1.0"), ErrInvalidKey, activeVar},
		{"active version prefix", ptr("1:" + good1), ptr("v1"), ErrInvalidKey, activeVar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, e := range []struct {
				name  string
				value *string
			}{{testKeysVar, tt.keys}, {testActiveVar, tt.active}} {
				if e.value == nil {
					unsetEnv(t, e.name)
				} else {
					t.Setenv(e.name, *e.value)
				}
			}
			s, err := FromEnvVars(testKeysVar, testActiveVar)
			if !errors.Is(err, tt.want) {
				t.Fatalf("FromEnvVars = %v, want %v", err, tt.want)
			}
			if s != nil {
				t.Error("FromEnvVars returned a keyring with its error")
			}
			msg := err.Error()
			if tt.mention&keysVar != 0 && !strings.Contains(msg, testKeysVar) {
				t.Errorf("error %q does not name %s", msg, testKeysVar)
			}
			if tt.mention&activeVar != 0 && !strings.Contains(msg, testActiveVar) {
				t.Errorf("error %q does not name %s", msg, testActiveVar)
			}
			// Never the value: not the whole variable, not a key in it, not
			// the canary, not the material.
			for _, v := range []*string{tt.keys, tt.active} {
				if v != nil && len(strings.TrimSpace(*v)) >= 4 && strings.Contains(msg, strings.TrimSpace(*v)) {
					t.Errorf("error %q contains the variable's value", msg)
				}
			}
			for _, leak := range []string{canary, good1, good2, short, long, good1[:12], good2[:12], good1[8:20], strings.Repeat("ab", 8)} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q contains %q from the variable's value", msg, leak)
				}
			}
			for _, seed := range []byte{1, 2, 3, 4} {
				assertNoSecret(t, "error", msg, testSecret(seed))
			}
		})
	}
}

func TestEncodeKeysFormat(t *testing.T) {
	k1, k2 := mustKey(t, 1, testSecret(1)), mustKey(t, MaxVersion, testSecret(2))
	got := EncodeKeys(k1, k2)
	want := "1:" + b64(testSecret(1)) + ",4294967295:" + b64(testSecret(2))
	if got != want {
		t.Fatalf("EncodeKeys = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^[1-9][0-9]*:[A-Za-z0-9+/]{43}=(,[1-9][0-9]*:[A-Za-z0-9+/]{43}=)*$`).MatchString(got) {
		t.Fatalf("EncodeKeys = %q, not version:base64 pairs", got)
	}
	if EncodeKeys() != "" {
		t.Error("EncodeKeys() is not empty")
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	var keys []Key
	for _, v := range []uint32{1, 2, 10, 12345, MaxVersion} {
		k, err := GenerateKey(v)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	got, err := ParseKeys(EncodeKeys(keys...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("ParseKeys returned %d keys, want %d", len(got), len(keys))
	}
	for i := range keys {
		if got[i].Version() != keys[i].Version() || !bytes.Equal(got[i].Bytes(), keys[i].Bytes()) {
			t.Errorf("key %d: got version %d, want %d (material equal %v)", i, got[i].Version(), keys[i].Version(), bytes.Equal(got[i].Bytes(), keys[i].Bytes()))
		}
	}
}

func TestParseKeysEncodings(t *testing.T) {
	// 0xfb 0xef 0xff encodes to "++//" in standard base64 and "--__" in the
	// URL alphabet, so each alphabet is really exercised.
	secret := bytes.Repeat([]byte{0xfb, 0xef, 0xff}, 11)[:KeySize]
	std := base64.StdEncoding.EncodeToString(secret)
	if !strings.ContainsAny(std, "+/") || !strings.HasSuffix(std, "=") {
		t.Fatalf("test secret encodes to %q, want + or / and padding", std)
	}
	encodings := map[string]string{
		"std padded":   std,
		"std raw":      base64.RawStdEncoding.EncodeToString(secret),
		"url padded":   base64.URLEncoding.EncodeToString(secret),
		"url raw":      base64.RawURLEncoding.EncodeToString(secret),
		"spaces round": "  " + std + "\t",
	}
	for name, enc := range encodings {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseKeys(" 9 : " + enc + " ")
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].Version() != 9 || !bytes.Equal(keys[0].Bytes(), secret) {
				t.Fatalf("ParseKeys(%s) = %v", name, keys)
			}
		})
	}
}

func TestParseKeysSeparators(t *testing.T) {
	a, b := b64(testSecret(1)), b64(testSecret(2))
	for _, s := range []string{
		"1:" + a + ",2:" + b,
		"1:" + a + ", 2:" + b,
		"1:" + a + ",\n2:" + b + "\n",
		",1:" + a + ",,2:" + b + ",",
	} {
		keys, err := ParseKeys(s)
		if err != nil {
			t.Errorf("ParseKeys(%q): %v", s, err)
			continue
		}
		if len(keys) != 2 || keys[0].Version() != 1 || keys[1].Version() != 2 {
			t.Errorf("ParseKeys(%q) = %v", s, keys)
		}
	}
}

func TestParseKeysErrorsNamePosition(t *testing.T) {
	a := b64(testSecret(1))
	_, err := ParseKeys("1:" + a + ",2:" + a + ",3:" + a[:20])
	if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "entry 3") {
		t.Fatalf("ParseKeys = %v, want an error naming entry 3", err)
	}
	if strings.Contains(err.Error(), a[:20]) {
		t.Fatalf("error %q contains the key text", err)
	}
}

func TestGenerateKey(t *testing.T) {
	seen := make(map[string]bool)
	for i := range 100 {
		v := uint32(i + 1)
		k, err := GenerateKey(v)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Valid() || k.Version() != v || len(k.Bytes()) != KeySize {
			t.Fatalf("GenerateKey(%d) = version %d, valid %v, %d bytes", v, k.Version(), k.Valid(), len(k.Bytes()))
		}
		if bytes.Equal(k.Bytes(), make([]byte, KeySize)) {
			t.Fatal("GenerateKey returned all zeros")
		}
		s := string(k.Bytes())
		if seen[s] {
			t.Fatal("GenerateKey returned the same material twice")
		}
		seen[s] = true
	}
	if _, err := GenerateKey(0); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("GenerateKey(0) = %v, want ErrInvalidKey", err)
	}
	if k, err := GenerateKey(MaxVersion); err != nil || k.Version() != MaxVersion {
		t.Errorf("GenerateKey(MaxVersion) = %v, %v", k, err)
	}
}

func FuzzParseKeys(f *testing.F) {
	a, b := b64(testSecret(1)), base64.RawURLEncoding.EncodeToString(testSecret(2))
	for _, s := range []string{
		"", ",", "1:" + a, "1:" + a + ",2:" + b, "01:" + a, "4294967295:" + a, "4294967296:" + a,
		"1:" + a[:40], "1:" + a + "==", "1:=" + a, "1::" + a, ":", "1:\n" + a, "1:" + a + ",1:" + a,
		"-1:" + a, "1:" + strings.ReplaceAll(a, "A", "-"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseKeys(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParseKeys error %v does not wrap ErrInvalidKey", err)
			}
			if keys != nil {
				t.Fatal("ParseKeys returned keys with its error")
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("ParseKeys returned no keys and no error")
		}
		for _, k := range keys {
			if !k.Valid() || k.Version() == 0 || len(k.Bytes()) != KeySize {
				t.Fatalf("ParseKeys returned an invalid key: %v", k)
			}
		}
		again, err := ParseKeys(EncodeKeys(keys...))
		if err != nil {
			t.Fatalf("ParseKeys(EncodeKeys(keys)): %v", err)
		}
		for i := range keys {
			if again[i].Version() != keys[i].Version() || !bytes.Equal(again[i].Bytes(), keys[i].Bytes()) {
				t.Fatalf("round trip changed key %d", i)
			}
		}
	})
}
