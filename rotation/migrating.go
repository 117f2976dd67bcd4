package rotation

import (
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/internal/redact"
)

// redacted is what fmt, slog and encoding/json show instead of a value.
const redacted = redact.Marker

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
// encrypted. fmt, slog and encoding/json show [REDACTED]; UnmarshalJSON
// reads plaintext and refuses "[REDACTED]" (encryptedtype.ErrRedacted), as
// encryptedtype.String does.
type MigratingString struct {
	v         redact.Hidden
	encrypted bool
}

// NewMigratingString returns a MigratingString holding s.
func NewMigratingString(s string) MigratingString { return MigratingString{v: redact.Hide(s)} }

// Plaintext returns the value.
func (s MigratingString) Plaintext() string { return s.v.Get() }

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
	s.v, s.encrypted = redact.Hide(pt), enc
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED]. slog's
// text handler prints through it, so logs show [REDACTED] too.
func (MigratingString) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes "[REDACTED]", as encryptedtype.String does (slog's
// JSON handler included).
func (MigratingString) MarshalJSON() ([]byte, error) { return redact.JSON(), nil }

// UnmarshalJSON decodes a JSON string into s, as encryptedtype.String
// does: JSON null leaves s unchanged, and the string "[REDACTED]", which
// is what MarshalJSON writes, is refused with encryptedtype.ErrRedacted so
// that a redacted document sent back cannot overwrite the real value. The
// value is then one to be written (WasEncrypted reports false). Errors
// never quote the input.
func (s *MigratingString) UnmarshalJSON(b []byte) error {
	v, err := unmarshalMigrating(b, "MigratingString")
	if err != nil || v == nil {
		return err
	}
	s.v, s.encrypted = redact.Hide(*v), false
	return nil
}

// GormDataType tells GORM's AutoMigrate to create a text column.
func (MigratingString) GormDataType() string { return "text" }

// MigratingBytes is MigratingString for a binary column (BYTEA, or TEXT
// holding bytes), the counterpart of encryptedtype.Bytes.
//
// UnmarshalJSON reads a base64 JSON string, like []byte.
type MigratingBytes struct {
	v         redact.Hidden // not set only for the zero MigratingBytes
	encrypted bool
}

// NewMigratingBytes returns a MigratingBytes holding a copy of b.
func NewMigratingBytes(b []byte) MigratingBytes { return MigratingBytes{v: redact.HideSet(string(b))} }

// Plaintext returns a copy of the value; nil only for the zero
// MigratingBytes.
func (b MigratingBytes) Plaintext() []byte {
	if !b.v.IsSet() {
		return nil
	}
	return []byte(b.v.Get())
}

// WasEncrypted reports whether Scan read the value in the wire format
// (true) or as plaintext (false).
func (b MigratingBytes) WasEncrypted() bool { return b.encrypted }

// Value implements driver.Valuer: it returns the value encrypted under the
// default provider's active key.
func (b MigratingBytes) Value() (driver.Value, error) {
	return encryptedtype.NewString(b.v.Get()).Value()
}

// Scan implements sql.Scanner, like MigratingString.Scan.
func (b *MigratingBytes) Scan(src any) error {
	pt, enc, err := scanMigrating(src)
	if err != nil {
		return err
	}
	b.v, b.encrypted = redact.HideSet(pt), enc
	return nil
}

// Format implements fmt.Formatter: every verb prints [REDACTED], in logs
// from slog's text handler too.
func (MigratingBytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON writes "[REDACTED]".
func (MigratingBytes) MarshalJSON() ([]byte, error) { return redact.JSON(), nil }

// UnmarshalJSON decodes a base64 JSON string into b, like []byte and
// encryptedtype.Bytes. JSON null leaves b unchanged; the string
// "[REDACTED]" is refused with encryptedtype.ErrRedacted. Errors never
// quote the input.
func (b *MigratingBytes) UnmarshalJSON(data []byte) error {
	v, err := unmarshalMigrating(data, "MigratingBytes")
	if err != nil || v == nil {
		return err
	}
	// encoding/json decodes a []byte with StdEncoding, ignoring \r and \n.
	pt, err := base64.StdEncoding.DecodeString(*v)
	if err != nil {
		// A CorruptInputError is an offset; say no more than that.
		return errors.New("rotation: cannot decode JSON into MigratingBytes: invalid base64")
	}
	// pt is a buffer allocated here and never written again.
	b.v, b.encrypted = redact.HideSet(redact.Owned(pt)), false
	return nil
}

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

// unmarshalMigrating decodes a JSON string or null (nil) for the type
// called name, refusing the redaction marker (encryptedtype.ErrRedacted).
// Errors never quote the input.
func unmarshalMigrating(b []byte, name string) (*string, error) {
	var v *string
	if err := redact.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("rotation: decoding JSON into %s: %w", name, err)
	}
	return v, nil
}
