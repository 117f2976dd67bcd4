package integration

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// pgxQuerier is what *pgx.Conn, *pgxpool.Pool and pgx.Tx have in common.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// pgxRaw reads one value with plain SQL through pgx, as text.
func pgxRaw(t testing.TB, q pgxQuerier, query string, args ...any) string {
	t.Helper()
	var s *string
	if err := q.QueryRow(testContext(t), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if s == nil {
		t.Fatalf("%s: got NULL, want an encrypted value", query)
	}
	return *s
}

// pgxProfile is stored as encrypted JSON.
type pgxProfile struct {
	Handle string            `json:"handle"`
	Labels map[string]string `json:"labels"`
}

// TestPgxConn uses the column types with a native pgx.Conn, in TEXT and
// BYTEA columns, in each of pgx's query execution modes (they differ in
// how arguments are typed and encoded, and in the format results come in).
func TestPgxConn(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn) // for DDL and clean-up
	keys := newKeyring(t)
	const version = 11
	keys.use(version, 3) // version 3 is held but not active

	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testContext(t)
			cfg, err := pgx.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				t.Fatalf("pgx.ConnectConfig: %v", err)
			}
			defer func() { _ = conn.Close(context.Background()) }()

			table := createTable(t, db, `
				email   TEXT NOT NULL,
				phone   TEXT,
				profile TEXT,
				blob    BYTEA NOT NULL,
				note    BYTEA`)
			q := tableQuery(table)
			testPgx(t, conn, q, version, keys)
		})
	}
}

