package integration

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"

	"github.com/colcrypt/colcrypt/encryptedtype"
)

// gormProfile is stored as one encrypted JSON document.
type gormProfile struct {
	FullName string   `json:"full_name"`
	Country  string   `json:"country"`
	Tags     []string `json:"tags"`
}

// gormUser is an ordinary GORM model with encrypted fields. The non-pointer
// ones are NOT NULL: GORM never calls Scan for a NULL column and would read
// it as the zero value (see TestGORMNullIntoNonPointerField).
type gormUser struct {
	ID      uint
	Email   encryptedtype.String            `gorm:"not null"`
	Phone   *encryptedtype.String           // nullable: nil <-> NULL
	Secret  encryptedtype.Bytes             `gorm:"not null"`
	Profile encryptedtype.JSON[gormProfile] `gorm:"not null"`
	Notes   *encryptedtype.String           // nullable: nil <-> NULL
}

// gormLog collects what GORM logs, to check that it holds no plaintext.
type gormLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Printf implements logger.Writer.
func (l *gormLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, format, args...)
	l.buf.WriteByte('\n')
}

// String returns everything logged so far.
func (l *gormLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// openGORM opens GORM on dsn with a unique table prefix, logging every
// statement into log. It returns the DB, the plain database/sql pool under
// it, and the table name of model.
func openGORM(t *testing.T, dsn string, log *gormLog, model any) (*gorm.DB, *sql.DB, string) {
	t.Helper()
	gdb, err := gorm.Open(postgres.Open(dsn), &gorm.Config{
		NamingStrategy: schema.NamingStrategy{TablePrefix: uniqueName(t) + "_"},
		Logger: logger.New(log, logger.Config{
			LogLevel:                  logger.Info,
			IgnoreRecordNotFoundError: true,
			Colorful:                  false,
		}),
	})
	if err != nil {
		t.Fatalf("gorm.Open: %v", err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		t.Fatalf("gorm DB(): %v", err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	gdb = gdb.WithContext(testContext(t))

	stmt := &gorm.Statement{DB: gdb}
	if err := stmt.Parse(model); err != nil {
		t.Fatalf("parsing the model: %v", err)
	}
	table := stmt.Schema.Table
	t.Cleanup(func() { dropTable(t, sqlDB, `"`+table+`"`) })
	return gdb, sqlDB, table
}

// TestGORM uses the column types as fields of a GORM model: AutoMigrate,
// Create, First, Find, Updates with a map and a struct, Save, writes scoped
// by Where, NULL and empty values, and a tampered value. GORM's own log,
// which prints every statement's arguments, must show no plaintext.
func TestGORM(t *testing.T) {
	dsn := databaseURL(t)
	keys := newKeyring(t)
	const version = 5
	keys.use(version)

	var log gormLog
	gdb, sqlDB, table := openGORM(t, dsn, &log, &gormUser{})
	q := tableQuery(`"` + table + `"`)

	// Every plaintext has a character outside base64url ('@', ' ', '+', …),
	// so that it cannot appear in a stored value by chance.
	const (
		email1    = "alice@example.com"
		email1new = "alice.liddell@example.org"
		phone1    = "+44 20 7946 0958"
		phone1new = "+1 (555) 010-0199"
		notes1    = "VIP customer; call before 5pm"
		email2    = "bob@example.net"
		notes2    = "prefers e-mail, not phone"
	)
	secret1 := []byte("sk_live: \x00\x01\x02\xff api-key")
	secret1new := []byte("sk_live: rotated \xfe\xfd")
	profile1 := gormProfile{FullName: "Alice Liddell", Country: "GB", Tags: []string{"early adopter", "beta"}}
	profile1new := gormProfile{FullName: "Alice P. Liddell", Country: "IE", Tags: nil}
	allPlaintexts := []string{email1, email1new, phone1, phone1new, notes1, email2, notes2,
		string(secret1), string(secret1new), profile1.FullName, profile1new.FullName, "early adopter"}

	// assertRow reads one column of one row with plain SQL and checks it
	// is ciphertext of plaintext under the active version.
	assertRow := func(t *testing.T, column string, id uint, plaintext []byte, mustNotContain ...string) {
		t.Helper()
		raw := rawText(t, sqlDB, q("SELECT "+column+" FROM %s WHERE id = $1"), id)
		assertCiphertext(t, raw, version, plaintext, mustNotContain...)
	}
	assertNull := func(t *testing.T, column string, id uint, want bool) {
		t.Helper()
		if got := queryBool(t, sqlDB, q("SELECT "+column+" IS NULL FROM %s WHERE id = $1"), id); got != want {
			t.Errorf("%s IS NULL = %v, want %v", column, got, want)
		}
	}
	load := func(t *testing.T, id uint) gormUser {
		t.Helper()
		var u gormUser
		if err := gdb.First(&u, id).Error; err != nil {
			t.Fatalf("First(%d): %v", id, err)
		}
		return u
	}
	jsonOf := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// AutoMigrate creates the encrypted columns as text, NOT NULL only
	// where the model says so.
	if err := gdb.AutoMigrate(&gormUser{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	t.Run("AutoMigrate", func(t *testing.T) {
		rows, err := sqlDB.QueryContext(testContext(t),
			`SELECT column_name, data_type, is_nullable FROM information_schema.columns
			 WHERE table_schema = current_schema() AND table_name = $1`, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[string][2]string{}
		for rows.Next() {
			var name, typ, nullable string
			if err := rows.Scan(&name, &typ, &nullable); err != nil {
				t.Fatal(err)
			}
			got[name] = [2]string{typ, nullable}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		want := map[string][2]string{
			"email":   {"text", "NO"},
			"phone":   {"text", "YES"},
			"secret":  {"text", "NO"},
			"profile": {"text", "NO"},
			"notes":   {"text", "YES"},
		}
		for col, w := range want {
			if got[col] != w {
				t.Errorf("column %s: (data_type, is_nullable) = %q, want %q", col, got[col], w)
			}
		}
	})

	u1 := gormUser{
		Email:   encryptedtype.NewString(email1),
		Phone:   ptr(encryptedtype.NewString(phone1)),
		Secret:  encryptedtype.NewBytes(secret1),
		Profile: encryptedtype.NewJSON(profile1),
		Notes:   nil,
	}
	if err := gdb.Create(&u1).Error; err != nil {
		t.Fatalf("Create: %v", err)
	}
	// u2 holds empty values, which are not NULL.
	u2 := gormUser{
		Email:   encryptedtype.NewString(""),
		Phone:   ptr(encryptedtype.NewString("")),
		Secret:  encryptedtype.NewBytes(nil),
		Profile: encryptedtype.JSON[gormProfile]{},
		Notes:   ptr(encryptedtype.NewString("")),
	}
	if err := gdb.Create(&u2).Error; err != nil {
		t.Fatalf("Create: %v", err)
	}

	t.Run("CreateAndFirst", func(t *testing.T) {
		assertRow(t, "email", u1.ID, []byte(email1))
		assertRow(t, "phone", u1.ID, []byte(phone1))
		assertRow(t, "secret", u1.ID, secret1)
		assertRow(t, "profile", u1.ID, jsonOf(profile1), profile1.FullName, "early adopter")
		assertNull(t, "notes", u1.ID, true)

		got := load(t, u1.ID)
		if got.Email.Plaintext() != email1 {
			t.Errorf("Email = %q, want %q", got.Email.Plaintext(), email1)
		}
		if got.Phone == nil || got.Phone.Plaintext() != phone1 {
			t.Errorf("Phone = %v, want %q", got.Phone, phone1)
		}
		if !bytes.Equal(got.Secret.Plaintext(), secret1) {
			t.Errorf("Secret = %q, want %q", got.Secret.Plaintext(), secret1)
		}
		if !reflect.DeepEqual(got.Profile.Plaintext(), profile1) {
			t.Errorf("Profile = %+v, want %+v", got.Profile.Plaintext(), profile1)
		}
		if got.Notes != nil {
			t.Errorf("Notes = non-nil (%q), want nil for NULL", got.Notes.Plaintext())
		}
	})

	t.Run("EmptyIsNotNull", func(t *testing.T) {
		for _, col := range []string{"email", "phone", "secret", "notes"} {
			assertNull(t, col, u2.ID, false)
			assertRow(t, col, u2.ID, nil)
		}
		assertRow(t, "profile", u2.ID, jsonOf(gormProfile{}))

		got := load(t, u2.ID)
		if got.Email.Plaintext() != "" {
			t.Errorf("Email = %q, want \"\"", got.Email.Plaintext())
		}
		if got.Phone == nil || got.Phone.Plaintext() != "" {
			t.Errorf("Phone = %v, want a non-nil \"\"", got.Phone)
		}
		if got.Notes == nil || got.Notes.Plaintext() != "" {
			t.Errorf("Notes = %v, want a non-nil \"\"", got.Notes)
		}
		if p := got.Secret.Plaintext(); p == nil || len(p) != 0 {
			t.Errorf("Secret = %#v, want empty and non-nil", p)
		}
		if !reflect.DeepEqual(got.Profile.Plaintext(), gormProfile{}) {
			t.Errorf("Profile = %+v, want the zero profile", got.Profile.Plaintext())
		}
	})

	t.Run("UpdatesMap", func(t *testing.T) {
		err := gdb.Model(&u1).Updates(map[string]any{
			"email": encryptedtype.NewString(email1new),
			"notes": ptr(encryptedtype.NewString(notes1)),
		}).Error
		if err != nil {
			t.Fatalf("Updates(map): %v", err)
		}
		assertRow(t, "email", u1.ID, []byte(email1new))
		assertRow(t, "notes", u1.ID, []byte(notes1))
		got := load(t, u1.ID)
		if got.Email.Plaintext() != email1new {
			t.Errorf("Email = %q, want %q", got.Email.Plaintext(), email1new)
		}
		if got.Notes == nil || got.Notes.Plaintext() != notes1 {
			t.Errorf("Notes = %v, want %q", got.Notes, notes1)
		}
		if got.Phone == nil || got.Phone.Plaintext() != phone1 {
			t.Errorf("Phone changed to %v, want %q", got.Phone, phone1)
		}
	})

	t.Run("UpdatesStruct", func(t *testing.T) {
		// Struct Updates write only non-zero fields: Email ("" is zero)
		// and Notes (nil) are left alone.
		err := gdb.Model(&u1).Updates(gormUser{
			Phone:   ptr(encryptedtype.NewString(phone1new)),
			Secret:  encryptedtype.NewBytes(secret1new),
			Profile: encryptedtype.NewJSON(profile1new),
		}).Error
		if err != nil {
			t.Fatalf("Updates(struct): %v", err)
		}
		assertRow(t, "phone", u1.ID, []byte(phone1new))
		assertRow(t, "secret", u1.ID, secret1new)
		assertRow(t, "profile", u1.ID, jsonOf(profile1new), profile1new.FullName)
		got := load(t, u1.ID)
		if got.Phone == nil || got.Phone.Plaintext() != phone1new {
			t.Errorf("Phone = %v, want %q", got.Phone, phone1new)
		}
		if !bytes.Equal(got.Secret.Plaintext(), secret1new) {
			t.Errorf("Secret = %q, want %q", got.Secret.Plaintext(), secret1new)
		}
		if !reflect.DeepEqual(got.Profile.Plaintext(), profile1new) {
			t.Errorf("Profile = %+v, want %+v", got.Profile.Plaintext(), profile1new)
		}
		if got.Email.Plaintext() != email1new || got.Notes == nil || got.Notes.Plaintext() != notes1 {
			t.Errorf("zero fields of a struct Updates were written: Email %q, Notes %v", got.Email.Plaintext(), got.Notes)
		}
	})

	t.Run("SetNull", func(t *testing.T) {
		if err := gdb.Model(&u1).Update("phone", nil).Error; err != nil {
			t.Fatalf("Update(phone, nil): %v", err)
		}
		if err := gdb.Model(&u1).Select("Notes").Updates(gormUser{Notes: nil}).Error; err != nil {
			t.Fatalf("Select(Notes).Updates(nil): %v", err)
		}
		assertNull(t, "phone", u1.ID, true)
		assertNull(t, "notes", u1.ID, true)
		got := load(t, u1.ID)
		if got.Phone != nil || got.Notes != nil {
			t.Errorf("Phone, Notes = %v, %v; want nil, nil", got.Phone, got.Notes)
		}
		if got.Email.Plaintext() != email1new {
			t.Errorf("Email = %q, want %q", got.Email.Plaintext(), email1new)
		}
	})

	t.Run("WhereWrites", func(t *testing.T) {
		// A write scoped by Where stores encrypted values.
		res := gdb.Model(&gormUser{}).Where("id = ?", u2.ID).Updates(map[string]any{
			"email": encryptedtype.NewString(email2),
			"notes": ptr(encryptedtype.NewString(notes2)),
		})
		if res.Error != nil || res.RowsAffected != 1 {
			t.Fatalf("Where(id).Updates: %v, %d rows, want 1", res.Error, res.RowsAffected)
		}
		assertRow(t, "email", u2.ID, []byte(email2))
		assertRow(t, "notes", u2.ID, []byte(notes2))
		got := load(t, u2.ID)
		if got.Email.Plaintext() != email2 || got.Notes == nil || got.Notes.Plaintext() != notes2 {
			t.Errorf("Email, Notes = %q, %v; want %q, %q", got.Email.Plaintext(), got.Notes, email2, notes2)
		}

		// Save writes every field.
		got.Phone = ptr(encryptedtype.NewString(phone1))
		if err := gdb.Save(&got).Error; err != nil {
			t.Fatalf("Save: %v", err)
		}
		assertRow(t, "phone", u2.ID, []byte(phone1))
		assertRow(t, "email", u2.ID, []byte(email2))

		// Encryption is randomised, so an encrypted value in a WHERE
		// clause matches nothing, not even the row holding that
		// plaintext: neither reads nor writes select rows by it
		// (equality lookups need a blind index).
		var n int64
		if err := gdb.Model(&gormUser{}).Where("email = ?", encryptedtype.NewString(email2)).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("WHERE email = <encrypted %q> matched %d rows, want 0", email2, n)
		}
		res = gdb.Model(&gormUser{}).Where("email = ?", encryptedtype.NewString(email2)).
			Update("notes", ptr(encryptedtype.NewString("must not be written")))
		if res.Error != nil || res.RowsAffected != 0 {
			t.Errorf("Update WHERE email = <encrypted>: %v, %d rows, want 0", res.Error, res.RowsAffected)
		}
	})

	t.Run("Find", func(t *testing.T) {
		var all []gormUser
		if err := gdb.Order("id").Find(&all).Error; err != nil {
			t.Fatalf("Find: %v", err)
		}
		if len(all) != 2 || all[0].Email.Plaintext() != email1new || all[1].Email.Plaintext() != email2 {
			t.Fatalf("Find: got %d rows, want alice and bob", len(all))
		}
		if all[0].Phone != nil || all[1].Phone == nil || all[1].Phone.Plaintext() != phone1 {
			t.Errorf("Find: Phone = %v, %v; want nil, %q", all[0].Phone, all[1].Phone, phone1)
		}
	})

	t.Run("Tampered", func(t *testing.T) {
		if _, err := sqlDB.ExecContext(testContext(t),
			q("UPDATE %s SET email = "+flipMiddleSQL("email")+" WHERE id = $1"), u2.ID); err != nil {
			t.Fatal(err)
		}
		raw := rawText(t, sqlDB, q("SELECT email FROM %s WHERE id = $1"), u2.ID)
		assertCiphertext(t, raw, version, []byte(email2)) // still well-formed
		var u gormUser
		err := gdb.First(&u, u2.ID).Error
		assertDecryptError(t, err, append(allPlaintexts, keys.secrets()...), encryptedtype.ErrAuth)
		if u.Email.Plaintext() != "" {
			t.Errorf("a tampered value produced plaintext %q", u.Email.Plaintext())
		}
	})

	// GORM logged every statement with its arguments (as returned by
	// Value, so freshly encrypted) and the tampering error: none of it may
	// be plaintext or key material.
	logText := log.String()
	if !strings.Contains(logText, "INSERT INTO") {
		t.Errorf("the GORM log captured no statements; the leak check below is void")
	}
	for _, s := range append(allPlaintexts, keys.secrets()...) {
		if strings.Contains(logText, s) {
			t.Errorf("GORM's log contains the secret %q", s)
		}
	}
}

// gormLooseUser has a non-pointer encrypted field on a nullable column.
type gormLooseUser struct {
	ID    uint
	Email encryptedtype.String
}

// TestGORMNullIntoNonPointerField pins a GORM behaviour that the model in
// TestGORM guards against with `gorm:"not null"`: when a column is NULL,
// GORM does not call Scan on a non-pointer field (it scans into a pointer
// and leaves the field at its zero value), so encryptedtype.ErrNull is not
// raised and NULL reads as "". database/sql and pgx do call Scan and return
// ErrNull (see TestDatabaseSQL and TestPgxConn).
func TestGORMNullIntoNonPointerField(t *testing.T) {
	dsn := databaseURL(t)
	keys := newKeyring(t)
	keys.use(1)
	var log gormLog
	gdb, sqlDB, table := openGORM(t, dsn, &log, &gormLooseUser{})
	if err := gdb.AutoMigrate(&gormLooseUser{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	u := gormLooseUser{Email: encryptedtype.NewString("carol@example.com")}
	if err := gdb.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	assertCiphertext(t, rawText(t, sqlDB, `SELECT email FROM "`+table+`" WHERE id = $1`, u.ID), 1, []byte("carol@example.com"))
	if _, err := sqlDB.ExecContext(testContext(t), `UPDATE "`+table+`" SET email = NULL WHERE id = $1`, u.ID); err != nil {
		t.Fatal(err)
	}
	var got gormLooseUser
	err := gdb.First(&got, u.ID).Error
	if err != nil {
		// Either GORM or encryptedtype started reporting NULL in a
		// non-pointer field: better than before, update this test.
		t.Logf("First on a NULL non-pointer field now fails with %v", err)
		return
	}
	if got.Email.Plaintext() != "" {
		t.Errorf("NULL read as %q", got.Email.Plaintext())
	}
	t.Logf("known limitation: with GORM, NULL in a non-pointer encryptedtype.String field reads as \"\" without an error; declare such columns `gorm:\"not null\"` or use a pointer")
}
