package encryptedtype

import (
	"bytes"
	"database/sql/driver"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unsafe"
)

// ErrNull is returned when SQL NULL is scanned into a String, Bytes or JSON
// value. Nullable columns use a pointer (*String, *Bytes, *JSON[T]), which
// reads NULL as nil and writes nil as NULL.
var ErrNull = errors.New("colcrypt: cannot scan NULL into a non-pointer column type (use a pointer, such as *encryptedtype.String, for a nullable column)")

// redacted is what fmt and slog show instead of a column value's plaintext.
const redacted = "[REDACTED]"

// String is a string column stored encrypted. Value encrypts it with the
// default provider (see SetDefault); Scan decrypts it. The database holds
// only the wire format, in a TEXT, VARCHAR or BYTEA column.
//
// The zero String is the empty string, which is encrypted like any other
// value. SQL NULL is not the empty string: for a nullable column use
// *String, which scans NULL as nil and writes nil as NULL.
//
// fmt, slog and encoding/json show a String as [REDACTED]; call Plaintext
// to get the value (see "Printing" in the package documentation). Even
// fmt's printing of an unexported field, which cannot call methods, shows
// only an address and a length. Compare Strings by their Plaintext, not
// with ==.
type String struct{ v hidden }

// NewString returns a String holding s.
func NewString(s string) String { return String{hide(s)} }

// Plaintext returns the decrypted string.
func (s String) Plaintext() string { return s.v.get() }

// Value implements driver.Valuer: it returns s encrypted under the default
// provider's active key, in the wire format.
func (s String) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.sealString(s.Plaintext())
}

// Scan implements sql.Scanner: it decrypts a wire-format value given as a
// string or []byte. NULL is an error wrapping ErrNull; scan into a *String
// for a nullable column.
func (s *String) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	s.v = hide(ownedString(pt))
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes "[REDACTED]": see "Printing" in the package
// documentation.
func (String) MarshalJSON() ([]byte, error) { return redactedJSON(), nil }

// UnmarshalJSON decodes a JSON string into s, so that a request body can
// set the value. JSON null leaves s unchanged. It refuses the string
// "[REDACTED]", which is what MarshalJSON writes, so that a redacted
// response sent back cannot overwrite the real value.
func (s *String) UnmarshalJSON(b []byte) error {
	var v *string
	if err := unmarshalJSON(b, &v); err != nil || v == nil {
		return err
	}
	s.v = hide(*v)
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column. It lets
// GORM pick the type without this package importing GORM.
func (String) GormDataType() string { return "text" }

// Bytes is a binary column stored encrypted, like String.
//
// A nil Bytes is encrypted as an empty value and reads back as an empty,
// non-nil Bytes; for a nullable column use *Bytes.
//
// fmt, slog and encoding/json show a Bytes as [REDACTED]; call Plaintext
// to get the value. A Bytes is immutable: NewBytes and Plaintext copy.
type Bytes struct{ v hidden }

// NewBytes returns a Bytes holding a copy of b.
func NewBytes(b []byte) Bytes { return Bytes{hideSet(string(b))} }

// Plaintext returns a copy of the decrypted bytes; it is nil only for the
// zero Bytes.
func (b Bytes) Plaintext() []byte {
	if b.v.p == nil {
		return nil
	}
	return []byte(b.v.get())
}

// Value implements driver.Valuer: it returns b encrypted under the default
// provider's active key, in the wire format.
func (b Bytes) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	return c.sealString(b.v.get())
}

// Scan implements sql.Scanner, like String.Scan.
func (b *Bytes) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	b.v = hideSet(ownedString(pt))
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes "[REDACTED]".
func (Bytes) MarshalJSON() ([]byte, error) { return redactedJSON(), nil }

// UnmarshalJSON decodes a base64 JSON string into b, like []byte. JSON null
// leaves b unchanged; the string "[REDACTED]" is refused.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var v *[]byte
	if err := unmarshalJSON(data, &v); err != nil || v == nil {
		return err
	}
	*b = NewBytes(*v)
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column.
func (Bytes) GormDataType() string { return "text" }

