// Command gorm shows colcrypt encrypting GORM model fields: a User with an
// encrypted email, phone, API token and JSON profile is saved through GORM,
// the raw rows are read back with a plain SELECT to show that the database
// holds only ciphertext, and the model is loaded again with First to show
// the decrypted values, the [REDACTED] printing of the struct, and a NULL
// column staying NULL.
//
// Run it from the repository root. With no set-up at all it uses an
// in-memory SQLite database (the pure-Go github.com/glebarez/sqlite driver,
// no cgo) and a throwaway key:
//
//	go run ./examples/gorm
//
// To use Postgres, set DATABASE_URL. The program drops and recreates its own
// table, example_users, on every run, and leaves it behind so that you can
// look at it with psql:
//
//	DATABASE_URL='postgres://user:pass@localhost:5432/db?sslmode=disable' go run ./examples/gorm
//
// To use your own keys, set COLCRYPT_KEYS to comma-separated
// "version:base64key" pairs (32-byte keys) and, when it holds more than one
// key, COLCRYPT_ACTIVE_KEY to the version new values are written under:
//
//	export COLCRYPT_KEYS="1:$(openssl rand -base64 32)"
//
// Without COLCRYPT_KEYS the program generates a random key that lives only
// in memory for the run; it never prints key material.
//
// The whole integration is three steps: pick a key provider and pass it to
// encryptedtype.SetDefault at start-up; declare the sensitive fields with
// the column types (String, Bytes, JSON[T], and pointers to them for
// nullable columns); use GORM as usual. Encryption happens in the types'
// Value and Scan methods, so GORM needs no plugin or hook. Encrypted columns
// cannot be searched with WHERE email = ?; equality lookups need a blind
// index (package blindindex).
package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// User is an ordinary GORM model. Name is stored as it is; the
// encryptedtype fields are encrypted on the way into the database and
// decrypted on the way out. AutoMigrate creates them as text columns.
//
// Writes through the struct are always encrypted. When you update a single
// column by name, pass the column type, not a bare string: GORM writes
// db.Model(&u).Update("email", encryptedtype.NewString(addr)) encrypted,
// but Update("email", addr) or Updates(map[string]any{"email": addr})
// would store addr in the clear.
type User struct {
	ID       uint
	Name     string
	Email    encryptedtype.String        `gorm:"not null"`
	Phone    *encryptedtype.String       // nullable: nil is stored as NULL
	APIToken encryptedtype.String        `gorm:"not null"`
	Profile  encryptedtype.JSON[Profile] `gorm:"not null"` // marshalled to JSON, then encrypted
}

// TableName keeps the example out of the way of any real users table.
func (User) TableName() string { return "example_users" }

