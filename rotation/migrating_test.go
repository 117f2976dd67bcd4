package rotation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// redacted is what the column types print and marshal in place of a value.
const redacted = "[REDACTED]"

const migratingSecret = "canary-4f1c@example.com"

// TestMigratingReflectionPrinting checks that fmt, walking a struct whose
// unexported field it cannot call methods on, prints an address and never
// the plaintext.
func TestMigratingReflectionPrinting(t *testing.T) {
	codec := testCodec(t, 1)
	encryptedtype.SetDefault(codec.Provider())
	defer encryptedtype.SetDefault(nil)

	scanned := func() MigratingString {
		var s MigratingString
		if err := s.Scan(migratingSecret); err != nil {
			t.Fatal(err)
		}
		return s
	}
	v, err := NewMigratingString(migratingSecret).Value()
	if err != nil {
		t.Fatal(err)
	}
	var fromCiphertext MigratingString
	if err := fromCiphertext.Scan(v); err != nil || fromCiphertext.Plaintext() != migratingSecret {
		t.Fatalf("Scan ciphertext: %v", err)
	}
	var b MigratingBytes
	if err := b.Scan([]byte(migratingSecret)); err != nil {
		t.Fatal(err)
	}
	ps := NewMigratingString(migratingSecret)
	values := map[string]any{
		"NewMigratingString":  struct{ m MigratingString }{NewMigratingString(migratingSecret)},
		"Scan plaintext":      struct{ m MigratingString }{scanned()},
		"Scan ciphertext":     struct{ m MigratingString }{fromCiphertext},
		"NewMigratingBytes":   struct{ m MigratingBytes }{NewMigratingBytes([]byte(migratingSecret))},
		"Bytes Scan":          struct{ m MigratingBytes }{b},
		"pointer field":       struct{ m *MigratingString }{&ps},
		"nested in a slice":   struct{ m []MigratingString }{[]MigratingString{ps}},
		"exported, in struct": struct{ M MigratingString }{ps},
	}
	for name, x := range values {
		for _, f := range []string{"%s", "%v", "%+v", "%#v", "%q", "%x"} {
			if got := fmt.Sprintf(f, x); strings.Contains(got, migratingSecret) || strings.Contains(got, fmt.Sprintf("%x", migratingSecret)) {
				t.Errorf("%s: Sprintf(%s) = %s: shows the plaintext", name, f, got)
			}
		}
	}
}

