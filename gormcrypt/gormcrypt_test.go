package gormcrypt_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

type user struct {
	ID        uint
	Name      string
	Email     encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:users.email;source:Email"`
	Phone     *encryptedtype.String
	PhoneBidx *string `colcrypt:"blindindex:users.phone;source:phone"`
}

func key(t testing.TB, v uint32, fill byte) keyprovider.Key {
	t.Helper()
	k, err := keyprovider.NewKey(v, bytes.Repeat([]byte{fill}, keyprovider.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyring(t testing.TB, active uint32, keys ...keyprovider.Key) *keyprovider.Static {
	t.Helper()
	ks, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

var emailNorm = blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)

type fixture struct {
	db           *gorm.DB
	email, phone *blindindex.Index
}

// setup opens an in-memory SQLite database with the plugin and the user
// table, with index keys ks.
func setup(t *testing.T, ks blindindex.Keyring) fixture {
	t.Helper()
	encryptedtype.SetDefault(keyring(t, 1, key(t, 1, 0xd0)))
	t.Cleanup(func() { encryptedtype.SetDefault(nil) })
	db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1) // one connection, one in-memory database
	t.Cleanup(func() { sqlDB.Close() })
	email, err := blindindex.New("users.email", ks, blindindex.Config{Normalize: emailNorm})
	if err != nil {
		t.Fatal(err)
	}
	phone, err := blindindex.New("users.phone", ks, blindindex.Config{Normalize: blindindex.DigitsOnly, Bits: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Use(gormcrypt.New(email, phone)); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&user{}); err != nil {
		t.Fatal(err)
	}
	return fixture{db, email, phone}
}

func (f fixture) want(t *testing.T, ix *blindindex.Index, plaintext string) string {
	t.Helper()
	v, err := ix.Compute(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// stored returns the index columns of row id as the database holds them.
func (f fixture) stored(t *testing.T, id uint) (email, phone sql.NullString) {
	t.Helper()
	row := f.db.Raw("SELECT email_bidx, phone_bidx FROM users WHERE id = ?", id).Row()
	if err := row.Scan(&email, &phone); err != nil {
		t.Fatal(err)
	}
	return email, phone
}

func (f fixture) check(t *testing.T, id uint, email string, phone *string) {
	t.Helper()
	e, p := f.stored(t, id)
	if want := f.want(t, f.email, email); !e.Valid || e.String != want {
		t.Errorf("row %d: email_bidx = %v, want %s (of %q)", id, e, want, email)
	}
	switch {
	case phone == nil && p.Valid:
		t.Errorf("row %d: phone_bidx = %v, want NULL", id, p)
	case phone != nil && (!p.Valid || p.String != f.want(t, f.phone, *phone)):
		t.Errorf("row %d: phone_bidx = %v, want the index of %q", id, p, *phone)
	}
}

func ptr(s string) *encryptedtype.String { v := encryptedtype.NewString(s); return &v }
func sptr(s string) *string              { return &s }

func TestCreate(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Name: "alice", Email: encryptedtype.NewString("Alice@Example.com"), Phone: ptr("+1 555 0100")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "alice@example.com", sptr("15550100"))
	if u.EmailBidx.String() != f.want(t, f.email, "alice@example.com") || u.PhoneBidx == nil {
		t.Errorf("the model's index fields were not filled in: %v, %v", u.EmailBidx, u.PhoneBidx)
	}

	// NULL source, NULL index.
	n := user{Name: "nophone", Email: encryptedtype.NewString("n@example.com")}
	if err := f.db.Create(&n).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, n.ID, "n@example.com", nil)
}

func TestCreateSliceAndBatches(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	users := []user{
		{Email: encryptedtype.NewString("a@x.com")},
		{Email: encryptedtype.NewString("b@x.com"), Phone: ptr("2")},
	}
	if err := f.db.Create(&users).Error; err != nil {
		t.Fatal(err)
	}
	var batch []*user
	for i := range 7 {
		batch = append(batch, &user{Email: encryptedtype.NewString(fmt.Sprintf("batch%d@x.com", i)), Phone: ptr(fmt.Sprint(i))})
	}
	if err := f.db.CreateInBatches(batch, 3).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, users[0].ID, "a@x.com", nil)
	f.check(t, users[1].ID, "b@x.com", sptr("2"))
	for i, u := range batch {
		f.check(t, u.ID, fmt.Sprintf("batch%d@x.com", i), sptr(fmt.Sprint(i)))
	}
}

func TestCreateMap(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	err := f.db.Model(&user{}).Create(map[string]any{"Name": "m", "Email": encryptedtype.NewString("Map@X.com")}).Error
	if err != nil {
		t.Fatal(err)
	}
	var u user
	if err := f.db.Where("name = ?", "m").First(&u).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "map@x.com", nil)
}

func TestSave(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Email: encryptedtype.NewString("old@x.com"), Phone: ptr("1")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	u.Email = encryptedtype.NewString("new@x.com")
	u.Phone = nil
	if err := f.db.Save(&u).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "new@x.com", nil)

	// Save of a new row creates it.
	n := user{Email: encryptedtype.NewString("saved@x.com")}
	if err := f.db.Save(&n).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, n.ID, "saved@x.com", nil)
}

