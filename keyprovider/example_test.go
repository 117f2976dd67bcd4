package keyprovider_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/colcrypt/colcrypt/keyprovider"
)

func ExampleNewStatic() {
	k1, err := keyprovider.GenerateKey(1)
	if err != nil {
		log.Fatal(err)
	}
	k2, err := keyprovider.GenerateKey(2)
	if err != nil {
		log.Fatal(err)
	}
	// Version 1 stays readable; new values are written under version 2.
	keys, err := keyprovider.NewStatic(2, k1, k2)
	if err != nil {
		log.Fatal(err)
	}

	active, _ := keys.Active()
	fmt.Println("active:", active) // keys print redacted
	fmt.Println("versions:", keys.Versions())

	_, err = keys.Key(3)
	fmt.Println("version 3 unknown:", errors.Is(err, keyprovider.ErrUnknownVersion))
	// Output:
	// active: keyprovider.Key{version: 2, secret: REDACTED}
	// versions: [1 2]
	// version 3 unknown: true
}

func ExampleFromEnv() {
	// In production the deployment sets these from a secrets manager; the
	// text comes from EncodeKeys (or `colcrypt keygen`).
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	os.Setenv(keyprovider.EnvKeys, keyprovider.EncodeKeys(k1, k2)) // "1:<base64>,2:<base64>"
	os.Setenv(keyprovider.EnvActiveKey, "2")
	defer os.Unsetenv(keyprovider.EnvKeys)
	defer os.Unsetenv(keyprovider.EnvActiveKey)

	keys, err := keyprovider.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	active, _ := keys.Active()
	fmt.Println("active version:", active.Version())
	fmt.Println("versions:", keys.Versions())

	// Errors name the variable, never its value.
	os.Setenv(keyprovider.EnvActiveKey, "7")
	_, err = keyprovider.FromEnv()
	fmt.Println(err)
	// Output:
	// active version: 2
	// versions: [1 2]
	// environment variables COLCRYPT_KEYS and COLCRYPT_ACTIVE_KEY: colcrypt: unknown key version: active version 7 is not among the keys given
}

func ExampleGenerateKey() {
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		log.Fatal(err)
	}
	// Never print k.Bytes() or EncodeKeys(k): they are the secret. Store
	// EncodeKeys(k) in a secrets manager instead.
	fmt.Println(k.Version(), len(k.Bytes()), k.Valid())
	fmt.Printf("%v\n", k)
	// Output:
	// 1 32 true
	// keyprovider.Key{version: 1, secret: REDACTED}
}

func ExampleDeriveKey() {
	// The seed's Node.js code:
	//
	//	const salt = generateSalt();                 // 32 random bytes, stored
	//	const key = deriveKey(passphrase, salt);     // PBKDF2-HMAC-SHA-512, 600000
	//
	// derives the same key as DeriveKey with the same passphrase and salt.
	salt, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	k, err := keyprovider.DeriveKey(1, []byte("test-passphrase"), salt)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(k)

	// A passphrase never appears in an error.
	_, err = keyprovider.DeriveKey(1, []byte("test-passphrase"), salt[:8])
	fmt.Println(err)
	// Output:
	// keyprovider.Key{version: 1, secret: REDACTED}
	// colcrypt: invalid key: salt is 8 bytes, want at least 16 (see GenerateSalt)
}

func ExampleNewPassphrase() {
	// A program moving from the seed's Node.js code keeps its passphrase and
	// its application-wide salt (here hex) in its own variables; colcrypt
	// reads no passphrase variables itself.
	os.Setenv("MYAPP_ENCRYPTION_PASSPHRASE", "test-passphrase")
	os.Setenv("MYAPP_ENCRYPTION_SALT", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	defer os.Unsetenv("MYAPP_ENCRYPTION_PASSPHRASE")
	defer os.Unsetenv("MYAPP_ENCRYPTION_SALT")

	salt, err := hex.DecodeString(os.Getenv("MYAPP_ENCRYPTION_SALT"))
	if err != nil {
		log.Fatal("MYAPP_ENCRYPTION_SALT is not hex")
	}
	keys, err := keyprovider.NewPassphrase(1, salt, map[uint32][]byte{
		1: []byte(os.Getenv("MYAPP_ENCRYPTION_PASSPHRASE")),
	})
	if err != nil {
		log.Fatal(err)
	}
	active, _ := keys.Active()
	fmt.Println(active)
	// Output:
	// keyprovider.Key{version: 1, secret: REDACTED}
}

func ExampleDeriveKeyArgon2id() {
	// Store the salt and the parameters beside each other: both are part of
	// the key.
	salt := keyprovider.GenerateSalt()
	params := keyprovider.DefaultArgon2Params()
	k, err := keyprovider.DeriveKeyArgon2id(1, []byte("correct horse battery staple"), salt, params)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", params)
	fmt.Println(k)
	// Output:
	// {Time:3 MemoryKiB:65536 Threads:4}
	// keyprovider.Key{version: 1, secret: REDACTED}
}
