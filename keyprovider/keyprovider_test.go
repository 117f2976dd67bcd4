package keyprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// testSecret returns KeySize distinctive bytes (not a real key): every byte
// differs, so a leak of any part of it shows up in hex, base64 or raw form.
func testSecret(seed byte) []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = seed ^ byte(i*37+11)
	}
	return b
}

// mustKey returns NewKey(version, secret), failing the test on error.
func mustKey(t testing.TB, version uint32, secret []byte) Key {
	t.Helper()
	k, err := NewKey(version, secret)
	if err != nil {
		t.Fatalf("NewKey(%d): %v", version, err)
	}
	return k
}

// secretForms returns the ways a secret could appear in text: raw, hex,
// every base64 alphabet, Go's byte-slice syntaxes, and the same for its
// first bytes, so that a partial leak is caught too.
func secretForms(secret []byte) []string {
	var forms []string
	for _, b := range [][]byte{secret, secret[:12]} {
		forms = append(forms,
			string(b),
			hex.EncodeToString(b),
			strings.ToUpper(hex.EncodeToString(b)),
			base64.RawStdEncoding.EncodeToString(b),
			base64.RawURLEncoding.EncodeToString(b),
			strings.Trim(fmt.Sprint(b), "[]"),               // 90 127 …
			strings.Trim(fmt.Sprintf("%#v", b), "[]byte{}"), // 0x5a, 0x7f, …
			strings.Trim(fmt.Sprintf("%q", b), `"`),
		)
	}
	return forms
}

// assertNoSecret fails if out contains secret in any form from secretForms.
func assertNoSecret(t testing.TB, what, out string, secret []byte) {
	t.Helper()
	for _, form := range secretForms(secret) {
		if strings.Contains(out, form) {
			t.Errorf("%s leaks key material (%q found) in %q", what, form, out)
			return
		}
	}
}

func TestNewKey(t *testing.T) {
	secret := testSecret(1)
	k, err := NewKey(7, secret)
	if err != nil {
		t.Fatal(err)
	}
	if k.Version() != 7 || !k.Valid() || !bytes.Equal(k.Bytes(), secret) {
		t.Fatalf("NewKey(7) = version %d, valid %v, material equal %v", k.Version(), k.Valid(), bytes.Equal(k.Bytes(), secret))
	}
	if k, err := NewKey(MaxVersion, secret); err != nil || k.Version() != MaxVersion {
		t.Fatalf("NewKey(MaxVersion) = %v, %v", k, err)
	}
}

func TestNewKeyRejects(t *testing.T) {
	tests := []struct {
		name    string
		version uint32
		secret  []byte
	}{
		{"version 0", 0, testSecret(1)},
		{"31 bytes", 1, testSecret(1)[:31]},
		{"33 bytes", 1, append(testSecret(1), 0x42)},
		{"64 bytes", 1, append(testSecret(1), testSecret(2)...)},
		{"empty", 1, []byte{}},
		{"nil", 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKey(tt.version, tt.secret)
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("NewKey = %v, want ErrInvalidKey", err)
			}
			if k.Valid() {
				t.Error("NewKey returned a valid key with its error")
			}
			if len(tt.secret) >= 12 {
				assertNoSecret(t, "error", err.Error(), tt.secret[:min(len(tt.secret), KeySize)])
			}
		})
	}
}

func TestNewKeyCopiesInput(t *testing.T) {
	secret := testSecret(1)
	want := bytes.Clone(secret)
	k := mustKey(t, 1, secret)
	for i := range secret {
		secret[i] = 0
	}
	if !bytes.Equal(k.Bytes(), want) {
		t.Fatal("changing the slice given to NewKey changed the key")
	}
}

