package integration

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
)

// The checks shared by the MySQL/MariaDB tests (mysql_roundtrip_test.go) and the
// SQLite tests (sqlite_roundtrip_test.go): the column types and blind indexes through
// database/sql and through GORM with the gormcrypt plugin. Each database
// describes itself in a sqlDialect.

// columnInfo is what a database says about one column of a table.
type columnInfo struct {
	Type     string // as the database names it, lower case: "text", "varchar(64)"
	Nullable bool
	Extra    string // anything else worth reporting, such as the collation
}

// indexInfo is what a database says about one index of a table.
type indexInfo struct {
	Name    string
	Columns []string
	Unique  bool
	Extra   string // such as the index type, or a prefix length
}

// sqlDialect is what the shared checks need to know about a database.
type sqlDialect struct {
	name string // "MySQL", "SQLite"

	// open returns a database/sql pool on the test database, closed when t
	// ends.
	open func(t testing.TB) *sql.DB
	// gorm returns a GORM dialector on the test database.
	gorm func(t testing.TB) gorm.Dialector

	// Column types for CREATE TABLE.
	idColumn   string // the auto-increment primary key "id"
	varchar    string // a VARCHAR(255) or what the database has instead
	blob       string // a BLOB
	varbinary  string // a VARBINARY(255) or what the database has instead
	bidxColumn string // the column type recommended for a blind index

	quote           func(name string) string
	uniqueViolation func(err error) bool
	columns         func(t testing.TB, db *sql.DB, table string) map[string]columnInfo
	indexes         func(t testing.TB, db *sql.DB, table string) []indexInfo
	// storage, when not nil, returns how the database stored a column's
	// value (SQLite's typeof); it is logged and checked by the dialect's
	// own tests.
	storage func(t testing.TB, db *sql.DB, table, column string, id int64) string
}

// createDialectTable creates a table with a unique name and the given
// columns after the dialect's id column, drops it when t ends, and returns
// its quoted name.
func createDialectTable(t testing.TB, d *sqlDialect, db *sql.DB, columns string) string {
	t.Helper()
	name := d.quote(uniqueName(t))
	ddl := fmt.Sprintf("CREATE TABLE %s (%s, %s)", name, d.idColumn, columns)
	if _, err := db.ExecContext(testContext(t), ddl); err != nil {
		t.Fatalf("%s: %v", ddl, err)
	}
	t.Cleanup(func() { dropTable(t, db, name) })
	return name
}

// dialectIndexes returns the e-mail index (case-folded) and the phone index
// (digits only) of the MySQL and SQLite tests, under a fresh index keyring.
func dialectIndexes(t testing.TB) (email, phone *blindindex.Index) {
	t.Helper()
	ik := newIndexKeyring(t, 1)
	email = newEmailIndex(t, "dialect.email", ik, 0)
	phone, err := blindindex.New("dialect.phone", ik, blindindex.Config{Normalize: blindindex.DigitsOnly})
	if err != nil {
		t.Fatal(err)
	}
	return email, phone
}

// inList returns "(?, ?, …)" for n values and the values as []any.
func inList(values []string) (string, []any) {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", ") + ")", args
}

// flipMiddle returns raw with its middle character replaced by another
// base64url character: still in the wire format, no longer authentic.
func flipMiddle(raw string) string {
	i := len(raw) / 2
	c := byte('A')
	if raw[i] == 'A' {
		c = 'B'
	}
	return raw[:i] + string(c) + raw[i+1:]
}

