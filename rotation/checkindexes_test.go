package rotation_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/glebarez/go-sqlite" // the pure-Go "sqlite" database/sql driver

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// TestCheckIndexes checks Job.CheckIndexes on an SQLite file: nil for an
// Indexer configured as the one that wrote the index values, and for a
// table with nothing to check; ErrIndexMismatch, naming the column, for a
// different normaliser or index name; and nothing written either way.
func TestCheckIndexes(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "check.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k1, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, k1)
	codec := encryptedtype.NewCodec(keys)
	i1, _ := keyprovider.GenerateKey(1)
	i2, _ := keyprovider.GenerateKey(2)
	ikeys, _ := keyprovider.NewStatic(1, i1)
	app, err := blindindex.New("users.email", ikeys, blindindex.Config{Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.Fold)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, email_bidx TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		email := fmt.Sprintf(" User%d@Example.com", i)
		v, err := codec.Seal(ctx, []byte(email))
		if err != nil {
			t.Fatal(err)
		}
		ix, _ := app.Compute(email)
		if _, err := db.Exec(`INSERT INTO users VALUES (?, ?, ?)`, i, string(v), ix); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() string {
		var s strings.Builder
		rows, err := db.Query(`SELECT id, email, email_bidx FROM users ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var e, b string
			if err := rows.Scan(&id, &e, &b); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&s, id, e, b)
		}
		return s.String()
	}
	before := snapshot()
	// A new index key version, active: the old values still check under
	// version 1.
	ikeys2, _ := keyprovider.NewStatic(2, i1, i2)
	check := func(name string, cfg blindindex.Config, kr blindindex.Keyring) error {
		t.Helper()
		ix, err := blindindex.New(name, kr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		job, err := rotation.New(db, rotation.Table{Name: "users", PrimaryKey: "id", Dialect: rotation.SQLite,
			Columns: []rotation.Column{{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: ix}}}}}, codec)
		if err != nil {
			t.Fatal(err)
		}
		return job.CheckIndexes(ctx)
	}
	good := blindindex.Config{Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.Fold)}
	if err := check("users.email", good, ikeys); err != nil {
		t.Errorf("the application's settings: %v", err)
	}
	if err := check("users.email", good, ikeys2); err != nil {
		t.Errorf("the application's settings, a new index key active: %v", err)
	}
	for _, tc := range []struct {
		what, name string
		cfg        blindindex.Config
	}{
		{"another normaliser", "users.email", blindindex.Config{Normalize: blindindex.TrimSpace}},
		{"no normaliser", "users.email", blindindex.Config{}},
		{"another name", "people.email", good},
	} {
		err := check(tc.name, tc.cfg, ikeys2)
		if !errors.Is(err, rotation.ErrIndexMismatch) || !strings.Contains(err.Error(), "email_bidx") || !strings.Contains(err.Error(), "5 of the 5 stored values checked differ") {
			t.Errorf("%s: got %v, want ErrIndexMismatch for email_bidx", tc.what, err)
		}
	}
	// Index values under a version the keyring lacks cannot be checked:
	// nothing to report.
	only2, _ := keyprovider.NewStatic(2, i2)
	if err := check("users.email", blindindex.Config{}, only2); err != nil {
		t.Errorf("values under a version the Indexer lacks: %v", err)
	}
	if after := snapshot(); after != before {
		t.Error("CheckIndexes wrote to the table")
	}

	// No blind index, and an empty table: nothing to check.
	job, err := rotation.New(db, rotation.Table{Name: "users", PrimaryKey: "id", Dialect: rotation.SQLite,
		Columns: []rotation.Column{{Name: "email"}}}, codec)
	if err != nil {
		t.Fatal(err)
	}
	if err := job.CheckIndexes(ctx); err != nil {
		t.Errorf("no blind index: %v", err)
	}
	if _, err := db.Exec(`DELETE FROM users`); err != nil {
		t.Fatal(err)
	}
	if err := check("users.email", blindindex.Config{}, ikeys); err != nil {
		t.Errorf("an empty table: %v", err)
	}
	// A table that does not exist is an error, as for Rotate.
	job, _ = rotation.New(db, rotation.Table{Name: "nope", PrimaryKey: "id", Dialect: rotation.SQLite,
		Columns: []rotation.Column{{Name: "email"}}}, codec)
	if err := job.CheckIndexes(ctx); !errors.Is(err, rotation.ErrInvalidTable) {
		t.Errorf("a missing table: got %v, want ErrInvalidTable", err)
	}
}