func TestBytesReturnsCopy(t *testing.T) {
	want := testSecret(1)
	k := mustKey(t, 1, want)
	b := k.Bytes()
	for i := range b {
		b[i] ^= 0xff
	}
	if !bytes.Equal(k.Bytes(), want) {
		t.Fatal("changing the slice Bytes returned changed the key")
	}
	b1, b2 := k.Bytes(), k.Bytes()
	if &b1[0] == &b2[0] {
		t.Fatal("Bytes returned the same backing array twice")
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	if k.Valid() || k.Bytes() != nil || k.Version() != 0 {
		t.Fatalf("zero Key: valid %v, bytes %v, version %d", k.Valid(), k.Bytes(), k.Version())
	}
	// Printing the zero Key must not panic.
	_ = fmt.Sprintf("%v %s %#v %x", k, k, k, k)
	_ = k.LogValue().Resolve().String()
}

func TestNewStatic(t *testing.T) {
	k1, k3, k5 := mustKey(t, 1, testSecret(1)), mustKey(t, 3, testSecret(3)), mustKey(t, 5, testSecret(5))
	s, err := NewStatic(3, k5, k1, k3)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Active()
	if err != nil || a.Version() != 3 || !bytes.Equal(a.Bytes(), testSecret(3)) {
		t.Fatalf("Active() = %v (material equal %v), %v", a, bytes.Equal(a.Bytes(), testSecret(3)), err)
	}
	for _, v := range []uint32{1, 3, 5} {
		k, err := s.Key(v)
		if err != nil || k.Version() != v || !bytes.Equal(k.Bytes(), testSecret(byte(v))) {
			t.Errorf("Key(%d) = %v, %v", v, k, err)
		}
	}
	if got := s.Versions(); !slices.Equal(got, []uint32{1, 3, 5}) {
		t.Errorf("Versions() = %v, want [1 3 5]", got)
	}
	// Versions returns a fresh slice.
	vs := s.Versions()
	vs[0] = 99
	if got := s.Versions(); !slices.Equal(got, []uint32{1, 3, 5}) {
		t.Errorf("changing the slice Versions returned changed the keyring: %v", got)
	}

	var _ Provider = s
}

func TestStaticUnknownVersion(t *testing.T) {
	s, err := NewStatic(1, mustKey(t, 1, testSecret(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint32{0, 2, MaxVersion} {
		k, err := s.Key(v)
		if !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("Key(%d) error = %v, want ErrUnknownVersion", v, err)
		}
		if errors.Is(err, ErrInvalidKey) {
			t.Errorf("Key(%d) error %v also matches ErrInvalidKey", v, err)
		}
		if k.Valid() {
			t.Errorf("Key(%d) returned a valid key with its error", v)
		}
		if !strings.Contains(err.Error(), "(the keyring holds version 1)") {
			t.Errorf("Key(%d) error %q does not name the versions held", v, err)
		}
	}
	three, err := NewStatic(5, mustKey(t, 1, testSecret(1)), mustKey(t, 5, testSecret(5)), mustKey(t, 3, testSecret(3)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := three.Key(2); err == nil || !strings.HasSuffix(err.Error(), "2 (the keyring holds versions 1, 3 and 5)") {
		t.Errorf("Key(2) error %v", err)
	}
}

func TestNewStaticRejects(t *testing.T) {
	k1, k2 := mustKey(t, 1, testSecret(1)), mustKey(t, 2, testSecret(2))
	k1again := mustKey(t, 1, testSecret(9))
	tests := []struct {
		name   string
		active uint32
		keys   []Key
		want   error
	}{
		{"no keys", 1, nil, ErrInvalidKey},
		{"empty slice", 1, []Key{}, ErrInvalidKey},
		{"zero Key", 1, []Key{k1, {}}, ErrInvalidKey},
		{"only zero Key", 0, []Key{{}}, ErrInvalidKey},
		{"duplicate version", 1, []Key{k1, k2, k1again}, ErrInvalidKey},
		{"same key twice", 1, []Key{k1, k1}, ErrInvalidKey},
		{"active not present", 3, []Key{k1, k2}, ErrUnknownVersion},
		{"active 0", 0, []Key{k1}, ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStatic(tt.active, tt.keys...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewStatic = %v, want %v", err, tt.want)
			}
			if s != nil {
				t.Error("NewStatic returned a keyring with its error")
			}
			for _, seed := range []byte{1, 2, 9} {
				assertNoSecret(t, "error", err.Error(), testSecret(seed))
			}
		})
	}
}

// redactionSubjects are the values a Key may be printed inside.
func redactionSubjects(t *testing.T, k Key) map[string]any {
	t.Helper()
	s, err := NewStatic(k.Version(), k)
	if err != nil {
		t.Fatal(err)
	}
	type exported struct {
		Name string
		Key  Key
	}
	type unexported struct {
		name string
		key  Key
	}
	type pointer struct{ Key *Key }
	return map[string]any{
		"Key":                     k,
		"*Key":                    &k,
		"struct, exported field":  exported{"column", k},
		"*struct":                 &exported{"column", k},
		"struct, unexported":      unexported{"column", k},
		"*struct, unexported":     &unexported{"column", k},
		"struct with *Key":        pointer{&k},
		"[]Key":                   []Key{k, k},
		"[1]Key":                  [1]Key{k},
		"map[uint32]Key":          map[uint32]Key{k.Version(): k},
		"map[Key]int":             map[Key]int{k: 1},
		"*Static":                 s,
		"Static":                  *s,
		"[]any":                   []any{k},
		"error wrapping with %v":  fmt.Errorf("failed with %v", k),
		"slog.Value of LogValuer": k.LogValue(),
	}
}

func TestKeyRedactedByFmt(t *testing.T) {
	secret := testSecret(0xa5)
	k := mustKey(t, 4242, secret)
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v", "%10.3v", "%-50s", "% x", "%#x", "%08x", "%p", "%b", "%o", "%U", "%c", "%e"}
	for name, v := range redactionSubjects(t, k) {
		for _, verb := range verbs {
			assertNoSecret(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v), secret)
		}
		assertNoSecret(t, "Sprint "+name, fmt.Sprint(v), secret)
		assertNoSecret(t, "Sprintln "+name, fmt.Sprintln(v, v), secret)
	}
	// The Key's own forms name the version.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if out := fmt.Sprintf(verb, k); !strings.Contains(out, "4242") || !strings.Contains(out, "REDACTED") {
			t.Errorf("Sprintf(%q, key) = %q, want the version and REDACTED", verb, out)
		}
	}
}

func TestKeyRedactedBySlog(t *testing.T) {
	secret := testSecret(0x3c)
	k := mustKey(t, 77, secret)
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"JSON": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true})
		},
		"text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug, AddSource: true})
		},
	}
	for hname, newHandler := range handlers {
		for name, v := range redactionSubjects(t, k) {
			var buf bytes.Buffer
			log := slog.New(newHandler(&buf))
			log.Debug("key", "value", v)
			log.Info("key", slog.Any("value", v))
			log.With("bound", v).WithGroup("g").Warn("key", slog.Group("inner", slog.Any("value", v)))
			log.LogAttrs(t.Context(), slog.LevelError, "key", slog.Any("value", v))
			assertNoSecret(t, hname+" handler, "+name, buf.String(), secret)
		}
		var buf bytes.Buffer
		slog.New(newHandler(&buf)).Info("key", "key", k)
		if out := buf.String(); !strings.Contains(out, "77") || !strings.Contains(out, "REDACTED") {
			t.Errorf("%s handler logged %q, want the version and REDACTED", hname, out)
		}
	}
}

