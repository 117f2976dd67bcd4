package encryptedtype

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
)

const secret = "sk_live_abc123def456"

func TestStringValueScan(t *testing.T) {
	withDefault(t, newStatic(t, 3, newKey(t, 3)))
	for _, pt := range []string{secret, "", "Grüße 🔐"} {
		v, err := NewString(pt).Value()
		if err != nil {
			t.Fatal(err)
		}
		s, ok := v.(string)
		if !ok {
			t.Fatalf("Value returned %T, want string", v)
		}
		if !wireFormat.MatchString(s) || !strings.HasPrefix(s, "v3:") {
			t.Fatalf("Value not in wire format under v3: %.20q", s)
		}
		if pt != "" && strings.Contains(s, pt) {
			t.Fatal("Value contains the plaintext")
		}
		// Drivers hand over string (pgx, text) or []byte (lib/pq, MySQL, bytea).
		for _, src := range []any{s, []byte(s)} {
			var got String
			if err := got.Scan(src); err != nil {
				t.Fatalf("Scan(%T): %v", src, err)
			}
			if got.Plaintext() != pt {
				t.Fatalf("Scan(%T) = %d bytes, want %d", src, len(got.Plaintext()), len(pt))
			}
		}
	}
}

func TestBytesValueScan(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	for _, pt := range [][]byte{{0, 1, 2, 0xff}, {}, nil} {
		v, err := NewBytes(pt).Value()
		if err != nil {
			t.Fatal(err)
		}
		src := []byte(v.(string))
		var got Bytes
		if err := got.Scan(src); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Plaintext(), pt) || got.Plaintext() == nil {
			t.Fatalf("got %v (nil=%v), want %v as a non-nil slice", got.Plaintext(), got.Plaintext() == nil, pt)
		}
		// Scan must not keep the driver's buffer: database/sql may reuse it.
		clear(src)
		if !bytes.Equal(got.Plaintext(), pt) {
			t.Fatal("Scan kept a reference to the driver's buffer")
		}
	}
}

type profile struct {
	Name string   `json:"name"`
	Tags []string `json:"tags,omitempty"`
	Age  int      `json:"age"`
}

func TestJSONValueScan(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	in := NewJSON(profile{Name: "Alice", Tags: []string{"a", "b"}, Age: 42})
	v, err := in.Value()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v.(string), "Alice") {
		t.Fatal("Value contains the plaintext")
	}
	// Scan starts from a new T: a field absent from the stored JSON does not survive.
	out := NewJSON(profile{Tags: []string{"stale"}})
	if err := out.Scan(v); err != nil {
		t.Fatal(err)
	}
	if got := out.Plaintext(); got.Name != "Alice" || got.Age != 42 || len(got.Tags) != 2 {
		t.Fatalf("got %+v", got)
	}
	empty := NewJSON(profile{Name: "x"})
	v, _ = JSON[profile]{}.Value()
	if err := empty.Scan(v); err != nil || empty.Plaintext().Name != "" {
		t.Fatalf("Scan of a zero value: %v", err)
	}

	// A map works as T too.
	v, _ = NewJSON(map[string]int{"a": 1}).Value()
	var m2 JSON[map[string]int]
	if err := m2.Scan(v); err != nil || m2.Plaintext()["a"] != 1 {
		t.Fatalf("map: %v", err)
	}
}

func TestJSONErrorsCarryNoPlaintext(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	// An encrypted value that is not JSON.
	s, _ := NewString("not json " + secret).Value()
	var j JSON[profile]
	err := j.Scan(s)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("got %v", err)
	}
	// A value that cannot be marshalled.
	_, err = NewJSON(func() {}).Value()
	if err == nil {
		t.Fatal("marshalling a func succeeded")
	}
}

func TestScanNullAndBadTypes(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	var s String
	var b Bytes
	var j JSON[int]
	for _, sc := range []interface{ Scan(any) error }{&s, &b, &j} {
		if err := sc.Scan(nil); !errors.Is(err, ErrNull) {
			t.Errorf("%T.Scan(nil) = %v, want ErrNull", sc, err)
		}
		if err := sc.Scan(int64(7)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%T.Scan(int64) = %v, want ErrMalformed", sc, err)
		}
		if err := sc.Scan("plaintext " + secret); !errors.Is(err, ErrNotEncrypted) || strings.Contains(err.Error(), secret) {
			t.Errorf("%T.Scan(plaintext) = %v, want ErrNotEncrypted without the value", sc, err)
		}
	}
}

