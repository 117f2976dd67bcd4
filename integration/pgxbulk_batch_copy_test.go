package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
)

// The pgx v5 bulk paths: pgx.Batch (SendBatch) and CopyFrom, on a pgx.Conn
// in each query execution mode and on a pgxpool.Pool, with blind-index
// columns beside the encrypted ones. Query, QueryRow and Exec are in
// pgx_test.go. Run them with
//
//	COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	COLCRYPT_REQUIRE_DB=1 go test -race -count=1 -run PgxBulk ./integration/

// bulkIndexes returns the e-mail index (case-folded, unique in the bulk
// tables) and the phone index (digits only) of the bulk tests, under a
// fresh index keyring.
func bulkIndexes(t testing.TB) (email, phone *blindindex.Index) {
	t.Helper()
	ik := newIndexKeyring(t, 1)
	email = newEmailIndex(t, "bulk.email", ik, 0)
	phone, err := blindindex.New("bulk.phone", ik, blindindex.Config{Normalize: blindindex.DigitsOnly})
	if err != nil {
		t.Fatal(err)
	}
	return email, phone
}

// allExecModes are pgx's query execution modes: they differ in whether
// statements are prepared or described, and so in how arguments are typed
// and in which format they are sent.
var allExecModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeSimpleProtocol,
}

// TestPgxBulkBatch inserts encrypted rows with their blind indexes in one
// pgx.Batch, with lookups queued in the same batch, on a pgx.Conn in every
// execution mode and on a pool, with and without package pgxcodec. It
// checks the stored values with plain SQL, reads them back decrypted, finds
// rows through the blind index, and checks that a duplicate e-mail (in
// another case) fails the whole batch with a unique violation, adding no
// row.
func TestPgxBulkBatch(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	keys := newKeyring(t)
	const version = 4
	keys.use(version)
	emailIx, phoneIx := bulkIndexes(t)

	for _, target := range bulkTargets(dsn, allExecModes...) {
		for _, withCodec := range []bool{false, true} {
			name := target.name + "/pgx"
			if withCodec {
				name = target.name + "/pgxcodec"
			}
			t.Run(name, func(t *testing.T) {
				q := target.open(t, withCodec)
				ctx := testContext(t)
				table := createTable(t, db, bulkColumns(true))
				plains := bulkPlaintexts(0, 40)
				secrets := append(bulkSecrets(plains), keys.secrets()...)
				insert := fmt.Sprintf("INSERT INTO %s (%s) VALUES ($1, $2, $3, $4, $5, $6)", table, strings.Join(bulkColumnNames(true), ", "))

				b := &pgx.Batch{}
				for _, p := range plains {
					b.Queue(insert, bulkArgs(t, p, emailIx, phoneIx, true)...)
				}
				// Lookups in the same batch see the rows inserted before
				// them.
				found := map[int]bool{}
				for _, k := range []int{0, 17, 39} {
					values, err := emailIx.Lookup(strings.ToLower(plains[k].email))
					if err != nil {
						t.Fatal(err)
					}
					b.Queue("SELECT id, email FROM "+table+" WHERE email_bidx = ANY($1)", values).QueryRow(func(row pgx.Row) error {
						var id int64
						var email encryptedtype.String
						if err := row.Scan(&id, &email); err != nil {
							return err
						}
						if id != int64(k+1) || email.Plaintext() != plains[k].email {
							t.Errorf("lookup %d in the batch found row %d", k, id)
						}
						found[k] = true
						return nil
					})
				}
				if err := q.SendBatch(ctx, b).Close(); err != nil {
					assertNoSecrets(t, err, secrets)
					t.Fatalf("SendBatch: %v", err)
				}
				if len(found) != 3 {
					t.Errorf("%d of 3 lookups in the batch ran", len(found))
				}
				checkBulkTable(t, q, table, plains, emailIx, phoneIx, version, true)
				for _, k := range []int{1, 2, 20} {
					if ids := bulkLookup(t, q, table, emailIx, " "+strings.ToUpper(plains[k].email)); !slices.Equal(ids, []int64{int64(k + 1)}) {
						t.Errorf("lookup of row %d found rows %v", k+1, ids)
					}
				}

				// A batch runs in one implicit transaction: a unique
				// violation on the blind index discards the new row queued
				// before the duplicate too.
				extra := bulkPlaintexts(1000, 1)[0]
				dup := plains[5]
				dup.email = strings.ToUpper(dup.email)
				b = &pgx.Batch{}
				b.Queue(insert, bulkArgs(t, extra, emailIx, phoneIx, true)...)
				b.Queue(insert, bulkArgs(t, dup, emailIx, phoneIx, true)...)
				err := q.SendBatch(ctx, b).Close()
				if !isUniqueViolation(err) {
					t.Errorf("batch with a duplicate e-mail: %v, want a unique violation (23505)", err)
				}
				assertNoSecrets(t, err, append(secrets, extra.email, dup.email))
				if n := rowCount(t, q, table); n != int64(len(plains)) {
					t.Errorf("after the failed batch the table holds %d rows, want %d", n, len(plains))
				}
			})
		}
	}
}