// dialectProfile is stored as encrypted JSON in the database/sql checks.
type dialectProfile struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// testDialectSQL uses the column types through database/sql on d: TEXT,
// VARCHAR, BLOB and VARBINARY columns, NULL versus the empty string, a
// blind-index column with a UNIQUE constraint and lookups with IN (…), a
// tampered value, and a key rotation. Every stored value is read back with
// plain SQL and checked to be ciphertext in the wire format.
func testDialectSQL(t *testing.T, d *sqlDialect, db *sql.DB) {
	keys := newKeyring(t)
	const version = 8
	keys.use(version)
	emailIx, _ := dialectIndexes(t)
	ctx := testContext(t)

	table := createDialectTable(t, d, db, fmt.Sprintf(`
		email      TEXT NOT NULL,
		email_bidx %s NOT NULL UNIQUE,
		phone      TEXT NULL,
		profile    TEXT NULL,
		vc         %s NULL,
		secret     %s NOT NULL,
		note       %s NULL`, d.bidxColumn, d.varchar, d.blob, d.varbinary))
	q := tableQuery(table)

	const (
		email = "Erin.Example@Example.org"
		phone = "+61 2 9374 4000"
		vc    = "varchar <secret>"
		note  = "vault combination 12-34-56"
	)
	secret := []byte("\x00\xffbinary secret\x10 api-key")
	profile := dialectProfile{Name: "Erin O'Example", Tags: []string{"vip customer"}}
	profileJSON, _ := json.Marshal(profile)
	secrets := append([]string{email, strings.ToLower(email), phone, vc, note, string(secret), profile.Name, "vip customer"}, keys.secrets()...)

	bidx := func(plaintext string) string {
		t.Helper()
		v, err := emailIx.Compute(plaintext)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	insert := q("INSERT INTO %s (email, email_bidx, phone, profile, vc, secret, note) VALUES (?, ?, ?, ?, ?, ?, ?)")
	exec := func(query string, args ...any) int64 {
		t.Helper()
		res, err := db.ExecContext(ctx, query, args...)
		if err != nil {
			assertNoSecrets(t, err, secrets)
			t.Fatalf("%s: %v", query, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// Row 1: every column set.
	id1 := exec(insert, encryptedtype.NewString(email), bidx(email), ptr(encryptedtype.NewString(phone)),
		ptr(encryptedtype.NewJSON(profile)), ptr(encryptedtype.NewString(vc)), encryptedtype.NewBytes(secret),
		ptr(encryptedtype.NewBytes([]byte(note))))
	// Row 2: empty values where the column is NOT NULL, NULL (nil
	// pointers) everywhere else.
	id2 := exec(insert, encryptedtype.NewString(""), bidx(""), (*encryptedtype.String)(nil),
		(*encryptedtype.JSON[dialectProfile])(nil), (*encryptedtype.String)(nil), encryptedtype.NewBytes(nil),
		(*encryptedtype.Bytes)(nil))
	// Row 3: empty values in the nullable columns, which are not NULL.
	id3 := exec(insert, encryptedtype.NewString("third@example.org"), bidx("third@example.org"), ptr(encryptedtype.NewString("")),
		ptr(encryptedtype.NewJSON(dialectProfile{})), ptr(encryptedtype.NewString("")), encryptedtype.NewBytes([]byte{}),
		ptr(encryptedtype.NewBytes(nil)))

	raw := func(column string, id int64) string {
		t.Helper()
		return rawText(t, db, q("SELECT "+column+" FROM %s WHERE id = ?"), id)
	}
	isNull := func(column string, id int64) bool {
		t.Helper()
		var s sql.NullString
		if err := db.QueryRowContext(ctx, q("SELECT "+column+" FROM %s WHERE id = ?"), id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return !s.Valid
	}

	t.Run("Raw", func(t *testing.T) {
		assertCiphertext(t, raw("email", id1), version, []byte(email))
		assertCiphertext(t, raw("phone", id1), version, []byte(phone))
		assertCiphertext(t, raw("profile", id1), version, profileJSON, profile.Name, "vip customer")
		assertCiphertext(t, raw("vc", id1), version, []byte(vc))
		assertCiphertext(t, raw("secret", id1), version, secret)
		assertCiphertext(t, raw("note", id1), version, []byte(note))
		if got := raw("email_bidx", id1); got != bidx(email) || strings.Contains(got, "Example") {
			t.Errorf("email_bidx = %q, want the index of the e-mail", got)
		}
		for _, col := range []string{"email", "secret"} {
			assertCiphertext(t, raw(col, id2), version, nil)
		}
		for _, col := range []string{"phone", "profile", "vc", "note"} {
			if !isNull(col, id2) {
				t.Errorf("row 2: %s is not NULL, want NULL from a nil pointer", col)
			}
			if isNull(col, id3) {
				t.Errorf("row 3: %s is NULL, want an encrypted empty value", col)
			}
		}
		for _, col := range []string{"phone", "vc", "secret", "note"} {
			assertCiphertext(t, raw(col, id3), version, nil)
		}
		assertCiphertext(t, raw("profile", id3), version, []byte(`{"name":"","tags":null}`))
		if d.storage != nil {
			for _, col := range []string{"email", "vc", "secret", "note"} {
				t.Logf("%s: row 1 %s is stored as %s", d.name, col, d.storage(t, db, table, col, id1))
			}
		}
	})

	sel := q("SELECT email, phone, profile, vc, secret, note FROM %s WHERE id = ?")
	type row struct {
		email   encryptedtype.String
		phone   *encryptedtype.String
		profile *encryptedtype.JSON[dialectProfile]
		vc      *encryptedtype.String
		secret  encryptedtype.Bytes
		note    *encryptedtype.Bytes
	}
	load := func(t *testing.T, id int64) row {
		t.Helper()
		var r row
		if err := db.QueryRowContext(ctx, sel, id).Scan(&r.email, &r.phone, &r.profile, &r.vc, &r.secret, &r.note); err != nil {
			assertNoSecrets(t, err, secrets)
			t.Fatalf("Scan row %d: %v", id, err)
		}
		return r
	}

	t.Run("Scan", func(t *testing.T) {
		r := load(t, id1)
		if r.email.Plaintext() != email || r.phone == nil || r.phone.Plaintext() != phone || r.vc == nil || r.vc.Plaintext() != vc {
			t.Errorf("row 1: email, phone, vc decrypt wrong")
		}
		if r.profile == nil || !reflect.DeepEqual(r.profile.Plaintext(), profile) {
			t.Errorf("row 1: profile = %v", r.profile)
		}
		if !bytes.Equal(r.secret.Plaintext(), secret) || r.note == nil || string(r.note.Plaintext()) != note {
			t.Errorf("row 1: secret, note decrypt wrong")
		}

		r = load(t, id2)
		if r.email.Plaintext() != "" || r.phone != nil || r.profile != nil || r.vc != nil || r.note != nil {
			t.Errorf("row 2: want \"\" and four nil pointers, got %q, %v, %v, %v, %v", r.email.Plaintext(), r.phone, r.profile, r.vc, r.note)
		}
		if p := r.secret.Plaintext(); p == nil || len(p) != 0 {
			t.Errorf("row 2: secret = %#v, want empty and non-nil", p)
		}

		r = load(t, id3)
		if r.phone == nil || r.phone.Plaintext() != "" || r.vc == nil || r.vc.Plaintext() != "" || r.note == nil || len(r.note.Plaintext()) != 0 {
			t.Errorf("row 3: want non-nil empty phone, vc and note, got %v, %v, %v", r.phone, r.vc, r.note)
		}
		if r.profile == nil || !reflect.DeepEqual(r.profile.Plaintext(), dialectProfile{}) {
			t.Errorf("row 3: profile = %v, want the zero profile", r.profile)
		}

		// NULL into a non-pointer is ErrNull, in TEXT and binary columns.
		var s encryptedtype.String
		assertDecryptError(t, db.QueryRowContext(ctx, q("SELECT phone FROM %s WHERE id = ?"), id2).Scan(&s), secrets, encryptedtype.ErrNull)
		var b encryptedtype.Bytes
		assertDecryptError(t, db.QueryRowContext(ctx, q("SELECT note FROM %s WHERE id = ?"), id2).Scan(&b), secrets, encryptedtype.ErrNull)
	})

	t.Run("BlindIndex", func(t *testing.T) {
		find := func(query string, args ...any) []int64 {
			t.Helper()
			rows, err := db.QueryContext(ctx, query, args...)
			if err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			defer rows.Close()
			var ids []int64
			for rows.Next() {
				var id int64
				var e encryptedtype.String
				if err := rows.Scan(&id, &e); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return ids
		}
		for _, variant := range []string{email, strings.ToLower(email), " ERIN.EXAMPLE@EXAMPLE.ORG\t"} {
			active, other, err := emailIx.LookupPair(variant)
			if err != nil {
				t.Fatal(err)
			}
			if ids := find(q("SELECT id, email FROM %s WHERE email_bidx IN (?, ?)"), active, other); !slices.Equal(ids, []int64{id1}) {
				t.Errorf("IN (?, ?) lookup of %q found %v, want [%d]", variant, ids, id1)
			}
			values, err := emailIx.Lookup(variant)
			if err != nil {
				t.Fatal(err)
			}
			list, args := inList(values)
			if ids := find(q("SELECT id, email FROM %s WHERE email_bidx IN "+list), args...); !slices.Equal(ids, []int64{id1}) {
				t.Errorf("IN %s lookup of %q found %v, want [%d]", list, variant, ids, id1)
			}
		}
		active, other, _ := emailIx.LookupPair("nobody@example.org")
		if ids := find(q("SELECT id, email FROM %s WHERE email_bidx IN (?, ?)"), active, other); len(ids) != 0 {
			t.Errorf("lookup of an absent e-mail found %v", ids)
		}
		// The empty e-mail has an index value of its own.
		active, other, _ = emailIx.LookupPair("")
		if ids := find(q("SELECT id, email FROM %s WHERE email_bidx IN (?, ?)"), active, other); !slices.Equal(ids, []int64{id2}) {
			t.Errorf("lookup of \"\" found %v, want [%d]", ids, id2)
		}

		// UNIQUE on the case-folded index refuses the same e-mail in
		// capitals.
		dup := strings.ToUpper(email)
		_, err := db.ExecContext(ctx, insert, encryptedtype.NewString(dup), bidx(dup), nil, nil, nil, encryptedtype.NewBytes(nil), nil)
		if !d.uniqueViolation(err) {
			t.Errorf("INSERT of a duplicate e-mail: %v, want a unique violation", err)
		}
		assertNoSecrets(t, err, append(secrets, dup))
	})

	t.Run("Tampered", func(t *testing.T) {
		for _, col := range []string{"phone", "note"} {
			if _, err := db.ExecContext(ctx, q("UPDATE %s SET "+col+" = ? WHERE id = ?"), flipMiddle(raw(col, id1)), id1); err != nil {
				t.Fatal(err)
			}
		}
		var s *encryptedtype.String
		assertDecryptError(t, db.QueryRowContext(ctx, q("SELECT phone FROM %s WHERE id = ?"), id1).Scan(&s), secrets, encryptedtype.ErrAuth)
		var b *encryptedtype.Bytes
		assertDecryptError(t, db.QueryRowContext(ctx, q("SELECT note FROM %s WHERE id = ?"), id1).Scan(&b), secrets, encryptedtype.ErrAuth)
		// database/sql allocates the String before calling Scan, so the
		// pointers are not nil; what they hold must not be plaintext.
		if s != nil && s.Plaintext() != "" || b != nil && len(b.Plaintext()) != 0 {
			t.Errorf("a tampered value produced plaintext")
		}
	})

	t.Run("KeyRotation", func(t *testing.T) {
		keys.use(version+1, version)
		id4 := exec(insert, encryptedtype.NewString("fourth@example.org"), bidx("fourth@example.org"), nil, nil, nil, encryptedtype.NewBytes([]byte("new key")), nil)
		assertCiphertext(t, raw("email", id4), version+1, []byte("fourth@example.org"))
		assertCiphertext(t, raw("secret", id4), version+1, []byte("new key"))
		if r := load(t, id3); r.email.Plaintext() != "third@example.org" {
			t.Errorf("a value under the old key reads as %q after the rotation", r.email.Plaintext())
		}
	})
}

// dialectUser is the GORM model of the MySQL and SQLite tests: encrypted
// fields of every type, and two blind indexes, the e-mail's unique. The
// index columns take gormcrypt.BlindIndex's default column type.
type dialectUser struct {
	ID        uint
	Name      string                          `gorm:"size:100"`
	Email     encryptedtype.String            `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex            `gorm:"uniqueIndex" colcrypt:"blindindex:dialect.email;source:Email"`
	Phone     *encryptedtype.String           // nullable
	PhoneBidx gormcrypt.BlindIndex            `gorm:"index" colcrypt:"blindindex:dialect.phone;source:Phone"`
	Secret    encryptedtype.Bytes             `gorm:"not null"`
	Profile   encryptedtype.JSON[gormProfile] `gorm:"not null"`
	Notes     *encryptedtype.String           // nullable, not indexed
}

// openDialectGORM opens GORM on d with the gormcrypt plugin for indexes, a
// short random table prefix (MySQL names are at most 64 characters), and a
// logger that writes every statement into log; it drops the tables of
// models when t ends. It does not migrate.
func openDialectGORM(t testing.TB, d *sqlDialect, log *gormLog, indexes []*blindindex.Index, models ...any) (*gorm.DB, *sql.DB) {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	var lg logger.Interface = logger.Discard
	if log != nil {
		lg = logger.New(log, logger.Config{LogLevel: logger.Info, IgnoreRecordNotFoundError: true})
	}
	gdb, err := gorm.Open(d.gorm(t), &gorm.Config{
		NamingStrategy: schema.NamingStrategy{TablePrefix: "cc" + hex.EncodeToString(r[:]) + "_"},
		Logger:         lg,
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
		table := dialectTableOf(t, gdb, m)
		t.Cleanup(func() { dropTable(t, sqlDB, d.quote(table)) })
	}
	return gdb.WithContext(testContext(t)), sqlDB
}

// dialectTableOf returns the unquoted table name of model in gdb.
func dialectTableOf(t testing.TB, gdb *gorm.DB, model any) string {
	t.Helper()
	stmt := &gorm.Statement{DB: gdb}
	if err := stmt.Parse(model); err != nil {
		t.Fatal(err)
	}
	return stmt.Schema.Table
}

// testDialectGORM uses the column types and blind indexes through GORM
// with the gormcrypt plugin on d: AutoMigrate (checking the column types it
// creates), Create, CreateInBatches, First, Find, Updates, Save, lookups
// with gormcrypt.Where, the UNIQUE index on a blind index, NULL versus the
// empty string, and a tampered value. GORM's log must show no plaintext.
func testDialectGORM(t *testing.T, d *sqlDialect) {
	keys := newKeyring(t)
	const version = 9
	keys.use(version)
	emailIx, phoneIx := dialectIndexes(t)
	var log gormLog
	gdb, sqlDB := openDialectGORM(t, d, &log, []*blindindex.Index{emailIx, phoneIx}, &dialectUser{})
	bare := dialectTableOf(t, gdb, &dialectUser{})
	table := d.quote(bare)
	q := tableQuery(table)
	ctx := testContext(t)

	if err := gdb.AutoMigrate(&dialectUser{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	t.Run("AutoMigrate", func(t *testing.T) {
		cols := d.columns(t, sqlDB, bare)
		for name, nullable := range map[string]bool{"email": false, "phone": true, "secret": false, "profile": false, "notes": true} {
			c, ok := cols[name]
			if !ok || c.Type != "text" || c.Nullable != nullable {
				t.Errorf("column %s = %+v, want text, nullable %v", name, c, nullable)
			}
		}
		for _, name := range []string{"email_bidx", "phone_bidx"} {
			c, ok := cols[name]
			if !ok || !c.Nullable {
				t.Errorf("column %s = %+v, want a nullable column", name, c)
			}
			t.Logf("%s: AutoMigrate made %s %s (%s)", d.name, name, c.Type, c.Extra)
		}
		found := map[string]indexInfo{}
		for _, ix := range d.indexes(t, sqlDB, bare) {
			if len(ix.Columns) == 1 {
				found[ix.Columns[0]] = ix
			}
		}
		if ix, ok := found["email_bidx"]; !ok || !ix.Unique {
			t.Errorf("no UNIQUE index on email_bidx: %+v", found)
		} else {
			t.Logf("%s: uniqueIndex on email_bidx is %s, %s", d.name, ix.Name, ix.Extra)
		}
		if ix, ok := found["phone_bidx"]; !ok || ix.Unique {
			t.Errorf("no plain index on phone_bidx: %+v", found)
		} else {
			t.Logf("%s: index on phone_bidx is %s, %s", d.name, ix.Name, ix.Extra)
		}
	})

	const (
		email1 = "Grace.Hopper@Example.com"
		phone1 = "+1 (202) 555-0143"
		notes1 = "prefers COBOL; <confidential>"
	)
	secret1 := []byte("\x00token\xff for grace")
	profile1 := gormProfile{FullName: "Grace B. Hopper", Country: "US", Tags: []string{"rear admiral"}}
	allPlaintexts := []string{email1, strings.ToLower(email1), phone1, notes1, string(secret1), profile1.FullName, "rear admiral"}

	u1 := dialectUser{Name: "grace", Email: encryptedtype.NewString(email1), Phone: ptr(encryptedtype.NewString(phone1)),
		Secret: encryptedtype.NewBytes(secret1), Profile: encryptedtype.NewJSON(profile1)}
	// u2 holds empty values (not NULL) in Email and Phone, NULL in Notes.
	u2 := dialectUser{Name: "empty", Email: encryptedtype.NewString(""), Phone: ptr(encryptedtype.NewString("")),
		Secret: encryptedtype.NewBytes(nil)}
	for _, u := range []*dialectUser{&u1, &u2} {
		if err := gdb.Create(u).Error; err != nil {
			assertNoSecrets(t, err, allPlaintexts)
			t.Fatalf("Create: %v", err)
		}
	}
	batch := make([]dialectUser, 30)
	for i := range batch {
		batch[i] = dialectUser{Name: fmt.Sprint("batch", i), Email: encryptedtype.NewString(fmt.Sprintf("Batch%02d@Example.com", i)),
			Secret: encryptedtype.NewBytes([]byte{byte(i)})}
		if i%2 == 0 {
			batch[i].Phone = ptr(encryptedtype.NewString(fmt.Sprintf("+44 20 7946 %04d", i)))
		}
	}
	if err := gdb.CreateInBatches(&batch, 8).Error; err != nil {
		t.Fatalf("CreateInBatches: %v", err)
	}

	raw := func(t *testing.T, column string, id uint) string {
		t.Helper()
		return rawText(t, sqlDB, q("SELECT "+column+" FROM %s WHERE id = ?"), id)
	}
	isNull := func(t *testing.T, column string, id uint) bool {
		t.Helper()
		var s sql.NullString
		if err := sqlDB.QueryRowContext(ctx, q("SELECT "+column+" FROM %s WHERE id = ?"), id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return !s.Valid
	}
	load := func(t *testing.T, id uint) dialectUser {
		t.Helper()
		var u dialectUser
		if err := gdb.First(&u, id).Error; err != nil {
			t.Fatalf("First(%d): %v", id, err)
		}
		return u
	}

	t.Run("Create", func(t *testing.T) {
		assertCiphertext(t, raw(t, "email", u1.ID), version, []byte(email1))
		assertCiphertext(t, raw(t, "phone", u1.ID), version, []byte(phone1))
		assertCiphertext(t, raw(t, "secret", u1.ID), version, secret1)
		pj, _ := json.Marshal(profile1)
		assertCiphertext(t, raw(t, "profile", u1.ID), version, pj, profile1.FullName, "rear admiral")
		if got := raw(t, "email_bidx", u1.ID); got != indexOf(t, emailIx, email1) {
			t.Errorf("email_bidx = %q, want the index of the e-mail", got)
		}
		if got := raw(t, "phone_bidx", u1.ID); got != indexOf(t, phoneIx, phone1) {
			t.Errorf("phone_bidx = %q, want the index of the phone", got)
		}
		if !isNull(t, "notes", u1.ID) {
			t.Errorf("notes of a nil pointer is not NULL")
		}
		// Empty is not NULL: "" is encrypted and indexed like any value.
		assertCiphertext(t, raw(t, "email", u2.ID), version, nil)
		assertCiphertext(t, raw(t, "phone", u2.ID), version, nil)
		if got := raw(t, "phone_bidx", u2.ID); got != indexOf(t, phoneIx, "") {
			t.Errorf("phone_bidx of \"\" = %q, want the index of \"\"", got)
		}
		for i, u := range batch {
			assertCiphertext(t, raw(t, "email", u.ID), version, []byte(u.Email.Plaintext()))
			if got := raw(t, "email_bidx", u.ID); got != indexOf(t, emailIx, u.Email.Plaintext()) {
				t.Errorf("batch row %d: email_bidx = %q", i, got)
			}
			if (u.Phone == nil) != isNull(t, "phone_bidx", u.ID) || (u.Phone == nil) != isNull(t, "phone", u.ID) {
				t.Errorf("batch row %d: phone and phone_bidx are not NULL exactly when Phone is nil", i)
			}
		}

		got := load(t, u1.ID)
		if got.Email.Plaintext() != email1 || got.Phone == nil || got.Phone.Plaintext() != phone1 || got.Notes != nil {
			t.Errorf("First: Email %q, Phone %v, Notes %v", got.Email.Plaintext(), got.Phone, got.Notes)
		}
		if !bytes.Equal(got.Secret.Plaintext(), secret1) || !reflect.DeepEqual(got.Profile.Plaintext(), profile1) {
			t.Errorf("First: Secret or Profile decrypt wrong")
		}
		if got.EmailBidx.String() != indexOf(t, emailIx, email1) {
			t.Errorf("First: EmailBidx = %q", got.EmailBidx)
		}
		got = load(t, u2.ID)
		if got.Email.Plaintext() != "" || got.Phone == nil || got.Phone.Plaintext() != "" || got.Notes != nil {
			t.Errorf("First of the empty row: Email %q, Phone %v, Notes %v; want \"\", \"\", nil", got.Email.Plaintext(), got.Phone, got.Notes)
		}
		if p := got.Secret.Plaintext(); p == nil || len(p) != 0 {
			t.Errorf("First of the empty row: Secret = %#v, want empty and non-nil", p)
		}
	})

	t.Run("Where", func(t *testing.T) {
		var got dialectUser
		if err := gdb.Scopes(gormcrypt.Where("Email", " grace.hopper@EXAMPLE.com ")).First(&got).Error; err != nil || got.ID != u1.ID {
			t.Errorf("Where(Email) found row %d, %v; want %d", got.ID, err, u1.ID)
		}
		if got.Email.Plaintext() != email1 {
			t.Errorf("Where(Email) row decrypts to another e-mail")
		}
		var byPhone []dialectUser
		if err := gdb.Scopes(gormcrypt.Where("Phone", "12025550143")).Find(&byPhone).Error; err != nil || len(byPhone) != 1 || byPhone[0].ID != u1.ID {
			t.Errorf("Where(Phone) found %d rows, %v", len(byPhone), err)
		}
		var n int64
		if err := gdb.Model(&dialectUser{}).Scopes(gormcrypt.Where("Email", "batch07@example.com")).Count(&n).Error; err != nil || n != 1 {
			t.Errorf("Where(Email, batch07) counted %d, %v; want 1", n, err)
		}
		if err := gdb.Model(&dialectUser{}).Scopes(gormcrypt.Where("Email", "nobody@example.com")).Count(&n).Error; err != nil || n != 0 {
			t.Errorf("Where(Email, nobody) counted %d, %v; want 0", n, err)
		}
		// The index field itself can be named too.
		if err := gdb.Model(&dialectUser{}).Scopes(gormcrypt.Where("EmailBidx", "")).Count(&n).Error; err != nil || n != 1 {
			t.Errorf("Where(EmailBidx, \"\") counted %d, %v; want the one empty e-mail", n, err)
		}
	})

	t.Run("Unique", func(t *testing.T) {
		err := gdb.Create(&dialectUser{Name: "dup", Email: encryptedtype.NewString(strings.ToUpper(email1)), Secret: encryptedtype.NewBytes(nil)}).Error
		if !d.uniqueViolation(err) {
			t.Errorf("Create of %s in capitals: %v, want a unique violation", email1, err)
		}
		assertNoSecrets(t, err, append(allPlaintexts, strings.ToUpper(email1)))
		// "" is a value like any other: a second empty e-mail is a
		// duplicate of the first.
		err = gdb.Create(&dialectUser{Name: "dup2", Email: encryptedtype.NewString(""), Secret: encryptedtype.NewBytes(nil)}).Error
		if !d.uniqueViolation(err) {
			t.Errorf("Create of a second empty e-mail: %v, want a unique violation", err)
		}
	})

	t.Run("Updates", func(t *testing.T) {
		const email1new = "g.hopper@navy.example.mil"
		if err := gdb.Model(&u1).Updates(map[string]any{"email": encryptedtype.NewString(email1new), "notes": ptr(encryptedtype.NewString(notes1))}).Error; err != nil {
			t.Fatalf("Updates(map): %v", err)
		}
		assertCiphertext(t, raw(t, "email", u1.ID), version, []byte(email1new))
		assertCiphertext(t, raw(t, "notes", u1.ID), version, []byte(notes1))
		if got := raw(t, "email_bidx", u1.ID); got != indexOf(t, emailIx, email1new) {
			t.Errorf("Updates did not recompute email_bidx")
		}
		var n int64
		if err := gdb.Model(&dialectUser{}).Scopes(gormcrypt.Where("Email", email1)).Count(&n).Error; err != nil || n != 0 {
			t.Errorf("the old e-mail is still found: %d, %v", n, err)
		}

		// Save with a nil Phone writes NULL to phone and phone_bidx.
		u := load(t, u1.ID)
		u.Phone = nil
		if err := gdb.Save(&u).Error; err != nil {
			t.Fatalf("Save: %v", err)
		}
		if !isNull(t, "phone", u1.ID) || !isNull(t, "phone_bidx", u1.ID) {
			t.Errorf("Save with a nil Phone left phone or phone_bidx non-NULL")
		}
		got := load(t, u1.ID)
		if got.Email.Plaintext() != email1new || got.Phone != nil || got.Notes == nil || got.Notes.Plaintext() != notes1 {
			t.Errorf("after Updates and Save: Email %q, Phone %v, Notes %v", got.Email.Plaintext(), got.Phone, got.Notes)
		}
		var found dialectUser
		if err := gdb.Scopes(gormcrypt.Where("Email", email1new)).First(&found).Error; err != nil || found.ID != u1.ID {
			t.Errorf("Where(new e-mail) found row %d, %v", found.ID, err)
		}
	})

	t.Run("Tampered", func(t *testing.T) {
		if _, err := sqlDB.ExecContext(ctx, q("UPDATE %s SET secret = ? WHERE id = ?"), flipMiddle(raw(t, "secret", u2.ID)), u2.ID); err != nil {
			t.Fatal(err)
		}
		var u dialectUser
		err := gdb.First(&u, u2.ID).Error
		assertDecryptError(t, err, append(allPlaintexts, keys.secrets()...), encryptedtype.ErrAuth)
	})

	logText := log.String()
	if !strings.Contains(logText, "INSERT INTO") {
		t.Errorf("the GORM log captured no statements; the leak check is void")
	}
	for _, s := range append(allPlaintexts, keys.secrets()...) {
		if strings.Contains(logText, s) {
			t.Errorf("GORM's log contains the secret %q", s)
		}
	}
}

// errorCode returns the numeric code of a driver error that has one
// (go-sql-driver's *mysql.MySQLError has Number, SQLite's errors Code()).
func errorCode(err error) (int, bool) {
	var coder interface{ Code() int }
	if errors.As(err, &coder) {
		return coder.Code(), true
	}
	return 0, false
}