// NULL is not "": the empty string is encrypted like any value and reads
// back as "". (Nil pointers as NULL are checked against real drivers in
// integration/.)
func TestEmptyIsNotNull(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	v, err := NewString("").Value()
	if err != nil || v == nil || !wireFormat.MatchString(v.(string)) {
		t.Fatalf(`"": got %v, %v, want an encrypted value`, v, err)
	}
	back := NewString("stale")
	if err := back.Scan(v); err != nil || back.Plaintext() != "" {
		t.Fatalf("got %q, %v", back.Plaintext(), err)
	}
}

func TestRedaction(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	type user struct {
		Email   String
		Phone   *String
		Token   Bytes
		Profile JSON[profile]
	}
	// fmt cannot call methods on unexported fields: it prints what they hold.
	type hidden struct {
		email   String
		token   Bytes
		profile JSON[profile]
	}
	phone := NewString("+1 555 0100")
	u := user{Email: NewString(secret), Phone: &phone, Token: NewBytes([]byte(secret)), Profile: NewJSON(profile{Name: secret})}
	h := hidden{u.Email, u.Token, u.Profile}
	leaks := func(out string) bool {
		return strings.Contains(out, secret) || strings.Contains(out, "+1 555 0100") ||
			strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", secret)[:12]) ||
			strings.Contains(out, fmt.Sprint([]byte(secret))[1:20])
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		for _, arg := range []any{u, &u, u.Email, &u.Email, u.Token, u.Profile, *u.Phone} {
			out := fmt.Sprintf(verb, arg)
			if leaks(out) {
				t.Fatalf("fmt %s of %T printed the plaintext: %s", verb, arg, out)
			}
			if !strings.Contains(out, redacted) {
				t.Fatalf("fmt %s of %T: %s lacks %s", verb, arg, out, redacted)
			}
		}
		for _, arg := range []any{h, &h} {
			if out := fmt.Sprintf(verb, arg); leaks(out) {
				t.Fatalf("fmt %s of unexported fields printed the plaintext: %s", verb, out)
			}
		}
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		// As attributes, and as a whole model (which the JSON handler
		// encodes with encoding/json).
		slog.New(h(&buf)).Info("saved", "email", u.Email, "token", u.Token, "profile", u.Profile, "phone", u.Phone, "user", u, "ptr", &u)
		if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), "555") || !strings.Contains(buf.String(), redacted) {
			t.Fatalf("slog: %s", buf.String())
		}
	}
	if u.Email.Plaintext() != secret || string(u.Token.Plaintext()) != secret {
		t.Fatal("Plaintext does not return the value")
	}
}

