package integration

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/rotation"
	"github.com/colcrypt/colcrypt/rotation/gormrotation"
)

// rotGormTable is the table of rotGormUser in the running test (a unique
// name per run; the tests of this package take turns).
var rotGormTable string

// rotGormUser is a GORM model with encrypted fields and a blind index, as an
// application declares it.
type rotGormUser struct {
	ID        uint
	Name      string
	Email     encryptedtype.String  `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex  `gorm:"index" colcrypt:"blindindex:rot_gorm_users.email;source:Email"`
	Phone     *encryptedtype.String // nullable
}

func (rotGormUser) TableName() string { return rotGormTable }

// TestRotationGORMModel derives the table description from a GORM model
// (gormrotation.Describe), rotates it, and reads it back through GORM,
// finding rows by their blind index under the new index key, on Postgres.
func TestRotationGORMModel(t *testing.T) {
	dsn := databaseURL(t)
	testRotationGORMModel(t, postgres.Open(dsn), openSQL(t, dsn), func(name string) string { return `"` + name + `"` })
}

// TestRotationMySQLGORMModel is TestRotationGORMModel on MySQL/MariaDB.
func TestRotationMySQLGORMModel(t *testing.T) {
	d := mysqlDialect(mysqlURL(t))
	testRotationGORMModel(t, d.gorm(t), d.open(t), d.quote)
}

// TestRotationSQLiteGORMModel is TestRotationGORMModel on SQLite.
func TestRotationSQLiteGORMModel(t *testing.T) {
	d := sqliteDialect(t)
	testRotationGORMModel(t, d.gorm(t), d.open(t), d.quote)
}

func testRotationGORMModel(t *testing.T, dialector gorm.Dialector, db *sql.DB, quote func(string) string) {
	const n = 300
	keys := newKeyring(t)
	keys.use(1)
	ikeys := newRotIndexKeys(t, 1, 2)
	ix, err := blindindex.New("rot_gorm_users.email", ikeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		t.Fatal(err)
	}
	rotGormTable = uniqueName(t)
	gdb, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := gdb.DB(); err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	if err := gdb.Use(gormcrypt.New(ix)); err != nil {
		t.Fatal(err)
	}
	if err := gdb.AutoMigrate(&rotGormUser{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, db, quote(rotGormTable)) })
	users := make([]rotGormUser, n)
	for i := range users {
		users[i] = rotGormUser{Name: fmt.Sprint("user ", i), Email: encryptedtype.NewString(fmt.Sprintf("GormUser%d@Example.com", i))}
		if i%2 == 0 {
			users[i].Phone = ptr(encryptedtype.NewString(fmt.Sprint("+1 555 ", i)))
		}
	}
	if err := gdb.CreateInBatches(users, 100).Error; err != nil {
		t.Fatal(err)
	}

	// Version 2 of both keys becomes active, and the rotation runs.
	codec := encryptedtype.NewCodec(keys.use(2, 1))
	ikeys.use(t, 2)
	table, err := gormrotation.Describe(gdb, &rotGormUser{}, ix)
	if err != nil {
		t.Fatal(err)
	}
	if table.Name != rotGormTable || table.PrimaryKey != "id" || len(table.Columns) != 2 || table.Columns[0].Indexes[0].Column != "email_bidx" {
		t.Fatalf("Describe: %+v", table)
	}
	job, err := rotation.New(db, table, codec)
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.Rotate(testContext(t), rotation.Options{BatchSize: 64})
	if err != nil || res.Rows != n || res.Values != n+n/2 || res.IndexValues != n {
		t.Fatalf("Rotate: %+v, %v", res, err)
	}
	c, err := job.Census(testContext(t))
	if err != nil || !c.Done() || c.Columns[0].Versions[2] != n || c.Columns[1].Null != n/2 || c.Indexes[0].Versions[2] != n {
		t.Fatalf("census: %+v, %v", c, err)
	}

	// GORM reads every row, and finds them by blind index.
	var back []rotGormUser
	if err := gdb.Order("id").Find(&back).Error; err != nil {
		t.Fatal(err)
	}
	for i, u := range back {
		if u.Email.Plaintext() != fmt.Sprintf("GormUser%d@Example.com", i) || (u.Phone == nil) != (i%2 == 1) || !strings.HasPrefix(u.EmailBidx.String(), "b2:") {
			t.Fatalf("row %d after the rotation: %v %v %q", i, u.Email.Plaintext(), u.Phone == nil, u.EmailBidx.String())
		}
	}
	var found rotGormUser
	if err := gdb.Scopes(gormcrypt.Where("Email", "gormuser42@example.COM")).First(&found).Error; err != nil || found.Name != "user 42" {
		t.Errorf("lookup by blind index: %+v, %v", found.Name, err)
	}
}