// JSON is a column holding a T as JSON, stored encrypted. Value marshals
// the T with encoding/json and encrypts the result; Scan decrypts and
// unmarshals. For a nullable column use *JSON[T].
//
// T holds plain Go values: the column types of this module encode as
// "[REDACTED]" (see MarshalJSON), so Value refuses a T with a String, Bytes
// or JSON field rather than store the marker in place of the data.
//
// fmt, slog and encoding/json show a JSON as [REDACTED]; call Plaintext to
// get the T.
type JSON[T any] struct {
	// An unsafe.Pointer to a T: reflection-based printers (fmt on an
	// unexported field, go-spew) show it as an address and never follow it.
	p unsafe.Pointer
}

// NewJSON returns a JSON holding v.
func NewJSON[T any](v T) JSON[T] { return JSON[T]{unsafe.Pointer(&v)} }

// Plaintext returns the decrypted T (the zero T for the zero JSON). To
// change a field, change a copy and store it back with NewJSON.
func (j JSON[T]) Plaintext() T {
	if j.p == nil {
		var zero T
		return zero
	}
	return *(*T)(j.p)
}

// Value implements driver.Valuer.
func (j JSON[T]) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	if t := redactingIn(reflect.TypeFor[T]()); t != nil {
		var zero T
		if t == reflect.TypeFor[T]() {
			return nil, fmt.Errorf("colcrypt: encoding JSON column: %v encodes as \"[REDACTED]\"; use plain fields inside a JSON column", t)
		}
		return nil, fmt.Errorf("colcrypt: encoding JSON column: %T holds a value of type %v, which encodes as \"[REDACTED]\"; use plain fields inside a JSON column", zero, t)
	}
	pt, err := json.Marshal(j.Plaintext())
	if err != nil {
		// encoding/json errors can quote the data (an invalid number
		// literal, an unsupported float): name the type only.
		var zero T
		return nil, fmt.Errorf("colcrypt: encoding JSON column: %T cannot be encoded as JSON", zero)
	}
	v, err := c.seal(pt)
	clear(pt)
	if err != nil {
		return nil, err
	}
	return ownedString(v), nil
}

// Scan implements sql.Scanner. The decrypted JSON is unmarshalled into a
// new T, so nothing of the previous value survives.
func (j *JSON[T]) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	var v T
	if err := json.Unmarshal(pt, &v); err != nil {
		clear(pt)
		if errors.Is(err, ErrRedacted) {
			return fmt.Errorf("colcrypt: decoding JSON column into %T: %w", v, ErrRedacted)
		}
		return fmt.Errorf("colcrypt: decoding JSON column into %T: invalid JSON after decryption", v)
	}
	clear(pt)
	*j = NewJSON(v)
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (JSON[T]) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes "[REDACTED]".
func (JSON[T]) MarshalJSON() ([]byte, error) { return redactedJSON(), nil }

// UnmarshalJSON decodes a T. JSON null leaves j unchanged; the string
// "[REDACTED]" is refused.
func (j *JSON[T]) UnmarshalJSON(b []byte) error {
	var v *T
	if err := unmarshalJSON(b, &v); err != nil || v == nil {
		return err
	}
	*j = NewJSON(*v)
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column.
func (JSON[T]) GormDataType() string { return "text" }

// redactingTypes caches redactingIn by type.
var redactingTypes sync.Map // reflect.Type → reflect.Type (nil: none)

// redactingIn returns a colcrypt type that values of t can hold where
// encoding/json reaches it (String, Bytes, JSON, rotation's Migrating
// types: any type of this module whose MarshalJSON writes the redaction
// marker), or nil. A JSON column holding one would store "[REDACTED]" in
// place of the value. A colcrypt value held in an interface is not seen.
func redactingIn(t reflect.Type) reflect.Type {
	if r, ok := redactingTypes.Load(t); ok {
		found, _ := r.(reflect.Type)
		return found
	}
	found := findRedacting(t, map[reflect.Type]bool{})
	redactingTypes.Store(t, found)
	return found
}

func findRedacting(t reflect.Type, seen map[reflect.Type]bool) reflect.Type {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if t.Kind() == reflect.Pointer {
		// A pointer has the methods of what it points to, and no package:
		// look at that.
		return findRedacting(t.Elem(), seen)
	}
	marshaler := reflect.TypeFor[json.Marshaler]()
	if t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
		// An interface's zero value is nil: nothing to call.
		if t.Kind() != reflect.Interface && strings.HasPrefix(t.PkgPath(), modulePath+"/") && t.Implements(marshaler) {
			if b, err := reflect.Zero(t).Interface().(json.Marshaler).MarshalJSON(); err == nil && bytes.Equal(b, redactedJSON()) {
				return t
			}
		}
		return nil // encoding/json does not look inside a Marshaler
	}
	textMarshaler := reflect.TypeFor[encoding.TextMarshaler]()
	if t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return nil // nor inside a TextMarshaler
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return findRedacting(t.Elem(), seen)
	case reflect.Map:
		return findRedacting(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if (!f.IsExported() && !f.Anonymous) || f.Tag.Get("json") == "-" {
				continue
			}
			if found := findRedacting(f.Type, seen); found != nil {
				return found
			}
		}
	}
	return nil
}

