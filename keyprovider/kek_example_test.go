package keyprovider_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/colcrypt/colcrypt/keyprovider"
)

func ExampleLocalKEK() {
	// In production COLCRYPT_KEK comes from a secrets manager, and was made
	// with `openssl rand -base64 32`. (This one is all zeros: never do that.)
	os.Setenv(keyprovider.EnvKEK, base64.StdEncoding.EncodeToString(make([]byte, 32)))
	defer os.Unsetenv(keyprovider.EnvKEK)

	kek, err := keyprovider.LocalKEKFromEnv(keyprovider.EnvKEK)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	dataKey, _ := keyprovider.GenerateKey(3)
	wrapped, err := kek.WrapKey(ctx, dataKey) // what the key table stores
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(wrapped) == keyprovider.LocalWrappedSize)

	back, err := kek.UnwrapKey(ctx, 3, wrapped)
	fmt.Println(back.Version(), err)

	// The version is bound into the wrapping: the row of version 4 cannot
	// borrow version 3's key.
	_, err = kek.UnwrapKey(ctx, 4, wrapped)
	fmt.Println(errors.Is(err, keyprovider.ErrUnwrap))
	fmt.Println(kek) // prints its public id, never the key
	// Output:
	// true
	// 3 <nil>
	// true
	// local KEK 83ae39fcda64c5ec
}
