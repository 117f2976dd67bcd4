package pgxcodec

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// BenchmarkBuildParams builds the parameters of a prepared statement as
// pgx does for Query, Exec and SendBatch, for one encrypted value in a
// bytea and in a text column, with pgx alone ("pgx") and with Register
// ("pgxcodec"). For bytea, pgx alone encrypts every value twice (binary
// first, which fails, then text); for text both do the same work. The
// floor is the same statement with the wire-format string already made.
//
//	go test -run '^$' -bench BuildParams ./pgxcodec/
func BenchmarkBuildParams(b *testing.B) {
	useKeys(b)
	wire, err := encryptedtype.NewBytes([]byte("alice@example.com")).Value()
	if err != nil {
		b.Fatal(err)
	}
	for _, col := range []struct {
		name string
		oid  uint32
	}{{"bytea", pgtype.ByteaOID}, {"text", pgtype.TextOID}} {
		sd := &pgconn.StatementDescription{ParamOIDs: []uint32{col.oid}}
		for _, v := range []struct {
			name     string
			register bool
			arg      any
		}{
			{"floor", false, []byte(wire.(string))},
			{"pgx", false, encryptedtype.NewBytes([]byte("alice@example.com"))},
			{"pgxcodec", true, encryptedtype.NewBytes([]byte("alice@example.com"))},
		} {
			b.Run(col.name+"/"+v.name, func(b *testing.B) {
				m := pgtype.NewMap()
				if v.register {
					Register(m)
				}
				var eqb pgx.ExtendedQueryBuilder
				args := []any{v.arg}
				b.ReportAllocs()
				for b.Loop() {
					if err := eqb.Build(m, sd, args); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