// encoding/json writes the redaction marker and reads plaintext, refusing
// the marker so that a redacted document sent back cannot overwrite data.
func TestJSONRedactsAndRefusesMarker(t *testing.T) {
	type user struct {
		Email   String        `json:"email"`
		Phone   *String       `json:"phone"`
		Token   Bytes         `json:"token"`
		Profile JSON[profile] `json:"profile"`
	}
	in := user{Email: NewString("a@x.com"), Token: NewBytes([]byte{1, 2}), Profile: NewJSON(profile{Name: "A", Age: 1})}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"email":"[REDACTED]","phone":null,"token":"[REDACTED]","profile":"[REDACTED]"}`
	if string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	var back user
	if err := json.Unmarshal(b, &back); !errors.Is(err, ErrRedacted) {
		t.Fatalf("decoding the redacted document: got %v, want ErrRedacted", err)
	}

	// Plaintext in (a request body) decodes.
	var out user
	err = json.Unmarshal([]byte(`{"email":"b@y.org","phone":"+1 555","token":"AQI=","profile":{"name":"B","age":2}}`), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.Email.Plaintext() != "b@y.org" || out.Phone.Plaintext() != "+1 555" || !bytes.Equal(out.Token.Plaintext(), []byte{1, 2}) || out.Profile.Plaintext().Name != "B" {
		t.Fatalf("decoded %q %q %v %+v", out.Email.Plaintext(), out.Phone.Plaintext(), out.Token.Plaintext(), out.Profile.Plaintext())
	}
	// null leaves a value unchanged; a syntax error does not quote input.
	if err := json.Unmarshal([]byte(`{"email":null}`), &out); err != nil || out.Email.Plaintext() != "b@y.org" {
		t.Fatalf("null: %v, %q", err, out.Email.Plaintext())
	}
	var j JSON[profile]
	if err := j.UnmarshalJSON([]byte(`{"name":Zsecret}`)); err == nil || strings.Contains(err.Error(), "Z") {
		t.Fatalf("syntax error: %v", err)
	}
}

// The marker is refused however it is escaped.
func TestJSONRefusesEscapedMarker(t *testing.T) {
	for _, doc := range []string{`"\u005bREDACTED]"`, `"[REDACTED\u005d"`, ` "\u005B\u0052EDACTED]" `} {
		var s String
		if err := json.Unmarshal([]byte(doc), &s); !errors.Is(err, ErrRedacted) {
			t.Errorf("String from %s: got %v, want ErrRedacted", doc, err)
		}
		var j JSON[string]
		if err := json.Unmarshal([]byte(doc), &j); !errors.Is(err, ErrRedacted) {
			t.Errorf("JSON[string] from %s: got %v, want ErrRedacted", doc, err)
		}
	}
}

// asText encodes itself as text: encoding/json never reaches Inner.
type asText struct{ Inner String }

func (asText) MarshalText() ([]byte, error) { return []byte("as text"), nil }

// A colcrypt type inside a JSON column would be stored as the marker:
// Value refuses it instead of losing the data.
func TestJSONRefusesNestedColumnTypes(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	type contact struct {
		Name  string
		Email String
	}
	type nested struct {
		Contacts []*contact
	}
	type ignored struct {
		Name   string
		Secret String `json:"-"`
		hidden String
	}
	refused := []driver.Valuer{
		NewJSON(contact{Name: "Ada", Email: NewString("ada@x.com")}),
		NewJSON(nested{Contacts: []*contact{{Name: "Ada"}}}),
		NewJSON(map[string]Bytes{"k": NewBytes([]byte{1})}),
		NewJSON(NewString("x")),
		NewJSON([]JSON[int]{NewJSON(1)}),
		NewJSON(struct{ Email *String }{}),
		NewJSON([]*String{nil}),
		NewJSON(map[string]*Bytes{}),
		NewJSON(NewJSON(1)),
		NewJSON(func() *String { s := NewString("x"); return &s }()),
	}
	for _, v := range refused {
		_, err := v.Value()
		if err == nil || !strings.Contains(err.Error(), "[REDACTED]") || strings.Contains(err.Error(), "ada@x.com") {
			t.Errorf("%T: got %v, want a refusal naming the marker", v, err)
		}
	}
	for _, v := range []driver.Valuer{NewJSON(ignored{Name: "x", hidden: NewString("y")}), NewJSON(profile{Name: "A"}), NewJSON(map[string]any{"a": 1}), NewJSON(asText{Inner: NewString("y")}), NewJSON(&asText{})} {
		if _, err := v.Value(); err != nil {
			t.Errorf("%T: %v", v, err)
		}
	}

	// A document that holds the marker (written before this check, or by
	// other code) fails to read with ErrRedacted.
	c := Default()
	enc, err := c.Seal(context.Background(), []byte(`{"Name":"Ada","Email":"[REDACTED]"}`))
	if err != nil {
		t.Fatal(err)
	}
	var back JSON[contact]
	if err := back.Scan(string(enc)); !errors.Is(err, ErrRedacted) {
		t.Fatalf("Scan: got %v, want ErrRedacted", err)
	}
}

func TestGormDataType(t *testing.T) {
	for _, v := range []interface{ GormDataType() string }{String{}, Bytes{}, JSON[int]{}} {
		if v.GormDataType() != "text" {
			t.Errorf("%T: %q", v, v.GormDataType())
		}
	}
}

func TestPackageSealOpen(t *testing.T) {
	withDefault(t, newStatic(t, 5, newKey(t, 5)))
	v, err := Seal(context.Background(), []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	var s String
	if err := s.Scan(v); err != nil || s.Plaintext() != secret {
		t.Fatalf("Scan of a Seal result: %v", err)
	}
	pt, err := Open(context.Background(), v)
	if err != nil || string(pt) != secret {
		t.Fatalf("Open: %v", err)
	}
}

// encoding/json errors can quote the data; the column types must not pass
// them on.
func TestJSONErrorsNeverQuoteData(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	const card = "4111111111111111"
	type small struct {
		N int8 `json:"n"`
	}
	type tagged struct {
		N int `json:"n,string"`
	}
	type num struct {
		N json.Number `json:"n"`
	}
	var s JSON[small]
	var tg JSON[tagged]
	errs := []error{
		s.UnmarshalJSON([]byte(`{"n":` + card + `}`)),
		tg.UnmarshalJSON([]byte(`{"n":"secret-pin-` + card + `"}`)),
	}
	_, err := NewJSON(num{N: json.Number("card " + card)}).Value()
	errs = append(errs, err)
	_, err = NewJSON(map[string]float64{"x": math.Inf(1)}).Value()
	errs = append(errs, err)
	// The same through Scan: encrypted JSON that does not fit the type.
	v, _ := NewJSON(map[string]any{"n": json.Number(card)}).Value()
	errs = append(errs, s.Scan(v))
	for i, err := range errs {
		if err == nil {
			t.Fatalf("case %d: no error", i)
		}
		if strings.Contains(err.Error(), card) || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "Inf") {
			t.Errorf("case %d: error quotes the data: %v", i, err)
		}
	}
}

// A Codec without a provider fails with ErrNoProvider instead of panicking.
func TestCodecWithoutProvider(t *testing.T) {
	var nilCodec *Codec
	for _, c := range []*Codec{nilCodec, {}, NewCodec(nil)} {
		if _, err := c.Seal(context.Background(), []byte("x")); !errors.Is(err, ErrNoProvider) {
			t.Errorf("Seal: %v", err)
		}
		if _, err := c.Open(context.Background(), []byte("v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")); !errors.Is(err, ErrNoProvider) {
			t.Errorf("Open: %v", err)
		}
		if c.Provider() != nil {
			t.Error("Provider of an empty Codec")
		}
	}
}

// reachableStrings walks v as go-spew and other dumpers do, following
// every pointer, slice, map and interface (but not unsafe.Pointer, which
// they print as an address), and returns every string and byte slice found.
func reachableStrings(v reflect.Value, depth int, out *[]string) {
	if depth > 20 || !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.String:
		*out = append(*out, v.String())
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			reachableStrings(v.Elem(), depth+1, out)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			reachableStrings(v.Field(i), depth+1, out)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			for i := range b {
				b[i] = byte(v.Index(i).Uint())
			}
			*out = append(*out, string(b))
			return
		}
		for i := range v.Len() {
			reachableStrings(v.Index(i), depth+1, out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			reachableStrings(k, depth+1, out)
			reachableStrings(v.MapIndex(k), depth+1, out)
		}
	}
}

func TestPlaintextNotReachableByReflection(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	stored, _ := NewString(secret).Value()
	var scanned String
	if err := scanned.Scan(stored); err != nil {
		t.Fatal(err)
	}
	values := []any{
		NewString(secret), scanned, NewBytes([]byte(secret)),
		NewJSON(profile{Name: secret}), NewJSON(map[string]string{"k": secret}),
	}
	for _, v := range values {
		var found []string
		reachableStrings(reflect.ValueOf(v), 0, &found)
		for _, s := range found {
			if strings.Contains(s, secret) {
				t.Errorf("%T: plaintext reachable by reflection", v)
			}
		}
	}
}

// slog with a nil nullable column prints nil, not a recovered panic.
func TestSlogNilPointer(t *testing.T) {
	var phone *String
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		slog.New(h(&buf)).Info("saved", "phone", phone, "email", NewString(secret))
		if strings.Contains(buf.String(), "panic") || strings.Contains(buf.String(), secret) || !strings.Contains(buf.String(), redacted) {
			t.Errorf("slog: %s", buf.String())
		}
	}
}
