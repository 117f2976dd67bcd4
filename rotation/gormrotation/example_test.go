package gormrotation_test

import (
	"fmt"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation/gormrotation"
)

// User is a GORM model with two encrypted columns and a blind index.
type User struct {
	ID        uint
	Name      string
	Email     encryptedtype.String
	EmailBidx string `colcrypt:"blindindex:users.email;source:Email"`
	Phone     *encryptedtype.String
}

func ExampleDescribe() {
	indexKey, _ := keyprovider.GenerateKey(1)
	indexKeys, _ := keyprovider.NewStatic(1, indexKey)
	emails, err := blindindex.New("users.email", indexKeys, blindindex.Config{})
	if err != nil {
		panic(err)
	}
	// Describe only parses the model: any GORM dialector will do, and the
	// naming strategy is the one the application uses.
	db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	table, err := gormrotation.Describe(db, &User{}, emails)
	if err != nil {
		panic(err)
	}
	fmt.Println("table", table.Name, "primary key", table.PrimaryKey)
	for _, c := range table.Columns {
		fmt.Print("encrypted column ", c.Name)
		for _, ix := range c.Indexes {
			fmt.Print(", blind index ", ix.Column)
		}
		fmt.Println()
	}
	// Output:
	// table users primary key id
	// encrypted column email, blind index email_bidx
	// encrypted column phone
}
