package integration

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// The blind-index tests. Run them with
//
//	COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	COLCRYPT_REQUIRE_DB=1 go test -race -count=1 -run BlindIndex ./integration/
//
// and the lookup benchmark with
//
//	COLCRYPT_TEST_DATABASE_URL=… go test -run '^$' -bench BlindIndex -benchtime 3s ./integration/

// emailNormalizer is the normaliser of every e-mail index here.
var emailNormalizer = blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)

// indexKeyring is a blind-index keyring whose keys can be swapped while the
// program runs, like a keyring that reloads from a key table: the tests
// rotate the index key under a live *gorm.DB.
type indexKeyring struct {
	t    testing.TB
	keys map[uint32]keyprovider.Key
	cur  atomic.Pointer[keyprovider.Static]
}

// newIndexKeyring returns a keyring of fresh random root keys (never the
// data keys) with the given versions live and active active.
func newIndexKeyring(t testing.TB, active uint32, versions ...uint32) *indexKeyring {
	k := &indexKeyring{t: t, keys: map[uint32]keyprovider.Key{}}
	k.set(active, versions...)
	return k
}

// set makes versions (and active) live, writing under active.
func (k *indexKeyring) set(active uint32, versions ...uint32) {
	k.t.Helper()
	var keys []keyprovider.Key
	for _, v := range append([]uint32{active}, versions...) {
		key, ok := k.keys[v]
		if !ok {
			var err error
			if key, err = keyprovider.GenerateKey(v); err != nil {
				k.t.Fatal(err)
			}
			k.keys[v] = key
		}
		if !slices.ContainsFunc(keys, func(x keyprovider.Key) bool { return x.Version() == v }) {
			keys = append(keys, key)
		}
	}
	s, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		k.t.Fatal(err)
	}
	k.cur.Store(s)
}

func (k *indexKeyring) Active() (keyprovider.Key, error)      { return k.cur.Load().Active() }
func (k *indexKeyring) Key(v uint32) (keyprovider.Key, error) { return k.cur.Load().Key(v) }
func (k *indexKeyring) Versions() []uint32                    { return k.cur.Load().Versions() }

