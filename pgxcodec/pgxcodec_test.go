package pgxcodec

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// countingProvider counts the calls of Active, that is, the encryptions.
type countingProvider struct {
	*keyprovider.Static
	active atomic.Int64
}

func (p *countingProvider) Active() (keyprovider.Key, error) {
	p.active.Add(1)
	return p.Static.Active()
}

// useKeys installs a fresh key of version 3 as encryptedtype's default
// provider until t ends.
func useKeys(t testing.TB) *countingProvider {
	t.Helper()
	k, err := keyprovider.GenerateKey(3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyprovider.NewStatic(3, k)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProvider{Static: s}
	encryptedtype.SetDefault(p)
	t.Cleanup(func() { encryptedtype.SetDefault(nil) })
	return p
}

var wireFormat = regexp.MustCompile(`^v3:[A-Za-z0-9_-]+$`)

type profile struct {
	Name string `json:"name"`
}

// TestEncode encodes every column type, as a value and through a pointer,
// for text, varchar, bytea and an unknown OID (the simple protocol) in both
// formats, and checks that the bytes are the wire format and decrypt to the
// plaintext.
func TestEncode(t *testing.T) {
	useKeys(t)
	m := pgtype.NewMap()
	Register(m)

	const secret = "alice@example.com"
	values := map[string]struct {
		v    any
		scan func([]byte) (string, error)
	}{
		"String": {encryptedtype.NewString(secret), func(b []byte) (string, error) {
			var s encryptedtype.String
			err := s.Scan(b)
			return s.Plaintext(), err
		}},
		"*String": {ptr(encryptedtype.NewString(secret)), func(b []byte) (string, error) {
			var s encryptedtype.String
			err := s.Scan(b)
			return s.Plaintext(), err
		}},
		"Bytes": {encryptedtype.NewBytes([]byte(secret)), func(b []byte) (string, error) {
			var s encryptedtype.Bytes
			err := s.Scan(b)
			return string(s.Plaintext()), err
		}},
		"*Bytes": {ptr(encryptedtype.NewBytes([]byte(secret))), func(b []byte) (string, error) {
			var s encryptedtype.Bytes
			err := s.Scan(b)
			return string(s.Plaintext()), err
		}},
		"JSON": {encryptedtype.NewJSON(profile{Name: secret}), func(b []byte) (string, error) {
			var s encryptedtype.JSON[profile]
			err := s.Scan(b)
			return s.Plaintext().Name, err
		}},
		"MigratingString":  {rotation.NewMigratingString(secret), scanMigratingString},
		"*MigratingString": {ptr(rotation.NewMigratingString(secret)), scanMigratingString},
		"MigratingBytes":   {rotation.NewMigratingBytes([]byte(secret)), scanMigratingBytes},
		"*MigratingBytes":  {ptr(rotation.NewMigratingBytes([]byte(secret))), scanMigratingBytes},
	}
	oids := map[string]uint32{"text": pgtype.TextOID, "varchar": pgtype.VarcharOID, "bytea": pgtype.ByteaOID, "unknown": 0}
	formats := map[string]int16{"text": pgtype.TextFormatCode, "binary": pgtype.BinaryFormatCode}
	for vname, tc := range values {
		for oname, oid := range oids {
			for fname, format := range formats {
				if oid == 0 && format == pgtype.BinaryFormatCode {
					continue // pgx never asks for this
				}
				buf, err := m.Encode(oid, format, tc.v, nil)
				if err != nil {
					t.Errorf("%s into %s, %s format: %v", vname, oname, fname, err)
					continue
				}
				if !wireFormat.Match(buf) || bytes.Contains(buf, []byte(secret)) {
					t.Errorf("%s into %s, %s format: encoded %q, want the wire format", vname, oname, fname, buf)
					continue
				}
				if got, err := tc.scan(buf); err != nil || got != secret {
					t.Errorf("%s into %s, %s format: decrypts to %q, %v", vname, oname, fname, got, err)
				}
			}
		}
	}
}

// scanMigratingString reads b with rotation.MigratingString, and fails
// unless b was in the wire format.
func scanMigratingString(b []byte) (string, error) {
	var s rotation.MigratingString
	if err := s.Scan(b); err != nil {
		return "", err
	}
	if !s.WasEncrypted() {
		return "", errors.New("read as plaintext, not in the wire format")
	}
	return s.Plaintext(), nil
}

// scanMigratingBytes is scanMigratingString for rotation.MigratingBytes.
func scanMigratingBytes(b []byte) (string, error) {
	var s rotation.MigratingBytes
	if err := s.Scan(b); err != nil {
		return "", err
	}
	if !s.WasEncrypted() {
		return "", errors.New("read as plaintext, not in the wire format")
	}
	return string(s.Plaintext()), nil
}

// TestEncodePlanNilPointer calls the plan itself with a nil pointer, which
// pgx never does (it writes NULL first).
func TestEncodePlanNilPointer(t *testing.T) {
	for _, v := range []any{(*encryptedtype.String)(nil), (*rotation.MigratingString)(nil), (*rotation.MigratingBytes)(nil)} {
		plan, _, ok := tryWrapEncryptedValue(v)
		if !ok {
			t.Errorf("%T was not taken", v)
			continue
		}
		if buf, err := plan.Encode(v, nil); buf != nil || err != nil {
			t.Errorf("nil %T: %q, %v; want NULL", v, buf, err)
		}
	}
}

// TestEncodeNull checks that nil pointers are NULL.
func TestEncodeNull(t *testing.T) {
	p := useKeys(t)
	m := pgtype.NewMap()
	Register(m)
	for _, v := range []any{
		(*encryptedtype.String)(nil), (*encryptedtype.Bytes)(nil), (*encryptedtype.JSON[profile])(nil),
		(*rotation.MigratingString)(nil), (*rotation.MigratingBytes)(nil),
	} {
		for _, oid := range []uint32{pgtype.TextOID, pgtype.ByteaOID} {
			buf, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
			if err != nil || buf != nil {
				t.Errorf("%T into OID %d: %q, %v; want NULL (nil, nil)", v, oid, buf, err)
			}
		}
	}
	if n := p.active.Load(); n != 0 {
		t.Errorf("NULLs encrypted %d times", n)
	}
}

// TestWithoutRegister pins why the package exists: pgx alone cannot encode
// an encrypted value in bytea's binary format, which CopyFrom uses.
func TestWithoutRegister(t *testing.T) {
	useKeys(t)
	m := pgtype.NewMap()
	_, err := m.Encode(pgtype.ByteaOID, pgtype.BinaryFormatCode, encryptedtype.NewBytes([]byte("x@y")), nil)
	if err == nil {
		t.Fatalf("pgx now encodes an encrypted value as binary bytea by itself; pgxcodec may no longer be needed for CopyFrom")
	}
	t.Logf("without Register: %v", err)
	// Nor a Migrating one, which Register takes too.
	if _, err := m.Encode(pgtype.ByteaOID, pgtype.BinaryFormatCode, rotation.NewMigratingBytes([]byte("x@y")), nil); err == nil {
		t.Errorf("pgx now encodes a MigratingBytes as binary bytea by itself")
	}
	// Text columns work without it.
	if _, err := m.Encode(pgtype.TextOID, pgtype.BinaryFormatCode, encryptedtype.NewString("x@y"), nil); err != nil {
		t.Errorf("String into text without Register: %v", err)
	}
	if _, err := m.Encode(pgtype.TextOID, pgtype.BinaryFormatCode, rotation.NewMigratingString("x@y"), nil); err != nil {
		t.Errorf("MigratingString into text without Register: %v", err)
	}
}

// TestEncryptsOnce builds the parameters of a prepared INSERT into bytea
// and text columns as pgx does for Query, Exec and SendBatch, and counts
// the encryptions: pgx alone encrypts a bytea value twice (binary fails,
// then text), with Register every value is encrypted once.
func TestEncryptsOnce(t *testing.T) {
	p := useKeys(t)
	sd := &pgconn.StatementDescription{ParamOIDs: []uint32{
		pgtype.ByteaOID, pgtype.TextOID, pgtype.ByteaOID, pgtype.ByteaOID, pgtype.TextOID,
	}}
	args := []any{
		encryptedtype.NewBytes([]byte("blob")), encryptedtype.NewString("text"),
		rotation.NewMigratingBytes([]byte("blob")), ptr(rotation.NewMigratingString("text")), rotation.NewMigratingString("text"),
	}

	var eqb pgx.ExtendedQueryBuilder
	if err := eqb.Build(pgtype.NewMap(), sd, args); err != nil {
		t.Fatal(err)
	}
	without := p.active.Swap(0)

	m := pgtype.NewMap()
	Register(m)
	if err := eqb.Build(m, sd, args); err != nil {
		t.Fatal(err)
	}
	with := p.active.Load()
	if with != int64(len(args)) {
		t.Errorf("with Register: %d encryptions for %d values, want %[2]d", with, len(args))
	}
	for i, oid := range sd.ParamOIDs {
		if oid == pgtype.ByteaOID && eqb.ParamFormats[i] != pgtype.BinaryFormatCode {
			t.Errorf("with Register the bytea parameter %d (%T) is in format %d, want binary", i, args[i], eqb.ParamFormats[i])
		}
	}
	for i, v := range eqb.ParamValues {
		if !wireFormat.Match(v) {
			t.Errorf("parameter %d = %q, want the wire format", i, v)
		}
	}
	t.Logf("encryptions for three bytea and two text parameters: %d without Register, %d with", without, with)
	if without <= with {
		// The premise of Register: pgx alone encrypts a bytea argument
		// twice. If pgx stops doing so, this test (and the package doc)
		// must be revisited.
		t.Errorf("%d encryptions without Register, %d with: pgx no longer encrypts a bytea parameter twice without Register", without, with)
	}
}

// TestRegisterTwice checks that a second Register adds nothing.
func TestRegisterTwice(t *testing.T) {
	m := pgtype.NewMap()
	n := len(m.TryWrapEncodePlanFuncs)
	Register(m)
	Register(m)
	if got := len(m.TryWrapEncodePlanFuncs); got != n+1 {
		t.Errorf("after two Registers: %d wrap functions, want %d", got, n+1)
	}
}

// TestErrorsPassThrough checks that an error of Value (no provider) reaches
// the caller, wrapped, and names no plaintext, for every column type in
// text and bytea columns.
func TestErrorsPassThrough(t *testing.T) {
	encryptedtype.SetDefault(nil)
	m := pgtype.NewMap()
	Register(m)
	const secret = "hidden@example.com"
	for _, v := range []any{
		encryptedtype.NewString(secret), ptr(encryptedtype.NewBytes([]byte(secret))),
		rotation.NewMigratingString(secret), ptr(rotation.NewMigratingString(secret)),
		rotation.NewMigratingBytes([]byte(secret)), ptr(rotation.NewMigratingBytes([]byte(secret))),
	} {
		for _, oid := range []uint32{pgtype.ByteaOID, pgtype.TextOID} {
			_, err := m.Encode(oid, pgtype.BinaryFormatCode, v, nil)
			if !errors.Is(err, encryptedtype.ErrNoProvider) {
				t.Errorf("%T into OID %d: err = %v, want ErrNoProvider", v, oid, err)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("%T into OID %d: error text contains the plaintext: %v", v, oid, err)
			}
		}
	}
}

// TestOtherValuersUntouched checks that driver.Valuers of other packages
// are left to pgx.
func TestOtherValuersUntouched(t *testing.T) {
	if _, _, ok := tryWrapEncryptedValue(pgtype.Text{String: "x", Valid: true}); ok {
		t.Errorf("pgtype.Text was taken")
	}
	if _, _, ok := tryWrapEncryptedValue(ptr(pgtype.Text{String: "x", Valid: true})); ok {
		t.Errorf("*pgtype.Text was taken")
	}
	if _, _, ok := tryWrapEncryptedValue("plain"); ok {
		t.Errorf("a string was taken")
	}
	if _, _, ok := tryWrapEncryptedValue(ptr(ptr(rotation.NewMigratingString("x")))); ok {
		t.Errorf("a **rotation.MigratingString was taken")
	}
}

func ptr[T any](v T) *T { return &v }
