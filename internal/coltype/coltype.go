// Package coltype names colcrypt's column types: the types whose Value
// writes the wire format of package encryptedtype. The GORM plugin
// (gormcrypt) and the pgx codec (pgxcodec) both need the list, and must
// not disagree about it.
package coltype

import (
	"reflect"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

var (
	// Every type of package encryptedtype is one, JSON[T] for every T
	// included, which is why the package is matched by path.
	encryptedtypePath = reflect.TypeFor[encryptedtype.String]().PkgPath()
	// Package rotation declares other types too, and a driver.Valuer added
	// there need not write the wire format: its two are named one by one.
	migratingString = reflect.TypeFor[rotation.MigratingString]()
	migratingBytes  = reflect.TypeFor[rotation.MigratingBytes]()
)

// Is reports whether t is one of the column types: a type of package
// encryptedtype, rotation.MigratingString or rotation.MigratingBytes. A
// pointer to one is not; callers dereference first where they accept
// pointers.
func Is(t reflect.Type) bool {
	return t.PkgPath() == encryptedtypePath || t == migratingString || t == migratingBytes
}

// Scalar reports whether t is one of the column types holding a string or
// bytes: encryptedtype.String and Bytes, rotation.MigratingString and
// MigratingBytes (not encryptedtype.JSON). A pointer to one is not.
func Scalar(t reflect.Type) bool {
	switch t {
	case reflect.TypeFor[encryptedtype.String](), reflect.TypeFor[encryptedtype.Bytes](), migratingString, migratingBytes:
		return true
	}
	return false
}