// modulePath is the path of this module, whose types findRedacting knows.
const modulePath = "github.com/colcrypt/colcrypt"

// ErrRedacted is returned by UnmarshalJSON for the string "[REDACTED]":
// it is what MarshalJSON writes in place of the plaintext, and decoding it
// as a value would overwrite real data with the marker.
var ErrRedacted = errors.New(`colcrypt: refusing to decode "[REDACTED]" as a value (it is the redaction marker that MarshalJSON writes; put Plaintext() in responses instead)`)

func redactedJSON() []byte { return []byte(`"` + redacted + `"`) }

// unmarshalJSON decodes b into v, refusing the redaction marker. Errors
// from encoding/json name types and offsets, never the input.
func unmarshalJSON(b []byte, v any) error {
	// Compared after decoding, so that an escaped form ("\u005bREDACTED]")
	// is refused too.
	// The longest form is every character escaped: 2 + 10*6 bytes.
	if t := bytes.TrimSpace(b); len(t) > 0 && len(t) <= 2+6*len(redacted) && t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) == nil && s == redacted {
			return ErrRedacted
		}
	}
	return sanitizeJSONError(json.Unmarshal(b, v))
}

// sanitizeJSONError returns an error of encoding/json without the input it
// may quote: a syntax error quotes a character, a type error the literal
// (a card number into an int8), a ",string" error the whole string.
func sanitizeJSONError(err error) error {
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("colcrypt: invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		where := te.Field
		if where == "" {
			where = "value"
		}
		return fmt.Errorf("colcrypt: JSON %s cannot be decoded into Go type %v", where, te.Type)
	}
	return errors.New("colcrypt: JSON cannot be decoded (details withheld: they may quote the data)")
}

// hidden holds a string where reflection-based printers cannot read it:
// fmt, walking an unexported field without calling its methods, prints an
// unsafe.Pointer as an address. Unlike a *string it costs no allocation,
// which matters on Scan's hot path. The pointer keeps the bytes alive.
type hidden struct {
	p unsafe.Pointer
	n int
}

func hide(s string) hidden { return hidden{unsafe.Pointer(unsafe.StringData(s)), len(s)} }

// emptyMark is where a set but empty hidden value points, so that p != nil
// tells a set value from the zero one.
var emptyMark byte

// hideSet is hide for a value that must read as set even when empty.
func hideSet(s string) hidden {
	if len(s) == 0 {
		return hidden{unsafe.Pointer(&emptyMark), 0}
	}
	return hide(s)
}

func (h hidden) get() string { return unsafe.String((*byte)(h.p), h.n) }

// ownedString returns b as a string without copying. b must be a buffer
// that the caller owns and never touches again: the decrypted plaintext
// that scan returns is one (it is decrypted in place in a buffer scan
// allocated).
func ownedString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// scan decrypts what a driver hands to Scan with the default provider.
func scan(src any) ([]byte, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	switch v := src.(type) {
	case string:
		return c.openString(v)
	case []byte:
		return c.open(v)
	case nil:
		return nil, ErrNull
	default:
		return nil, fmt.Errorf("%w: cannot scan a %T (want string or []byte)", ErrMalformed, src)
	}
}
