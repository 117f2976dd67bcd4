// Package pgxcodec registers colcrypt's column types with the type system of
// pgx v5, so that native pgx encodes them in PostgreSQL's binary format too.
// The column types are encryptedtype.String, encryptedtype.Bytes and
// encryptedtype.JSON[T], and rotation.MigratingString and
// rotation.MigratingBytes, the types of a column being converted from
// plaintext, which write the same wire format.
//
// Without it the column types already work with pgx: each is a
// driver.Valuer and a sql.Scanner, and pgx calls Value and Scan. But pgx's
// fallback for a driver.Valuer hands the value on as a Go string, and pgx
// has no binary encoding of a string for bytea. Two things follow for BYTEA
// columns:
//
//   - CopyFrom, which always uses the binary format, fails with "unable to
//     encode … into binary format for bytea" for an encrypted value in a
//     BYTEA column (TEXT and VARCHAR columns work without this package).
//   - Query, Exec and SendBatch, in the execution modes that prepare or
//     describe statements, try the binary format first for a bytea
//     parameter, fail, and encode again as text: every encrypted BYTEA
//     argument is encrypted twice, one result thrown away.
//
// Register (or AfterConnect, for a pool) fixes both: an encrypted value is
// encrypted once and sent as the bytes of its wire format, as text or
// binary, to TEXT, VARCHAR and BYTEA columns alike. What is stored is
// unchanged: the same ASCII wire format, byte for byte, as without it.
//
//	cfg, err := pgxpool.ParseConfig(dsn)
//	cfg.AfterConnect = pgxcodec.AfterConnect
//	pool, err := pgxpool.NewWithConfig(ctx, cfg)
//
// Reading needs nothing: pgx calls Scan on the column types, in text and in
// binary format.
//
// The package imports pgx; packages encryptedtype and rotation do not, so
// programs that do not use pgx do not compile it. It imports rotation only
// to name the two Migrating types; that adds colcrypt's own packages and no
// module pgx does not already bring.
package pgxcodec

import (
	"context"
	"database/sql/driver"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/colcrypt/colcrypt/internal/coltype"
)

// Register makes m encode the column types (encryptedtype.String,
// encryptedtype.Bytes, encryptedtype.JSON[T], rotation.MigratingString,
// rotation.MigratingBytes, and pointers to them) directly, in text or
// binary format, to any text-like or bytea column. Call it before m is
// used for a query: pgx caches how it encodes each Go type. Registering
// twice is harmless.
func Register(m *pgtype.Map) {
	fn := reflect.ValueOf(pgtype.TryWrapEncodePlanFunc(tryWrapEncryptedValue)).Pointer()
	for _, f := range m.TryWrapEncodePlanFuncs {
		if reflect.ValueOf(f).Pointer() == fn {
			return
		}
	}
	// First, so that no generic wrapper of pgx's sees the types before it.
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapEncryptedValue}, m.TryWrapEncodePlanFuncs...)
}

// AfterConnect registers the column types on a new connection. It has the
// signature of pgxpool.Config.AfterConnect:
//
//	cfg.AfterConnect = pgxcodec.AfterConnect
//
// For a single pgx.Conn, call Register(conn.TypeMap()) after connecting.
func AfterConnect(_ context.Context, conn *pgx.Conn) error {
	Register(conn.TypeMap())
	return nil
}

// tryWrapEncryptedValue is a pgtype.TryWrapEncodePlanFunc that takes the
// column types and pointers to them. (pgx does not dereference a pointer
// whose element is a driver.Valuer: it would call Value on the pointer and
// fail for bytea in binary format.)
func tryWrapEncryptedValue(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if _, ok := value.(driver.Valuer); !ok {
		return nil, nil, false
	}
	t := reflect.TypeOf(value)
	isPtr := t.Kind() == reflect.Pointer
	if isPtr {
		t = t.Elem()
	}
	if !coltype.Is(t) { // a **T has no package path and is no column type
		return nil, nil, false
	}
	return &encodePlan{ptr: isPtr}, wire(""), true
}

// encodePlan encrypts the value (by calling its Value method) and hands the
// wire format on as a wire, which pgx's text and bytea codecs encode in
// either format.
type encodePlan struct {
	next pgtype.EncodePlan
	ptr  bool // the value is a pointer, which may be nil
}

// SetNext implements pgtype.WrappedEncodePlanNextSetter.
func (p *encodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

// Encode implements pgtype.EncodePlan.
func (p *encodePlan) Encode(value any, buf []byte) ([]byte, error) {
	if p.ptr && reflect.ValueOf(value).IsNil() {
		// pgx writes nil pointers as NULL before it gets here; this is
		// for a caller of the plan itself.
		return nil, nil
	}
	v, err := value.(driver.Valuer).Value()
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return p.next.Encode(wire(v), buf)
	case []byte:
		return p.next.Encode(wire(v), buf)
	}
	// Not the case for any of the column types; name the type only.
	return nil, fmt.Errorf("pgxcodec: %T.Value returned a %T, want a string", value, v)
}

// wire is an encrypted value in the wire format. It implements
// pgtype.TextValuer (for text, varchar and the text format of any type) and
// pgtype.BytesValuer (for bytea), so pgx encodes it as its bytes in every
// format.
type wire string

// TextValue implements pgtype.TextValuer.
func (w wire) TextValue() (pgtype.Text, error) {
	return pgtype.Text{String: string(w), Valid: true}, nil
}

// BytesValue implements pgtype.BytesValuer. The slice shares w's memory:
// pgx's bytea plans only read it, appending it to their buffer.
func (w wire) BytesValue() ([]byte, error) {
	if len(w) == 0 {
		return []byte{}, nil
	}
	return unsafe.Slice(unsafe.StringData(string(w)), len(w)), nil
}