func newEmailIndex(t testing.TB, name string, keys blindindex.Keyring, bits int) *blindindex.Index {
	t.Helper()
	ix, err := blindindex.New(name, keys, blindindex.Config{Normalize: emailNormalizer, Bits: bits})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// openBlindIndexGORM opens GORM on dsn with the gormcrypt plugin for
// indexes and a short random table prefix ("bi<hex>_"), migrates models and
// drops their tables when t ends.
func openBlindIndexGORM(t testing.TB, dsn string, indexes []*blindindex.Index, models ...any) *gorm.DB {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	gdb, err := gorm.Open(postgres.Open(dsn), &gorm.Config{
		NamingStrategy: schema.NamingStrategy{TablePrefix: "bi" + hex.EncodeToString(r[:]) + "_"},
		Logger:         logger.Discard,
	})
	if err != nil {
		t.Fatalf("gorm.Open: %v", err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := gdb.Use(gormcrypt.New(indexes...)); err != nil {
		t.Fatalf("db.Use(gormcrypt.New(…)): %v", err)
	}
	for _, m := range models {
		if err := gdb.AutoMigrate(m); err != nil {
			t.Fatalf("AutoMigrate(%T): %v", m, err)
		}
		stmt := &gorm.Statement{DB: gdb}
		if err := stmt.Parse(m); err != nil {
			t.Fatal(err)
		}
		table := stmt.Schema.Table
		t.Cleanup(func() { dropTable(t, sqlDB, pgx.Identifier{table}.Sanitize()) })
	}
	return gdb.WithContext(testContext(t))
}

// tableOf returns the table name of a model in gdb.
func tableOf(t testing.TB, gdb *gorm.DB, model any) string {
	t.Helper()
	stmt := &gorm.Statement{DB: gdb}
	if err := stmt.Parse(model); err != nil {
		t.Fatal(err)
	}
	return pgx.Identifier{stmt.Schema.Table}.Sanitize()
}

// ---------------------------------------------------------------------------
// GORM: writes, uniqueness, two columns.

// biUser has two encrypted e-mail columns, each with its own blind index;
// the first is unique.
type biUser struct {
	ID              uint
	Name            string
	Email           encryptedtype.String  `gorm:"not null"`
	EmailBidx       gormcrypt.BlindIndex  `gorm:"uniqueIndex" colcrypt:"blindindex:users.email;source:Email"`
	BackupEmail     *encryptedtype.String // nullable
	BackupEmailBidx gormcrypt.BlindIndex  `gorm:"index" colcrypt:"blindindex:users.backup_email;source:BackupEmail"`
}

func TestBlindIndexGORM(t *testing.T) {
	dsn := databaseURL(t)
	newKeyring(t).use(1)
	ik := newIndexKeyring(t, 1)
	email := newEmailIndex(t, "users.email", ik, 0)
	backup := newEmailIndex(t, "users.backup_email", ik, 0)
	gdb := openBlindIndexGORM(t, dsn, []*blindindex.Index{email, backup}, &biUser{})
	table := tableOf(t, gdb, &biUser{})
	sqlDB, _ := gdb.DB()

	// stored returns the raw index columns of a row.
	stored := func(id uint) (e, b sql.NullString) {
		t.Helper()
		err := sqlDB.QueryRowContext(testContext(t), "SELECT email_bidx, backup_email_bidx FROM "+table+" WHERE id = $1", id).Scan(&e, &b)
		if err != nil {
			t.Fatal(err)
		}
		return e, b
	}
	check := func(id uint, e string, b *string) {
		t.Helper()
		se, sb := stored(id)
		if !se.Valid || se.String != indexOf(t, email, e) {
			t.Errorf("row %d: email_bidx = %v, want the index of %q", id, se, e)
		}
		if b == nil && sb.Valid {
			t.Errorf("row %d: backup_email_bidx = %v, want NULL", id, sb)
		}
		if b != nil && (!sb.Valid || sb.String != indexOf(t, backup, *b)) {
			t.Errorf("row %d: backup_email_bidx = %v, want the index of %q", id, sb, *b)
		}
	}

	// Create.
	alice := biUser{Name: "alice", Email: encryptedtype.NewString("a@x.com"), BackupEmail: ptr(encryptedtype.NewString("a@x.com"))}
	if err := gdb.Create(&alice).Error; err != nil {
		t.Fatalf("Create: %v", err)
	}
	check(alice.ID, "a@x.com", ptr("a@x.com"))

	// The same plaintext in two indexed columns has different index values.
	if se, sb := stored(alice.ID); se.String == sb.String {
		t.Errorf("email_bidx and backup_email_bidx are equal (%s) for the same plaintext", se.String)
	}

	// UNIQUE on the case-folded index rejects A@x.com after a@x.com.
	err := gdb.Create(&biUser{Name: "dup", Email: encryptedtype.NewString("A@x.com")}).Error
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Errorf("Create of A@x.com after a@x.com: %v, want a unique violation (23505)", err)
	}

	// CreateInBatches.
	batch := make([]biUser, 25)
	for i := range batch {
		batch[i] = biUser{Name: fmt.Sprint("b", i), Email: encryptedtype.NewString(fmt.Sprintf("Batch%02d@X.com", i))}
		if i%2 == 0 {
			batch[i].BackupEmail = ptr(encryptedtype.NewString(fmt.Sprintf("backup%02d@x.com", i)))
		}
	}
	if err := gdb.CreateInBatches(&batch, 10).Error; err != nil {
		t.Fatalf("CreateInBatches: %v", err)
	}
	for i, u := range batch {
		var b *string
		if i%2 == 0 {
			b = ptr(fmt.Sprintf("backup%02d@x.com", i))
		}
		check(u.ID, fmt.Sprintf("batch%02d@x.com", i), b)
	}

	// Save.
	u := batch[0]
	u.Email = encryptedtype.NewString("saved@x.com")
	u.BackupEmail = nil
	if err := gdb.Save(&u).Error; err != nil {
		t.Fatalf("Save: %v", err)
	}
	check(u.ID, "saved@x.com", nil)

	// Updates with a struct, then with a map.
	if err := gdb.Model(&u).Updates(biUser{Email: encryptedtype.NewString("Struct@x.com")}).Error; err != nil {
		t.Fatalf("Updates(struct): %v", err)
	}
	check(u.ID, "struct@x.com", nil)
	if err := gdb.Model(&u).Updates(map[string]any{"email": encryptedtype.NewString("map@x.com"), "backup_email": ptr(encryptedtype.NewString("mapb@x.com"))}).Error; err != nil {
		t.Fatalf("Updates(map): %v", err)
	}
	check(u.ID, "map@x.com", ptr("mapb@x.com"))
	if err := gdb.Model(&u).Updates(biUser{Name: "renamed"}).Error; err != nil {
		t.Fatalf("Updates(name only): %v", err)
	}
	check(u.ID, "map@x.com", ptr("mapb@x.com"))

	// Lookups.
	var got biUser
	if err := gdb.Scopes(gormcrypt.Where("Email", " MAP@X.COM ")).First(&got).Error; err != nil || got.ID != u.ID {
		t.Errorf("Where(Email, MAP@X.COM) = row %d, %v, want row %d", got.ID, err, u.ID)
	}
	if got.Email.Plaintext() != "map@x.com" || got.Name != "renamed" {
		t.Errorf("found %q/%q", got.Email.Plaintext(), got.Name)
	}
	var byBackup []biUser
	if err := gdb.Scopes(gormcrypt.Where("BackupEmail", "a@x.com")).Find(&byBackup).Error; err != nil || len(byBackup) != 1 || byBackup[0].ID != alice.ID {
		t.Errorf("Where(BackupEmail, a@x.com) = %d rows, %v", len(byBackup), err)
	}
	// backup02@x.com is only a backup address: the Email index must not find it.
	var n int64
	if err := gdb.Model(&biUser{}).Scopes(gormcrypt.Where("Email", "backup02@x.com")).Count(&n).Error; err != nil || n != 0 {
		t.Errorf("Where(Email, backup02@x.com) counted %d rows, %v, want 0", n, err)
	}
	if err := gdb.Model(&biUser{}).Scopes(gormcrypt.Where("BackupEmail", "backup02@x.com")).Count(&n).Error; err != nil || n != 1 {
		t.Errorf("Where(BackupEmail, backup02@x.com) counted %d rows, %v, want 1", n, err)
	}
}

// ---------------------------------------------------------------------------
// 100 000 rows: the lookup uses the B-tree.

const lookupRows = 100_000

// lookupTable is a table of lookupRows users with an encrypted email, its
// blind index, and the same email in plaintext, each of the last two with a
// B-tree index, for comparing lookups on a table of one size.
type lookupTable struct {
	db    *sql.DB
	name  string // quoted
	index *blindindex.Index
}

// lookupEmail is the plaintext e-mail of row i (0-based), in the form the
// plaintext column holds; the encrypted column holds it with capitals.
func lookupEmail(i int) string { return fmt.Sprintf("user%06d@example.com", i) }

// newLookupTable creates and fills a lookup table. encryptedtype's default
// provider must be set.
func newLookupTable(t testing.TB, dsn string, index *blindindex.Index) *lookupTable {
	t.Helper()
	db := openSQL(t, dsn)
	name := createTable(t, db, "email TEXT NOT NULL, email_bidx TEXT NOT NULL, email_plain TEXT NOT NULL")
	bare := strings.Trim(name, `"`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	rows := make([][]any, lookupRows)
	for i := range rows {
		plain := lookupEmail(i)
		written := strings.Replace(plain, "user", "User", 1)
		if i%3 == 0 {
			written = strings.ToUpper(written)
		}
		enc, err := encryptedtype.NewString(written).Value()
		if err != nil {
			t.Fatal(err)
		}
		bidx, err := index.Compute(written)
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = []any{enc, bidx, plain}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		n, err := pc.CopyFrom(ctx, pgx.Identifier{bare}, []string{"email", "email_bidx", "email_plain"}, pgx.CopyFromRows(rows))
		if err == nil && n != lookupRows {
			err = fmt.Errorf("copied %d rows, want %d", n, lookupRows)
		}
		return err
	})
	if err != nil {
		t.Fatalf("COPY: %v", err)
	}
	for _, ddl := range []string{
		fmt.Sprintf("CREATE INDEX %s ON %s (email_bidx)", pgx.Identifier{bare + "_bidx"}.Sanitize(), name),
		fmt.Sprintf("CREATE INDEX %s ON %s (email_plain)", pgx.Identifier{bare + "_plain"}.Sanitize(), name),
		"ANALYZE " + name,
	} {
		if _, err := conn.ExecContext(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	t.Logf("filled %s with %d rows in %v", name, lookupRows, time.Since(start).Round(time.Millisecond))
	return &lookupTable{db: db, name: name, index: index}
}

// explain returns the plan of query.
func explain(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(testContext(t), "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// assertIndexScan checks that plan reads the table through indexName and
// never sequentially.
func assertIndexScan(t testing.TB, what, plan, indexName string) {
	t.Helper()
	if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") || !strings.Contains(plan, indexName) {
		t.Errorf("%s: the plan does not use an index scan on %s:\n%s", what, indexName, plan)
		return
	}
	t.Logf("%s: %s", what, strings.ReplaceAll(plan, "\n", " | "))
}

// lookupRowGORM is the GORM view of a lookup table.
type lookupRowGORM struct {
	ID        int64
	Email     encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:lookup.email;source:Email"`
}

func TestBlindIndexLookupUsesBTree(t *testing.T) {
	dsn := databaseURL(t)
	newKeyring(t).use(1)
	ik := newIndexKeyring(t, 1)
	index := newEmailIndex(t, "lookup.email", ik, 0)
	lt := newLookupTable(t, dsn, index)
	bare := strings.Trim(lt.name, `"`)
	ctx := testContext(t)

	// database/sql (pgx stdlib): WHERE email_bidx = ANY($1).
	query := "SELECT id, email FROM " + lt.name + " WHERE email_bidx = ANY($1)"
	for _, i := range []int{0, 1, 4242, lookupRows - 1} {
		values, err := index.Lookup(" " + strings.ToUpper(lookupEmail(i)))
		if err != nil {
			t.Fatal(err)
		}
		assertIndexScan(t, "database/sql = ANY($1)", explain(t, lt.db, query, values), bare+"_bidx")
		var id int64
		var email encryptedtype.String
		if err := lt.db.QueryRowContext(ctx, query, values).Scan(&id, &email); err != nil {
			t.Fatalf("lookup of row %d: %v", i, err)
		}
		if id != int64(i+1) || !index.Equal(email.Plaintext(), lookupEmail(i)) {
			t.Errorf("lookup of row %d found row %d (%q)", i, id, email.Plaintext())
		}
	}

	// The fixed-shape form: WHERE email_bidx IN ($1, $2).
	pairQuery := "SELECT id FROM " + lt.name + " WHERE email_bidx IN ($1, $2)"
	active, other, err := index.LookupPair(lookupEmail(99))
	if err != nil {
		t.Fatal(err)
	}
	assertIndexScan(t, "database/sql IN ($1, $2)", explain(t, lt.db, pairQuery, active, other), bare+"_bidx")
	var pairID int64
	if err := lt.db.QueryRowContext(ctx, pairQuery, active, other).Scan(&pairID); err != nil || pairID != 100 {
		t.Errorf("IN ($1, $2) lookup found row %d, %v, want 100", pairID, err)
	}

	// The same through GORM's scope, and during a rotation (two versions).
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: lt.db}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := gdb.Use(gormcrypt.New(index)); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"one version", "two versions"} {
		if phase == "two versions" {
			ik.set(2, 1)
		}
		gormSQL := gdb.ToSQL(func(tx *gorm.DB) *gorm.DB {
			return tx.Table(bare).Scopes(gormcrypt.Where("Email", lookupEmail(777))).Find(&[]lookupRowGORM{})
		})
		assertIndexScan(t, "GORM ("+phase+")", explain(t, lt.db, gormSQL), bare+"_bidx")
		var found []lookupRowGORM
		if err := gdb.WithContext(ctx).Table(bare).Scopes(gormcrypt.Where("Email", lookupEmail(777))).Find(&found).Error; err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].ID != 778 {
			t.Errorf("GORM lookup (%s) found %d rows", phase, len(found))
		}
	}

	// The plaintext column, for comparison, is indexed the same way.
	assertIndexScan(t, "plaintext", explain(t, lt.db, "SELECT id, email_plain FROM "+lt.name+" WHERE email_plain = $1", lookupEmail(5)), bare+"_plain")
}

// BenchmarkBlindIndexLookup compares an equality lookup through the blind
// index with the same lookup on the plaintext column of the same
// 100 000-row table, both B-tree indexed, one row found per lookup.
//
// Each iteration of "sql" (database/sql over pgx's stdlib driver, one
// connection, prepared statements cached) runs, for four different rows:
//
//   - plaintext: "WHERE email_plain = $1", scan the email (the floor);
//   - eq: Compute, "WHERE email_bidx = $1", scan and decrypt the email;
//   - pair: LookupPair, "WHERE email_bidx IN ($1, $2)", scan and decrypt
//     the email;
//   - any: Lookup, "WHERE email_bidx = ANY($1)", scan and decrypt.
//
// Each iteration of "gorm" runs Where("email_plain = ?").Take and
// Scopes(gormcrypt.Where("Email", …)).Take. The variants are interleaved
// so that a change of load on the machine hits them alike; each is reported
// as its own metric (…-ns/lookup) and as a ratio to its plaintext floor.
func BenchmarkBlindIndexLookup(b *testing.B) {
	dsn := databaseURL(b)
	newKeyring(b).use(1)
	index := newEmailIndex(b, "lookup.email", newIndexKeyring(b, 1), 0)
	lt := newLookupTable(b, dsn, index)
	lt.db.SetMaxOpenConns(1)
	ctx := context.Background()
	bare := strings.Trim(lt.name, `"`)
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: lt.db}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		b.Fatal(err)
	}
	if err := gdb.Use(gormcrypt.New(index)); err != nil {
		b.Fatal(err)
	}
	// next returns the e-mail of the next pseudo-random row.
	row := 0
	next := func() string { row++; return lookupEmail(row * 7919 % lookupRows) }

	// timed runs each variant once, on its own row, and adds up its time.
	timed := func(b *testing.B, spent []time.Duration, variants []func(email string) error) {
		for i, v := range variants {
			e := next()
			start := time.Now()
			if err := v(e); err != nil {
				b.Fatal(err)
			}
			spent[i] += time.Since(start)
		}
	}
	report := func(b *testing.B, names []string, spent []time.Duration) {
		n := float64(b.N)
		for i, name := range names {
			b.ReportMetric(float64(spent[i].Nanoseconds())/n, name+"-ns/lookup")
			if i > 0 {
				b.ReportMetric(float64(spent[i])/float64(spent[0]), name+"/"+names[0])
			}
		}
	}

	plainQuery := "SELECT id, email_plain FROM " + lt.name + " WHERE email_plain = $1"
	pairQuery := "SELECT id, email FROM " + lt.name + " WHERE email_bidx IN ($1, $2)"
	anyQuery := "SELECT id, email FROM " + lt.name + " WHERE email_bidx = ANY($1)"
	eqQuery := "SELECT id, email FROM " + lt.name + " WHERE email_bidx = $1"
	b.Run("sql", func(b *testing.B) {
		names := []string{"plaintext", "pair", "any", "eq"}
		spent := make([]time.Duration, len(names))
		variants := []func(string) error{
			func(e string) error {
				var id int64
				var email string
				return lt.db.QueryRowContext(ctx, plainQuery, e).Scan(&id, &email)
			},
			func(e string) error {
				active, other, err := index.LookupPair(e)
				if err != nil {
					return err
				}
				var id int64
				var email encryptedtype.String
				return lt.db.QueryRowContext(ctx, pairQuery, active, other).Scan(&id, &email)
			},
			func(e string) error {
				values, err := index.Lookup(e)
				if err != nil {
					return err
				}
				var id int64
				var email encryptedtype.String
				return lt.db.QueryRowContext(ctx, anyQuery, values).Scan(&id, &email)
			},
			// With one live index-key version (as here, and between
			// rotations) the lookup is the same query shape as the
			// plaintext one: = $1 with Index.Compute.
			func(e string) error {
				value, err := index.Compute(e)
				if err != nil {
					return err
				}
				var id int64
				var email encryptedtype.String
				return lt.db.QueryRowContext(ctx, eqQuery, value).Scan(&id, &email)
			},
		}
		for b.Loop() {
			timed(b, spent, variants)
		}
		report(b, names, spent)
	})
	b.Run("gorm", func(b *testing.B) {
		names := []string{"plaintext", "blindindex"}
		spent := make([]time.Duration, len(names))
		variants := []func(string) error{
			func(e string) error {
				var r struct {
					ID         int64
					EmailPlain string
				}
				return gdb.Table(bare).Select("id, email_plain").Where("email_plain = ?", e).Take(&r).Error
			},
			func(e string) error {
				var r lookupRowGORM
				return gdb.Table(bare).Select("id, email").Scopes(gormcrypt.Where("Email", e)).Take(&r).Error
			},
		}
		for b.Loop() {
			timed(b, spent, variants)
		}
		report(b, names, spent)
	})
}

