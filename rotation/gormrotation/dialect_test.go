package gormrotation

import (
	"testing"

	"gorm.io/gorm"

	"github.com/colcrypt/colcrypt/rotation"
)

// namedDialector is a GORM dialector that only has a name.
type namedDialector struct {
	gorm.Dialector
	name string
}

func (d namedDialector) Name() string { return d.name }

func TestDescribeDialect(t *testing.T) {
	db := openDB(t)
	ix := newIndex(t, "accounts.email")
	tbl, err := Describe(db, &account{}, ix)
	if err != nil || tbl.Dialect != rotation.SQLite {
		t.Fatalf("on SQLite: dialect %v, %v", tbl.Dialect, err)
	}
	for name, want := range map[string]rotation.Dialect{
		"postgres": rotation.Postgres, "mysql": rotation.MySQL, "sqlite": rotation.SQLite, "sqlserver": rotation.DetectDialect,
	} {
		other := *db
		other.Config = &gorm.Config{}
		*other.Config = *db.Config
		other.Dialector = namedDialector{Dialector: db.Dialector, name: name}
		if got := dialect(&other); got != want {
			t.Errorf("dialector %s: %v, want %v", name, got, want)
		}
	}
	if got := dialect(&gorm.DB{Config: &gorm.Config{}}); got != rotation.DetectDialect {
		t.Errorf("no dialector: %v", got)
	}
}