// TestPgxBulkCopyFrom loads encrypted rows and their blind indexes into
// TEXT columns with CopyFrom, as they are (pgx calls Value), through
// CopyFromRows, CopyFromSlice and CopyFromFunc, on a pgx.Conn and a pool.
// It checks the stored values with plain SQL (ciphertext, index values,
// NULL only where the plaintext is nil, "" encrypted), reads them back,
// finds rows through the index, and checks that a COPY holding a duplicate
// e-mail fails with a unique violation and loads nothing.
func TestPgxBulkCopyFrom(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	keys := newKeyring(t)
	const version = 6
	keys.use(version)
	emailIx, phoneIx := bulkIndexes(t)

	targets := bulkTargets(dsn, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol)
	for _, target := range targets {
		t.Run(target.name, func(t *testing.T) {
			q := target.open(t, false)
			ctx := testContext(t)
			table := createTable(t, db, bulkColumns(false))
			ident := pgx.Identifier{strings.Trim(table, `"`)}
			cols := bulkColumnNames(false)
			const part = 500
			plains := bulkPlaintexts(0, 3*part)
			secrets := append(bulkSecrets(plains), keys.secrets()...)

			// CopyFromRows: rows built up front.
			rows := make([][]any, part)
			for i := range rows {
				rows[i] = bulkArgs(t, plains[i], emailIx, phoneIx, false)
			}
			if n, err := q.CopyFrom(ctx, ident, cols, pgx.CopyFromRows(rows)); err != nil || n != part {
				assertNoSecrets(t, err, secrets)
				t.Fatalf("CopyFrom(CopyFromRows): %d rows, %v", n, err)
			}
			// CopyFromSlice.
			slice := plains[part : 2*part]
			n, err := q.CopyFrom(ctx, ident, cols, pgx.CopyFromSlice(len(slice), func(i int) ([]any, error) {
				return bulkArgs(t, slice[i], emailIx, phoneIx, false), nil
			}))
			if err != nil || n != part {
				t.Fatalf("CopyFrom(CopyFromSlice): %d rows, %v", n, err)
			}
			// CopyFromFunc: a stream, encrypted row by row as COPY asks.
			next := 2 * part
			n, err = q.CopyFrom(ctx, ident, cols, pgx.CopyFromFunc(func() ([]any, error) {
				if next == len(plains) {
					return nil, nil
				}
				next++
				return bulkArgs(t, plains[next-1], emailIx, phoneIx, false), nil
			}))
			if err != nil || n != part {
				t.Fatalf("CopyFrom(CopyFromFunc): %d rows, %v", n, err)
			}

			checkBulkTable(t, q, table, plains, emailIx, phoneIx, version, false)
			for _, k := range []int{0, 1, 499, 500, 1234, 3*part - 1} {
				if ids := bulkLookup(t, q, table, emailIx, strings.ToLower(plains[k].email)); !slices.Equal(ids, []int64{int64(k + 1)}) {
					t.Errorf("lookup of row %d found rows %v", k+1, ids)
				}
			}
			if ids := bulkLookup(t, q, table, emailIx, "nobody@example.com"); len(ids) != 0 {
				t.Errorf("lookup of an absent e-mail found rows %v", ids)
			}

			// COPY is one statement: a duplicate blind index anywhere in
			// it fails the whole load.
			fresh := bulkPlaintexts(5000, 3)
			fresh[2].email = strings.ToUpper(plains[7].email)
			dupRows := make([][]any, len(fresh))
			for i, p := range fresh {
				dupRows[i] = bulkArgs(t, p, emailIx, phoneIx, false)
			}
			n, err = q.CopyFrom(ctx, ident, cols, pgx.CopyFromRows(dupRows))
			if !isUniqueViolation(err) {
				t.Errorf("COPY with a duplicate e-mail: %d rows, %v; want a unique violation (23505)", n, err)
			}
			assertNoSecrets(t, err, append(secrets, bulkSecrets(fresh)...))
			if got := rowCount(t, q, table); got != int64(len(plains)) {
				t.Errorf("after the failed COPY the table holds %d rows, want %d", got, len(plains))
			}
		})
	}
}

