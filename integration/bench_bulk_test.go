package integration

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
)

// BenchmarkBulkLoad loads bulkLoadRows rows into Postgres, each with two
// encrypted columns (an e-mail and a nullable phone) and a unique blind
// index of the e-mail, beside the same load of the plaintext (e-mail with a
// UNIQUE constraint, phone), and reports rows per second of each and their
// ratio. Run it with
//
//	COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	go test -run '^$' -bench BulkLoad -benchtime 5x ./integration/
//
// Each iteration loads every variant once into a freshly truncated table,
// in an order that rotates from one iteration to the next, so that a change
// of load on the machine hits them alike. Only the load itself is timed:
// for the encrypted variants that includes encrypting both columns and
// computing the index (GORM's plugin, or the application in CopyFromFunc).
//
//   - gorm: GORM CreateInBatches (batches of bulkLoadBatch rows) of a
//     plaintext model and of a model with encryptedtype fields and a
//     gormcrypt.BlindIndex.
//   - copyfrom: pgx CopyFrom with CopyFromFunc of the plaintext, of the
//     encrypted values as they are (pgx calls Value), and of the encrypted
//     values on a connection with package pgxcodec registered.
//
// Metrics: <variant>-rows/s, and <variant>/plain, the ratio of rows per
// second to the plaintext load's.
func BenchmarkBulkLoad(b *testing.B) {
	dsn := databaseURL(b)
	newKeyring(b).use(1)
	index := newEmailIndex(b, "bench.email", newIndexKeyring(b, 1), 0)
	db := openSQL(b, dsn)

	// The rows arrive in no particular order, as sign-ups do: sorted
	// e-mails would fill the plaintext's unique index from one end, a best
	// case that blind-index values (random by design) never get.
	emails := make([]string, bulkLoadRows)
	phones := make([]*string, bulkLoadRows)
	perm := rand.New(rand.NewPCG(1, 2)).Perm(bulkLoadRows)
	for i, p := range perm {
		emails[i] = fmt.Sprintf("Bench.User%06d@Example.com", p)
		if p%4 != 0 {
			phones[i] = ptr(fmt.Sprintf("+1 555 %07d", p))
		}
	}
	// The control: the same ciphertexts and index values, computed before
	// the clock starts, loaded as plain strings. Against plain it measures
	// what the longer values and the random index cost the database;
	// against encrypted, what encrypting costs the client.
	encEmails := make([]string, bulkLoadRows)
	encBidx := make([]string, bulkLoadRows)
	encPhones := make([]*string, bulkLoadRows)
	for i := range emails {
		v, err := encryptedtype.NewString(emails[i]).Value()
		if err != nil {
			b.Fatal(err)
		}
		encEmails[i] = v.(string)
		if encBidx[i], err = index.Compute(emails[i]); err != nil {
			b.Fatal(err)
		}
		if phones[i] != nil {
			v, err := encryptedtype.NewString(*phones[i]).Value()
			if err != nil {
				b.Fatal(err)
			}
			encPhones[i] = ptr(v.(string))
		}
	}

	b.Run("gorm", func(b *testing.B) {
		gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: db}), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := gdb.Use(gormcrypt.New(index)); err != nil {
			b.Fatal(err)
		}
		plainTable := createTable(b, db, "email TEXT NOT NULL UNIQUE, phone TEXT")
		encTable := createTable(b, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL UNIQUE, phone TEXT")
		ctlTable := createTable(b, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL UNIQUE, phone TEXT")
		variants := []bulkVariant{
			{name: "plain", table: plainTable, load: func(ctx context.Context) error {
				rows := make([]benchPlainUser, len(emails))
				for i := range rows {
					rows[i] = benchPlainUser{Email: emails[i], Phone: phones[i]}
				}
				return gdb.WithContext(ctx).Table(strings.Trim(plainTable, `"`)).CreateInBatches(&rows, bulkLoadBatch).Error
			}},
			{name: "precomputed", table: ctlTable, load: func(ctx context.Context) error {
				rows := make([]benchCiphertextUser, len(emails))
				for i := range rows {
					rows[i] = benchCiphertextUser{Email: encEmails[i], EmailBidx: encBidx[i], Phone: encPhones[i]}
				}
				return gdb.WithContext(ctx).Table(strings.Trim(ctlTable, `"`)).CreateInBatches(&rows, bulkLoadBatch).Error
			}},
			{name: "encrypted", table: encTable, load: func(ctx context.Context) error {
				rows := make([]benchEncUser, len(emails))
				for i := range rows {
					rows[i] = benchEncUser{Email: encryptedtype.NewString(emails[i])}
					if phones[i] != nil {
						rows[i].Phone = ptr(encryptedtype.NewString(*phones[i]))
					}
				}
				return gdb.WithContext(ctx).Table(strings.Trim(encTable, `"`)).CreateInBatches(&rows, bulkLoadBatch).Error
			}},
		}
		runBulkVariants(b, db, variants)
	})

	b.Run("copyfrom", func(b *testing.B) {
		conn := pgxConnect(b, dsn, pgx.QueryExecModeCacheStatement, false)
		codecConn := pgxConnect(b, dsn, pgx.QueryExecModeCacheStatement, true)
		plainTable := createTable(b, db, "email TEXT NOT NULL UNIQUE, phone TEXT")
		encTable := createTable(b, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL UNIQUE, phone TEXT")
		codecTable := createTable(b, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL UNIQUE, phone TEXT")
		ctlTable := createTable(b, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL UNIQUE, phone TEXT")

		copyEncrypted := func(c *pgx.Conn, table string) func(context.Context) error {
			return func(ctx context.Context) error {
				i := 0
				n, err := c.CopyFrom(ctx, pgx.Identifier{strings.Trim(table, `"`)}, []string{"email", "email_bidx", "phone"},
					pgx.CopyFromFunc(func() ([]any, error) {
						if i == len(emails) {
							return nil, nil
						}
						bidx, err := index.Compute(emails[i])
						if err != nil {
							return nil, err
						}
						var phone *encryptedtype.String
						if phones[i] != nil {
							phone = ptr(encryptedtype.NewString(*phones[i]))
						}
						row := []any{encryptedtype.NewString(emails[i]), bidx, phone}
						i++
						return row, nil
					}))
				return checkCopied(n, err)
			}
		}
		variants := []bulkVariant{
			{name: "plain", table: plainTable, load: func(ctx context.Context) error {
				i := 0
				n, err := conn.CopyFrom(ctx, pgx.Identifier{strings.Trim(plainTable, `"`)}, []string{"email", "phone"},
					pgx.CopyFromFunc(func() ([]any, error) {
						if i == len(emails) {
							return nil, nil
						}
						row := []any{emails[i], phones[i]}
						i++
						return row, nil
					}))
				return checkCopied(n, err)
			}},
			{name: "precomputed", table: ctlTable, load: func(ctx context.Context) error {
				i := 0
				n, err := conn.CopyFrom(ctx, pgx.Identifier{strings.Trim(ctlTable, `"`)}, []string{"email", "email_bidx", "phone"},
					pgx.CopyFromFunc(func() ([]any, error) {
						if i == len(emails) {
							return nil, nil
						}
						row := []any{encEmails[i], encBidx[i], encPhones[i]}
						i++
						return row, nil
					}))
				return checkCopied(n, err)
			}},
			{name: "encrypted", table: encTable, load: copyEncrypted(conn, encTable)},
			{name: "pgxcodec", table: codecTable, load: copyEncrypted(codecConn, codecTable)},
		}
		runBulkVariants(b, db, variants)
	})
}

// The size of a bulk load.
const (
	bulkLoadRows  = 100_000
	bulkLoadBatch = 1000 // rows per INSERT for GORM's CreateInBatches
)

// benchPlainUser is the plaintext model of the GORM bulk load.
type benchPlainUser struct {
	ID    int64
	Email string
	Phone *string
}

// benchEncUser is the encrypted model of the GORM bulk load.
type benchEncUser struct {
	ID        int64
	Email     encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:bench.email;source:Email"`
	Phone     *encryptedtype.String
}

// benchCiphertextUser is the control model of the GORM bulk load: the
// columns of benchEncUser as plain strings.
type benchCiphertextUser struct {
	ID        int64
	Email     string
	EmailBidx string
	Phone     *string
}

// bulkVariant is one way of loading the rows.
type bulkVariant struct {
	name  string
	table string // quoted; truncated before every load
	load  func(ctx context.Context) error
}

// checkCopied turns a short COPY into an error.
func checkCopied(n int64, err error) error {
	if err == nil && n != bulkLoadRows {
		err = fmt.Errorf("copied %d rows, want %d", n, bulkLoadRows)
	}
	return err
}

// runBulkVariants runs every variant once per iteration, the first one
// first in iteration 0, the second one first in iteration 1 and so on, and
// reports rows per second of each and its ratio to the first (the
// plaintext).
func runBulkVariants(b *testing.B, db *sql.DB, variants []bulkVariant) {
	spent := make([]time.Duration, len(variants))
	iter := 0
	for b.Loop() {
		for k := range variants {
			j := (iter + k) % len(variants)
			v := variants[j]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			if _, err := db.ExecContext(ctx, "TRUNCATE "+v.table); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			err := v.load(ctx)
			spent[j] += time.Since(start)
			cancel()
			if err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
		}
		iter++
	}
	rate := func(j int) float64 { return float64(bulkLoadRows*iter) / spent[j].Seconds() }
	for j, v := range variants {
		b.ReportMetric(rate(j), v.name+"-rows/s")
		if j > 0 {
			b.ReportMetric(rate(j)/rate(0), v.name+"/"+variants[0].name)
		}
	}
}