// testPgx runs the pgx checks on one connection or pool and one table.
func testPgx(t *testing.T, c pgxQuerier, q func(string) string, version uint32, keys *keyring) {
	ctx := testContext(t)
	const (
		email = "heidi@example.com"
		phone = "+49 30 901820"
		note  = "door code 4711, then #"
	)
	blob := []byte("\x00pgx binary \xff secret")
	profile := pgxProfile{Handle: "@heidi", Labels: map[string]string{"tier": "gold plan"}}
	profileJSON := []byte(`{"handle":"@heidi","labels":{"tier":"gold plan"}}`)
	secrets := append([]string{email, phone, note, string(blob), "gold plan"}, keys.secrets()...)

	insert := q("INSERT INTO %s (email, phone, profile, blob, note) VALUES ($1, $2, $3, $4, $5) RETURNING id")
	var id1, id2 int64
	if err := c.QueryRow(ctx, insert,
		encryptedtype.NewString(email),
		ptr(encryptedtype.NewString(phone)),
		ptr(encryptedtype.NewJSON(profile)),
		encryptedtype.NewBytes(blob),
		ptr(encryptedtype.NewString(note)),
	).Scan(&id1); err != nil {
		t.Fatalf("INSERT: %v", err)
	}
	if _, err := c.Exec(ctx, q("INSERT INTO %s (email, phone, profile, blob, note) VALUES ($1, $2, $3, $4, $5)"),
		encryptedtype.NewString(""),
		(*encryptedtype.String)(nil),
		(*encryptedtype.JSON[pgxProfile])(nil),
		encryptedtype.NewBytes([]byte{}),
		(*encryptedtype.Bytes)(nil),
	); err != nil {
		t.Fatalf("INSERT with NULLs: %v", err)
	}
	if err := c.QueryRow(ctx, q("SELECT max(id) FROM %s")).Scan(&id2); err != nil {
		t.Fatal(err)
	}

	// Raw values, read with plain SQL as text.
	assertCiphertext(t, pgxRaw(t, c, q("SELECT email FROM %s WHERE id = $1"), id1), version, []byte(email))
	assertCiphertext(t, pgxRaw(t, c, q("SELECT phone FROM %s WHERE id = $1"), id1), version, []byte(phone))
	assertCiphertext(t, pgxRaw(t, c, q("SELECT profile FROM %s WHERE id = $1"), id1), version, profileJSON, "gold plan")
	assertCiphertext(t, pgxRaw(t, c, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id1), version, blob)
	assertCiphertext(t, pgxRaw(t, c, q("SELECT encode(note, 'escape') FROM %s WHERE id = $1"), id1), version, []byte(note))
	assertCiphertext(t, pgxRaw(t, c, q("SELECT email FROM %s WHERE id = $1"), id2), version, nil)
	assertCiphertext(t, pgxRaw(t, c, q("SELECT encode(blob, 'escape') FROM %s WHERE id = $1"), id2), version, nil)
	var nulls bool
	if err := c.QueryRow(ctx, q("SELECT phone IS NULL AND profile IS NULL AND note IS NULL FROM %s WHERE id = $1"), id2).Scan(&nulls); err != nil {
		t.Fatal(err)
	}
	if !nulls {
		t.Errorf("nil pointers were not written as NULL")
	}

	// QueryRow + Scan into the types and pointers to them.
	sel := q("SELECT email, phone, profile, blob, note FROM %s WHERE id = $1")
	var (
		gotEmail   encryptedtype.String
		gotPhone   *encryptedtype.String
		gotProfile *encryptedtype.JSON[pgxProfile]
		gotBlob    encryptedtype.Bytes
		gotNote    *encryptedtype.Bytes
	)
	if err := c.QueryRow(ctx, sel, id1).Scan(&gotEmail, &gotPhone, &gotProfile, &gotBlob, &gotNote); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if gotEmail.Plaintext() != email || gotPhone == nil || gotPhone.Plaintext() != phone {
		t.Errorf("email, phone = %q, %v; want %q, %q", gotEmail.Plaintext(), gotPhone, email, phone)
	}
	if gotProfile == nil || !reflect.DeepEqual(gotProfile.Plaintext(), profile) {
		t.Errorf("profile = %v, want %+v", gotProfile, profile)
	}
	if !bytes.Equal(gotBlob.Plaintext(), blob) || gotNote == nil || string(gotNote.Plaintext()) != note {
		t.Errorf("blob, note = %q, %v; want %q, %q", gotBlob.Plaintext(), gotNote, blob, note)
	}
	if err := c.QueryRow(ctx, sel, id2).Scan(&gotEmail, &gotPhone, &gotProfile, &gotBlob, &gotNote); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if gotEmail.Plaintext() != "" || gotPhone != nil || gotProfile != nil || gotNote != nil {
		t.Errorf("row 2: email, phone, profile, note = %q, %v, %v, %v; want \"\", nil, nil, nil",
			gotEmail.Plaintext(), gotPhone, gotProfile, gotNote)
	}
	if p := gotBlob.Plaintext(); p == nil || len(p) != 0 {
		t.Errorf("row 2: blob = %#v, want empty and non-nil", p)
	}

	// Query + rows.Scan over both rows.
	rows, err := c.Query(ctx, q("SELECT id, email, note FROM %s ORDER BY id"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var (
			id int64
			e  encryptedtype.String
			nt *encryptedtype.String
		)
		if err := rows.Scan(&id, &e, &nt); err != nil {
			t.Fatalf("rows.Scan: %v", err)
		}
		switch {
		case id == id1 && e.Plaintext() == email && nt != nil && nt.Plaintext() == note:
		case id == id2 && e.Plaintext() == "" && nt == nil:
		default:
			t.Errorf("row %d: email %q, note %v", id, e.Plaintext(), nt)
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil || n != 2 {
		t.Fatalf("Query: %d rows, %v; want 2 rows", n, err)
	}

	// NULL into a non-pointer is ErrNull, in TEXT and BYTEA.
	var s encryptedtype.String
	assertDecryptError(t, c.QueryRow(ctx, q("SELECT phone FROM %s WHERE id = $1"), id2).Scan(&s), secrets, encryptedtype.ErrNull)
	var b encryptedtype.Bytes
	assertDecryptError(t, c.QueryRow(ctx, q("SELECT note FROM %s WHERE id = $1"), id2).Scan(&b), secrets, encryptedtype.ErrNull)

	// Tampering, in TEXT and BYTEA.
	if _, err := c.Exec(ctx, q("UPDATE %s SET phone = "+flipMiddleSQL("phone")+
		", note = decode("+flipMiddleSQL("encode(note, 'escape')")+", 'escape') WHERE id = $1"), id1); err != nil {
		t.Fatal(err)
	}
	assertCiphertext(t, pgxRaw(t, c, q("SELECT phone FROM %s WHERE id = $1"), id1), version, []byte(phone))
	var ps *encryptedtype.String
	assertDecryptError(t, c.QueryRow(ctx, q("SELECT phone FROM %s WHERE id = $1"), id1).Scan(&ps), secrets, encryptedtype.ErrAuth)
	var pb encryptedtype.Bytes
	assertDecryptError(t, c.QueryRow(ctx, q("SELECT note FROM %s WHERE id = $1"), id1).Scan(&pb), secrets, encryptedtype.ErrAuth)
}

// pgxPoolRow is read with pgx.RowToStructByName.
type pgxPoolRow struct {
	ID     int64                 `db:"id"`
	Worker int                   `db:"worker"`
	Email  encryptedtype.String  `db:"email"`
	Blob   encryptedtype.Bytes   `db:"blob"`
	Note   *encryptedtype.String `db:"note"`
}

// TestPgxPool uses the column types through a pgxpool.Pool: the checks of
// TestPgxConn, then concurrent writers and readers while the default
// provider switches to a new active key.
func TestPgxPool(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)

	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	defer pool.Close()

	t.Run("Basic", func(t *testing.T) {
		table := createTable(t, db, `
			email   TEXT NOT NULL,
			phone   TEXT,
			profile TEXT,
			blob    BYTEA NOT NULL,
			note    BYTEA`)
		testPgx(t, pool, tableQuery(table), 1, keys)
	})

	t.Run("Concurrent", func(t *testing.T) {
		table := createTable(t, db, `worker INT NOT NULL, email TEXT NOT NULL, blob BYTEA NOT NULL, note TEXT`)
		q := tableQuery(table)
		const workers, perWorker = 6, 15
		plain := func(w, i int) string { return fmt.Sprintf("worker %d <row %d>@example.com", w, i) }

		var wg sync.WaitGroup
		halfway := make(chan struct{}, workers)
		for w := range workers {
			wg.Go(func() {
				// Signal once, halfway or on an early return.
				var once sync.Once
				signal := func() { once.Do(func() { halfway <- struct{}{} }) }
				defer signal()
				for i := range perWorker {
					if i == perWorker/2 {
						signal()
					}
					p := plain(w, i)
					var note *encryptedtype.String
					if i%2 == 0 {
						note = ptr(encryptedtype.NewString(p))
					}
					var id int64
					err := pool.QueryRow(ctx, q("INSERT INTO %s (worker, email, blob, note) VALUES ($1, $2, $3, $4) RETURNING id"),
						w, encryptedtype.NewString(p), encryptedtype.NewBytes([]byte(p)), note).Scan(&id)
					if err != nil {
						t.Errorf("worker %d: INSERT: %v", w, err)
						return
					}
					var e encryptedtype.String
					var b encryptedtype.Bytes
					var n *encryptedtype.String
					if err := pool.QueryRow(ctx, q("SELECT email, blob, note FROM %s WHERE id = $1"), id).Scan(&e, &b, &n); err != nil {
						t.Errorf("worker %d: SELECT: %v", w, err)
						return
					}
					if e.Plaintext() != p || string(b.Plaintext()) != p || (n == nil) != (note == nil) {
						t.Errorf("worker %d row %d: read back %q, %q, %v", w, i, e.Plaintext(), b.Plaintext(), n)
					}
				}
			})
		}
		// Rotate while the workers run: values written before, during and
		// after the switch are all readable.
		for range workers {
			<-halfway
		}
		keys.use(2, 1)
		wg.Wait()
		if t.Failed() {
			return
		}
		// Written after the switch, so under version 2.
		if _, err := pool.Exec(ctx, q("INSERT INTO %s (worker, email, blob) VALUES (-1, $1, $2)"),
			encryptedtype.NewString("after@example.com"), encryptedtype.NewBytes([]byte("after@example.com"))); err != nil {
			t.Fatal(err)
		}

		rows, err := pool.Query(ctx, q("SELECT id, worker, email, blob, note FROM %s ORDER BY id"))
		if err != nil {
			t.Fatal(err)
		}
		all, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgxPoolRow])
		if err != nil {
			t.Fatalf("CollectRows: %v", err)
		}
		if len(all) != workers*perWorker+1 {
			t.Fatalf("read %d rows, want %d", len(all), workers*perWorker+1)
		}
		versions := map[uint32]int{}
		for _, r := range all[:len(all)-1] {
			e := r.Email.Plaintext()
			if string(r.Blob.Plaintext()) != e || (r.Note != nil && r.Note.Plaintext() != e) {
				t.Errorf("row %d: columns disagree", r.ID)
			}
			// Each value takes the active version when it is encrypted,
			// so the columns of one row may differ around the switch.
			for _, col := range []string{"email", "encode(blob, 'escape')"} {
				raw := pgxRaw(t, pool, q("SELECT "+col+" FROM %s WHERE id = $1"), r.ID)
				v, err := encryptedtype.Version([]byte(raw))
				if err != nil || (v != 1 && v != 2) {
					t.Errorf("row %d: %s: version %d, %v; want 1 or 2", r.ID, col, v, err)
				}
				if col == "email" {
					versions[v]++
				}
				assertCiphertext(t, raw, v, []byte(e))
			}
		}
		last := all[len(all)-1]
		if last.Email.Plaintext() != "after@example.com" || last.Note != nil {
			t.Errorf("last row: %q, %v", last.Email.Plaintext(), last.Note)
		}
		assertCiphertext(t, pgxRaw(t, pool, q("SELECT email FROM %s WHERE worker = -1")), 2, []byte("after@example.com"))
		if versions[1] == 0 {
			t.Errorf("no row was written under version 1 before the switch")
		}
		t.Logf("rows by key version: %v", versions)
	})
}
