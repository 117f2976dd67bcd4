package pgnotify_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/keytable"
	"github.com/colcrypt/colcrypt/keyprovider/keytable/pgnotify"
)

// Every instance of the application sees a key activated by another
// within a second.
func ExampleListen() {
	ctx := context.Background()
	dsn := os.Getenv("DATABASE_URL")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		log.Fatal(err)
	}
	kek, err := keyprovider.LocalKEKFromEnv(keyprovider.EnvKEK)
	if err != nil {
		log.Fatal(err)
	}
	table, err := keytable.NewTable(db, kek, keytable.Config{})
	if err != nil {
		log.Fatal(err)
	}
	keys, err := table.NewProvider(ctx, keytable.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer keys.Close()

	l, err := pgnotify.Listen(ctx, dsn, table.Channel(), keys.Changed, pgnotify.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	encryptedtype.SetDefault(keys)
	// … serve requests …
}

// Listen checks its arguments before it connects.
func ExampleListen_channel() {
	_, err := pgnotify.Listen(context.Background(), "postgres://localhost/app", "Keys!", func() {}, pgnotify.Options{})
	fmt.Println(err)
	// Output:
	// pgnotify: channel name "Keys!": want lower-case letters, digits and underscores, at most 63 bytes
}
