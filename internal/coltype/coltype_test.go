package coltype_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/internal/coltype"
	"github.com/colcrypt/colcrypt/rotation"
)

func TestIs(t *testing.T) {
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[encryptedtype.String](), true},
		{reflect.TypeFor[encryptedtype.Bytes](), true},
		{reflect.TypeFor[encryptedtype.JSON[map[string]int]](), true},
		{reflect.TypeFor[rotation.MigratingString](), true},
		{reflect.TypeFor[rotation.MigratingBytes](), true},
		{reflect.TypeFor[*encryptedtype.String](), false},
		{reflect.TypeFor[*rotation.MigratingString](), false},
		{reflect.TypeFor[rotation.Table](), false},
		{reflect.TypeFor[string](), false},
		{reflect.TypeFor[[]byte](), false},
	} {
		if got := coltype.Is(tc.t); got != tc.want {
			t.Errorf("Is(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

func TestScalar(t *testing.T) {
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[encryptedtype.String](), true},
		{reflect.TypeFor[encryptedtype.Bytes](), true},
		{reflect.TypeFor[rotation.MigratingString](), true},
		{reflect.TypeFor[rotation.MigratingBytes](), true},
		{reflect.TypeFor[encryptedtype.JSON[string]](), false},
		{reflect.TypeFor[*encryptedtype.String](), false},
		{reflect.TypeFor[string](), false},
	} {
		if got := coltype.Scalar(tc.t); got != tc.want {
			t.Errorf("Scalar(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

func ExampleIs() {
	fmt.Println(coltype.Is(reflect.TypeFor[encryptedtype.String]()))
	fmt.Println(coltype.Is(reflect.TypeFor[rotation.MigratingBytes]()))
	fmt.Println(coltype.Is(reflect.TypeFor[string]()))
	// Output:
	// true
	// true
	// false
}
