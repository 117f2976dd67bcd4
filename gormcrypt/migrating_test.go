package gormcrypt_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/rotation"
)

// migUser is a model whose indexed columns are being converted from
// plaintext to encrypted: its sources are rotation.MigratingString and
// MigratingBytes, which read both forms and always write ciphertext.
type migUser struct {
	ID        uint
	Name      string
	Email     rotation.MigratingString  `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex      `gorm:"uniqueIndex" colcrypt:"blindindex:mig_users.email;source:Email"`
	Phone     *rotation.MigratingString // nullable
	PhoneBidx *gormcrypt.BlindIndex     `gorm:"index" colcrypt:"blindindex:mig_users.phone;source:Phone"`
	Token     rotation.MigratingBytes
	TokenBidx *string `colcrypt:"blindindex:mig_users.token;source:Token"`
}

// migPatch is a partial update of migUser that writes the email column
// with a plain string: it would be stored unencrypted.
type migPatch struct {
	Email     string
	EmailBidx gormcrypt.BlindIndex
}

// migPatchOK is a partial update of migUser with an encrypted email.
type migPatchOK struct {
	Email     *rotation.MigratingString
	EmailBidx gormcrypt.BlindIndex
}

type migFixture struct {
	db                  *gorm.DB
	email, phone, token *blindindex.Index
}

// migSetup opens an in-memory SQLite database with the plugin (indexes of
// email, phone and token) and the mig_users table.
func migSetup(t *testing.T) migFixture {
	t.Helper()
	encryptedtype.SetDefault(keyring(t, 1, key(t, 1, 0xd1)))
	t.Cleanup(func() { encryptedtype.SetDefault(nil) })
	db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := mustDB(t, db)
	sqlDB.SetMaxOpenConns(1) // one connection, one in-memory database
	t.Cleanup(func() { sqlDB.Close() })
	ks := keyring(t, 1, key(t, 1, 7))
	f := migFixture{db: db}
	for _, ix := range []struct {
		p    **blindindex.Index
		name string
		cfg  blindindex.Config
	}{
		{&f.email, "mig_users.email", blindindex.Config{Normalize: emailNorm}},
		{&f.phone, "mig_users.phone", blindindex.Config{Normalize: blindindex.DigitsOnly, Bits: 64}},
		{&f.token, "mig_users.token", blindindex.Config{}},
	} {
		if *ix.p, err = blindindex.New(ix.name, ks, ix.cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Use(gormcrypt.New(f.email, f.phone, f.token)); err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&migUser{}); err != nil {
		t.Fatalf("AutoMigrate of a model with Migrating sources: %v", err)
	}
	return f
}

// migRow is a row of mig_users as the database holds it.
type migRow struct {
	email, token                    string
	phone                           sql.NullString
	emailBidx, phoneBidx, tokenBidx sql.NullString
}

func (f migFixture) raw(t *testing.T, id uint) migRow {
	t.Helper()
	var r migRow
	row := f.db.Raw("SELECT email, phone, token, email_bidx, phone_bidx, token_bidx FROM mig_users WHERE id = ?", id).Row()
	var token sql.NullString
	if err := row.Scan(&r.email, &r.phone, &token, &r.emailBidx, &r.phoneBidx, &r.tokenBidx); err != nil {
		t.Fatalf("reading row %d: %v", id, err)
	}
	r.token = token.String
	return r
}

func (f migFixture) want(t *testing.T, ix *blindindex.Index, plaintext string) string {
	t.Helper()
	v, err := ix.Compute(plaintext)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// check checks that row id stores email, phone (nil: NULL) and token
// encrypted, each with its index.
func (f migFixture) check(t *testing.T, id uint, email string, phone *string, token string) {
	t.Helper()
	r := f.raw(t, id)
	f.checkCipher(t, id, "email", r.email, email)
	if w := f.want(t, f.email, email); !r.emailBidx.Valid || r.emailBidx.String != w {
		t.Errorf("row %d: email_bidx = %v, want the index of %q", id, r.emailBidx, email)
	}
	if phone == nil {
		if r.phone.Valid || r.phoneBidx.Valid {
			t.Errorf("row %d: phone NULL %v, phone_bidx = %v; want both NULL", id, !r.phone.Valid, r.phoneBidx)
		}
	} else {
		if !r.phone.Valid {
			t.Errorf("row %d: phone is NULL, want %q", id, *phone)
		} else {
			f.checkCipher(t, id, "phone", r.phone.String, *phone)
		}
		if w := f.want(t, f.phone, *phone); !r.phoneBidx.Valid || r.phoneBidx.String != w {
			t.Errorf("row %d: phone_bidx = %v, want the index of %q", id, r.phoneBidx, *phone)
		}
	}
	f.checkCipher(t, id, "token", r.token, token)
	if w := f.want(t, f.token, token); !r.tokenBidx.Valid || r.tokenBidx.String != w {
		t.Errorf("row %d: token_bidx = %v, want the index of %q", id, r.tokenBidx, token)
	}
}

// checkCipher checks that stored is a ciphertext of plaintext.
func (f migFixture) checkCipher(t *testing.T, id uint, column, stored, plaintext string) {
	t.Helper()
	if _, err := encryptedtype.Version([]byte(stored)); err != nil {
		t.Errorf("row %d: %s is not stored encrypted: %v", id, column, err)
		return
	}
	var s encryptedtype.String
	if err := s.Scan(stored); err != nil {
		t.Errorf("row %d: %s does not decrypt: %v", id, column, err)
	} else if s.Plaintext() != plaintext {
		t.Errorf("row %d: %s decrypts to %q, want %q", id, column, s.Plaintext(), plaintext)
	}
}

func migPtr(s string) *rotation.MigratingString { v := rotation.NewMigratingString(s); return &v }

func TestMigratingCreateAndSave(t *testing.T) {
	f := migSetup(t)
	u := migUser{Name: "alice", Email: rotation.NewMigratingString("Alice@Example.com"), Phone: migPtr("+1 555 0100"),
		Token: rotation.NewMigratingBytes([]byte("tok-A"))}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatalf("Create with Migrating sources: %v", err)
	}
	f.check(t, u.ID, "Alice@Example.com", sptr("+1 555 0100"), "tok-A")
	if u.EmailBidx.String() != f.want(t, f.email, "alice@example.com") || u.PhoneBidx == nil || u.TokenBidx == nil {
		t.Errorf("the model's index fields were not filled in: %v, %v, %v", u.EmailBidx, u.PhoneBidx, u.TokenBidx)
	}

	// A nil *MigratingString gives a NULL index.
	n := migUser{Name: "nophone", Email: rotation.NewMigratingString("n@example.com"), Token: rotation.NewMigratingBytes([]byte("tok-N"))}
	if err := f.db.Create(&n).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, n.ID, "n@example.com", nil, "tok-N")
	if n.PhoneBidx != nil {
		t.Errorf("nil phone: PhoneBidx = %v, want nil", n.PhoneBidx)
	}

	// A slice.
	users := []migUser{
		{Email: rotation.NewMigratingString("s1@example.com"), Token: rotation.NewMigratingBytes([]byte("t1"))},
		{Email: rotation.NewMigratingString("s2@example.com"), Phone: migPtr("2"), Token: rotation.NewMigratingBytes([]byte("t2"))},
	}
	if err := f.db.Create(&users).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, users[0].ID, "s1@example.com", nil, "t1")
	f.check(t, users[1].ID, "s2@example.com", sptr("2"), "t2")

	// A map, with the values the application writes during the migration.
	err := f.db.Model(&migUser{}).Create(map[string]any{
		"Name": "m", "Email": rotation.NewMigratingString("Map@Example.com"), "Phone": migPtr("3"),
		"Token": encryptedtype.NewBytes([]byte("tok-M")),
	}).Error
	if err != nil {
		t.Fatalf("Create(map): %v", err)
	}
	var m migUser
	if err := f.db.Where("name = ?", "m").First(&m).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, m.ID, "Map@Example.com", sptr("3"), "tok-M")

	// Save of a loaded row, with a new email and the phone cleared.
	var back migUser
	if err := f.db.First(&back, u.ID).Error; err != nil {
		t.Fatal(err)
	}
	if back.Email.Plaintext() != "Alice@Example.com" || !back.Email.WasEncrypted() || back.Phone == nil || back.Phone.Plaintext() != "+1 555 0100" {
		t.Fatalf("read back: email %q (encrypted %v), phone %v", back.Email.Plaintext(), back.Email.WasEncrypted(), back.Phone != nil)
	}
	back.Email = rotation.NewMigratingString("Alice.New@Example.com")
	back.Phone = nil
	if err := f.db.Save(&back).Error; err != nil {
		t.Fatalf("Save: %v", err)
	}
	f.check(t, u.ID, "Alice.New@Example.com", nil, "tok-A")

	// Save of a new row creates it.
	s := migUser{Email: rotation.NewMigratingString("saved@example.com"), Phone: migPtr("4"), Token: rotation.NewMigratingBytes([]byte("tok-S"))}
	if err := f.db.Save(&s).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, s.ID, "saved@example.com", sptr("4"), "tok-S")
}

func TestMigratingUpdates(t *testing.T) {
	f := migSetup(t)
	u := migUser{Name: "u", Email: rotation.NewMigratingString("one@x.com"), Phone: migPtr("1"), Token: rotation.NewMigratingBytes([]byte("t0"))}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}

	// Updates with a struct, by value and by pointer.
	if err := f.db.Model(&u).Updates(migUser{Email: rotation.NewMigratingString("Two@x.com")}).Error; err != nil {
		t.Fatalf("Updates(struct): %v", err)
	}
	f.check(t, u.ID, "Two@x.com", sptr("1"), "t0")
	if u.EmailBidx.String() != f.want(t, f.email, "two@x.com") {
		t.Error("Updates(struct) did not update the model's index field")
	}
	if err := f.db.Model(&u).Updates(&migUser{Phone: migPtr("22"), Token: rotation.NewMigratingBytes([]byte("t2"))}).Error; err != nil {
		t.Fatalf("Updates(&struct): %v", err)
	}
	f.check(t, u.ID, "Two@x.com", sptr("22"), "t2")
	// A struct that does not touch a source leaves its index alone.
	if err := f.db.Model(&u).Updates(&migUser{Name: "renamed"}).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "Two@x.com", sptr("22"), "t2")

	// Updates with a map: MigratingString, encryptedtype.String, pointers,
	// by column and by field name.
	for _, c := range []struct {
		m     map[string]any
		email string
		phone *string
		token string
	}{
		{map[string]any{"email": rotation.NewMigratingString("three@x.com")}, "three@x.com", sptr("22"), "t2"},
		{map[string]any{"Email": encryptedtype.NewString("Four@x.com"), "phone": ptr("44")}, "Four@x.com", sptr("44"), "t2"},
		{map[string]any{"email": migPtr("five@x.com"), "Phone": migPtr("55")}, "five@x.com", sptr("55"), "t2"},
		{map[string]any{"token": rotation.NewMigratingBytes([]byte("t6")), "phone": nil}, "five@x.com", nil, "t6"},
		{map[string]any{"Token": encryptedtype.NewBytes([]byte("t7")), "phone": (*rotation.MigratingString)(nil)}, "five@x.com", nil, "t7"},
		{map[string]any{"Phone": encryptedtype.NewString("88")}, "five@x.com", sptr("88"), "t7"},
		{map[string]any{"token": new(rotation.NewMigratingBytes([]byte("t8")))}, "five@x.com", sptr("88"), "t8"},
	} {
		if err := f.db.Model(&u).Updates(c.m).Error; err != nil {
			t.Fatalf("Updates(%v): %v", c.m, err)
		}
		f.check(t, u.ID, c.email, c.phone, c.token)
	}

	// Update of one column, and NULL.
	if err := f.db.Model(&u).Update("email", rotation.NewMigratingString("Six@x.com")).Error; err != nil {
		t.Fatalf("Update: %v", err)
	}
	if err := f.db.Model(&u).Update("phone", nil).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "Six@x.com", nil, "t8")
	if err := f.db.Model(&u).Update("Phone", migPtr("9")).Error; err != nil {
		t.Fatal(err)
	}
	f.check(t, u.ID, "Six@x.com", sptr("9"), "t8")

	// A patch struct with an encrypted source and its index field.
	if err := f.db.Model(&u).Updates(migPatchOK{Email: migPtr("patched@x.com")}).Error; err != nil {
		t.Fatalf("Updates(patch): %v", err)
	}
	f.check(t, u.ID, "patched@x.com", sptr("9"), "t8")

	// An upsert assigning a Migrating value.
	set := clause.Assignments(map[string]any{"email": rotation.NewMigratingString("Upsert@x.com")})
	v := migUser{ID: u.ID, Email: rotation.NewMigratingString("ignored@x.com"), Token: rotation.NewMigratingBytes([]byte("ignored"))}
	if err := f.db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: set}).Create(&v).Error; err != nil {
		t.Fatalf("upsert: %v", err)
	}
	f.check(t, u.ID, "Upsert@x.com", sptr("9"), "t8")
}

// A plain string or []byte for a Migrating source would be stored as it is,
// unencrypted, next to an index of it: the plugin refuses it, and nothing is
// written.
func TestMigratingPlainValueRefused(t *testing.T) {
	f := migSetup(t)
	u := migUser{Name: "u", Email: rotation.NewMigratingString("kept@x.com"), Phone: migPtr("1"), Token: rotation.NewMigratingBytes([]byte("t"))}
	if err := f.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	before := f.raw(t, u.ID)
	for name, write := range map[string]func(*gorm.DB) error{
		"Updates(map) string":  func(db *gorm.DB) error { return db.Model(&u).Updates(map[string]any{"email": "plain@x.com"}).Error },
		"Updates(map) *string": func(db *gorm.DB) error { return db.Model(&u).Updates(map[string]any{"Phone": sptr("555")}).Error },
		"Updates(map) []byte":  func(db *gorm.DB) error { return db.Model(&u).Updates(map[string]any{"token": []byte("plain")}).Error },
		"Updates(map) string->bytes": func(db *gorm.DB) error {
			return db.Model(&u).Updates(map[string]any{"Token": "plain"}).Error
		},
		"Update string": func(db *gorm.DB) error { return db.Model(&u).Update("email", "plain@x.com").Error },
		"Update []byte": func(db *gorm.DB) error { return db.Model(&u).Update("Email", []byte("plain@x.com")).Error },
		"Create(map) string": func(db *gorm.DB) error {
			return db.Model(&migUser{}).Create(map[string]any{"Name": "p", "Email": "plain@x.com", "Token": encryptedtype.NewBytes(nil)}).Error
		},
		"Updates(patch) string": func(db *gorm.DB) error { return db.Model(&u).Updates(migPatch{Email: "plain@x.com"}).Error },
		"upsert string": func(db *gorm.DB) error {
			set := clause.Assignments(map[string]any{"email": "plain@x.com"})
			v := migUser{ID: u.ID, Email: rotation.NewMigratingString("x@x.com")}
			return db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoUpdates: set}).Create(&v).Error
		},
	} {
		if err := write(f.db); !errors.Is(err, gormcrypt.ErrUnsupportedValue) {
			t.Errorf("%s: %v, want ErrUnsupportedValue", name, err)
		}
	}
	if after := f.raw(t, u.ID); after != before {
		t.Error("a refused write changed the row")
	}
	var n int64
	if err := f.db.Model(&migUser{}).Count(&n).Error; err != nil || n != 1 {
		t.Errorf("%d rows, %v; want only the first", n, err)
	}
}

// Rows written before the migration hold plaintext and no index: they are
// read, not found by Where until written again, and the write encrypts and
// indexes them.
func TestMigratingWhereUniqueAndPlaintextRows(t *testing.T) {
	f := migSetup(t)
	for _, e := range []string{"a@x.com", "B@x.com"} {
		if err := f.db.Create(&migUser{Name: e, Email: rotation.NewMigratingString(e), Phone: migPtr("555-" + e[:1]), Token: rotation.NewMigratingBytes([]byte("tok " + e))}).Error; err != nil {
			t.Fatal(err)
		}
	}
	// Two rows from before the migration: plaintext, no index.
	if err := f.db.Exec("INSERT INTO mig_users (name, email, phone, token) VALUES ('legacy', 'Legacy@x.com', '555 7', 'lt'), ('legacy2', 'Legacy2@x.com', NULL, 'lt2')").Error; err != nil {
		t.Fatal(err)
	}

	var u migUser
	if err := f.db.Scopes(gormcrypt.Where("Email", " A@X.COM")).First(&u).Error; err != nil || u.Email.Plaintext() != "a@x.com" {
		t.Fatalf("Where(Email): %v, %q", err, u.Email.Plaintext())
	}
	var us []migUser
	if err := f.db.Scopes(gormcrypt.Where("Phone", "(555) b")).Find(&us).Error; err != nil || len(us) != 2 {
		// DigitsOnly: "555-a", "555-B" and "(555) b" are all "555".
		t.Errorf("Where(Phone) = %d rows, %v; want 2", len(us), err)
	}
	if err := f.db.Scopes(gormcrypt.Where("token", "tok B@x.com")).Find(&us).Error; err != nil || len(us) != 1 || us[0].Name != "B@x.com" {
		t.Errorf("Where(token) = %d rows, %v", len(us), err)
	}
	if err := f.db.Model(&migUser{}).Scopes(gormcrypt.Where("email_bidx", "b@X.com")).Find(&us).Error; err != nil || len(us) != 1 {
		t.Errorf("Where(email_bidx) = %d rows, %v", len(us), err)
	}

	// The unique index refuses a case variant.
	if err := f.db.Create(&migUser{Email: rotation.NewMigratingString("A@x.COM")}).Error; err == nil {
		t.Error("a case variant of an existing email was accepted")
	}

	// The legacy row reads as plaintext, and has no index to find it by.
	var legacy migUser
	if err := f.db.Where("name = ?", "legacy").First(&legacy).Error; err != nil {
		t.Fatalf("reading a plaintext row: %v", err)
	}
	if legacy.Email.Plaintext() != "Legacy@x.com" || legacy.Email.WasEncrypted() || legacy.Phone == nil || legacy.Phone.Plaintext() != "555 7" || string(legacy.Token.Plaintext()) != "lt" {
		t.Fatalf("plaintext row read as %q (encrypted %v)", legacy.Email.Plaintext(), legacy.Email.WasEncrypted())
	}
	if legacy.EmailBidx.Valid() {
		t.Errorf("plaintext row has an index value %v", legacy.EmailBidx)
	}
	if err := f.db.Scopes(gormcrypt.Where("Email", "legacy@x.com")).First(&migUser{}).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
		t.Errorf("Where found an unindexed row: %v", err)
	}
	// Saved by the application, it is encrypted and indexed.
	if err := f.db.Save(&legacy).Error; err != nil {
		t.Fatalf("Save of a plaintext row: %v", err)
	}
	f.check(t, legacy.ID, "Legacy@x.com", sptr("555 7"), "lt")
	var found migUser
	if err := f.db.Scopes(gormcrypt.Where("Email", "LEGACY@X.COM")).First(&found).Error; err != nil || found.ID != legacy.ID {
		t.Errorf("Where after Save: %v, id %d", err, found.ID)
	}
	// Updated with a map, the other one is too.
	var legacy2 migUser
	if err := f.db.Where("name = ?", "legacy2").First(&legacy2).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.db.Model(&legacy2).Updates(map[string]any{"email": legacy2.Email, "token": legacy2.Token}).Error; err != nil {
		t.Fatalf("Updates(map) of a plaintext row: %v", err)
	}
	f.check(t, legacy2.ID, "Legacy2@x.com", nil, "lt2")
	// Now indexed, it takes part in the unique index.
	if err := f.db.Create(&migUser{Email: rotation.NewMigratingString("legacy2@X.com")}).Error; err == nil {
		t.Error("a case variant of a migrated email was accepted")
	}
}
