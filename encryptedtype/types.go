package encryptedtype

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
// fmt and slog print a String as [REDACTED]; call Plaintext to get the
// value. JSON encodes the plaintext, so that a model returned from an API
// carries its data: JSON is serialisation, not logging.
type String struct{ s string }

// NewString returns a String holding s.
func NewString(s string) String { return String{s} }

// Plaintext returns the decrypted string.
func (s String) Plaintext() string { return s.s }

// Value implements driver.Valuer: it returns s encrypted under the default
// provider's active key, in the wire format.
func (s String) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	v, err := c.sealString(s.s)
	if err != nil {
		return nil, err
	}
	return string(v), nil
}

// Scan implements sql.Scanner: it decrypts a wire-format value given as a
// string or []byte. NULL is an error wrapping ErrNull; scan into a *String
// for a nullable column.
func (s *String) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	s.s = string(pt)
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (String) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: logs show [REDACTED].
func (String) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the plaintext as a JSON string.
func (s String) MarshalJSON() ([]byte, error) { return json.Marshal(s.s) }

// UnmarshalJSON decodes a JSON string into s.
func (s *String) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &s.s) }

// GormDataType tells GORM's AutoMigrate to create a text column. It lets
// GORM pick the type without this package importing GORM.
func (String) GormDataType() string { return "text" }

// Bytes is a binary column stored encrypted, like String.
//
// A nil Bytes is encrypted as an empty value and reads back as an empty,
// non-nil Bytes; for a nullable column use *Bytes.
//
// fmt and slog print a Bytes as [REDACTED]; call Plaintext to get the
// value. JSON encodes the plaintext as base64, like []byte.
type Bytes struct{ b []byte }

// NewBytes returns a Bytes holding b. It does not copy b.
func NewBytes(b []byte) Bytes { return Bytes{b} }

// Plaintext returns the decrypted bytes. The caller must not modify them
// while b is in use.
func (b Bytes) Plaintext() []byte { return b.b }

// Value implements driver.Valuer: it returns b encrypted under the default
// provider's active key, in the wire format.
func (b Bytes) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	v, err := c.seal(b.b)
	if err != nil {
		return nil, err
	}
	return string(v), nil
}

// Scan implements sql.Scanner, like String.Scan.
func (b *Bytes) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	b.b = pt
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: logs show [REDACTED].
func (Bytes) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the plaintext as a base64 JSON string, like []byte.
func (b Bytes) MarshalJSON() ([]byte, error) { return json.Marshal(b.b) }

// UnmarshalJSON decodes a base64 JSON string into b.
func (b *Bytes) UnmarshalJSON(data []byte) error { return json.Unmarshal(data, &b.b) }

// GormDataType tells GORM's AutoMigrate to create a text column.
func (Bytes) GormDataType() string { return "text" }

// JSON is a column holding V as JSON, stored encrypted. Value marshals V
// with encoding/json and encrypts the result; Scan decrypts and unmarshals.
// For a nullable column use *JSON[T].
//
// fmt and slog print a JSON as [REDACTED]. MarshalJSON encodes V itself.
type JSON[T any] struct {
	V T
}

// Value implements driver.Valuer.
func (j JSON[T]) Value() (driver.Value, error) {
	c, err := defaultOrErr()
	if err != nil {
		return nil, err
	}
	pt, err := json.Marshal(j.V)
	if err != nil {
		// json errors name the Go type, never the data.
		return nil, fmt.Errorf("colcrypt: encoding JSON column: %w", err)
	}
	v, err := c.seal(pt)
	clear(pt)
	if err != nil {
		return nil, err
	}
	return string(v), nil
}

// Scan implements sql.Scanner. V is reset to its zero value before the
// decrypted JSON is unmarshalled into it.
func (j *JSON[T]) Scan(src any) error {
	pt, err := scan(src)
	if err != nil {
		return err
	}
	var v T
	if err := json.Unmarshal(pt, &v); err != nil {
		clear(pt)
		return fmt.Errorf("colcrypt: decoding JSON column into %T: invalid JSON after decryption", v)
	}
	clear(pt)
	j.V = v
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (JSON[T]) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: logs show [REDACTED].
func (JSON[T]) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes V.
func (j JSON[T]) MarshalJSON() ([]byte, error) { return json.Marshal(j.V) }

// UnmarshalJSON decodes into V.
func (j *JSON[T]) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &j.V) }

// GormDataType tells GORM's AutoMigrate to create a text column.
func (JSON[T]) GormDataType() string { return "text" }

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
