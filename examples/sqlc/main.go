// Command sqlc shows colcrypt with sqlc-generated code on pgx v5: the
// sqlc.yaml overrides map the encrypted columns of users to colcrypt's
// column types, so the generated CreateUser, GetUser and FindUsersByEmail
// encrypt and decrypt without a line of hand-written crypto, and a blind
// index finds a user by email.
//
// It needs a Postgres database in DATABASE_URL:
//
//	DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/sqlc
//
// Keys come from COLCRYPT_KEYS (data keys) and COLCRYPT_INDEX_KEYS (blind
// index root keys), as keyprovider.FromEnv reads them; without them the
// program uses throwaway demo keys and says so. The program creates its
// table, sqlc_example_users, if missing and deletes its own rows first.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/examples/sqlc/db"
	"github.com/colcrypt/colcrypt/examples/sqlc/model"
	"github.com/colcrypt/colcrypt/keyprovider"

	_ "embed"
)

//go:embed schema.sql
var schema string

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "colcrypt sqlc example: error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("DATABASE_URL is not set: this example needs Postgres, e.g.\n" +
			"\tDATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go run ./examples/sqlc\n" +
			"(go run ./examples/gorm runs without any database)")
	}
	dataKeys, err := keys(keyprovider.EnvKeys, keyprovider.EnvActiveKey)
	if err != nil {
		return err
	}
	indexKeys, err := keys("COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY")
	if err != nil {
		return err
	}

	// 1. Start-up: the data keys for the column types, and a blind index
	// on the email, case-insensitive.
	encryptedtype.SetDefault(dataKeys)
	emails, err := blindindex.New("users.email", indexKeys, blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
	})
	if err != nil {
		return err
	}

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connecting to DATABASE_URL: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, schema); err != nil {
		return fmt.Errorf("creating the table: %w", err)
	}
	if _, err := pool.Exec(ctx, "DELETE FROM sqlc_example_users"); err != nil {
		return err
	}
	q := db.New(pool)

	// 2. Writes: the generated CreateUser takes colcrypt types.
	email := "Ada.Lovelace@Example.com"
	bidx, err := emails.Compute(email)
	if err != nil {
		return err
	}
	phone := encryptedtype.NewString("+44 20 7946 0958")
	u, err := q.CreateUser(ctx, db.CreateUserParams{
		Name:      "Ada Lovelace",
		Email:     encryptedtype.NewString(email),
		EmailBidx: bidx,
		Phone:     &phone,
		Profile:   encryptedtype.NewJSON(model.Profile{Country: "GB", Languages: []string{"en", "fr"}}),
	})
	if err != nil {
		return fmt.Errorf("CreateUser: %w", err)
	}
	fmt.Printf("1. CreateUser saved user %d.\n\n", u.ID)

	raw, err := q.RawUser(ctx, u.ID)
	if err != nil {
		return err
	}
	fmt.Println("2. What the database holds:")
	fmt.Println("   email      ", raw.Email)
	fmt.Println("   email_bidx ", raw.EmailBidx)
	fmt.Println("   phone      ", raw.Phone)
	fmt.Println("   profile    ", raw.Profile)

	// 3. Lookup by email through the blind index, in another case: the
	// index is case-folded, and Lookup covers every live index-key version.
	values, err := emails.Lookup("  ada.lovelace@example.COM ")
	if err != nil {
		return err
	}
	found, err := q.FindUsersByEmail(ctx, values)
	if err != nil {
		return fmt.Errorf("FindUsersByEmail: %w", err)
	}
	if len(found) != 1 {
		return fmt.Errorf("FindUsersByEmail found %d users, want 1", len(found))
	}
	f := found[0]
	fmt.Printf("\n3. FindUsersByEmail(\"  ada.lovelace@example.COM \") found user %d:\n", f.ID)
	fmt.Println("   Email.Plaintext()   ", f.Email.Plaintext())
	fmt.Println("   Phone.Plaintext()   ", f.Phone.Plaintext())
	fmt.Printf("   Profile.Plaintext()  %+v\n", f.Profile.Plaintext())
	fmt.Printf("   printed with %%+v:    %+v\n", f)

	// 4. "" stays "" (encrypted like any value) and NULL stays NULL (a nil
	// *encryptedtype.String writes NULL).
	empty := encryptedtype.NewString("")
	if err := q.UpdatePhone(ctx, db.UpdatePhoneParams{ID: u.ID, Phone: &empty}); err != nil {
		return fmt.Errorf("UpdatePhone: %w", err)
	}
	again, err := q.GetUser(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("GetUser: %w", err)
	}
	if again.Phone == nil || again.Phone.Plaintext() != "" {
		return errors.New(`UpdatePhone("") did not read back as ""`)
	}
	if err := q.UpdatePhone(ctx, db.UpdatePhoneParams{ID: u.ID, Phone: nil}); err != nil {
		return fmt.Errorf("UpdatePhone: %w", err)
	}
	if again, err = q.GetUser(ctx, u.ID); err != nil {
		return fmt.Errorf("GetUser: %w", err)
	}
	if raw, err = q.RawUser(ctx, u.ID); err != nil {
		return err
	}
	if again.Phone != nil || raw.Phone != "NULL" {
		return errors.New("UpdatePhone(nil) did not store NULL")
	}
	fmt.Println("\n4. UpdatePhone(\"\") reads back \"\"; UpdatePhone(nil) stores NULL and reads back nil.")

	// 5. The unique blind index refuses a second account for the same
	// address in another case.
	dupBidx, err := emails.Compute("ADA.LOVELACE@EXAMPLE.COM")
	if err != nil {
		return err
	}
	_, err = q.CreateUser(ctx, db.CreateUserParams{
		Name: "Impostor", Email: encryptedtype.NewString("ADA.LOVELACE@EXAMPLE.COM"), EmailBidx: dupBidx,
		Profile: encryptedtype.NewJSON(model.Profile{}),
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" { // unique_violation
		return fmt.Errorf("a duplicate email: want a unique violation, got %v", err)
	}
	fmt.Println("\n5. A second user with ADA.LOVELACE@EXAMPLE.COM is refused by the UNIQUE blind index.")
	return nil
}

// keys reads a keyring from the environment, or makes a throwaway one.
func keys(keysVar, activeVar string) (*keyprovider.Static, error) {
	if _, ok := os.LookupEnv(keysVar); ok {
		return keyprovider.FromEnvVars(keysVar, activeVar)
	}
	fmt.Fprintf(os.Stderr, "note: %s is not set: using a throwaway demo key (see README.md, \"Keys\").\n", keysVar)
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		return nil, err
	}
	return keyprovider.NewStatic(1, k)
}
