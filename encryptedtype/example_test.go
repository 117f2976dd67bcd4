package encryptedtype_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// A String field encrypts on Value and decrypts on Scan. Any database/sql
// driver, GORM, sqlc or pgx calls these methods for you; here they are
// called by hand to show what the database receives.
func Example() {
	key, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, key)
	encryptedtype.SetDefault(keys) // once, at start-up

	email := encryptedtype.NewString("alice@example.com")
	stored, _ := email.Value() // what INSERT sends
	fmt.Println(strings.HasPrefix(stored.(string), "v1:"), strings.Contains(stored.(string), "alice"))

	var back encryptedtype.String
	_ = back.Scan(stored) // what SELECT does
	fmt.Println(back.Plaintext())
	fmt.Println(back) // printing never shows the plaintext
	// Output:
	// true false
	// alice@example.com
	// [REDACTED]
}

// Seal and Open are the context-aware functions, for code that has a
// context and works with raw values.
func ExampleCodec_Open() {
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	old, _ := keyprovider.NewStatic(1, k1)
	v1, _ := encryptedtype.NewCodec(old).Seal(context.Background(), []byte("written under key 1"))

	// Key 2 is activated; values under key 1 stay readable.
	rotated, _ := keyprovider.NewStatic(2, k1, k2)
	c := encryptedtype.NewCodec(rotated)
	pt, err := c.Open(context.Background(), v1)
	fmt.Println(string(pt), err)
	v2, _ := c.Seal(context.Background(), []byte("new"))
	version, _ := encryptedtype.Version(v2)
	fmt.Println("new values use key", version)
	// Output:
	// written under key 1 <nil>
	// new values use key 2
}

// A JSON column holds any encoding/json value.
func ExampleJSON() {
	key, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, key)
	encryptedtype.SetDefault(keys)

	type Profile struct {
		Country string
		Tags    []string
	}
	stored, _ := encryptedtype.NewJSON(Profile{Country: "NZ", Tags: []string{"vip"}}).Value()

	var back encryptedtype.JSON[Profile]
	_ = back.Scan(stored)
	fmt.Printf("%+v\n", back.Plaintext())
	// Output: {Country:NZ Tags:[vip]}
}
