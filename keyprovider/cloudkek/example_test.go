package cloudkek_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	_ "gocloud.dev/secrets/localsecrets" // base64key://; in production import awskms, gcpkms, azurekeyvault or hashivault

	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/cloudkek"
)

func ExampleOpen() {
	ctx := context.Background()
	// A local key for the example. In production:
	//   "awskms://alias/colcrypt-kek?region=eu-west-1"
	//   "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/colcrypt-kek"
	//   "azurekeyvault://myvault.vault.azure.net/keys/colcrypt-kek"
	//   "hashivault://colcrypt-kek"
	kek, err := cloudkek.Open(ctx, "base64key://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil {
		log.Fatal(err)
	}
	defer kek.Close()

	dataKey, _ := keyprovider.GenerateKey(1)
	wrapped, err := kek.WrapKey(ctx, dataKey) // one KMS call, when the key is stored
	if err != nil {
		log.Fatal(err)
	}
	back, err := kek.UnwrapKey(ctx, 1, wrapped) // one KMS call per version, when loaded
	fmt.Println(back.Version(), err)

	_, err = kek.UnwrapKey(ctx, 2, wrapped) // bound to version 1
	fmt.Println(errors.Is(err, keyprovider.ErrUnwrap))
	fmt.Println(kek) // the scheme, never the URL
	// Output:
	// 1 <nil>
	// true
	// cloudkek base64key
}
