package gormrotation

import (
	"errors"
	"strings"
	"testing"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

type profile struct{ Bio string }

type account struct {
	ID        int64 `gorm:"primaryKey"`
	Name      string
	Email     encryptedtype.String
	EmailBidx string `colcrypt:"blindindex:accounts.email;source:Email"`
	Phone     *encryptedtype.String
	Avatar    encryptedtype.Bytes
	Profile   *encryptedtype.JSON[profile]
	Legacy    rotation.MigratingString
	Ignored   encryptedtype.String `gorm:"-"`
}

type noEncrypted struct {
	ID   uint
	Name string
}

type composite struct {
	A     int `gorm:"primaryKey"`
	B     int `gorm:"primaryKey"`
	Email encryptedtype.String
}

type badTag struct {
	ID    uint
	Email encryptedtype.String
	Bidx  string `colcrypt:"blindindex:x"`
}

// badSource indexes a plaintext field beside an encrypted one.
type badSource struct {
	ID    uint
	Name  string
	Email encryptedtype.String
	Bidx  string `colcrypt:"blindindex:accounts.email;source:Name"`
}

type inSchema struct {
	ID    uint
	Email encryptedtype.String
}

func (inSchema) TableName() string { return "crm.people" }

func openDB(t *testing.T) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
	})
	return db
}

func newIndex(t *testing.T, name string) *blindindex.Index {
	t.Helper()
	k, err := keyprovider.GenerateKey(1)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyprovider.NewStatic(1, k)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := blindindex.New(name, keys, blindindex.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestDescribe(t *testing.T) {
	db := openDB(t)
	ix := newIndex(t, "accounts.email")
	tbl, err := Describe(db, &account{}, ix)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Name != "accounts" || tbl.Schema != "" || tbl.PrimaryKey != "id" {
		t.Errorf("table %+v", tbl)
	}
	var names []string
	for _, c := range tbl.Columns {
		names = append(names, c.Name)
	}
	want := []string{"email", "phone", "avatar", "profile", "legacy"}
	if len(names) != len(want) {
		t.Fatalf("columns %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("columns %v, want %v", names, want)
		}
	}
	if len(tbl.Columns[0].Indexes) != 1 || tbl.Columns[0].Indexes[0].Column != "email_bidx" || tbl.Columns[0].Indexes[0].Indexer != ix {
		t.Errorf("email indexes: %+v", tbl.Columns[0].Indexes)
	}
	for _, c := range tbl.Columns[1:] {
		if len(c.Indexes) != 0 {
			t.Errorf("column %s has indexes %+v", c.Name, c.Indexes)
		}
	}

	tbl, err = Describe(db, &inSchema{})
	if err != nil || tbl.Schema != "crm" || tbl.Name != "people" {
		t.Errorf("schema-qualified table: %+v, %v", tbl, err)
	}
}

func TestDescribeErrors(t *testing.T) {
	db := openDB(t)
	ix := newIndex(t, "accounts.email")
	for name, tc := range map[string]struct {
		db      *gorm.DB
		model   any
		indexes []*blindindex.Index
	}{
		"nil db":              {nil, &account{}, []*blindindex.Index{ix}},
		"not a struct":        {db, 42, nil},
		"index not given":     {db, &account{}, nil},
		"nil index":           {db, &account{}, []*blindindex.Index{nil}},
		"no encrypted fields": {db, &noEncrypted{}, nil},
		"composite key":       {db, &composite{}, nil},
		"malformed tag":       {db, &badTag{}, nil},
		"plain source":        {db, &badSource{}, []*blindindex.Index{ix}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Describe(tc.db, tc.model, tc.indexes...)
			if !errors.Is(err, ErrModel) {
				t.Errorf("got %v, want ErrModel", err)
			}
			if name == "plain source" && (err == nil || !strings.Contains(err.Error(), "source field")) {
				t.Errorf("got %v, want it to name the source field", err)
			}
		})
	}
}