// ---------------------------------------------------------------------------
// Truncated indexes: every true match, plus false positives that Filter drops.

type biShort struct {
	ID        uint
	Email     encryptedtype.String `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex `gorm:"index" colcrypt:"blindindex:short.email;source:Email"`
}

func TestBlindIndexTruncated(t *testing.T) {
	dsn := databaseURL(t)
	newKeyring(t).use(1)
	const distinct = 2000
	bits := blindindex.SuggestBits(distinct, 8) // about 8 wrong values per lookup
	index := newEmailIndex(t, "short.email", newIndexKeyring(t, 1), bits)
	gdb := openBlindIndexGORM(t, dsn, []*blindindex.Index{index}, &biShort{})

	rows := make([]biShort, 0, distinct+distinct/10)
	for i := range distinct {
		rows = append(rows, biShort{Email: encryptedtype.NewString(fmt.Sprintf("u%d@x.com", i))})
		if i%10 == 0 { // a second true match, differing in case only
			rows = append(rows, biShort{Email: encryptedtype.NewString(fmt.Sprintf("U%d@X.COM", i))})
		}
	}
	if err := gdb.CreateInBatches(&rows, 500).Error; err != nil {
		t.Fatal(err)
	}

	falsePositives := 0
	for i := 0; i < distinct; i += 37 {
		want := fmt.Sprintf("u%d@x.com", i)
		var trueIDs []uint
		for _, r := range rows {
			if index.Equal(r.Email.Plaintext(), want) {
				trueIDs = append(trueIDs, r.ID)
			}
		}
		var found []biShort
		if err := gdb.Scopes(gormcrypt.Where("Email", want)).Find(&found).Error; err != nil {
			t.Fatal(err)
		}
		ids := make(map[uint]bool, len(found))
		for _, f := range found {
			ids[f.ID] = true
		}
		for _, id := range trueIDs {
			if !ids[id] {
				t.Errorf("lookup of %s missed row %d", want, id)
			}
		}
		matches := blindindex.Filter(index, found, want, func(u biShort) string { return u.Email.Plaintext() })
		if len(matches) != len(trueIDs) {
			t.Errorf("Filter kept %d of %d rows for %s, want the %d true matches", len(matches), len(found), want, len(trueIDs))
		}
		for _, m := range matches {
			if !slices.Contains(trueIDs, m.ID) {
				t.Errorf("Filter kept row %d, which does not hold %s", m.ID, want)
			}
		}
		falsePositives += len(found) - len(trueIDs)
	}
	if falsePositives == 0 {
		t.Errorf("a %d-bit index over %d values returned no false positives: is it truncated?", bits, distinct)
	}
	t.Logf("%d-bit index: %d false positives over %d lookups", bits, falsePositives, (distinct+36)/37)
}

// ---------------------------------------------------------------------------
// Index-key rotation: every row is found while versions 1 and 2 are live.

type biRot struct {
	ID        uint
	Email     encryptedtype.String `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:rot.email;source:Email"`
}

