package integration

import (
	"database/sql"
	"errors"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
)

// Upserts through GORM with the gormcrypt plugin: the DO UPDATE SET part of
// INSERT … ON CONFLICT (PostgreSQL, SQLite) and ON DUPLICATE KEY UPDATE
// (MySQL, MariaDB) must keep the blind indexes in step with the sources
// they assign.

// upsertUser is the model of the upsert tests.
type upsertUser struct {
	ID        uint
	Name      string               `gorm:"size:100"`
	Email     encryptedtype.String `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:upsert.email;source:Email"`
	Phone     *encryptedtype.String
	PhoneBidx gormcrypt.BlindIndex `gorm:"index" colcrypt:"blindindex:upsert.phone;source:Phone"`
}

// upsertIndexes returns the indexes of upsertUser.
func upsertIndexes(t testing.TB) (email, phone *blindindex.Index) {
	t.Helper()
	ik := newIndexKeyring(t, 1)
	email = newEmailIndex(t, "upsert.email", ik, 0)
	phone, err := blindindex.New("upsert.phone", ik, blindindex.Config{Normalize: blindindex.DigitsOnly})
	if err != nil {
		t.Fatal(err)
	}
	return email, phone
}

func TestBlindIndexGORMUpsert(t *testing.T) {
	dsn := databaseURL(t)
	newKeyring(t).use(1)
	email, phone := upsertIndexes(t)
	gdb := openBlindIndexGORM(t, dsn, []*blindindex.Index{email, phone}, &upsertUser{})
	testGORMUpsert(t, gdb, email, phone)

	// PostgreSQL can take the blind index as the conflict target: an
	// upsert by e-mail address.
	v := upsertUser{Name: "by email", Email: encryptedtype.NewString(" A@X.COM")}
	oc := clause.OnConflict{Columns: []clause.Column{{Name: "email_bidx"}}, DoUpdates: clause.AssignmentColumns([]string{"name"})}
	if err := gdb.Clauses(oc).Create(&v).Error; err != nil {
		t.Fatalf("upsert on email_bidx: %v", err)
	}
	var got upsertUser
	if err := gdb.Scopes(gormcrypt.Where("Email", "a@x.com")).First(&got).Error; err != nil || got.Name != "by email" {
		t.Errorf("after the upsert on email_bidx: %q, %v", got.Name, err)
	}
}

func TestMySQLGORMUpsert(t *testing.T) {
	testDialectGORMUpsert(t, mysqlDialect(mysqlURL(t)))
}

func TestSQLiteGORMUpsert(t *testing.T) {
	testDialectGORMUpsert(t, sqliteDialect(t))
}

