// Package gormrotation derives the rotation.Table of a GORM model from its
// field types, so that a model such as
//
//	type User struct {
//		ID        uint
//		Email     encryptedtype.String
//		EmailBidx gormcrypt.BlindIndex `colcrypt:"blindindex:users.email;source:Email"`
//		Phone     *encryptedtype.String
//	}
//
// is rotated with
//
//	table, err := gormrotation.Describe(db, &User{}, emailIndex)
//	job, err := rotation.New(sqlDB, table, codec)
//
// Encrypted columns are the fields of type encryptedtype.String,
// encryptedtype.Bytes, encryptedtype.JSON[T], rotation.MigratingString and
// rotation.MigratingBytes, or pointers to them. Blind-index columns are the
// fields with a colcrypt struct tag, as package gormcrypt reads it
// ("blindindex:<index name>;source:<field>"); their indexes are given to
// Describe, found by name.
//
// Describe also sets the table's SQL dialect from the GORM dialector
// (postgres, mysql or sqlite).
//
// This package imports GORM; package rotation does not.
package gormrotation

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/rotation"
)

// ErrModel is returned (wrapped) when a model cannot be described: GORM
// cannot parse it, it has no single-column primary key or no encrypted
// field, or a colcrypt tag is malformed or names an index not given.
var ErrModel = errors.New("gormrotation: cannot describe the model")

// tagKey is the struct tag key of blind-index fields, the one package
// gormcrypt reads.
const tagKey = "colcrypt"

const encryptedtypePath = "github.com/colcrypt/colcrypt/encryptedtype"

var encryptedTypes = map[reflect.Type]bool{
	reflect.TypeFor[encryptedtype.String]():     true,
	reflect.TypeFor[encryptedtype.Bytes]():      true,
	reflect.TypeFor[rotation.MigratingString](): true,
	reflect.TypeFor[rotation.MigratingBytes]():  true,
}

// encrypted reports whether a field of type t is an encrypted column.
func encrypted(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if encryptedTypes[t] {
		return true
	}
	// encryptedtype.JSON[T], for every T.
	return t.PkgPath() == encryptedtypePath && strings.HasPrefix(t.Name(), "JSON[")
}

// Describe returns the rotation.Table of model, a pointer to a GORM model
// struct, with table and column names as db's naming strategy gives them.
// indexes are the blind indexes the model's colcrypt tags name.
func Describe(db *gorm.DB, model any, indexes ...*blindindex.Index) (rotation.Table, error) {
	if db == nil {
		return rotation.Table{}, fmt.Errorf("%w: nil *gorm.DB", ErrModel)
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(model); err != nil {
		return rotation.Table{}, fmt.Errorf("%w: %w", ErrModel, err)
	}
	s := stmt.Schema
	if len(s.PrimaryFields) != 1 {
		return rotation.Table{}, fmt.Errorf("%w: %s has %d primary key fields; rotation needs exactly one", ErrModel, s.Name, len(s.PrimaryFields))
	}
	byName := map[string]*blindindex.Index{}
	for _, ix := range indexes {
		if ix == nil {
			return rotation.Table{}, fmt.Errorf("%w: nil *blindindex.Index", ErrModel)
		}
		byName[ix.Name()] = ix
	}

	t := rotation.Table{Name: s.Table, PrimaryKey: s.PrimaryFields[0].DBName, Dialect: dialect(db)}
	if schemaName, table, ok := strings.Cut(s.Table, "."); ok {
		t.Schema, t.Name = schemaName, table
	}
	column := map[*schema.Field]int{}
	for _, f := range s.Fields {
		if f.DBName == "" || !encrypted(f.FieldType) {
			continue
		}
		column[f] = len(t.Columns)
		t.Columns = append(t.Columns, rotation.Column{Name: f.DBName})
	}
	if len(t.Columns) == 0 {
		return t, fmt.Errorf("%w: %s has no encrypted field", ErrModel, s.Name)
	}
	for _, f := range s.Fields {
		tag, ok := f.Tag.Lookup(tagKey)
		if !ok {
			continue
		}
		name, source, err := gormcrypt.ParseTag(tag)
		if err != nil {
			return t, fmt.Errorf("%w: %s.%s: %w", ErrModel, s.Name, f.Name, err)
		}
		if f.DBName == "" {
			return t, fmt.Errorf("%w: %s.%s is not a column", ErrModel, s.Name, f.Name)
		}
		ix, ok := byName[name]
		if !ok {
			return t, fmt.Errorf("%w: %s.%s names blind index %q, which was not given to Describe", ErrModel, s.Name, f.Name, name)
		}
		src := s.LookUpField(source)
		i, ok := column[src]
		if src == nil || !ok {
			return t, fmt.Errorf("%w: %s.%s: source field %q is not an encrypted field", ErrModel, s.Name, f.Name, source)
		}
		t.Columns[i].Indexes = append(t.Columns[i].Indexes, rotation.Index{Column: f.DBName, Indexer: ix})
	}
	return t, nil
}

// dialect returns the SQL dialect of db's GORM dialector, or
// rotation.DetectDialect for one it does not know.
func dialect(db *gorm.DB) rotation.Dialect {
	if db.Dialector == nil {
		return rotation.DetectDialect
	}
	switch db.Dialector.Name() {
	case "postgres":
		return rotation.Postgres
	case "mysql":
		return rotation.MySQL
	case "sqlite", "sqlite3":
		return rotation.SQLite
	}
	return rotation.DetectDialect
}