func TestUpdates(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Name: "u", Email: encryptedtype.NewString("one@x.com"), Phone: ptr("1")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}

	// A struct by value: only non-zero fields are written.
	if err := f.db.Model(&u).Updates(user{Email: encryptedtype.NewString("Two@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "two@x.com", sptr("1"))
	if u.EmailBidx.String() != f.want(t, f.email, "two@x.com") {
		t.Error("Updates(struct) did not update the model's index field")
	}

	// A struct that does not touch the source leaves the index alone.
	if err := f.db.Model(&u).Updates(&user{Name: "renamed"}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "two@x.com", sptr("1"))

	// A map, by column name and by field name.
	if err := f.db.Model(&u).Updates(map[string]any{"email": encryptedtype.NewString("three@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "three@x.com", sptr("1"))
	if err := f.db.Model(&u).Updates(map[string]any{"Phone": ptr("99")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "three@x.com", sptr("99"))
	// A typed nil *string for an encrypted source is NULL, not a plain
	// string to refuse: the source and its index become NULL.
	if err := f.db.Model(&u).Updates(map[string]any{"phone": (*string)(nil)}).Error; err != nil {
		t.Fatalf("Updates(phone: (*string)(nil)): %v", err)
	}
	f.check(t, u.ID, "three@x.com", nil)
	var phoneNull bool
	if err := f.db.Raw("SELECT phone IS NULL FROM users WHERE id = ?", u.ID).Row().Scan(&phoneNull); err != nil || !phoneNull {
		t.Errorf("phone is NULL: %v, %v", phoneNull, err)
	}
	if err := f.db.Model(&u).Updates(map[string]any{"Phone": ptr("99")}).Error; err != nil {
		t.Fatal(err)
	}

	// Update of one column, and NULL.
	if err := f.db.Model(&u).Update("email", encryptedtype.NewString("four@x.com")).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Model(&u).Update("phone", nil).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "four@x.com", nil)

	// A restricted Select still writes the index of a selected source.
	if err := f.db.Model(&u).Select("Email").Updates(user{Email: encryptedtype.NewString("five@x.com"), Name: "ignored"}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "five@x.com", nil)
	// … and of a selected zero source.
	if err := f.db.Model(&u).Update("phone", ptr("3")).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "five@x.com", sptr("3"))
	if err := f.db.Model(&u).Select("Phone").Updates(user{}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "five@x.com", nil)

	// Updates on many rows with a map.
	other := user{Email: encryptedtype.NewString("other@x.com")}
	if err := f.db.Create(&other).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Model(&user{}).Where("id IN ?", []uint{u.ID, other.ID}).Updates(map[string]any{"phone": ptr("7")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "five@x.com", sptr("7"))
	f.check(t, other.ID, "other@x.com", sptr("7"))

	// An SQL expression cannot be indexed.
	err := f.db.Model(&u).Updates(map[string]any{"email": gorm.Expr("upper(email)")}).Error
	if !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
		t.Errorf("Updates with gorm.Expr: %v, want ErrUnsupportedValue", err)
	}
}

// patch is a partial update of user, with its own copy of the tags.
type patch struct {
	Email     *encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Email"`
}

func TestUpdatesOtherStructAndSaveSlice(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	u := user{Email: encryptedtype.NewString("a@x.com")}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Model(&u).Updates(patch{Email: ptr("patched@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "patched@x.com", nil)

	// Save of a slice is an upsert.
	users := []user{u, {Email: encryptedtype.NewString("fresh@x.com"), Phone: ptr("12")}}
	users[0].Email = encryptedtype.NewString("upserted@x.com")
	if err := f.db.Save(&users).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, users[0].ID, "upserted@x.com", nil)
	f.check(t, users[1].ID, "fresh@x.com", sptr("12"))
}

// hooked sets its email in a BeforeCreate hook, which runs before the
// plugin computes the index.
type hooked struct {
	ID        uint
	Name      string
	Email     encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Email"`
}

func (h *hooked) BeforeCreate(*gorm.DB) error {
	h.Email = encryptedtype.NewString(h.Name + "@hooks.example")
	return nil
}

func TestUserHooksRunFirst(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	if err := f.db.AutoMigrate(&hooked{}); err != nil {
		t.Fatal(err)
	}
	h := hooked{Name: "hook"}
	if err := f.db.Create(&h).Error; err != nil {
		t.Fatal(err)
	}
	var got string
	if err := f.db.Raw("SELECT email_bidx FROM hookeds WHERE id = ?", h.ID).Scan(&got).Error; err != nil {
		t.Fatal(err)
	}
	if want := f.want(t, f.email, "hook@hooks.example"); got != want {
		t.Errorf("email_bidx = %s, want %s", got, want)
	}
}

func TestWhere(t *testing.T) {
	k1, k2 := key(t, 1, 1), key(t, 2, 2)
	f := setup(t, keyring(t, 1, k1))
	for _, e := range []string{"a@x.com", "b@x.com"} {
		if err := f.db.Create(&user{Name: e, Email: encryptedtype.NewString(e), Phone: ptr("555-" + fmt.Sprint(e[0]))}).Error; err != nil {
			t.Fatal(err)
		}
	}
	var u user
	if err := f.db.Scopes(gormcrypt.Where("Email", " A@X.COM")).First(&u).Error; err != nil {
		t.Fatal(err)
	}
	if u.Email.Plaintext() != "a@x.com" {
		t.Errorf("found %q", u.Email.Plaintext())
	}
	var us []user
	if err := f.db.Scopes(gormcrypt.Where("phone", fmt.Sprintf("(555) %d", 'b'))).Find(&us).Error; err != nil || len(us) != 1 || us[0].Name != "b@x.com" {
		t.Errorf("Where(phone) = %d rows, %v", len(us), err)
	}
	if err := f.db.Model(&user{}).Scopes(gormcrypt.Where("email_bidx", "b@x.com")).Find(&us).Error; err != nil || len(us) != 1 {
		t.Errorf("Where(email_bidx) = %d rows, %v", len(us), err)
	}
	var n int64
	if err := f.db.Model(&user{}).Scopes(gormcrypt.Where("Email", "nobody@x.com")).Count(&n).Error; err != nil || n != 0 {
		t.Errorf("Count of a missing value = %d, %v", n, err)
	}

	// The SQL matches every live version.
	sqlText := f.db.ToSQL(func(tx *gorm.DB) *gorm.DB {
		return tx.Scopes(gormcrypt.Where("Email", "a@x.com")).Find(&[]user{})
	})
	if !strings.Contains(sqlText, "`users`.`email_bidx` = \"b1:") {
		t.Errorf("SQL with one version: %s", sqlText)
	}

	// Rotate: version 2 active, version 1 live. Old rows are still found,
	// new rows are written under version 2.
	email2, _ := blindindex.New("users.email", keyring(t, 2, k1, k2), blindindex.Config{Normalize: emailNorm})
	phone2, _ := blindindex.New("users.phone", keyring(t, 2, k1, k2), blindindex.Config{Normalize: blindindex.DigitsOnly, Bits: 64})
	db2, err := gorm.Open(sqlite.Dialector{Conn: mustDB(t, f.db)}, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db2.Use(gormcrypt.New(email2, phone2)); err != nil {
		t.Fatal(err)
	}
	c := user{Email: encryptedtype.NewString("c@x.com")}
	if err := db2.Create(&c).Error; err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.EmailBidx.String(), "b2:") {
		t.Errorf("new row written under %s", c.EmailBidx)
	}
	for _, e := range []string{"a@x.com", "c@x.com"} {
		var got user
		if err := db2.Scopes(gormcrypt.Where("Email", e)).First(&got).Error; err != nil {
			t.Errorf("during rotation %s not found: %v", e, err)
		}
	}
	sqlText = db2.ToSQL(func(tx *gorm.DB) *gorm.DB {
		return tx.Scopes(gormcrypt.Where("Email", "a@x.com")).Find(&[]user{})
	})
	if !strings.Contains(sqlText, "`users`.`email_bidx` IN (\"b1:") || !strings.Contains(sqlText, `,"b2:`) {
		t.Errorf("SQL with two versions: %s", sqlText)
	}
}

func mustDB(t *testing.T, db *gorm.DB) *sql.DB {
	t.Helper()
	s, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUnique(t *testing.T) {
	f := setup(t, keyring(t, 1, key(t, 1, 1)))
	if err := f.db.Create(&user{Email: encryptedtype.NewString("a@x.com")}).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Create(&user{Email: encryptedtype.NewString("A@x.com")}).Error; err == nil {
		t.Error("a case variant of an existing email was accepted")
	}
}

func TestErrors(t *testing.T) {
	ks := keyring(t, 1, key(t, 1, 1))
	f := setup(t, ks)

	// No plugin.
	plain, err := gorm.Open(sqlite.Dialector{Conn: mustDB(t, f.db)}, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var u user
	if err := plain.Scopes(gormcrypt.Where("Email", "a@x.com")).First(&u).Error; !errors.Is(err, gormcrypt.ErrNoPlugin) {
		t.Errorf("Where without the plugin: %v, want ErrNoPlugin", err)
	}

	// Fields that are not indexed, or do not exist.
	for _, field := range []string{"Name", "Nope"} {
		if err := f.db.Scopes(gormcrypt.Where(field, "x")).First(&u).Error; !errors.Is(err, gormcrypt.ErrNoField) {
			t.Errorf("Where(%q): %v, want ErrNoField", field, err)
		}
	}

	// Index not registered with the plugin.
	type stray struct {
		ID    uint
		Email encryptedtype.String
		Bidx  gormcrypt.BlindIndex `colcrypt:"blindindex:stray.email;source:Email"`
	}
	if err := f.db.AutoMigrate(&stray{}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Create(&stray{Email: encryptedtype.NewString("x")}).Error; !errors.Is(err, gormcrypt.ErrUnknownIndex) {
		t.Errorf("Create with an unregistered index: %v, want ErrUnknownIndex", err)
	}

	// Bad tags and types.
	type badTag struct {
		ID    uint
		Email encryptedtype.String
		Bidx  gormcrypt.BlindIndex `colcrypt:"blindindex:users.email"`
	}
	type badSource struct {
		ID   uint
		Bidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Missing"`
	}
	type badType struct {
		ID    uint
		Email encryptedtype.String
		Bidx  int `colcrypt:"blindindex:users.email;source:Email"`
	}
	for _, m := range []any{&badTag{}, &badSource{}, &badType{}} {
		if err := f.db.AutoMigrate(m); err != nil {
			t.Fatal(err)
		}
		if err := f.db.Create(m).Error; !errors.Is(err, gormcrypt.ErrTag) {
			t.Errorf("Create(%T): %v, want ErrTag", m, err)
		}
	}

	// Two indexes with one name.
	ix, _ := blindindex.New("dup", ks, blindindex.Config{})
	ix2, _ := blindindex.New("dup", ks, blindindex.Config{})
	fresh, _ := gorm.Open(sqlite.Dialector{Conn: mustDB(t, f.db)}, &gorm.Config{Logger: logger.Discard})
	if err := fresh.Use(gormcrypt.New(ix, ix2)); err == nil {
		t.Error("two indexes with one name were accepted")
	}
}

// Without the plugin, creating a row with a BlindIndex field fails instead
// of storing a NULL index that no lookup finds and UNIQUE ignores.
func TestCreateWithoutPlugin(t *testing.T) {
	db, err := gorm.Open(sqlite.Open("file::memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	type member struct {
		ID        uint
		Email     encryptedtype.String
		EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:users.email;source:Email"`
	}
	if err := db.AutoMigrate(&member{}); err != nil {
		t.Fatal(err)
	}
	ks := keyring(t, 1, key(t, 1, 1))
	old := encryptedtype.Default()
	encryptedtype.SetDefault(ks)
	t.Cleanup(func() { encryptedtype.SetDefault(old.Provider()) })
	if err := db.Create(&member{Email: encryptedtype.NewString("a@x.com")}).Error; !errors.Is(err, gormcrypt.ErrNoPlugin) {
		t.Fatalf("Create without the plugin: %v, want ErrNoPlugin", err)
	}
	var n int64
	if err := db.Model(&member{}).Count(&n).Error; err != nil || n != 0 {
		t.Fatalf("%d rows, %v; want none written", n, err)
	}
}

func TestBlindIndexColumnType(t *testing.T) {
	// The zero BlindIndex was never computed: writing it is an error, not
	// a NULL that no lookup would find.
	var b gormcrypt.BlindIndex
	if v, err := b.Value(); v != nil || !errors.Is(err, gormcrypt.ErrNoPlugin) {
		t.Errorf("zero BlindIndex Value = %v, %v, want ErrNoPlugin", v, err)
	}
	for _, src := range []any{"b1:AAAA", []byte("b1:AAAA")} {
		if err := b.Scan(src); err != nil || b.String() != "b1:AAAA" || !b.Valid() {
			t.Errorf("Scan(%T) = %v, %q", src, err, b)
		}
		if v, err := b.Value(); v != "b1:AAAA" || err != nil {
			t.Errorf("Value = %v, %v", v, err)
		}
	}
	if err := b.Scan(nil); err != nil || b.Valid() {
		t.Errorf("Scan(nil) = %v, valid %v", err, b.Valid())
	}
	if v, err := b.Value(); v != nil || err != nil {
		t.Errorf("NULL read back: Value = %v, %v, want NULL", v, err)
	}
	if err := b.Scan(42); err == nil {
		t.Error("Scan(42) accepted")
	}
}
