package keytable

import (
	"errors"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// Errors of this package, matched with errors.Is. Besides these, an
// operation on a version the table does not hold returns an error wrapping
// keyprovider.ErrUnknownVersion, a version outside 1 … MaxVersion one
// wrapping keyprovider.ErrInvalidKey, and KEK failures wrap
// keyprovider.ErrWrap or keyprovider.ErrUnwrap.
var (
	// ErrNoActiveKey is returned when the source holds no active key, so
	// there is nothing to write under.
	ErrNoActiveKey = errors.New("keytable: no active key")

	// ErrCorrupt is returned when the source holds something the key table
	// cannot: two active keys, one version twice, a version out of range.
	ErrCorrupt = errors.New("keytable: inconsistent key table")

	// ErrKeyChanged is reported when a version the provider holds comes
	// back from a load with different key material. A version names one
	// key forever, so the provider keeps the key it had.
	ErrKeyChanged = errors.New("keytable: key material of a held version changed")

	// ErrReloadThrottled is returned by Provider.Reload when it is called
	// again within Options.MinReloadInterval. It is
	// keyprovider.ErrReloadThrottled, which encryptedtype.Codec.Open
	// recognises.
	ErrReloadThrottled = keyprovider.ErrReloadThrottled

	// ErrVersionExists is returned by Table.Add for a version the table
	// already holds, retired or not.
	ErrVersionExists = errors.New("keytable: key version already exists")

	// ErrRetired is returned for a version that Table.Retire retired: its
	// row stays in the table as a tombstone (empty key, never active) so
	// that the version number is never given to another key. Table.Add
	// and Table.Import refuse such a version (the error also matches
	// ErrVersionExists or ErrImportConflict), and Table.Activate and
	// Table.Retire report it (the error also matches
	// keyprovider.ErrUnknownVersion).
	ErrRetired = errors.New("keytable: key version retired")

	// ErrActiveKey is returned by Table.Retire for the active version,
	// which can never be retired (activate another version first).
	ErrActiveKey = errors.New("keytable: cannot retire the active key version")

	// ErrNoUsageCheck is returned by Table.Retire when neither a usage
	// check nor Force is given.
	ErrNoUsageCheck = errors.New("keytable: retiring a key version needs a usage check or Force")

	// ErrKeyInUse is returned by Table.Retire when the usage check says
	// that values may still be under the version.
	ErrKeyInUse = errors.New("keytable: key version still in use")

	// ErrImportConflict is returned by Table.Import when the table already
	// holds one of the versions with other key material, or another active
	// version.
	ErrImportConflict = errors.New("keytable: import conflicts with the key table")
)