// Profile is stored as one encrypted JSON document.
type Profile struct {
	Country   string `json:"country"`
	BirthDate string `json:"birth_date"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "colcrypt example: error:", err)
		os.Exit(1)
	}
}

func run() error {
	keys, err := loadKeys()
	if err != nil {
		return err
	}
	// The column types encrypt and decrypt with this provider.
	encryptedtype.SetDefault(keys)

	db, where, err := openDB()
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	active, err := keys.Active()
	if err != nil {
		return err
	}
	fmt.Printf("database: %s\nkeys:     %s, writing under key version %d\n\n", where, keySource(), active.Version())

	// Start from an empty table so that the example can run any number of
	// times against the same database.
	if err := db.Migrator().DropTable(&User{}); err != nil {
		return fmt.Errorf("dropping table example_users: %w", err)
	}
	if err := db.AutoMigrate(&User{}); err != nil {
		return fmt.Errorf("creating table example_users: %w", err)
	}

	// 1. Save two users through GORM, one with a phone number, one without.
	phone := encryptedtype.NewString("+44 20 7946 0958")
	users := []User{
		{
			Name:     "Ada Lovelace",
			Email:    encryptedtype.NewString("ada@example.com"),
			Phone:    &phone,
			APIToken: encryptedtype.NewString("tok_live_4f9a2c7e1b"),
			Profile:  encryptedtype.NewJSON(Profile{Country: "GB", BirthDate: "1815-12-10"}),
		},
		{
			Name:     "Grace Hopper",
			Email:    encryptedtype.NewString("grace@example.com"),
			Phone:    nil, // stays NULL in the database
			APIToken: encryptedtype.NewString("tok_live_8d03e6b5a2"),
			Profile:  encryptedtype.NewJSON(Profile{Country: "US", BirthDate: "1906-12-09"}),
		},
	}
	if err := db.Create(&users).Error; err != nil {
		return fmt.Errorf("inserting users: %w", err)
	}
	fmt.Printf("1. db.Create saved %d users: Ada with a phone number, Grace with Phone: nil.\n\n", len(users))

	// 2. What anyone with a database connection, a dump or a backup sees.
	fmt.Println("2. What the database holds (a raw SELECT, every column read as text):")
	if err := printRawRows(db); err != nil {
		return err
	}

	// 3. Load the models again: Scan decrypts every field.
	fmt.Println("3. db.First decrypts the fields; read them with Plaintext():")
	loaded := make([]User, len(users))
	for i, saved := range users {
		u := &loaded[i]
		if err := db.First(u, saved.ID).Error; err != nil {
			// Decryption errors come back through GORM unchanged, so
			// errors.Is finds the colcrypt sentinel errors.
			if errors.Is(err, encryptedtype.ErrUnknownVersion) || errors.Is(err, encryptedtype.ErrAuth) {
				return fmt.Errorf("loading user %d: a column was written under a key this program does not hold: %w", saved.ID, err)
			}
			return fmt.Errorf("loading user %d: %w", saved.ID, err)
		}
		fmt.Printf("   %s (id %d)\n", u.Name, u.ID)
		fmt.Printf("     Email.Plaintext()    %s\n", u.Email.Plaintext())
		if u.Phone != nil {
			fmt.Printf("     Phone.Plaintext()    %s\n", u.Phone.Plaintext())
		} else {
			fmt.Printf("     Phone                nil (NULL stays NULL)\n")
		}
		fmt.Printf("     APIToken.Plaintext() %s\n", u.APIToken.Plaintext())
		fmt.Printf("     Profile.Plaintext()  %+v\n", u.Profile.Plaintext())
	}

	// 4. Logging a model by accident does not leak it: fmt, slog and
	// encoding/json all show the column types as [REDACTED]. An API
	// response that must carry a value copies Plaintext() into its own type.
	fmt.Printf("\n4. Printing the models, as a careless log line would:\n")
	for _, u := range loaded {
		fmt.Printf("   fmt %%+v:  %+v\n", u)
	}
	js, err := json.Marshal(loaded[0])
	if err != nil {
		return err
	}
	fmt.Printf("   json:     %s\n", js)
	return nil
}

// loadKeys returns the keyring from COLCRYPT_KEYS, or a throwaway demo key
// when that variable is not set.
func loadKeys() (*keyprovider.Static, error) {
	if _, ok := os.LookupEnv(keyprovider.EnvKeys); ok {
		keys, err := keyprovider.FromEnv()
		if err != nil {
			return nil, fmt.Errorf("reading keys: %w", err)
		}
		return keys, nil
	}
	fmt.Fprint(os.Stderr, `note: COLCRYPT_KEYS is not set, so this run uses a random DEMO key that exists
      only in memory: whatever it encrypts is unreadable once the program exits.
      For real use, give every instance of your application the same keys, e.g.
          export COLCRYPT_KEYS="1:$(openssl rand -base64 32)"
      (format: comma-separated version:base64key pairs of 32-byte keys; with
      more than one key, also set COLCRYPT_ACTIVE_KEY=<version to write under>).
      Keep the keys in a secret store, never beside the database or its backups.

`)
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		return nil, err
	}
	return keyprovider.NewStatic(1, k)
}

func keySource() string {
	if _, ok := os.LookupEnv(keyprovider.EnvKeys); ok {
		return "from " + keyprovider.EnvKeys
	}
	return "throwaway demo key (COLCRYPT_KEYS not set)"
}

// openDB opens Postgres when DATABASE_URL is set, and an in-memory SQLite
// database otherwise.
func openDB() (*gorm.DB, string, error) {
	cfg := &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)}
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		db, err := gorm.Open(postgres.Open(dsn), cfg)
		if err != nil {
			// The DSN may hold a password: do not repeat it.
			return nil, "", fmt.Errorf("connecting to Postgres (DATABASE_URL): %w", err)
		}
		return db, "Postgres (DATABASE_URL)", nil
	}
	db, err := gorm.Open(sqlite.Open(":memory:"), cfg)
	if err != nil {
		return nil, "", fmt.Errorf("opening in-memory SQLite: %w", err)
	}
	// Every connection to ":memory:" is a database of its own: use one.
	sqlDB, err := db.DB()
	if err != nil {
		return nil, "", err
	}
	sqlDB.SetMaxOpenConns(1)
	return db, "SQLite, in memory (set DATABASE_URL to use Postgres)", nil
}

// printRawRows selects the table's columns as plain strings, bypassing the
// column types, and prints them.
func printRawRows(db *gorm.DB) error {
	rows, err := db.Raw("SELECT id, name, email, phone, api_token, profile FROM example_users ORDER BY id").Rows()
	if err != nil {
		return fmt.Errorf("selecting raw rows: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var name string
		var email, phone, token, profile sql.NullString
		if err := rows.Scan(&id, &name, &email, &phone, &token, &profile); err != nil {
			return fmt.Errorf("scanning raw row: %w", err)
		}
		fmt.Printf("   id %d  name      %s   (a plain column)\n", id, name)
		fmt.Printf("         email     %s\n", raw(email))
		fmt.Printf("         phone     %s\n", raw(phone))
		fmt.Printf("         api_token %s\n", raw(token))
		fmt.Printf("         profile   %s\n", raw(profile))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading raw rows: %w", err)
	}
	fmt.Println("   Format: v<key version>:<base64url of nonce || ciphertext || tag>, AES-256-GCM")
	fmt.Println("   with a fresh random nonce, so equal plaintexts never look equal.")
	fmt.Println()
	return nil
}

func raw(s sql.NullString) string {
	if !s.Valid {
		return "NULL"
	}
	return s.String
}
