package cloudkek_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"
	"gocloud.dev/secrets/driver"
	"gocloud.dev/secrets/localsecrets"

	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/cloudkek"
	"github.com/colcrypt/colcrypt/keyprovider/keytable"
)

func secretURL(t *testing.T, b byte) (string, []byte) {
	t.Helper()
	sk := bytes.Repeat([]byte{b}, 32)
	return "base64key://" + base64.URLEncoding.EncodeToString(sk), sk
}

func open(t *testing.T, url string) *cloudkek.KEK {
	t.Helper()
	k, err := cloudkek.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

func assertNoLeak(t *testing.T, what, text string, secrets ...[]byte) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{string(s), base64.URLEncoding.EncodeToString(s), base64.StdEncoding.EncodeToString(s), fmt.Sprintf("%x", s)} {
			if strings.Contains(text, form) {
				t.Errorf("%s leaks a secret: %q", what, text)
			}
		}
	}
}

func TestRoundTripAndVersionBinding(t *testing.T) {
	ctx := context.Background()
	url, sk := secretURL(t, 0x11)
	kek := open(t, url)
	key, _ := keyprovider.GenerateKey(4)
	w, err := kek.WrapKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	assertNoLeak(t, "wrapped key", string(w), key.Bytes())
	got, err := kek.UnwrapKey(ctx, 4, w)
	if err != nil || got.Version() != 4 || !bytes.Equal(got.Bytes(), key.Bytes()) {
		t.Fatalf("UnwrapKey = %v, %v", got, err)
	}
	// Another version's row.
	_, err = kek.UnwrapKey(ctx, 5, w)
	if !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "wrapped for version 4") {
		t.Fatalf("UnwrapKey(5) = %v", err)
	}
	// Another keeper.
	otherURL, _ := secretURL(t, 0x22)
	_, err = open(t, otherURL).UnwrapKey(ctx, 4, w)
	if !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "cloudkek base64key") {
		t.Fatalf("other keeper: %v", err)
	}
	// Altered.
	bad := bytes.Clone(w)
	bad[len(bad)-1] ^= 1
	if _, err := kek.UnwrapKey(ctx, 4, bad); !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("altered: %v", err)
	}
	// Something the keeper decrypts but cloudkek did not wrap.
	foreign, _ := localsecrets.NewKeeper([32]byte(sk)).Encrypt(ctx, []byte("hello"))
	if _, err := kek.UnwrapKey(ctx, 4, foreign); !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "not a key wrapped by cloudkek") {
		t.Fatalf("foreign: %v", err)
	}
	if _, err := kek.WrapKey(ctx, keyprovider.Key{}); !errors.Is(err, keyprovider.ErrWrap) {
		t.Fatalf("zero key: %v", err)
	}
	for _, s := range []string{fmt.Sprint(kek), fmt.Sprintf("%+v", kek)} {
		assertNoLeak(t, "printed KEK", s, sk)
	}
}

func TestOpenErrorsDoNotLeakURL(t *testing.T) {
	ctx := context.Background()
	sk := bytes.Repeat([]byte{0x33}, 32)
	enc := base64.URLEncoding.EncodeToString(sk)
	for _, url := range []string{
		"nosuchkms://" + enc,        // unregistered scheme
		"base64key://" + enc[:10],   // bad key
		"base64key://" + enc + "?x", // bad parameter
		"%zz" + enc,                 // not a URL
		enc,                         // no scheme
	} {
		_, err := cloudkek.Open(ctx, url)
		if err == nil {
			t.Errorf("Open(%q) succeeded", url)
			continue
		}
		if strings.Contains(err.Error(), enc[:10]) {
			t.Errorf("Open error leaks the URL: %q", err)
		}
	}
	_, err := cloudkek.Open(ctx, "nosuchkms://x")
	if !strings.Contains(err.Error(), `"nosuchkms"`) || !strings.Contains(err.Error(), "base64key") {
		t.Errorf("unregistered scheme error %q should name the scheme and the linked ones", err)
	}
}

