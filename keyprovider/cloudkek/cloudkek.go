// Package cloudkek is a keyprovider.KEK backed by gocloud.dev/secrets: AWS
// KMS, Google Cloud KMS, Azure Key Vault, HashiCorp Vault's transit engine,
// or a local key, chosen by URL.
//
// The data keys in the key table (package keytable) are wrapped by the
// KMS: the KEK never leaves it, and every application instance asks it to
// unwrap each key version once, when the version is first loaded. A
// reload asks again only for a stored wrapped key that is new to it (a
// new version, or one re-wrapped by a KEK rotation), and asks again at
// every reload while such a key is not taken (it does not unwrap, or a
// held version's material changed); reading and writing values never
// calls the KMS.
//
//	import _ "gocloud.dev/secrets/awskms" // the driver, for its URL scheme
//
//	kek, err := cloudkek.Open(ctx, "awskms://alias/colcrypt-kek?region=eu-west-1")
//	defer kek.Close()
//	table, err := keytable.NewTable(db, kek, keytable.Config{})
//
// Import the gocloud driver of the KMS you use, and only that one:
// gocloud.dev/secrets/awskms ("awskms://"), gcpkms ("gcpkms://"),
// azurekeyvault ("azurekeyvault://"), gocloud.dev/secrets/hashivault (a
// module of its own, "hashivault://") or localsecrets ("base64key://", for
// tests and development). This package imports none of them, so a program
// compiles only the SDK it uses, and packages keyprovider and encryptedtype
// import no cloud SDK at all.
//
// The plaintext given to the KMS is the key's version and the key, behind
// a format tag, so the KMS's authenticated encryption binds the version to
// the key: a wrapped key moved to another version's row fails to unwrap.
package cloudkek

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"gocloud.dev/secrets"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// magic starts the plaintext given to the KMS: "ccd1" || version (4 bytes,
// big-endian) || key (32 bytes).
const magic = "ccd1"

const plaintextSize = len(magic) + 4 + keyprovider.KeySize

// KEK wraps and unwraps data keys with a gocloud.dev/secrets Keeper. It is
// safe for concurrent use.
type KEK struct {
	keeper *secrets.Keeper
	name   string
	owned  bool // opened by Open, closed by Close
}

// Open opens the Keeper at the gocloud URL (see the package
// documentation) and returns a KEK using it. The driver for the URL's
// scheme must be imported. The KEK is named after the scheme ("cloudkek
// awskms") in its errors and when printed; the URL itself never appears,
// since for some schemes (base64key) it is the key. Opening does not
// contact the KMS: an unreachable KMS shows when the first key is wrapped
// or unwrapped, with an error naming the scheme.
//
// Close releases the Keeper.
func Open(ctx context.Context, urlstr string) (*KEK, error) {
	u, err := url.Parse(urlstr)
	if err != nil || u.Scheme == "" {
		return nil, errors.New("cloudkek: not a gocloud secrets URL (want scheme://…, such as awskms://alias/name?region=…)")
	}
	mux := secrets.DefaultURLMux()
	if !mux.ValidKeeperScheme(u.Scheme) {
		return nil, fmt.Errorf("cloudkek: no gocloud secrets driver for scheme %q is linked in (import it, for example _ \"gocloud.dev/secrets/awskms\"); linked: %v", u.Scheme, mux.KeeperSchemes())
	}
	keeper, err := mux.OpenKeeperURL(ctx, u)
	if err != nil {
		// The driver's error, not the URL: for base64key the URL is the
		// key, and gocloud's own drivers keep it out of their errors.
		return nil, fmt.Errorf("cloudkek %s: opening the keeper: %w", u.Scheme, err)
	}
	return &KEK{keeper: keeper, name: u.Scheme, owned: true}, nil
}

// New returns a KEK using keeper, named name in errors (for example
// "awskms"). The caller keeps ownership of keeper: Close does not close it.
func New(keeper *secrets.Keeper, name string) *KEK {
	if name == "" {
		name = "keeper"
	}
	return &KEK{keeper: keeper, name: name}
}

// String returns "cloudkek <name>".
func (k *KEK) String() string {
	if k == nil {
		return "cloudkek <nil>"
	}
	return "cloudkek " + k.name
}

// LogValue implements slog.LogValuer.
func (k *KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Close closes the Keeper if Open opened it.
func (k *KEK) Close() error {
	if k == nil || !k.owned {
		return nil
	}
	return k.keeper.Close()
}

// WrapKey encrypts key and its version with the KMS. Errors wrap
// keyprovider.ErrWrap and the gocloud error (gcerrors.Code reads its
// code) and name the KEK.
func (k *KEK) WrapKey(ctx context.Context, key keyprovider.Key) ([]byte, error) {
	if k == nil || k.keeper == nil {
		return nil, fmt.Errorf("%w: nil cloudkek.KEK", keyprovider.ErrWrap)
	}
	if !key.Valid() {
		return nil, fmt.Errorf("%w: %s: zero Key", keyprovider.ErrWrap, k)
	}
	secret := key.Bytes()
	defer clear(secret)
	pt := make([]byte, 0, plaintextSize)
	pt = append(pt, magic...)
	pt = binary.BigEndian.AppendUint32(pt, key.Version())
	pt = append(pt, secret...)
	defer clear(pt)
	ct, err := k.keeper.Encrypt(ctx, pt)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: version %d: %w", keyprovider.ErrWrap, k, key.Version(), err)
	}
	return ct, nil
}

// UnwrapKey decrypts a wrapped key with the KMS and checks that it is a
// key WrapKey wrapped for version. Errors wrap keyprovider.ErrUnwrap (and
// the gocloud error, when the KMS failed) and name the KEK.
func (k *KEK) UnwrapKey(ctx context.Context, version uint32, wrapped []byte) (keyprovider.Key, error) {
	if k == nil || k.keeper == nil {
		return keyprovider.Key{}, fmt.Errorf("%w: nil cloudkek.KEK", keyprovider.ErrUnwrap)
	}
	pt, err := k.keeper.Decrypt(ctx, wrapped)
	if err != nil {
		return keyprovider.Key{}, fmt.Errorf("%w: %s: version %d: %w", keyprovider.ErrUnwrap, k, version, err)
	}
	defer clear(pt)
	if len(pt) != plaintextSize || !bytes.Equal(pt[:len(magic)], []byte(magic)) {
		return keyprovider.Key{}, fmt.Errorf("%w: %s: version %d: not a key wrapped by cloudkek", keyprovider.ErrUnwrap, k, version)
	}
	if got := binary.BigEndian.Uint32(pt[len(magic):]); got != version {
		return keyprovider.Key{}, fmt.Errorf("%w: %s: the key stored for version %d was wrapped for version %d", keyprovider.ErrUnwrap, k, version, got)
	}
	key, err := keyprovider.NewKey(version, pt[len(magic)+4:])
	if err != nil {
		return keyprovider.Key{}, fmt.Errorf("%w: %s: %w", keyprovider.ErrUnwrap, k, err)
	}
	return key, nil
}

var _ keyprovider.KEK = (*KEK)(nil)