func TestBlindIndexRotation(t *testing.T) {
	dsn := databaseURL(t)
	newKeyring(t).use(1)
	ik := newIndexKeyring(t, 1)
	index := newEmailIndex(t, "rot.email", ik, 0)
	gdb := openBlindIndexGORM(t, dsn, []*blindindex.Index{index}, &biRot{})
	table := tableOf(t, gdb, &biRot{})
	sqlDB, _ := gdb.DB()
	ctx := testContext(t)

	emails := map[uint]string{} // id → current plaintext
	create := func(from, to int) {
		t.Helper()
		batch := make([]biRot, 0, to-from)
		for i := from; i < to; i++ {
			batch = append(batch, biRot{Email: encryptedtype.NewString(fmt.Sprintf("Rot%03d@Example.com", i))})
		}
		if err := gdb.CreateInBatches(&batch, 50).Error; err != nil {
			t.Fatal(err)
		}
		for _, r := range batch {
			emails[r.ID] = r.Email.Plaintext()
		}
	}
	countVersion := func(v uint32) int {
		t.Helper()
		var n int
		if err := sqlDB.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE email_bidx LIKE $1", fmt.Sprintf("b%d:%%", v)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	findAll := func(phase string, wantLookupValues int) {
		t.Helper()
		for id, e := range emails {
			var got biRot
			if err := gdb.Scopes(gormcrypt.Where("Email", strings.ToLower(e))).First(&got).Error; err != nil || got.ID != id {
				t.Errorf("%s: GORM lookup of row %d: found %d, %v", phase, id, got.ID, err)
			}
			values, err := index.Lookup(e)
			if err != nil {
				t.Fatal(err)
			}
			if len(values) != wantLookupValues {
				t.Fatalf("%s: Lookup returned %d values, want %d", phase, len(values), wantLookupValues)
			}
			var sqlID uint
			if err := sqlDB.QueryRowContext(ctx, "SELECT id FROM "+table+" WHERE email_bidx = ANY($1)", values).Scan(&sqlID); err != nil || sqlID != id {
				t.Errorf("%s: = ANY($1) lookup of row %d: found %d, %v", phase, id, sqlID, err)
			}
		}
	}

	// Version 1 only.
	create(0, 100)
	findAll("version 1", 1)

	// Version 2 becomes active; version 1 stays live. New rows and updated
	// rows are written under version 2, the rest stay under version 1.
	ik.set(2, 1)
	create(100, 200)
	i := 0
	for id := range emails {
		if i++; i > 30 {
			break
		}
		e := "Moved" + emails[id]
		if err := gdb.Model(&biRot{ID: id}).Updates(map[string]any{"email": encryptedtype.NewString(e)}).Error; err != nil {
			t.Fatal(err)
		}
		emails[id] = e
	}
	if n1, n2 := countVersion(1), countVersion(2); n1 == 0 || n2 == 0 || n1+n2 != len(emails) {
		t.Fatalf("during the rotation: %d values under version 1 and %d under version 2, want both, %d in all", n1, n2, len(emails))
	}
	findAll("versions 1 and 2", 2)

	// The rotation job: recompute every index value not under the active
	// version, from the decrypted source.
	rows, err := gdb.Model(&biRot{}).Where("email_bidx NOT LIKE ?", "b2:%").Rows()
	if err != nil {
		t.Fatal(err)
	}
	var stale []biRot
	for rows.Next() {
		var r biRot
		if err := gdb.ScanRows(rows, &r); err != nil {
			t.Fatal(err)
		}
		if cur, err := index.IsCurrent(r.EmailBidx.String()); err != nil || cur {
			t.Fatalf("row %d: IsCurrent = %v, %v for a version-1 value", r.ID, cur, err)
		}
		stale = append(stale, r)
	}
	rows.Close()
	for _, r := range stale {
		if err := gdb.Save(&r).Error; err != nil { // Save recomputes the index
			t.Fatal(err)
		}
	}
	if n1, n2 := countVersion(1), countVersion(2); n1 != 0 || n2 != len(emails) {
		t.Fatalf("after the rotation job: %d values under version 1, %d under version 2", n1, n2)
	}
	findAll("rewritten, versions 1 and 2 live", 2)

	// Version 1 retired.
	ik.set(2)
	findAll("version 2 only", 1)
}