// TestMigratingSlog checks that both slog handlers print [REDACTED] without
// a LogValue method, and that a nil *MigratingString neither panics nor
// makes slog print a stack trace.
func TestMigratingSlog(t *testing.T) {
	var nilS *MigratingString
	var nilB *MigratingBytes
	for _, mk := range []func(*bytes.Buffer) slog.Handler{
		func(w *bytes.Buffer) slog.Handler { return slog.NewTextHandler(w, nil) },
		func(w *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	} {
		var buf bytes.Buffer
		l := slog.New(mk(&buf))
		s := NewMigratingString(migratingSecret)
		bb := NewMigratingBytes([]byte(migratingSecret))
		l.Info("values", "s", s, "ps", &s, "b", bb, "pb", &bb)
		out := buf.String()
		if strings.Count(out, redacted) != 4 || strings.Contains(out, migratingSecret) {
			t.Errorf("values: %s", out)
		}
		buf.Reset()
		l.Info("nil", "s", nilS, "b", nilB)
		out = buf.String()
		if strings.Contains(out, "PANIC") || strings.Contains(out, "goroutine") || strings.Contains(out, ".go:") {
			t.Errorf("nil pointers: %s", out)
		}
	}
}

func TestMigratingUnmarshalJSON(t *testing.T) {
	var s MigratingString
	if err := json.Unmarshal([]byte(`"`+migratingSecret+`"`), &s); err != nil || s.Plaintext() != migratingSecret || s.WasEncrypted() {
		t.Fatalf("string: %q %v", s.Plaintext(), err)
	}
	if err := json.Unmarshal([]byte(`null`), &s); err != nil || s.Plaintext() != migratingSecret {
		t.Errorf("null changed the value: %q %v", s.Plaintext(), err)
	}
	for _, in := range []string{`"[REDACTED]"`, ` "[REDACTED]" `, `"\u005bREDACTED]"`} {
		err := json.Unmarshal([]byte(in), &s)
		if !errors.Is(err, encryptedtype.ErrRedacted) || s.Plaintext() != migratingSecret {
			t.Errorf("%s: %v (value %q)", in, err, s.Plaintext())
		}
	}
	// A model round trip: the marker sent back is refused.
	type model struct{ Email MigratingString }
	out, err := json.Marshal(model{NewMigratingString(migratingSecret)})
	if err != nil || strings.Contains(string(out), migratingSecret) {
		t.Fatalf("Marshal: %s %v", out, err)
	}
	var m model
	if err := json.Unmarshal(out, &m); !errors.Is(err, encryptedtype.ErrRedacted) {
		t.Errorf("round trip of the marker: %v", err)
	}

	// Errors never quote the input. (json.Unmarshal checks the syntax of
	// the whole document before calling UnmarshalJSON, and its own syntax
	// errors quote a character: that is outside the type's reach, so
	// syntax errors are checked on UnmarshalJSON directly.)
	typeErrs := []string{
		`12345678901234567890`,           // Value would be "number 1234…"
		`{"` + migratingSecret + `": 1}`, // object
		`["` + migratingSecret + `"]`,    // array
		`true`,
	}
	syntaxErrs := []string{
		`"` + migratingSecret + `\x"`,
		`"` + migratingSecret,
		`tru` + migratingSecret,
		`"` + migratingSecret + `"` + "q",
		``,
	}
	leaks := func(err error) bool {
		m := err.Error()
		return strings.Contains(m, migratingSecret) || strings.Contains(m, "1234") || strings.Contains(m, "'")
	}
	for _, in := range typeErrs {
		var s MigratingString
		if err := json.Unmarshal([]byte(in), &s); err == nil || leaks(err) {
			t.Errorf("json.Unmarshal(%s): %v", in, err)
		}
	}
	for _, in := range append(typeErrs, syntaxErrs...) {
		var s MigratingString
		if err := s.UnmarshalJSON([]byte(in)); err == nil || leaks(err) {
			t.Errorf("UnmarshalJSON(%s): %v", in, err)
		}
		var b MigratingBytes
		if err := b.UnmarshalJSON([]byte(in)); err == nil || leaks(err) {
			t.Errorf("bytes UnmarshalJSON(%s): %v", in, err)
		}
	}
	var te MigratingString
	if err := te.UnmarshalJSON([]byte(`42`)); err == nil || !strings.Contains(err.Error(), "MigratingString") || !strings.Contains(err.Error(), "Go type string") {
		t.Errorf("type error does not name the Go type: %v", err)
	}
	if err := te.UnmarshalJSON([]byte(`"abc`)); err == nil || !strings.Contains(err.Error(), "offset") {
		t.Errorf("syntax error does not give the offset: %v", err)
	}

	// Bytes: base64, like []byte.
	var b MigratingBytes
	if err := json.Unmarshal([]byte(`"AP94"`), &b); err != nil || !bytes.Equal(b.Plaintext(), []byte{0, 0xff, 'x'}) || b.WasEncrypted() {
		t.Fatalf("bytes: %x %v", b.Plaintext(), err)
	}
	if err := json.Unmarshal([]byte(`null`), &b); err != nil || !bytes.Equal(b.Plaintext(), []byte{0, 0xff, 'x'}) {
		t.Errorf("bytes null changed the value: %v", err)
	}
	if err := json.Unmarshal([]byte(`"[REDACTED]"`), &b); !errors.Is(err, encryptedtype.ErrRedacted) {
		t.Errorf("bytes marker: %v", err)
	}
	var empty MigratingBytes
	if err := json.Unmarshal([]byte(`""`), &empty); err != nil || empty.Plaintext() == nil || len(empty.Plaintext()) != 0 {
		t.Errorf("empty bytes: %#v %v", empty.Plaintext(), err)
	}
	for _, in := range []string{`"` + migratingSecret + `"`, `"!!!!"`, `12345678901234567890`, `"` + migratingSecret} {
		var b MigratingBytes
		err := json.Unmarshal([]byte(in), &b)
		if err == nil || strings.Contains(err.Error(), migratingSecret) || strings.Contains(err.Error(), "1234") || strings.Contains(err.Error(), "!") {
			t.Errorf("bytes %s: %v", in, err)
		}
	}
}

// TestMigratingBytesEmpty checks that Plaintext is nil only for the zero
// MigratingBytes, whatever the source of an empty value.
func TestMigratingBytesEmpty(t *testing.T) {
	codec := testCodec(t, 1)
	encryptedtype.SetDefault(codec.Provider())
	defer encryptedtype.SetDefault(nil)

	if (MigratingBytes{}).Plaintext() != nil {
		t.Error("zero value: not nil")
	}
	var scanned, scannedEnc MigratingBytes
	if err := scanned.Scan([]byte{}); err != nil {
		t.Fatal(err)
	}
	v, err := NewMigratingBytes(nil).Value()
	if err != nil {
		t.Fatal(err)
	}
	if err := scannedEnc.Scan(v); err != nil || !scannedEnc.WasEncrypted() {
		t.Fatal(err)
	}
	for name, b := range map[string]MigratingBytes{
		"NewMigratingBytes(nil)": NewMigratingBytes(nil),
		"NewMigratingBytes({})":  NewMigratingBytes([]byte{}),
		"Scan plaintext":         scanned,
		"Scan ciphertext":        scannedEnc,
	} {
		if p := b.Plaintext(); p == nil || len(p) != 0 {
			t.Errorf("%s: %#v", name, p)
		}
	}
	// Plaintext is a copy: changing it does not change the value.
	b := NewMigratingBytes([]byte("abc"))
	b.Plaintext()[0] = 'x'
	if string(b.Plaintext()) != "abc" {
		t.Error("Plaintext is not a copy")
	}
	if (MigratingString{}).Plaintext() != "" || NewMigratingString("").Plaintext() != "" {
		t.Error("empty MigratingString")
	}
}