// downKeeper is a gocloud driver whose KMS cannot be reached.
type downKeeper struct{}

var errDown = errors.New("dial tcp 10.0.0.1:443: connect: connection refused")

func (downKeeper) Decrypt(context.Context, []byte) ([]byte, error) { return nil, errDown }
func (downKeeper) Encrypt(context.Context, []byte) ([]byte, error) { return nil, errDown }
func (downKeeper) Close() error                                    { return nil }
func (downKeeper) ErrorAs(error, any) bool                         { return false }
func (downKeeper) ErrorCode(error) gcerrors.ErrorCode              { return gcerrors.Internal }

var _ driver.Keeper = downKeeper{}

type memSource []keytable.WrappedKey

func (s memSource) LoadKeys(context.Context) ([]keytable.WrappedKey, error) { return s, nil }

// TestUnavailableKMSAtStartup: a key-table provider whose KMS is down at
// start-up fails with an error that names the KMS and keeps its code.
func TestUnavailableKMSAtStartup(t *testing.T) {
	ctx := context.Background()
	url, _ := secretURL(t, 0x11)
	good := open(t, url)
	key, _ := keyprovider.GenerateKey(1)
	w, err := good.WrapKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	down := cloudkek.New(secrets.NewKeeper(downKeeper{}), "awskms")

	_, err = keytable.NewProvider(ctx, memSource{{Version: 1, Wrapped: w, Active: true}}, down, keytable.Options{})
	if err == nil {
		t.Fatal("NewProvider succeeded with the KMS down")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"cloudkek awskms", "active version 1", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Errorf("error does not wrap ErrUnwrap")
	}
	if gcerrors.Code(err) != gcerrors.Internal {
		t.Errorf("gcerrors.Code = %v, want Internal", gcerrors.Code(err))
	}
	assertNoLeak(t, "error", err.Error(), key.Bytes())

	if _, err := down.WrapKey(ctx, key); !errors.Is(err, keyprovider.ErrWrap) || !strings.Contains(err.Error(), "cloudkek awskms") {
		t.Errorf("WrapKey with the KMS down = %v", err)
	}
}

// TestEnvelopeCachingCloud: with a KMS KEK, start-up unwraps each version
// once and then 10,000 reads and writes make no KMS call.
func TestEnvelopeCachingCloud(t *testing.T) {
	ctx := context.Background()
	url, _ := secretURL(t, 0x11)
	kek := &countingKeeper{kek: open(t, url)}
	var src memSource
	for v := uint32(1); v <= 3; v++ {
		k, _ := keyprovider.GenerateKey(v)
		w, err := kek.kek.WrapKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, keytable.WrappedKey{Version: v, Wrapped: w, Active: v == 3})
	}
	p, err := keytable.NewProvider(ctx, src, kek, keytable.Options{RefreshInterval: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if kek.n != 3 {
		t.Fatalf("%d KMS calls at start-up for 3 versions", kek.n)
	}
	for i := range 10_000 {
		k, err := p.Active()
		if err != nil || k.Version() != 3 {
			t.Fatal(k, err)
		}
		if _, err := p.Key(uint32(i%3 + 1)); err != nil {
			t.Fatal(err)
		}
	}
	if kek.n != 3 {
		t.Fatalf("%d KMS calls after 10,000 lookups, want still 3", kek.n)
	}
}

type countingKeeper struct {
	kek *cloudkek.KEK
	n   int // only the provider's load goroutine calls it here
}

func (c *countingKeeper) WrapKey(ctx context.Context, k keyprovider.Key) ([]byte, error) {
	c.n++
	return c.kek.WrapKey(ctx, k)
}

func (c *countingKeeper) UnwrapKey(ctx context.Context, v uint32, w []byte) (keyprovider.Key, error) {
	c.n++
	return c.kek.UnwrapKey(ctx, v, w)
}
