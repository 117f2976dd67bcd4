package pgxcodec_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/pgxcodec"
)

// Register lets pgx encode an encrypted value in bytea's binary format, the
// format CopyFrom uses. What is sent is the wire format, encrypted once.
func Example() {
	key, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, key)
	encryptedtype.SetDefault(keys)

	_, err := pgtype.NewMap().Encode(pgtype.ByteaOID, pgtype.BinaryFormatCode, encryptedtype.NewBytes([]byte("token")), nil)
	fmt.Println("without Register:", err != nil)

	m := pgtype.NewMap() // a connection's map: conn.TypeMap()
	pgxcodec.Register(m) // before the map is used
	buf, err := m.Encode(pgtype.ByteaOID, pgtype.BinaryFormatCode, encryptedtype.NewBytes([]byte("token")), nil)
	fmt.Println("with Register:", err, strings.HasPrefix(string(buf), "v1:"))

	var back encryptedtype.Bytes
	_ = back.Scan(buf)
	fmt.Println(string(back.Plaintext()))
	// Output:
	// without Register: true
	// with Register: <nil> true
	// token
}

// With a pool, register the types on every connection with AfterConnect;
// then CopyFrom writes encrypted values into BYTEA columns too.
func ExampleAfterConnect() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.AfterConnect = pgxcodec.AfterConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	rows := [][]any{
		{encryptedtype.NewString("ada@example.com"), encryptedtype.NewBytes([]byte("api token"))},
		{encryptedtype.NewString("bob@example.com"), (*encryptedtype.Bytes)(nil)}, // NULL
	}
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"email", "token"}, pgx.CopyFromRows(rows))
	fmt.Println(n, err)
}
