package gormcrypt_test

import (
	"database/sql"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// upsertOn returns an ON CONFLICT (id) DO UPDATE clause with the given
// assignments.
func upsertOn(set clause.Set) clause.OnConflict {
	return clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: set}
}

func TestUpsertDoUpdates(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Name: "n", Email: encryptedtype.NewString("old@x.com"), Phone: ptr("1")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}

	// DO UPDATE SET email = excluded.email.
	oc := upsertOn(clause.AssignmentColumns([]string{"email"}))
	before := slices.Clone(oc.DoUpdates)
	v := user{ID: u.ID, Email: encryptedtype.NewString("New@x.com"), Phone: ptr("2")}
	if err := f.db.Clauses(oc).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "new@x.com", sptr("1"))
	if !reflect.DeepEqual(oc.DoUpdates, before) {
		t.Errorf("the caller's clause was changed: %v, was %v", oc.DoUpdates, before)
	}
	// The same clause again, and a NULL source from the inserted row.
	v = user{ID: u.ID, Email: encryptedtype.NewString("again@x.com")}
	if err := f.db.Clauses(upsertOn(clause.AssignmentColumns([]string{"email", "phone"}))).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "again@x.com", nil)

	// An index column the caller assigns too is assigned once (SQLite
	// would take it twice; PostgreSQL refuses that), and the caller's
	// clause, which the plugin filters, is left as it was.
	v = user{ID: u.ID, Email: encryptedtype.NewString("both@x.com")}
	both := upsertOn(clause.AssignmentColumns([]string{"email_bidx", "email"}))
	before = slices.Clone(both.DoUpdates)
	sql := f.db.ToSQL(func(tx *gorm.DB) *gorm.DB {
		return tx.Clauses(both).Create(&user{ID: u.ID, Email: encryptedtype.NewString("both@x.com")})
	})
	if n := strings.Count(sql, "`email_bidx`=") + strings.Count(sql, `"email_bidx"=`); n != 1 {
		t.Errorf("email_bidx assigned %d times in %s", n, sql)
	}
	if err := f.db.Clauses(both).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "both@x.com", nil)
	if !reflect.DeepEqual(both.DoUpdates, before) {
		t.Errorf("the caller's clause was changed: %v, was %v", both.DoUpdates, before)
	}

	// DO UPDATE SET email = <value>, phone = <value> and NULL.
	v = user{ID: u.ID, Email: encryptedtype.NewString("ignored@x.com")}
	set := clause.Assignments(map[string]any{"email": encryptedtype.NewString("Lit@x.com"), "phone": ptr("33")})
	if err := f.db.Clauses(upsertOn(set)).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "lit@x.com", sptr("33"))
	set = clause.Assignments(map[string]any{"Phone": nil})
	if err := f.db.Clauses(upsertOn(set)).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "lit@x.com", nil)

	// "email = email" keeps the row's email and its index.
	set = clause.Set{{Column: clause.Column{Name: "email"}, Value: clause.Column{Name: "email"}}, {Column: clause.Column{Name: "name"}, Value: "kept"}}
	if err := f.db.Clauses(upsertOn(set)).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "lit@x.com", nil)

	// Expressions, another column, and a plain string are refused, and the
	// row is left alone.
	for name, set := range map[string]clause.Set{
		"expression":   {{Column: clause.Column{Name: "email"}, Value: gorm.Expr("upper(email)")}},
		"other column": {{Column: clause.Column{Name: "email"}, Value: clause.Column{Table: "excluded", Name: "name"}}},
		"plain string": clause.Assignments(map[string]any{"email": "plain@x.com"}),
	} {
		err := f.db.Clauses(upsertOn(set)).Create(&v).Error
		if !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
			t.Errorf("%s: %v, want ErrUnsupportedValue", name, err)
		}
	}
	f.check(t, u.ID, "lit@x.com", nil)

	// A map with an upsert, and an upsert that inserts.
	err := f.db.Model(&user{}).Clauses(upsertOn(clause.AssignmentColumns([]string{"email"}))).
		Create(map[string]any{"ID": u.ID, "Email": encryptedtype.NewString("map@x.com")}).Error
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "map@x.com", nil)
	n := user{Email: encryptedtype.NewString("inserted@x.com")}
	if err := f.db.Clauses(upsertOn(clause.AssignmentColumns([]string{"email"}))).Create(&n).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, n.ID, "inserted@x.com", nil)

	// UpdateAll, as before.
	v = user{ID: u.ID, Email: encryptedtype.NewString("all@x.com"), Phone: ptr("4")}
	if err := f.db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&v).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "all@x.com", sptr("4"))
}