// TestPgxBulkCopyFromBytea loads encrypted values into a BYTEA column with
// CopyFrom. pgx alone cannot: CopyFrom sends every value in binary format,
// and pgx has no binary bytea encoding for the string that Value returns,
// so the COPY fails (and loads nothing). With package pgxcodec registered
// (Register on a Conn, AfterConnect on a pool) it works, and the BYTEA
// column holds the ASCII wire format byte for byte.
func TestPgxBulkCopyFromBytea(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	keys := newKeyring(t)
	const version = 2
	keys.use(version)
	emailIx, phoneIx := bulkIndexes(t)
	cols := bulkColumnNames(true)

	t.Run("WithoutCodec", func(t *testing.T) {
		q := pgxConnect(t, dsn, pgx.QueryExecModeCacheStatement, false)
		table := createTable(t, db, bulkColumns(true))
		plains := bulkPlaintexts(0, 10)
		rows := make([][]any, len(plains))
		for i, p := range plains {
			rows[i] = bulkArgs(t, p, emailIx, phoneIx, true)
		}
		n, err := q.CopyFrom(testContext(t), pgx.Identifier{strings.Trim(table, `"`)}, cols, pgx.CopyFromRows(rows))
		if err == nil {
			// pgx learnt to do it: then the data must be right.
			t.Logf("pgx now copies encrypted values into BYTEA without pgxcodec")
			checkBulkTable(t, q, table, plains, emailIx, phoneIx, version, true)
			return
		}
		t.Logf("CopyFrom into BYTEA without pgxcodec: %v", err)
		if !strings.Contains(err.Error(), "bytea") {
			t.Errorf("unexpected error: %v", err)
		}
		assertNoSecrets(t, err, append(bulkSecrets(plains), keys.secrets()...))
		if got := rowCount(t, q, table); n != 0 || got != 0 {
			t.Errorf("a failed COPY loaded %d rows (%d reported)", got, n)
		}
	})

	for _, target := range bulkTargets(dsn, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol) {
		t.Run("WithCodec/"+target.name, func(t *testing.T) {
			q := target.open(t, true)
			ctx := testContext(t)
			table := createTable(t, db, bulkColumns(true))
			plains := bulkPlaintexts(0, 600)
			next := 0
			n, err := q.CopyFrom(ctx, pgx.Identifier{strings.Trim(table, `"`)}, cols, pgx.CopyFromFunc(func() ([]any, error) {
				if next == len(plains) {
					return nil, nil
				}
				next++
				return bulkArgs(t, plains[next-1], emailIx, phoneIx, true), nil
			}))
			if err != nil || n != int64(len(plains)) {
				assertNoSecrets(t, err, append(bulkSecrets(plains), keys.secrets()...))
				t.Fatalf("CopyFrom: %d rows, %v", n, err)
			}
			checkBulkTable(t, q, table, plains, emailIx, phoneIx, version, true)
			// The bytes are the wire format itself, not an encoding of it.
			var ok bool
			if err := q.QueryRow(ctx, "SELECT bool_and(octet_length(token) = length(encode(token, 'escape')) AND encode(token, 'escape') ~ '^v[0-9]+:[A-Za-z0-9_-]+$') FROM "+table+" WHERE token IS NOT NULL").Scan(&ok); err != nil || !ok {
				t.Errorf("BYTEA values are not the bare wire format: %v, %v", ok, err)
			}
			if ids := bulkLookup(t, q, table, emailIx, plains[321].email); !slices.Equal(ids, []int64{322}) {
				t.Errorf("lookup of row 322 found rows %v", ids)
			}
		})
	}
}
