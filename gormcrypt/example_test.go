package gormcrypt_test

import (
	"fmt"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Customer has an encrypted, uniquely indexed, case-insensitive email.
type Customer struct {
	ID        uint
	Email     encryptedtype.String
	EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:customers.email;source:Email"`
}

func Example() {
	// Data keys and blind-index root keys are separate keyrings. In
	// production: keyprovider.FromEnv() and
	// keyprovider.FromEnvVars("COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY").
	dataKey, _ := keyprovider.GenerateKey(1)
	dataKeys, _ := keyprovider.NewStatic(1, dataKey)
	indexKey, _ := keyprovider.GenerateKey(1)
	indexKeys, _ := keyprovider.NewStatic(1, indexKey)
	encryptedtype.SetDefault(dataKeys)
	defer encryptedtype.SetDefault(nil)

	emails, err := blindindex.New("customers.email", indexKeys, blindindex.Config{
		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
	})
	if err != nil {
		panic(err)
	}
	db, err := gorm.Open(sqlite.Open(":memory:"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		panic(err)
	}
	sqlDB, _ := db.DB()
	sqlDB.SetMaxOpenConns(1)
	defer sqlDB.Close()
	if err := db.Use(gormcrypt.New(emails)); err != nil {
		panic(err)
	}
	if err := db.AutoMigrate(&Customer{}); err != nil {
		panic(err)
	}

	db.Create(&Customer{Email: encryptedtype.NewString("Alice@Example.com")})

	var c Customer
	err = db.Scopes(gormcrypt.Where("Email", "alice@example.COM")).First(&c).Error
	fmt.Println(c.ID, c.Email.Plaintext(), err)

	err = db.Create(&Customer{Email: encryptedtype.NewString("ALICE@example.com")}).Error
	fmt.Println("duplicate rejected:", err != nil)
	// Output:
	// 1 Alice@Example.com <nil>
	// duplicate rejected: true
}