// patchNoTag writes user's email without the index field.
type patchNoTag struct {
	Name  string
	Email *encryptedtype.String
}

// patchUntagged has the index column, without a colcrypt tag: the model's
// tag decides.
type patchUntagged struct {
	Email     *encryptedtype.String
	EmailBidx gormcrypt.BlindIndex
}

// patchPlain would write user's encrypted email from a plain string.
type patchPlain struct {
	Email     *string
	EmailBidx gormcrypt.BlindIndex
}

// patchStringIndex has a string index field for a pointer source: fine
// while the source is set.
type patchStringIndex struct {
	Phone     *encryptedtype.String
	PhoneBidx string
}

// unparsable is not a valid GORM model: Thing looks like a relation
// without a foreign key.
type unparsable struct {
	Email *encryptedtype.String
	Thing thing
}

type thing struct{ X int }

func TestUpdatesOtherStruct(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Email: encryptedtype.NewString("a@x.com"), Phone: ptr("1")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	for _, d := range []any{
		patchNoTag{Email: ptr("stale@x.com")},
		&patchNoTag{Email: ptr("stale@x.com")},
		patchPlain{Email: sptr("plain@x.com")},
		unparsable{Email: ptr("stale@x.com")},
	} {
		err := f.db.Model(&u).Updates(d).Error
		if err == nil {
			t.Errorf("Updates(%T) was accepted", d)
		} else if _, bad := d.(unparsable); !bad && !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
			t.Errorf("Updates(%T): %v, want ErrUnsupportedValue", d, err)
		}
	}
	f.check(t, u.ID, "a@x.com", sptr("1"))
	var email encryptedtype.String
	if err := f.db.Raw("SELECT email FROM users WHERE id = ?", u.ID).Scan(&email).Error; err != nil || email.Plaintext() != "a@x.com" {
		t.Errorf("email = %q, %v", email.Plaintext(), err)
	}

	// A struct that does not write the source is fine without the field.
	if err := f.db.Model(&u).Updates(patchNoTag{Name: "renamed"}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "a@x.com", sptr("1"))

	// With the index column, tagged or not, the index is filled in.
	if err := f.db.Model(&u).Updates(patchUntagged{Email: ptr("untagged@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "untagged@x.com", sptr("1"))
	if err := f.db.Model(&u).Select("Email").Updates(&patch{Email: ptr("selected@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "selected@x.com", sptr("1"))

	// A string index field takes a pointer source that is set; a nil one,
	// whose index is NULL, is refused.
	if err := f.db.Model(&u).Updates(patchStringIndex{Phone: ptr("2")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "selected@x.com", sptr("2"))
	if err := f.db.Model(&u).Select("Phone").Updates(patchStringIndex{}).Error; !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
		t.Errorf("Updates(patchStringIndex{}) selecting Phone: %v, want ErrUnsupportedValue", err)
	}
	f.check(t, u.ID, "selected@x.com", sptr("2"))
}

// strIdx has a string index field for a source that can be nil.
type strIdx struct {
	ID        uint
	Phone     *encryptedtype.String
	PhoneBidx string `gorm:"uniqueIndex" colcrypt:"blindindex:users.phone;source:Phone"`
}

// strIdxNotNull has a string index field for a source that cannot be nil.
type strIdxNotNull struct {
	ID        uint
	Phone     encryptedtype.String
	PhoneBidx string `gorm:"uniqueIndex" colcrypt:"blindindex:users.phone;source:Phone"`
}

func TestStringIndexField(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	if err := f.db.AutoMigrate(&strIdx{}, &strIdxNotNull{}); err != nil {
		t.Fatal(err)
	}
	// A nil source would store "" in a string, not NULL: refused.
	if err := f.db.Create(&strIdx{}).Error; !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
		t.Errorf("Create with a nil source and a string index: %v, want ErrUnsupportedValue", err)
	}
	// A set source is fine, and so are writes and reads that do not write
	// a nil source.
	phone := encryptedtype.NewString("555 0102")
	si := strIdx{Phone: &phone}
	if err := f.db.Create(&si).Error; err != nil {
		t.Fatal(err)
	}
	if want := f.want(t, f.phone, "5550102"); si.PhoneBidx != want {
		t.Errorf("PhoneBidx = %q, want %q", si.PhoneBidx, want)
	}
	var found strIdx
	if err := f.db.Scopes(gormcrypt.Where("Phone", "555 0102")).First(&found).Error; err != nil || found.ID != si.ID {
		t.Errorf("Where: %v, id %d", err, found.ID)
	}
	if err := f.db.Model(&si).Updates(map[string]any{"phone": nil}).Error; err != nil {
		t.Errorf("Updates(map nil): %v", err)
	}
	// With a source that cannot be nil, a string works.
	s := strIdxNotNull{Phone: encryptedtype.NewString("555 0100")}
	if err := f.db.Create(&s).Error; err != nil {
		t.Fatal(err)
	}
	if want := f.want(t, f.phone, "5550100"); s.PhoneBidx != want {
		t.Errorf("PhoneBidx = %q, want %q", s.PhoneBidx, want)
	}
	if err := f.db.Model(&s).Updates(strIdxNotNull{Phone: encryptedtype.NewString("555 0101")}).Error; err != nil {
		t.Fatal(err)
	}
	var got string
	if err := f.db.Raw("SELECT phone_bidx FROM str_idx_not_nulls WHERE id = ?", s.ID).Scan(&got).Error; err != nil || got != f.want(t, f.phone, "5550101") {
		t.Errorf("phone_bidx = %q, %v", got, err)
	}
}

// plainSource has an index of a plain (unencrypted) string column.
type plainSource struct {
	ID        uint
	Email     string
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Email"`
}

func TestMapPlainValueForEncryptedSource(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Email: encryptedtype.NewString("a@x.com")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	for name, write := range map[string]func() error{
		"Updates(map string)": func() error {
			return f.db.Model(&u).Updates(map[string]any{"email": "plain@x.com"}).Error
		},
		"Update([]byte)": func() error { return f.db.Model(&u).Update("Email", []byte("plain@x.com")).Error },
		"Update(*string)": func() error {
			return f.db.Model(&u).Update("phone", sptr("555")).Error
		},
		"Create(map)": func() error {
			return f.db.Model(&user{}).Create(map[string]any{"Email": "plain2@x.com"}).Error
		},
	} {
		if err := write(); !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
			t.Errorf("%s: %v, want ErrUnsupportedValue", name, err)
		}
	}
	f.check(t, u.ID, "a@x.com", nil)
	var n int64
	if err := f.db.Model(&user{}).Count(&n).Error; err != nil || n != 1 {
		t.Errorf("%d rows, %v, want 1", n, err)
	}

	// A plain string for a plain source column is fine.
	if err := f.db.AutoMigrate(&plainSource{}); err != nil {
		t.Fatal(err)
	}
	p := plainSource{Email: "p@x.com"}
	if err := f.db.Create(&p).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Model(&p).Updates(map[string]any{"email": "q@x.com"}).Error; err != nil {
		t.Fatal(err)
	}
	var got string
	if err := f.db.Raw("SELECT email_bidx FROM plain_sources WHERE id = ?", p.ID).Scan(&got).Error; err != nil || got != f.want(t, f.email, "q@x.com") {
		t.Errorf("email_bidx = %q, %v", got, err)
	}
}

// createOnly has a source GORM writes on create only.
type createOnly struct {
	ID        uint
	Name      string
	Email     encryptedtype.String `gorm:"<-:create"`
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Email"`
}

// A source the statement does not write takes its index column out of the
// statement too: the index field was not computed, and the stored index
// still goes with the stored source.
func TestSourceNotWritten(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))

	// Omit of the source on Create: neither is written.
	u := user{Name: "omitted", Email: encryptedtype.NewString("x@x.com")}
	if err := f.db.Omit("Email").Create(&u).Error; err != nil {
		t.Fatalf("Omit(\"Email\").Create: %v", err)
	}
	var bidx sql.NullString
	if err := f.db.Raw("SELECT email_bidx FROM users WHERE id = ?", u.ID).Scan(&bidx).Error; err != nil || bidx.Valid {
		t.Errorf("email_bidx = %v, %v; want NULL", bidx, err)
	}

	// A create-only source, then Save of a struct that was not loaded:
	// the stored source and index stay as they were.
	if err := f.db.AutoMigrate(&createOnly{}); err != nil {
		t.Fatal(err)
	}
	c := createOnly{Name: "a", Email: encryptedtype.NewString("kept@x.com")}
	if err := f.db.Create(&c).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Save(&createOnly{ID: c.ID, Name: "b", Email: encryptedtype.NewString("ignored@x.com")}).Error; err != nil {
		t.Fatalf("Save: %v", err)
	}
	var got createOnly
	if err := f.db.First(&got, c.ID).Error; err != nil {
		t.Fatal(err)
	}
	if got.Name != "b" || got.Email.Plaintext() != "kept@x.com" || got.EmailBidx.String() != f.want(t, f.email, "kept@x.com") {
		t.Errorf("after Save: name %q, email %q, index %q", got.Name, got.Email.Plaintext(), got.EmailBidx.String())
	}
}
