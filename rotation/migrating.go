package rotation

import (
	"bytes"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// MigratingString is the column type for a string column while it is being
// converted from plaintext to encrypted (Options.EncryptPlaintext): Scan
// reads both forms, Value always writes the encrypted one. Declare the
// field as a MigratingString until `colcrypt status` shows no plaintext
// left, then change it to encryptedtype.String.
//
// Scan decrypts a value in the wire format with encryptedtype's default
// provider (encryptedtype.SetDefault), exactly as encryptedtype.String
// does, and failures are errors as they are there. A value that is not in
// the wire format at all (encryptedtype.ErrNotEncrypted) is taken as the
// plaintext it is. A value that starts like the wire format but does not
// decrypt is an error, never data. NULL is an error wrapping
// encryptedtype.ErrNull; use *MigratingString for a nullable column.
//
// Value encrypts with the default provider, like encryptedtype.String, so
// every write the application makes during the migration is already
// encrypted. A MigratingString holds its value in an encryptedtype.String,
// and prints and marshals as one: fmt, slog and encoding/json show
// [REDACTED]; UnmarshalJSON reads plaintext and refuses "[REDACTED]"
// (encryptedtype.ErrRedacted).
type MigratingString struct {
	s         encryptedtype.String
	encrypted bool
}

// NewMigratingString returns a MigratingString holding s.
func NewMigratingString(s string) MigratingString {
	return MigratingString{s: encryptedtype.NewString(s)}
}

// Plaintext returns the value.
func (s MigratingString) Plaintext() string { return s.s.Plaintext() }

// WasEncrypted reports whether Scan read the value in the wire format
// (true) or as plaintext (false).
func (s MigratingString) WasEncrypted() bool { return s.encrypted }

// Value implements driver.Valuer: it returns the value encrypted under the
// default provider's active key.
func (s MigratingString) Value() (driver.Value, error) { return s.s.Value() }

// Scan implements sql.Scanner: it accepts the wire format or plaintext, as
// a string or []byte.
func (s *MigratingString) Scan(src any) error {
	raw, plain, err := plaintextIn(src)
	switch {
	case err != nil:
		return err
	case plain:
		s.s, s.encrypted = encryptedtype.NewString(string(raw)), false
		return nil
	}
	if err := s.s.Scan(src); err != nil {
		return err
	}
	s.encrypted = true
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED]. slog's
// text handler prints through it, so logs show [REDACTED] too.
func (s MigratingString) Format(f fmt.State, verb rune) { s.s.Format(f, verb) }

// MarshalJSON writes "[REDACTED]", as encryptedtype.String does (slog's
// JSON handler included).
func (s MigratingString) MarshalJSON() ([]byte, error) { return s.s.MarshalJSON() }

// UnmarshalJSON decodes a JSON string into s, as encryptedtype.String
// does: JSON null leaves s unchanged, and the string "[REDACTED]", which
// is what MarshalJSON writes, is refused with encryptedtype.ErrRedacted so
// that a redacted document sent back cannot overwrite the real value. The
// value is then one to be written (WasEncrypted reports false). Errors
// never quote the input.
func (s *MigratingString) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		return nil
	}
	var v encryptedtype.String
	if err := v.UnmarshalJSON(b); err != nil {
		return fmt.Errorf("rotation: decoding JSON into MigratingString: %w", err)
	}
	s.s, s.encrypted = v, false
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column.
func (MigratingString) GormDataType() string { return "text" }

// MigratingBytes is MigratingString for a binary column (BYTEA, or TEXT
// holding bytes), the counterpart of encryptedtype.Bytes, in which it
// holds its value.
//
// UnmarshalJSON reads a base64 JSON string, like []byte.
type MigratingBytes struct {
	b         encryptedtype.Bytes
	encrypted bool
}

// NewMigratingBytes returns a MigratingBytes holding a copy of b.
func NewMigratingBytes(b []byte) MigratingBytes { return MigratingBytes{b: encryptedtype.NewBytes(b)} }

// Plaintext returns a copy of the value; nil only for the zero
// MigratingBytes.
func (b MigratingBytes) Plaintext() []byte { return b.b.Plaintext() }

// WasEncrypted reports whether Scan read the value in the wire format
// (true) or as plaintext (false).
func (b MigratingBytes) WasEncrypted() bool { return b.encrypted }

// Value implements driver.Valuer: it returns the value encrypted under the
// default provider's active key.
func (b MigratingBytes) Value() (driver.Value, error) { return b.b.Value() }

// Scan implements sql.Scanner, like MigratingString.Scan.
func (b *MigratingBytes) Scan(src any) error {
	raw, plain, err := plaintextIn(src)
	switch {
	case err != nil:
		return err
	case plain:
		b.b, b.encrypted = encryptedtype.NewBytes(raw), false
		return nil
	}
	if err := b.b.Scan(src); err != nil {
		return err
	}
	b.encrypted = true
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED], in logs
// from slog's text handler too.
func (b MigratingBytes) Format(f fmt.State, verb rune) { b.b.Format(f, verb) }

// MarshalJSON writes "[REDACTED]".
func (b MigratingBytes) MarshalJSON() ([]byte, error) { return b.b.MarshalJSON() }

// UnmarshalJSON decodes a base64 JSON string into b, like []byte and
// encryptedtype.Bytes. JSON null leaves b unchanged; the string
// "[REDACTED]" is refused with encryptedtype.ErrRedacted. Errors never
// quote the input.
func (b *MigratingBytes) UnmarshalJSON(data []byte) error {
	if isNull(data) {
		return nil
	}
	var v encryptedtype.Bytes
	if err := v.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("rotation: decoding JSON into MigratingBytes: %w", err)
	}
	b.b, b.encrypted = v, false
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column.
func (MigratingBytes) GormDataType() string { return "text" }

// plaintextIn returns what a driver hands to Scan, and whether it is
// plaintext: not in the wire format at all. A value that is in the wire
// format, or starts like it, is for encryptedtype's Scan to decrypt or
// refuse.
func plaintextIn(src any) (raw []byte, plain bool, err error) {
	switch v := src.(type) {
	case nil:
		return nil, false, encryptedtype.ErrNull
	case string:
		raw = []byte(v)
	case []byte:
		raw = v
	default:
		return nil, false, fmt.Errorf("%w: cannot scan a %T (want string or []byte)", encryptedtype.ErrMalformed, src)
	}
	_, err = encryptedtype.Version(raw)
	return raw, errors.Is(err, encryptedtype.ErrNotEncrypted), nil
}

// isNull reports whether b is the JSON literal null.
func isNull(b []byte) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }
