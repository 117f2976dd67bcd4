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

// plainIndexer is an Indexer without ComputeVersion: CheckIndexes cannot
// recompute its values, only see where they are.
type plainIndexer struct{}

func (plainIndexer) Compute(pt string) (string, error) { return fmt.Sprintf("b1:%d", len(pt)), nil }

// TestCheckIndexesOrphans: an index column that holds values only beside
// NULL source values (never beside a value of its source) most likely has
// another source than the description says, and Rotate, which clears the
// index of a NULL source, would clear every value: CheckIndexes and Rotate
// refuse with ErrIndexMismatch, writing nothing. One row with both values
// is enough to proceed, and an index column declared NOT NULL, which
// Rotate does not clear, is not refused.
func TestCheckIndexesOrphans(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "orphans.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k1, _ := keyprovider.GenerateKey(1)
	keys, _ := keyprovider.NewStatic(1, k1)
	codec := encryptedtype.NewCodec(keys)
	i1, _ := keyprovider.GenerateKey(1)
	ikeys, _ := keyprovider.NewStatic(1, i1)
	bi, err := blindindex.New("users.email", ikeys, blindindex.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ddl := range []string{
		`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, email_bidx TEXT, phone TEXT)`,
		`CREATE TABLE strict (id INTEGER PRIMARY KEY, email TEXT, email_bidx TEXT NOT NULL)`,
	} {
		if _, err := db.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
	// email_bidx holds the index of phone; email is NULL throughout.
	for i := 1; i <= 3; i++ {
		phone := fmt.Sprintf("+44 %d", i)
		v, _ := codec.Seal(ctx, []byte(phone))
		ix, _ := bi.Compute(phone)
		if _, err := db.Exec(`INSERT INTO users VALUES (?, NULL, ?, ?)`, i, ix, string(v)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO strict VALUES (?, NULL, ?)`, i, ix); err != nil {
			t.Fatal(err)
		}
	}
	job := func(table string, ix rotation.Indexer) *rotation.Job {
		t.Helper()
		j, err := rotation.New(db, rotation.Table{Name: table, PrimaryKey: "id", Dialect: rotation.SQLite,
			Columns: []rotation.Column{{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: ix}}}}}, codec)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	snapshot := func() string {
		var s string
		if err := db.QueryRow(`SELECT group_concat(coalesce(email_bidx, 'NULL'), ',') FROM users`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()
	for name, ix := range map[string]rotation.Indexer{"blindindex": bi, "no ComputeVersion": plainIndexer{}} {
		j := job("users", ix)
		if err := j.CheckIndexes(ctx); !errors.Is(err, rotation.ErrIndexMismatch) || !strings.Contains(err.Error(), `"email_bidx"`) {
			t.Errorf("%s: CheckIndexes: %v, want ErrIndexMismatch", name, err)
		}
		res, err := j.Rotate(ctx, rotation.Options{})
		if !errors.Is(err, rotation.ErrIndexMismatch) || res.Rows != 0 {
			t.Errorf("%s: Rotate: %+v, %v; want ErrIndexMismatch", name, res, err)
		}
	}
	if snapshot() != before {
		t.Fatal("a refused Rotate wrote to the table")
	}
	// A NOT NULL index column is never cleared: nothing to refuse, and
	// nothing to do (its index values beside a NULL source are only
	// counted).
	if err := job("strict", bi).CheckIndexes(ctx); err != nil {
		t.Errorf("NOT NULL index column: %v", err)
	}
	res, err := job("strict", bi).Rotate(ctx, rotation.Options{})
	if err != nil || res.Rows != 0 || len(res.Failures) != 0 {
		t.Errorf("NOT NULL index column: Rotate: %+v, %v; want nothing to do", res, err)
	}
	if c, err := job("strict", bi).Census(ctx); err != nil || !c.Done() || c.Indexes[0].Orphaned != 3 || c.Indexes[0].Pending != 0 {
		t.Errorf("NOT NULL index column: Census: %+v, %v; want done, 3 orphaned index values", c, err)
	}

	// One row with both values: the check passes, and Rotate clears the
	// other rows' index values.
	v, _ := codec.Seal(ctx, []byte("a@example.com"))
	ix, _ := bi.Compute("a@example.com")
	if _, err := db.Exec(`INSERT INTO users VALUES (4, ?, ?, NULL)`, string(v), ix); err != nil {
		t.Fatal(err)
	}
	j := job("users", bi)
	if err := j.CheckIndexes(ctx); err != nil {
		t.Errorf("with a row holding both: %v", err)
	}
	res, err = j.Rotate(ctx, rotation.Options{})
	if err != nil || res.Rows != 3 || res.ClearedIndexValues != 3 {
		t.Errorf("Rotate: %+v, %v; want 3 index values cleared", res, err)
	}
	if got := snapshot(); got != "NULL,NULL,NULL,"+ix {
		t.Errorf("index values after Rotate: %d NULL, want rows 1 to 3 NULL and row 4's left", strings.Count(got, "NULL"))
	}
}