func testDialectGORMUpsert(t *testing.T, d *sqlDialect) {
	newKeyring(t).use(1)
	email, phone := upsertIndexes(t)
	gdb, _ := openDialectGORM(t, d, nil, []*blindindex.Index{email, phone}, &upsertUser{})
	if err := gdb.AutoMigrate(&upsertUser{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	testGORMUpsert(t, gdb, email, phone)
}

// testGORMUpsert checks upserts on gdb, where upsertUser is migrated.
func testGORMUpsert(t *testing.T, gdb *gorm.DB, email, phone *blindindex.Index) {
	// check compares row id with the e-mail and phone it should hold.
	check := func(id uint, e string, p *string) {
		t.Helper()
		var se, sp sql.NullString
		if err := gdb.Model(&upsertUser{}).Select("email_bidx", "phone_bidx").Where("id = ?", id).Row().Scan(&se, &sp); err != nil {
			t.Fatal(err)
		}
		var u upsertUser
		if err := gdb.First(&u, id).Error; err != nil {
			t.Fatal(err)
		}
		if u.Email.Plaintext() != e {
			t.Errorf("row %d: email = %q, want %q", id, u.Email.Plaintext(), e)
		}
		if !se.Valid || se.String != indexOf(t, email, e) {
			t.Errorf("row %d: email_bidx = %v, want the index of %q", id, se, e)
		}
		switch {
		case p == nil && sp.Valid:
			t.Errorf("row %d: phone_bidx = %v, want NULL", id, sp)
		case p != nil && (!sp.Valid || sp.String != indexOf(t, phone, *p)):
			t.Errorf("row %d: phone_bidx = %v, want the index of %q", id, sp, *p)
		}
		var n int64
		if err := gdb.Model(&upsertUser{}).Scopes(gormcrypt.Where("Email", e)).Count(&n).Error; err != nil || n != 1 {
			t.Errorf("Where(Email, %q) counted %d rows, %v, want 1", e, n, err)
		}
	}
	byID := func(set clause.Set) clause.OnConflict {
		return clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: set}
	}

	u := upsertUser{Name: "u", Email: encryptedtype.NewString("old@x.com"), Phone: ptr(encryptedtype.NewString("555 0100"))}
	if err := gdb.Create(&u).Error; err != nil {
		t.Fatalf("Create: %v", err)
	}
	check(u.ID, "old@x.com", ptr("5550100"))

	// DO UPDATE SET email = excluded.email (VALUES(email) on MySQL).
	v := upsertUser{ID: u.ID, Email: encryptedtype.NewString("new@x.com"), Phone: ptr(encryptedtype.NewString("1"))}
	if err := gdb.Clauses(byID(clause.AssignmentColumns([]string{"email"}))).Create(&v).Error; err != nil {
		t.Fatalf("upsert with AssignmentColumns: %v", err)
	}
	check(u.ID, "new@x.com", ptr("5550100"))
	var n int64
	if err := gdb.Model(&upsertUser{}).Scopes(gormcrypt.Where("Email", "old@x.com")).Count(&n).Error; err != nil || n != 0 {
		t.Errorf("the old address still finds %d rows, %v", n, err)
	}
	// The old address is free again under the UNIQUE index.
	if err := gdb.Create(&upsertUser{Email: encryptedtype.NewString("old@x.com")}).Error; err != nil {
		t.Errorf("Create with the address the upsert replaced: %v", err)
	}

	// A NULL source from the inserted row, and an index column the caller
	// assigns too (assigned once: PostgreSQL rejects two assignments).
	v = upsertUser{ID: u.ID, Email: encryptedtype.NewString("both@x.com")}
	if err := gdb.Clauses(byID(clause.AssignmentColumns([]string{"email_bidx", "email", "phone"}))).Create(&v).Error; err != nil {
		t.Fatalf("upsert with email_bidx, email, phone: %v", err)
	}
	check(u.ID, "both@x.com", nil)

	// DO UPDATE SET email = <value>, phone = <value>.
	v = upsertUser{ID: u.ID, Email: encryptedtype.NewString("ignored@x.com")}
	set := clause.Assignments(map[string]any{"email": encryptedtype.NewString("lit@x.com"), "phone": ptr(encryptedtype.NewString("2"))})
	if err := gdb.Clauses(byID(set)).Create(&v).Error; err != nil {
		t.Fatalf("upsert with Assignments: %v", err)
	}
	check(u.ID, "lit@x.com", ptr("2"))
	if err := gdb.Clauses(byID(clause.Assignments(map[string]any{"phone": nil}))).Create(&v).Error; err != nil {
		t.Fatalf("upsert with phone = NULL: %v", err)
	}
	check(u.ID, "lit@x.com", nil)

	// An expression and a plain string are refused; the row is unchanged.
	for name, set := range map[string]clause.Set{
		"expression":   {{Column: clause.Column{Name: "email"}, Value: gorm.Expr("email")}},
		"plain string": clause.Assignments(map[string]any{"email": "plain@x.com"}),
	} {
		if err := gdb.Clauses(byID(set)).Create(&v).Error; !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
			t.Errorf("upsert with %s: %v, want ErrUnsupportedValue", name, err)
		}
	}
	check(u.ID, "lit@x.com", nil)

	// UpdateAll (Save of a slice does the same).
	v = upsertUser{ID: u.ID, Name: "all", Email: encryptedtype.NewString("all@x.com"), Phone: ptr(encryptedtype.NewString("3"))}
	if err := gdb.Clauses(clause.OnConflict{UpdateAll: true}).Create(&v).Error; err != nil {
		t.Fatalf("upsert with UpdateAll: %v", err)
	}
	check(u.ID, "all@x.com", ptr("3"))
}
