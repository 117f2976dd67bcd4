package rotation

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// redacted is what fmt, slog and encoding/json show instead of a value.
const redacted = "[REDACTED]"

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
// encrypted. fmt, slog and encoding/json show [REDACTED].
type MigratingString struct {
	p         *string
	encrypted bool
}

// NewMigratingString returns a MigratingString holding s.
func NewMigratingString(s string) MigratingString { return MigratingString{p: &s} }

// Plaintext returns the value.
func (s MigratingString) Plaintext() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// WasEncrypted reports whether Scan read the value in the wire format
// (true) or as plaintext (false).
func (s MigratingString) WasEncrypted() bool { return s.encrypted }

// Value implements driver.Valuer: it returns the value encrypted under the
// default provider's active key.
func (s MigratingString) Value() (driver.Value, error) {
	return encryptedtype.NewString(s.Plaintext()).Value()
}

// Scan implements sql.Scanner: it accepts the wire format or plaintext, as
// a string or []byte.
func (s *MigratingString) Scan(src any) error {
	pt, enc, err := scanMigrating(src)
	if err != nil {
		return err
	}
	s.p, s.encrypted = &pt, enc
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (MigratingString) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: logs show [REDACTED].
func (MigratingString) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON writes "[REDACTED]", as encryptedtype.String does.
func (MigratingString) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// GormDataType tells GORM's AutoMigrate to create a text column.
func (MigratingString) GormDataType() string { return "text" }

// MigratingBytes is MigratingString for a binary column (BYTEA, or TEXT
// holding bytes), the counterpart of encryptedtype.Bytes.
type MigratingBytes struct {
	p         *string
	encrypted bool
}

// NewMigratingBytes returns a MigratingBytes holding a copy of b.
func NewMigratingBytes(b []byte) MigratingBytes {
	s := string(b)
	return MigratingBytes{p: &s}
}

// Plaintext returns a copy of the value; nil only for the zero
// MigratingBytes.
func (b MigratingBytes) Plaintext() []byte {
	if b.p == nil {
		return nil
	}
	return []byte(*b.p)
}

// WasEncrypted reports whether Scan read the value in the wire format
// (true) or as plaintext (false).
func (b MigratingBytes) WasEncrypted() bool { return b.encrypted }

// Value implements driver.Valuer: it returns the value encrypted under the
// default provider's active key.
func (b MigratingBytes) Value() (driver.Value, error) {
	var pt string
	if b.p != nil {
		pt = *b.p
	}
	return encryptedtype.NewString(pt).Value()
}

// Scan implements sql.Scanner, like MigratingString.Scan.
func (b *MigratingBytes) Scan(src any) error {
	pt, enc, err := scanMigrating(src)
	if err != nil {
		return err
	}
	b.p, b.encrypted = &pt, enc
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED].
func (MigratingBytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: logs show [REDACTED].
func (MigratingBytes) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON writes "[REDACTED]".
func (MigratingBytes) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// GormDataType tells GORM's AutoMigrate to create a text column.
func (MigratingBytes) GormDataType() string { return "text" }

// scanMigrating reads a column being converted: the plaintext of a
// wire-format value (decrypted by encryptedtype.String), or the value
// itself when it is not in the wire format at all.
func scanMigrating(src any) (string, bool, error) {
	var raw []byte
	switch v := src.(type) {
	case nil:
		return "", false, encryptedtype.ErrNull
	case string:
		raw = []byte(v)
	case []byte:
		raw = v
	default:
		return "", false, fmt.Errorf("%w: cannot scan a %T (want string or []byte)", encryptedtype.ErrMalformed, src)
	}
	if _, err := encryptedtype.Version(raw); errors.Is(err, encryptedtype.ErrNotEncrypted) {
		return string(raw), false, nil
	}
	var s encryptedtype.String
	if err := s.Scan(src); err != nil {
		return "", false, err
	}
	return s.Plaintext(), true, nil
}
