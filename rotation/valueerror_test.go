package rotation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// TestValueError: errors about the value fail the row; any other error of
// the Cipher (a provider that cannot be reached) stops the job.
func TestValueError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{encryptedtype.ErrAuth, true},
		{fmt.Errorf("%w: version 1: invalid base64url payload", encryptedtype.ErrMalformed), true},
		{fmt.Errorf("%w (plaintext?)", encryptedtype.ErrNotEncrypted), true},
		{fmt.Errorf("%w: 3", keyprovider.ErrUnknownVersion), true},
		{fmt.Errorf("outer: %w", fmt.Errorf("%w: 3", encryptedtype.ErrUnknownVersion)), true},
		// As *encryptedtype.Codec reports a reload that failed.
		{fmt.Errorf("%w (reloading the provider failed: %w)", fmt.Errorf("%w: 3", keyprovider.ErrUnknownVersion), fs.ErrPermission), false},
		{fmt.Errorf("%w: version 1", keyprovider.ErrInvalidKey), false},
		{errors.New("connection refused"), false},
		{encryptedtype.ErrNoProvider, false},
		{errors.Join(encryptedtype.ErrAuth, encryptedtype.ErrMalformed), true},
	} {
		if got := valueError(c.err); got != c.want {
			t.Errorf("valueError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A value naming a version nobody has, met while the provider declines to
// reload again so soon, fails its row like any unknown version: one bogus
// value must not stop the job.
func TestValueErrorThrottledReload(t *testing.T) {
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := keyprovider.NewStatic(1, k)
	if err != nil {
		t.Fatal(err)
	}
	c := encryptedtype.NewCodec(throttling{ks})
	v, err := c.Seal(t.Context(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Open(t.Context(), append([]byte("v99:"), v[3:]...))
	if !errors.Is(err, encryptedtype.ErrUnknownVersion) || !valueError(err) {
		t.Fatalf("got %v (valueError %v), want a value error", err, valueError(err))
	}
}

// throttling is a Reloader that always declines to reload.
type throttling struct{ *keyprovider.Static }

func (throttling) Reload(context.Context) error {
	return fmt.Errorf("%w: next reload allowed in 1s", keyprovider.ErrReloadThrottled)
}

// TestKeyID: on SQLite the identity of a key holds its type.
func TestKeyID(t *testing.T) {
	p := &plan{pkKind: keyNative}
	ids := map[string]bool{}
	for _, k := range []any{int64(1), "1", []byte("1"), float64(1.5), "1.5"} {
		text, err := keyText(k)
		if err != nil {
			t.Fatal(err)
		}
		ids[p.keyID(k, text)] = true
	}
	if len(ids) != 5 {
		t.Errorf("identities %v, want 5 distinct", ids)
	}
	if id := (&plan{pkKind: keyPgText}).keyID(nil, "42"); id != "42" {
		t.Errorf("PostgreSQL identity %q", id)
	}
}

// TestLengthLimit: fits counts bytes and characters, and its error gives
// the lengths only.
func TestLengthLimit(t *testing.T) {
	l := lengthLimit{chars: 4, bytes: 16}
	if err := l.fits([]byte("abcd")); err != nil {
		t.Error(err)
	}
	if err := l.fits([]byte("ééé")); err != nil { // 3 characters, 6 bytes
		t.Error(err)
	}
	err := l.fits([]byte("secret"))
	if !errors.Is(err, ErrValueTooLong) || !errorContains(err, "6 characters") || errorContains(err, "secret") {
		t.Errorf("fits: %v", err)
	}
	if err := (lengthLimit{bytes: 3}).fits([]byte("éé")); !errors.Is(err, ErrValueTooLong) {
		t.Errorf("bytes: %v", err)
	}
	if err := (lengthLimit{}).fits(make([]byte, 1<<20)); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func errorContains(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
