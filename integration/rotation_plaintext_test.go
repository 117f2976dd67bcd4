package integration

import (
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// TestRotationPlaintextMigration converts a table whose email and phone
// columns hold plaintext, with an empty blind-index column beside email.
// Without EncryptPlaintext the plaintext rows are failures; with it they are
// encrypted and the index is filled in, while the application reads every
// row (through rotation.MigratingString) and writes some (encrypted), and a
// damaged value that merely looks encrypted is reported, not taken as
// plaintext. Afterwards encryptedtype.String reads every row.
func TestRotationPlaintextMigration(t *testing.T) {
	const n = 2000
	db := openSQL(t, databaseURL(t))
	keys := newKeyring(t)
	static := keys.use(1)
	codec := encryptedtype.NewCodec(static)
	ctx := testContext(t)
	quoted := createTable(t, db, `email TEXT NOT NULL, email_bidx TEXT, phone VARCHAR(200)`)
	name := strings.Trim(quoted, `"`)
	q := tableQuery(quoted)
	ikeys := newRotIndexKeys(t, 1)
	index, err := blindindex.New(name+".email", ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	email := func(id int64, gen int) string { return fmt.Sprintf("Plain%05d.G%d@Example.com ", id, gen) }
	phone := func(id int64) string { return fmt.Sprintf("+44 20 %07d", id) }
	if _, err := db.ExecContext(ctx, q(`INSERT INTO %s (email, phone)
		SELECT format('Plain%%s.G0@Example.com ', lpad(i::text, 5, '0')),
		       CASE WHEN i %% 4 = 0 THEN NULL ELSE format('+44 20 %%s', lpad(i::text, 7, '0')) END
		FROM generate_series(1, $1) AS i`), n); err != nil {
		t.Fatal(err)
	}
	// An empty plaintext is still a value to encrypt; a value that looks
	// like the wire format but is not is damage, never plaintext.
	if _, err := db.ExecContext(ctx, q(`UPDATE %s SET phone = '' WHERE id = 8`)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, q(`UPDATE %s SET email = 'v1:not base64!' WHERE id = 77`)); err != nil {
		t.Fatal(err)
	}
	wantPhone := func(id int64) *string {
		switch {
		case id == 8:
			return ptr("")
		case id%4 == 0:
			return nil
		}
		return ptr(phone(id))
	}
	tbl := rotation.Table{Name: name, PrimaryKey: "id", Columns: []rotation.Column{
		{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: index}}},
		{Name: "phone"},
	}}
	job, err := rotation.New(db, tbl, codec)
	if err != nil {
		t.Fatal(err)
	}

	before, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before.Columns[0].Plaintext != n-1 || before.Columns[1].Plaintext != n-n/4+1 || before.Columns[1].Null != n/4-1 || before.Indexes[0].Missing != n {
		t.Errorf("census before: %+v", before)
	}

	// Not the default: without EncryptPlaintext, plaintext is a failure.
	res, err := job.Rotate(ctx, rotation.Options{DryRun: true, MaxFailures: -1})
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != n || res.Rows != 0 {
		t.Fatalf("dry run without EncryptPlaintext: %d rows, %d failures, %v", res.Rows, len(res.Failures), err)
	}
	if !errors.Is(res.Failures[0].Err, encryptedtype.ErrNotEncrypted) {
		t.Errorf("failure %v: want ErrNotEncrypted", res.Failures[0])
	}

	// The application during the migration: readers check every row they
	// read, a writer rewrites some (gen tracks it).
	gen := make([]atomic.Int32, n+1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, encryptedReads atomic.Int64
	errs := make(chan error, 3)
	for r := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for !stop.Load() {
				id := int64(rng.IntN(n) + 1)
				if id == 77 {
					continue
				}
				var e rotation.MigratingString
				var p *rotation.MigratingString
				g := gen[id].Load()
				if err := db.QueryRowContext(ctx, q("SELECT email, phone FROM %s WHERE id = $1"), id).Scan(&e, &p); err != nil {
					errs <- fmt.Errorf("reading row %d during the migration: %w", id, err)
					return
				}
				if got := e.Plaintext(); got != email(id, int(g)) && got != email(id, int(gen[id].Load())) {
					errs <- fmt.Errorf("row %d reads a wrong email during the migration", id)
					return
				}
				if w := wantPhone(id); (p == nil) != (w == nil) || p != nil && p.Plaintext() != *w {
					errs <- fmt.Errorf("row %d reads a wrong phone during the migration", id)
					return
				}
				reads.Add(1)
				if e.WasEncrypted() {
					encryptedReads.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(9, 7))
		for !stop.Load() {
			id := int64(rng.IntN(n) + 1)
			if id == 77 {
				continue
			}
			g := gen[id].Load() + 1
			bidx, err := index.Compute(email(id, int(g)))
			if err == nil {
				_, err = db.ExecContext(ctx, q("UPDATE %s SET email = $1, email_bidx = $2 WHERE id = $3"), rotation.NewMigratingString(email(id, int(g))), bidx, id)
			}
			if err != nil {
				errs <- err
				return
			}
			gen[id].Store(g)
			time.Sleep(time.Millisecond)
		}
	})

	res, err = job.Rotate(ctx, rotation.Options{EncryptPlaintext: []string{"email", "phone"}, BatchSize: 100, Pause: time.Millisecond})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != 1 || res.Failures[0].PK != "77" || !errors.Is(res.Failures[0].Err, encryptedtype.ErrMalformed) {
		t.Fatalf("migration: %+v, %v; want exactly row 77 reported as malformed", res, err)
	}
	t.Logf("migration: %d rows, %d plaintext values encrypted, %d index values; the application read %d rows meanwhile (%d encrypted)",
		res.Rows, res.Plaintext, res.IndexValues, reads.Load(), encryptedReads.Load())
	if reads.Load() == 0 {
		t.Error("no reads during the migration")
	}

	// Afterwards: everything but row 77 is ciphertext under version 1
	// with its index, and reads with the column types.
	rows, err := db.QueryContext(ctx, q("SELECT id, email, email_bidx, phone FROM %s WHERE id <> 77 ORDER BY id"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	count := 0
	for rows.Next() {
		var id int64
		var e encryptedtype.String
		var bidx sql.NullString
		var p *encryptedtype.String
		if err := rows.Scan(&id, &e, &bidx, &p); err != nil {
			t.Fatalf("reading row %d after the migration: %v", id, err)
		}
		count++
		if e.Plaintext() != email(id, int(gen[id].Load())) {
			t.Errorf("row %d: wrong email after the migration", id)
		}
		if w := wantPhone(id); (p == nil) != (w == nil) || p != nil && p.Plaintext() != *w {
			t.Errorf("row %d: wrong phone after the migration", id)
		}
		if want, _ := index.Compute(e.Plaintext()); bidx.String != want {
			t.Errorf("row %d: index value is not the email's", id)
		}
	}
	if count != n-1 {
		t.Errorf("%d rows read, want %d", count, n-1)
	}
	assertCiphertext(t, rawText(t, db, q("SELECT phone FROM %s WHERE id = 8")), 1, nil)
	if s := rawText(t, db, q("SELECT email FROM %s WHERE id = 77")); s != "v1:not base64!" {
		t.Errorf("row 77 was written: %q", s)
	}
	after, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Row 77, untouched, still has its plaintext phone and no index.
	if after.Columns[0].Plaintext != 0 || after.Columns[1].Plaintext != 1 || after.Pending != 1 || after.Indexes[0].Missing != 1 {
		t.Errorf("census after: %+v", after)
	}
}