func TestKeyRedactedByJSON(t *testing.T) {
	secret := testSecret(0x77)
	k := mustKey(t, 5, secret)
	for name, v := range redactionSubjects(t, k) {
		out, err := json.Marshal(v)
		if err != nil {
			continue // types encoding/json cannot encode print nothing
		}
		assertNoSecret(t, "json.Marshal "+name, string(out), secret)
	}
}

// reflectDump writes every byte reachable from v by reflection, following
// pointers, interfaces, struct fields (exported or not), arrays, slices and
// maps, as deep dumpers such as go-spew (used by testify's diffs) do. Funcs
// are opaque to it, as they are to those dumpers.
func reflectDump(v reflect.Value, seen map[uintptr]bool, out *bytes.Buffer, depth int) {
	if !v.IsValid() || depth > 32 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		reflectDump(v.Elem(), seen, out, depth+1)
	case reflect.Interface:
		reflectDump(v.Elem(), seen, out, depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			reflectDump(v.Field(i), seen, out, depth+1)
		}
	case reflect.Array, reflect.Slice:
		for i := range v.Len() {
			if e := v.Index(i); e.Kind() == reflect.Uint8 {
				out.WriteByte(byte(e.Uint()))
			} else {
				reflectDump(e, seen, out, depth+1)
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			reflectDump(it.Key(), seen, out, depth+1)
			reflectDump(it.Value(), seen, out, depth+1)
		}
	case reflect.String:
		out.WriteString(v.String())
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		fmt.Fprint(out, v.Uint(), " ")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fmt.Fprint(out, v.Int(), " ")
	}
}

func TestKeyRedactedByReflection(t *testing.T) {
	secret := testSecret(0x1f)
	k := mustKey(t, 9, secret)
	for name, v := range redactionSubjects(t, k) {
		var out bytes.Buffer
		reflectDump(reflect.ValueOf(v), make(map[uintptr]bool), &out, 0)
		assertNoSecret(t, "reflection dump of "+name, out.String(), secret)
	}
}

