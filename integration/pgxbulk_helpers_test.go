package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/pgxcodec"
)

// Helpers of the pgx batch and CopyFrom tests (pgxbulk_batch_copy_test.go).

// pgxBulkQuerier is what *pgx.Conn and *pgxpool.Pool have in common for
// bulk work.
type pgxBulkQuerier interface {
	pgxQuerier
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// bulkProfile is stored as encrypted JSON.
type bulkProfile struct {
	City string   `json:"city"`
	Tags []string `json:"tags"`
}

// bulkPlain is the plaintext of one row of a bulk table.
type bulkPlain struct {
	email   string
	phone   *string // nil: NULL
	profile bulkProfile
	token   []byte // nil: NULL (only in tables with a token column)
}

// bulkPlaintexts returns n rows of plaintext, numbered from first. Every
// e-mail has capitals, so that lookups of its lower-case form exercise the
// index's normaliser; every third row has no phone, every other one no
// token; row first+1 has an empty phone, which is not NULL.
func bulkPlaintexts(first, n int) []bulkPlain {
	out := make([]bulkPlain, n)
	for k := range out {
		i := first + k
		p := bulkPlain{
			email:   fmt.Sprintf("Bulk.User%05d@Example.com", i),
			profile: bulkProfile{City: fmt.Sprintf("Town <%d>", i), Tags: []string{"secret tag " + fmt.Sprint(i)}},
		}
		switch {
		case k == 1:
			p.phone = ptr("")
		case i%3 != 0:
			p.phone = ptr(fmt.Sprintf("+1 555 %07d", i))
		}
		if i%2 == 0 {
			p.token = []byte(fmt.Sprintf("tok\x00en %d \xff", i))
		}
		out[k] = p
	}
	return out
}

// bulkColumns is the table definition of the bulk tests; withToken adds a
// nullable BYTEA column.
func bulkColumns(withToken bool) string {
	cols := `
		email      TEXT NOT NULL,
		email_bidx TEXT NOT NULL UNIQUE,
		phone      TEXT,
		phone_bidx TEXT,
		profile    TEXT NOT NULL`
	if withToken {
		cols += `, token BYTEA`
	}
	return cols
}

// bulkColumnNames lists the columns that bulkArgs fills, in order.
func bulkColumnNames(withToken bool) []string {
	cols := []string{"email", "email_bidx", "phone", "phone_bidx", "profile"}
	if withToken {
		cols = append(cols, "token")
	}
	return cols
}

// bulkArgs returns the arguments of one row: encrypted values, and the
// blind indexes of the e-mail and the phone, computed here as an
// application using pgx directly does.
func bulkArgs(t testing.TB, p bulkPlain, emailIx, phoneIx *blindindex.Index, withToken bool) []any {
	t.Helper()
	emailBidx, err := emailIx.Compute(p.email)
	if err != nil {
		t.Fatal(err)
	}
	var phone *encryptedtype.String
	var phoneBidx any // untyped nil is NULL
	if p.phone != nil {
		phone = ptr(encryptedtype.NewString(*p.phone))
		v, err := phoneIx.Compute(*p.phone)
		if err != nil {
			t.Fatal(err)
		}
		phoneBidx = v
	}
	args := []any{encryptedtype.NewString(p.email), emailBidx, phone, phoneBidx, encryptedtype.NewJSON(p.profile)}
	if withToken {
		var token *encryptedtype.Bytes
		if p.token != nil {
			token = ptr(encryptedtype.NewBytes(p.token))
		}
		args = append(args, token)
	}
	return args
}

// checkBulkTable reads every row of table with plain SQL and checks that
// it holds exactly want, in id order: ciphertext under key version version
// in the encrypted columns, the right index values, NULL exactly where the
// plaintext is nil. Then it reads the rows again into the column types and
// compares the plaintexts.
func checkBulkTable(t testing.TB, q pgxQuerier, table string, want []bulkPlain, emailIx, phoneIx *blindindex.Index, version uint32, withToken bool) {
	t.Helper()
	ctx := testContext(t)
	tokenExpr := "NULL::text"
	if withToken {
		tokenExpr = "encode(token, 'escape')"
	}
	rows, err := q.Query(ctx, "SELECT email, email_bidx, phone, phone_bidx, profile, "+tokenExpr+" FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([6]*string, error) {
		var v [6]*string
		err := r.Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5])
		return v, err
	})
	if err != nil {
		t.Fatalf("reading %s raw: %v", table, err)
	}
	if len(raws) != len(want) {
		t.Fatalf("%s holds %d rows, want %d", table, len(raws), len(want))
	}
	for i, raw := range raws {
		w := want[i]
		if t.Failed() {
			return // one broken row is enough to read
		}
		if raw[0] == nil || raw[1] == nil || raw[4] == nil {
			t.Fatalf("row %d: a NOT NULL column is NULL", i)
		}
		assertCiphertext(t, *raw[0], version, []byte(w.email))
		if v, _ := emailIx.Compute(w.email); *raw[1] != v {
			t.Errorf("row %d: email_bidx = %q, want the index of the e-mail", i, *raw[1])
		}
		profileJSON, err := json.Marshal(w.profile)
		if err != nil {
			t.Fatal(err)
		}
		assertCiphertext(t, *raw[4], version, profileJSON, w.profile.City, w.profile.Tags[0])
		switch {
		case w.phone == nil && (raw[2] != nil || raw[3] != nil):
			t.Errorf("row %d: phone, phone_bidx = %v, %v; want NULL, NULL", i, raw[2], raw[3])
		case w.phone != nil && (raw[2] == nil || raw[3] == nil):
			t.Errorf("row %d: phone or phone_bidx is NULL, want %q", i, *w.phone)
		case w.phone != nil:
			assertCiphertext(t, *raw[2], version, []byte(*w.phone))
			if v, _ := phoneIx.Compute(*w.phone); *raw[3] != v {
				t.Errorf("row %d: phone_bidx = %q, want the index of the phone", i, *raw[3])
			}
		}
		if withToken {
			switch {
			case w.token == nil && raw[5] != nil:
				t.Errorf("row %d: token = %q, want NULL", i, *raw[5])
			case w.token != nil && raw[5] == nil:
				t.Errorf("row %d: token is NULL", i)
			case w.token != nil:
				assertCiphertext(t, *raw[5], version, w.token)
			}
		}
	}

	// Decrypted, through the column types.
	sel := "SELECT email, phone, profile"
	if withToken {
		sel += ", token"
	}
	rows, err = q.Query(ctx, sel+" FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var (
			email   encryptedtype.String
			phone   *encryptedtype.String
			profile encryptedtype.JSON[bulkProfile]
			token   *encryptedtype.Bytes
		)
		dest := []any{&email, &phone, &profile}
		if withToken {
			dest = append(dest, &token)
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatalf("row %d: Scan: %v", i, err)
		}
		w := want[i]
		if email.Plaintext() != w.email || !reflect.DeepEqual(profile.Plaintext(), w.profile) {
			t.Errorf("row %d: decrypted e-mail or profile differ", i)
		}
		if (phone == nil) != (w.phone == nil) || (phone != nil && phone.Plaintext() != *w.phone) {
			t.Errorf("row %d: phone = %v, want %v", i, phone, w.phone)
		}
		if withToken && ((token == nil) != (w.token == nil) || (token != nil && !bytes.Equal(token.Plaintext(), w.token))) {
			t.Errorf("row %d: token = %v, want %q", i, token, w.token)
		}
		i++
	}
	if err := rows.Err(); err != nil || i != len(want) {
		t.Fatalf("decrypting %s: %d rows, %v", table, i, err)
	}
}

