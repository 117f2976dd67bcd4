// Package model holds the Go types that the sqlc example's sqlc.yaml maps
// encrypted columns to, where an encryptedtype type needs a type argument:
// sqlc's go_type names a type, not an instantiation.
package model

import "github.com/colcrypt/colcrypt/encryptedtype"

// Profile is the JSON document stored, encrypted, in the profile column.
type Profile struct {
	Country   string   `json:"country"`
	Languages []string `json:"languages,omitempty"`
}

// EncryptedProfile is the column type of profile: a Profile stored as
// encrypted JSON.
type EncryptedProfile = encryptedtype.JSON[Profile]
