package keytable_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/keytable"
)

func ExampleDDL() {
	// For a migration tool: the same statements Table.Create runs.
	ddl, err := keytable.DDL("encryption_keys")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(ddl)
	// Output:
	// CREATE TABLE IF NOT EXISTS "encryption_keys" (
	//     id         INTEGER PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
	//     version    INTEGER NOT NULL UNIQUE CHECK (version > 0),
	//     key        BYTEA NOT NULL, -- wrapped by a key-encryption key (KEK)
	//     active     BOOLEAN NOT NULL DEFAULT false,
	//     created_at TIMESTAMPTZ NOT NULL DEFAULT now()
	// );
	// -- At most one active key.
	// CREATE UNIQUE INDEX IF NOT EXISTS "encryption_keys_one_active"
	//     ON "encryption_keys" (active) WHERE active;
}

// A Source other than the PostgreSQL table: here a fixed list in memory.
type staticSource []keytable.WrappedKey

func (s staticSource) LoadKeys(context.Context) ([]keytable.WrappedKey, error) { return s, nil }

func ExampleNewProvider() {
	ctx := context.Background()
	kek, err := keyprovider.NewLocalKEK(make([]byte, 32)) // use LocalKEKFromEnv
	if err != nil {
		log.Fatal(err)
	}
	var src staticSource
	for v := uint32(1); v <= 2; v++ {
		k, _ := keyprovider.GenerateKey(v)
		w, err := kek.WrapKey(ctx, k)
		if err != nil {
			log.Fatal(err)
		}
		src = append(src, keytable.WrappedKey{Version: v, Wrapped: w, Active: v == 2})
	}

	keys, err := keytable.NewProvider(ctx, src, kek, keytable.Options{
		OnError: func(err error) { slog.Error("colcrypt keys", "error", err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer keys.Close()

	codec := encryptedtype.NewCodec(keys)
	v, _ := codec.Seal(ctx, []byte("alice@example.com"))
	version, _ := encryptedtype.Version(v)
	fmt.Println("written under version", version)
	fmt.Println("versions held:", keys.Versions())
	// Output:
	// written under version 2
	// versions held: [1 2]
}

// The key table on PostgreSQL, from start-up to a key rotation.
func ExampleTable() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL")) // import _ "github.com/jackc/pgx/v5/stdlib"
	if err != nil {
		log.Fatal(err)
	}
	kek, err := keyprovider.LocalKEKFromEnv(keyprovider.EnvKEK) // or cloudkek.Open(ctx, "awskms://…")
	if err != nil {
		log.Fatal(err)
	}
	table, err := keytable.NewTable(db, kek, keytable.Config{}) // table "encryption_keys"
	if err != nil {
		log.Fatal(err)
	}
	if err := table.Create(ctx); err != nil { // or run keytable.DDL in a migration
		log.Fatal(err)
	}

	// First deployment: one key, active.
	if vs, _ := table.LoadKeys(ctx); len(vs) == 0 {
		v, err := table.AddNew(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if err := table.Activate(ctx, v); err != nil {
			log.Fatal(err)
		}
	}

	keys, err := table.NewProvider(ctx, keytable.Options{})
	if err != nil {
		log.Fatal(err) // names the KEK if it cannot unwrap
	}
	defer keys.Close()
	encryptedtype.SetDefault(keys)

	// Later, from the operator's tool: rotate.
	v, err := table.AddNew(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := table.Activate(ctx, v); err != nil {
		log.Fatal(err)
	}
	// … the rotation job re-saves old values, then:
	err = table.Retire(ctx, v-1, keytable.RetireOptions{
		InUse: func(ctx context.Context, version uint32) (bool, error) {
			var n int
			err := db.QueryRowContext(ctx, "SELECT count(*) FROM users WHERE email LIKE $1",
				fmt.Sprintf("v%d:%%", version)).Scan(&n)
			return n > 0, err
		},
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Moving from keys in the environment (COLCRYPT_KEYS, COLCRYPT_ACTIVE_KEY)
// to the key table: the same keys under the same versions, so no data is
// re-encrypted.
func ExampleTable_Import() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	envKeys, err := keyprovider.FromEnv()
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
	if err := table.Create(ctx); err != nil {
		log.Fatal(err)
	}
	added, err := table.Import(ctx, envKeys) // idempotent
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("imported %d keys", added)
}