// TestStaticConcurrent is meant for -race: a Static is read from many
// goroutines at once.
func TestStaticConcurrent(t *testing.T) {
	var keys []Key
	for v := uint32(1); v <= 8; v++ {
		keys = append(keys, mustKey(t, v, testSecret(byte(v))))
	}
	s, err := NewStatic(8, keys...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 200 {
				v := uint32((g+i)%9 + 1) // 1 … 9; 9 is unknown
				k, err := s.Key(v)
				switch {
				case v == 9 && !errors.Is(err, ErrUnknownVersion):
					errs <- fmt.Errorf("Key(9) = %v", err)
					return
				case v != 9 && (err != nil || !bytes.Equal(k.Bytes(), testSecret(byte(v)))):
					errs <- fmt.Errorf("Key(%d) = %v, %v", v, k, err)
					return
				}
				if a, err := s.Active(); err != nil || a.Version() != 8 {
					errs <- fmt.Errorf("Active() = %v, %v", a, err)
					return
				}
				if len(s.Versions()) != 8 {
					errs <- errors.New("Versions changed")
					return
				}
				_ = k.String()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestZeroStaticAndZeroKeys(t *testing.T) {
	var nilStatic *Static
	if _, err := nilStatic.Active(); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("nil Static Active: %v", err)
	}
	if _, err := nilStatic.Key(1); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("nil Static Key: %v", err)
	}
	var zero Static
	if _, err := zero.Active(); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero Static Active: %v", err)
	}
	if _, err := zero.Key(1); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("zero Static Key: %v", err)
	}
	k, _ := GenerateKey(3)
	if got := EncodeKeys(Key{}, k, Key{}); strings.Count(got, ":") != 1 || !strings.HasPrefix(got, "3:") {
		t.Errorf("EncodeKeys with zero Keys: %d pairs", strings.Count(got, ":"))
	}
	// Line breaks, doubled padding and non-canonical trailing bits are refused.
	enc := EncodeKeys(k)[2:]
	for _, bad := range []string{enc[:10] + "\n" + enc[10:], enc + "=", enc[:42] + "B="} {
		if _, err := ParseKeys("3:" + bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ParseKeys accepted a non-canonical key: %v", err)
		}
	}
}

func TestKeyEqual(t *testing.T) {
	s1, s2 := testSecret(1), testSecret(2)
	k1 := mustKey(t, 1, s1)
	tests := []struct {
		name string
		a, b Key
		want bool
	}{
		{"same value", k1, k1, true},
		{"made twice from equal bytes", k1, mustKey(t, 1, bytes.Clone(s1)), true},
		{"other material", k1, mustKey(t, 1, s2), false},
		{"material differing in the last byte", k1, mustKey(t, 1, append(bytes.Clone(s1[:KeySize-1]), s1[KeySize-1]^1)), false},
		{"other version, same material", k1, mustKey(t, 2, s1), false},
		{"zero and zero", Key{}, Key{}, true},
		{"valid and zero", k1, Key{}, false},
		{"zero and valid", Key{}, k1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("a.Equal(b) = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(tt.a); got != tt.want {
				t.Errorf("b.Equal(a) = %v, want %v (Equal must be symmetric)", got, tt.want)
			}
		})
	}

	// Keys from a keyring compare Equal to the keys they were built from.
	ks, err := NewStatic(1, mustKey(t, 1, s1), mustKey(t, 2, s2))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ks.Key(2); !got.Equal(mustKey(t, 2, s2)) {
		t.Error("Static.Key(2) is not Equal to a key made from the same version and bytes")
	}
}

// Equal reads the material in place: it neither copies nor changes it.
func TestKeyEqualAllocatesNothing(t *testing.T) {
	a, b := mustKey(t, 1, testSecret(1)), mustKey(t, 1, testSecret(1))
	if n := testing.AllocsPerRun(100, func() { _ = a.Equal(b) }); n != 0 {
		t.Errorf("Equal allocates %v times, want 0", n)
	}
	if !bytes.Equal(a.Bytes(), testSecret(1)) || !bytes.Equal(b.Bytes(), testSecret(1)) {
		t.Error("Equal changed the key material")
	}
}

// The keyring interface is satisfied by the keyring types of this package.
func TestStaticIsKeyring(t *testing.T) {
	ks, err := NewStatic(2, mustKey(t, 1, testSecret(1)), mustKey(t, 2, testSecret(2)))
	if err != nil {
		t.Fatal(err)
	}
	var kr Keyring = ks
	if vs := kr.Versions(); !slices.Equal(vs, []uint32{1, 2}) {
		t.Errorf("Versions = %v, want [1 2]", vs)
	}
	for _, v := range kr.Versions() {
		if _, err := kr.Key(v); err != nil {
			t.Errorf("Key(%d) of a listed version: %v", v, err)
		}
	}
}