// bulkLookup finds the ids of the rows whose e-mail is plaintext (after
// normalisation), with "= ANY($1)" over Lookup's values, and checks that
// "IN ($1, $2)" over LookupPair's finds the same rows and that every row
// found decrypts to an equal e-mail.
func bulkLookup(t testing.TB, q pgxQuerier, table string, ix *blindindex.Index, plaintext string) []int64 {
	t.Helper()
	ctx := testContext(t)
	values, err := ix.Lookup(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	collect := func(query string, args ...any) []int64 {
		t.Helper()
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			var email encryptedtype.String
			if err := rows.Scan(&id, &email); err != nil {
				t.Fatalf("%s: Scan: %v", query, err)
			}
			if !ix.Equal(email.Plaintext(), plaintext) {
				t.Errorf("lookup found row %d holding another e-mail", id)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		slices.Sort(ids)
		return ids
	}
	byAny := collect("SELECT id, email FROM "+table+" WHERE email_bidx = ANY($1)", values)
	active, other, err := ix.LookupPair(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	if byPair := collect("SELECT id, email FROM "+table+" WHERE email_bidx IN ($1, $2)", active, other); !slices.Equal(byAny, byPair) {
		t.Errorf("lookup of an e-mail: = ANY found %v, IN ($1, $2) found %v", byAny, byPair)
	}
	return byAny
}

// rowCount returns the number of rows of table.
func rowCount(t testing.TB, q pgxQuerier, table string) int64 {
	t.Helper()
	var n int64
	if err := q.QueryRow(testContext(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// assertNoSecrets fails t if the text of err contains any of secrets.
func assertNoSecrets(t testing.TB, err error, secrets []string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error text %q contains the secret %q", msg, s)
		}
	}
}

// bulkSecrets returns every plaintext of rows, for leak checks.
func bulkSecrets(rows []bulkPlain) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.email, strings.ToLower(r.email), r.profile.City, r.profile.Tags[0])
		if r.phone != nil {
			out = append(out, *r.phone)
		}
		if r.token != nil {
			out = append(out, string(r.token))
		}
	}
	return out
}

// pgxConnect opens a pgx.Conn in the given execution mode, closed when t
// ends; withCodec registers package pgxcodec on it.
func pgxConnect(t testing.TB, dsn string, mode pgx.QueryExecMode, withCodec bool) *pgx.Conn {
	t.Helper()
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
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if withCodec {
		pgxcodec.Register(conn.TypeMap())
	}
	return conn
}

// pgxPool opens a pgxpool.Pool, closed when t ends; withCodec registers
// package pgxcodec on every connection with AfterConnect.
func pgxPool(t testing.TB, dsn string, withCodec bool) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if withCodec {
		cfg.AfterConnect = pgxcodec.AfterConnect
	}
	pool, err := pgxpool.NewWithConfig(testContext(t), cfg)
	if err != nil {
		t.Fatalf("pgxpool.NewWithConfig: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// bulkTarget is one way of reaching the database: a connection in one
// execution mode, or a pool.
type bulkTarget struct {
	name string
	open func(t testing.TB, withCodec bool) pgxBulkQuerier
}

// bulkTargets returns a pgx.Conn in each of the given modes and a pool.
func bulkTargets(dsn string, modes ...pgx.QueryExecMode) []bulkTarget {
	var out []bulkTarget
	for _, mode := range modes {
		out = append(out, bulkTarget{"Conn/" + mode.String(), func(t testing.TB, withCodec bool) pgxBulkQuerier {
			return pgxConnect(t, dsn, mode, withCodec)
		}})
	}
	return append(out, bulkTarget{"Pool", func(t testing.TB, withCodec bool) pgxBulkQuerier {
		return pgxPool(t, dsn, withCodec)
	}})
}
