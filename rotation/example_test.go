package rotation_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// While a column is converted from plaintext, the application reads it
// with MigratingString, which accepts both forms and writes ciphertext.
func ExampleMigratingString() {
	key, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, key)
	encryptedtype.SetDefault(keys)
	defer encryptedtype.SetDefault(nil)

	// A row the migration has not reached yet holds plaintext.
	var email rotation.MigratingString
	if err := email.Scan("ada@example.com"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(email.Plaintext(), email.WasEncrypted())

	// Writing it back (or any new write) stores ciphertext…
	stored, _ := email.Value()
	v, _ := encryptedtype.Version([]byte(stored.(string)))
	fmt.Println("stored under key version", v)

	// …which reads back the same.
	if err := email.Scan(stored); err != nil {
		log.Fatal(err)
	}
	fmt.Println(email.Plaintext(), email.WasEncrypted())

	// Printing never shows the value.
	fmt.Println(email)
	// Output:
	// ada@example.com false
	// stored under key version 1
	// ada@example.com true
	// [REDACTED]
}

// Rotating a table's encrypted columns and its blind index to new key
// versions. The keys hold the old and the new versions, the new one active.
func ExampleJob_Rotate() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://…") // with _ "github.com/jackc/pgx/v5/stdlib"
	if err != nil {
		log.Fatal(err)
	}
	keys, err := keyprovider.FromEnv() // COLCRYPT_KEYS="1:…,2:…", COLCRYPT_ACTIVE_KEY=2
	if err != nil {
		log.Fatal(err)
	}
	indexKeys, err := keyprovider.FromEnvVars("COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY")
	if err != nil {
		log.Fatal(err)
	}
	emails, err := blindindex.New("users.email", indexKeys, blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
	})
	if err != nil {
		log.Fatal(err)
	}
	job, err := rotation.New(db, rotation.Table{
		Name:       "users",
		PrimaryKey: "id",
		Columns: []rotation.Column{
			{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: emails}}},
			{Name: "phone"},
		},
	}, encryptedtype.NewCodec(keys))
	if err != nil {
		log.Fatal(err)
	}
	res, err := job.Rotate(ctx, rotation.Options{
		BatchSize: 1000,
		Progress: func(p rotation.Progress) {
			log.Printf("%d/%d rows, %.0f rows/s, ETA %v", p.Done, p.Total, p.Rate, p.ETA)
		},
		OnFailure: func(f rotation.Failure) { log.Printf("left untouched: %v", f) },
	})
	switch {
	case errors.Is(err, rotation.ErrFailures):
		log.Printf("%d rows do not decrypt; the rest is rotated", len(res.Failures))
	case err != nil:
		log.Fatal(err) // run it again: it carries on where it stopped
	}
	census, err := job.Census(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("done:", census.Done())
}
