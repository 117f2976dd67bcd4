// Package redact keeps the plaintext held by colcrypt's column types out of
// printers, logs and JSON. Packages encryptedtype and rotation share it, so
// that their types print, marshal and refuse the marker alike.
package redact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"
)

// Marker is what fmt, slog and encoding/json show in place of a value.
const Marker = "[REDACTED]"

// JSON returns Marker as a JSON string, a new slice on every call.
func JSON() []byte { return []byte(`"` + Marker + `"`) }

// ErrMarker is returned by Unmarshal for the string Marker: it is what a
// MarshalJSON of ours writes in place of the plaintext, and decoding it as
// a value would overwrite real data with the marker. encryptedtype exports
// it as ErrRedacted.
var ErrMarker = errors.New(`colcrypt: refusing to decode "[REDACTED]" as a value (it is the redaction marker that MarshalJSON writes; put Plaintext() in responses instead)`)

// Unmarshal decodes b into v, refusing the marker with ErrMarker however
// it is escaped ("\u005bREDACTED]" too). Errors from encoding/json are
// replaced by messages that never quote the input: a syntax error quotes a
// character, a type error the literal (a card number into an int8), a
// ",string" error the whole string.
func Unmarshal(b []byte, v any) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) == nil && s == Marker {
			return ErrMarker
		}
	}
	err := json.Unmarshal(b, v)
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

// Hidden holds a string where reflection-based printers cannot read it:
// fmt walking an unexported field without calling its methods, or go-spew
// in a test diff, prints an unsafe.Pointer as an address. Unlike a *string
// it costs no allocation, which matters on Scan's hot path. The pointer
// keeps the bytes alive. Only immutable strings, or buffers that the caller
// allocated and never writes again, may be hidden.
//
// The zero Hidden reads as "" and is not set.
type Hidden struct {
	p unsafe.Pointer
	n int
}

// Hide returns s hidden. An empty s may give a Hidden that is not set; use
// HideSet where "" must be told from the zero value.
func Hide(s string) Hidden { return Hidden{unsafe.Pointer(unsafe.StringData(s)), len(s)} }

// emptyMark is where a set but empty Hidden points.
var emptyMark byte

// HideSet is Hide for a value that must read as set even when empty.
func HideSet(s string) Hidden {
	if len(s) == 0 {
		return Hidden{unsafe.Pointer(&emptyMark), 0}
	}
	return Hide(s)
}

// Get returns the hidden string.
func (h Hidden) Get() string { return unsafe.String((*byte)(h.p), h.n) }

// IsSet reports whether h came from HideSet, or from Hide of a non-empty
// string: false only for the zero Hidden (and Hide("") of some strings).
func (h Hidden) IsSet() bool { return h.p != nil }

// Owned returns b as a string without copying. b must be a buffer that the
// caller owns and never touches again, such as a plaintext just decrypted
// in place in a buffer the caller allocated.
func Owned(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
