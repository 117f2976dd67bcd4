package cloudkek_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// countingKMS is a gocloud driver over a local key that counts the calls
// made to it, as a KMS bills them, and can be made unreachable.
type countingKMS struct {
	inner              *secrets.Keeper
	decrypts, encrypts atomic.Int64
	down               atomic.Bool
}

// errDenied is the error of the KMS while it is down: access was revoked.
var errDenied = errors.New("kms: AccessDeniedException: the caller may not use the key")

func newCountingKMS(b byte) *countingKMS {
	return &countingKMS{inner: localsecrets.NewKeeper([32]byte(bytes.Repeat([]byte{b}, 32)))}
}

func (k *countingKMS) Decrypt(ctx context.Context, ct []byte) ([]byte, error) {
	k.decrypts.Add(1)
	if k.down.Load() {
		return nil, errDenied
	}
	return k.inner.Decrypt(ctx, ct)
}

func (k *countingKMS) Encrypt(ctx context.Context, pt []byte) ([]byte, error) {
	k.encrypts.Add(1)
	if k.down.Load() {
		return nil, errDenied
	}
	return k.inner.Encrypt(ctx, pt)
}

func (k *countingKMS) Close() error            { return nil }
func (k *countingKMS) ErrorAs(error, any) bool { return false }
func (k *countingKMS) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errDenied) {
		return gcerrors.PermissionDenied
	}
	return gcerrors.Code(err)
}

var _ driver.Keeper = (*countingKMS)(nil)

// sameKey reports whether a and b are the same version and material.
func sameKey(a, b keyprovider.Key) bool {
	return a.Version() == b.Version() && bytes.Equal(a.Bytes(), b.Bytes())
}

// mutSource is a Source whose rows (or error) the test changes between
// reloads.
type mutSource struct {
	mu   sync.Mutex
	rows []keytable.WrappedKey
	err  error
}

func (s *mutSource) set(rows ...keytable.WrappedKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows, s.err = rows, nil
}

func (s *mutSource) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *mutSource) LoadKeys(context.Context) ([]keytable.WrappedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	rows := make([]keytable.WrappedKey, len(s.rows))
	for i, r := range s.rows {
		rows[i] = keytable.WrappedKey{Version: r.Version, Wrapped: bytes.Clone(r.Wrapped), Active: r.Active}
	}
	return rows, nil
}

// errSink collects what a provider reports through Options.OnError.
type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) report(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// take returns the errors reported since the last take.
func (s *errSink) take() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := s.errs
	s.errs = nil
	return errs
}

// TestEnvelopeCachingCloudReload: a key-table provider over a KMS KEK,
// reloaded after every change of the stored keys, asks the KMS to unwrap
// a stored key only when its wrapped form is new to it, and otherwise
// reuses the key it holds; every way an unwrap can fail on reload keeps
// serving what it had. Each step counts the KMS's Decrypt calls.
func TestEnvelopeCachingCloudReload(t *testing.T) {
	ctx := context.Background()
	kms := newCountingKMS(0x11)
	kek := cloudkek.New(secrets.NewKeeper(kms), "testkms")
	otherKEK := cloudkek.New(localsecrets.NewKeeper([32]byte(bytes.Repeat([]byte{0x22}, 32))), "otherkms")

	keys := map[uint32]keyprovider.Key{}
	var secretBytes [][]byte
	var ownEncrypts int64 // the test's own WrapKey calls through kms
	wrap := func(with *cloudkek.KEK, k keyprovider.Key) []byte {
		t.Helper()
		if with == kek {
			ownEncrypts++
		}
		w, err := with.WrapKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	row := func(v uint32, active bool) keytable.WrappedKey {
		t.Helper()
		k, ok := keys[v]
		if !ok {
			k, _ = keyprovider.GenerateKey(v)
			keys[v] = k
			secretBytes = append(secretBytes, k.Bytes())
		}
		return keytable.WrappedKey{Version: v, Wrapped: wrap(kek, k), Active: active}
	}
	// stored are the rows as they are in the source, so that a step can
	// keep a row's wrapped bytes as they are.
	stored := map[uint32]keytable.WrappedKey{}
	for _, v := range []uint32{1, 2} {
		stored[v] = row(v, v == 2)
	}
	src := &mutSource{}
	setRows := func(vs ...uint32) {
		rows := make([]keytable.WrappedKey, 0, len(vs))
		for _, v := range vs {
			rows = append(rows, stored[v])
		}
		src.set(rows...)
	}
	setRows(1, 2)
	sink := &errSink{}
	p, err := keytable.NewProvider(ctx, src, kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Nanosecond, OnError: sink.report})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n := kms.decrypts.Load(); n != 2 {
		t.Fatalf("%d KMS Decrypt calls at start-up for 2 versions, want 2", n)
	}
	held := map[uint32]keyprovider.Key{}
	for _, v := range []uint32{1, 2} {
		held[v], _ = p.Key(v)
		if !sameKey(held[v], keys[v]) {
			t.Fatalf("Key(%d) is not the stored key", v)
		}
	}

	// reload reloads the provider and checks how many KMS Decrypt calls it
	// made; wantErr is nil or what Reload's error must wrap.
	reload := func(step string, wantDecrypts int64, wantErr error) error {
		t.Helper()
		time.Sleep(time.Millisecond) // past MinReloadInterval
		before := kms.decrypts.Load()
		err := p.Reload(ctx)
		if n := kms.decrypts.Load() - before; n != wantDecrypts {
			t.Errorf("%s: %d KMS Decrypt calls, want %d", step, n, wantDecrypts)
		}
		switch {
		case wantErr == nil && err != nil:
			t.Errorf("%s: Reload = %v, want nil", step, err)
		case wantErr != nil && !errors.Is(err, wantErr):
			t.Errorf("%s: Reload = %v, want an error wrapping %v", step, err, wantErr)
		}
		if err != nil {
			assertNoLeak(t, step+": Reload error", err.Error(), secretBytes...)
		}
		return err
	}
	// warned checks that the step reported exactly one warning (or none
	// when want is ""), containing want.
	warned := func(step, want string) error {
		t.Helper()
		errs := sink.take()
		if want == "" {
			if len(errs) != 0 {
				t.Errorf("%s: reported %v, want nothing", step, errs)
			}
			return nil
		}
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), want) {
			t.Errorf("%s: reported %v, want one error saying %q", step, errs, want)
			return nil
		}
		assertNoLeak(t, step+": reported error", errs[0].Error(), secretBytes...)
		return errs[0]
	}
	// holds checks the versions held, the active one, and that every key
	// held before is the same Key value (caches keyed by it stay valid).
	holds := func(step string, active uint32, versions ...uint32) {
		t.Helper()
		if got := p.Versions(); !slices.Equal(got, versions) {
			t.Errorf("%s: Versions = %v, want %v", step, got, versions)
		}
		if k, _ := p.Active(); k.Version() != active {
			t.Errorf("%s: active version %d, want %d", step, k.Version(), active)
		}
		for _, v := range versions {
			k, err := p.Key(v)
			if err != nil || !sameKey(k, keys[v]) {
				t.Errorf("%s: Key(%d) = %v, %v; want the stored key", step, v, k, err)
				continue
			}
			if h, ok := held[v]; ok && k != h {
				t.Errorf("%s: Key(%d) is a new Key value for the same material", step, v)
			}
			held[v] = k
		}
	}

	// Unchanged rows: the keys held are reused, the KMS is not asked.
	for range 5 {
		reload("unchanged", 0, nil)
	}
	warned("unchanged", "")
	holds("unchanged", 2, 1, 2)

	// A new version: unwrapped once, then reused.
	stored[3] = row(3, false)
	setRows(1, 2, 3)
	reload("new version 3", 1, nil)
	reload("new version 3, again", 0, nil)
	warned("new version 3", "")
	holds("new version 3", 2, 1, 2, 3)

	// A version re-wrapped (a KEK rotation; a fresh nonce is enough to
	// change the bytes): unwrapped once, the Key value kept, and the new
	// wrapped bytes remembered so that the next reload reuses it.
	stored[1] = row(1, false)
	setRows(1, 2, 3)
	reload("re-wrapped version 1", 1, nil)
	reload("re-wrapped version 1, again", 0, nil)
	warned("re-wrapped version 1", "")
	holds("re-wrapped version 1", 2, 1, 2, 3)

	// A new active version.
	stored[4] = row(4, true)
	stored[2] = keytable.WrappedKey{Version: 2, Wrapped: stored[2].Wrapped}
	setRows(1, 2, 3, 4)
	reload("new active version 4", 1, nil)
	holds("new active version 4", 4, 1, 2, 3, 4)

	// The KMS goes down. Unchanged rows need no KMS.
	kms.down.Store(true)
	reload("KMS down, unchanged", 0, nil)
	warned("KMS down, unchanged", "")

	// A held version re-wrapped while the KMS is down: the unwrap fails,
	// the key held is kept, the failure is reported with the KMS's error
	// code, and every reload tries again until the KMS answers.
	kms.down.Store(false)
	stored[1] = row(1, false)
	kms.down.Store(true)
	setRows(1, 2, 3, 4)
	reload("KMS down, version 1 re-wrapped", 1, nil)
	if err := warned("KMS down, version 1 re-wrapped", "keeping the key held before"); err != nil {
		if !errors.Is(err, keyprovider.ErrUnwrap) || gcerrors.Code(err) != gcerrors.PermissionDenied || !strings.Contains(err.Error(), "cloudkek testkms") {
			t.Errorf("KMS down, version 1 re-wrapped: reported %v (code %v), want ErrUnwrap naming the KEK with the KMS's code", err, gcerrors.Code(err))
		}
	}
	holds("KMS down, version 1 re-wrapped", 4, 1, 2, 3, 4)
	reload("KMS down, version 1 re-wrapped, again", 1, nil)
	warned("KMS down, version 1 re-wrapped, again", "keeping the key held before")

	// A new active version while the KMS is down: the load fails and
	// changes nothing.
	kms.down.Store(false)
	stored[5] = row(5, true)
	stored[4] = keytable.WrappedKey{Version: 4, Wrapped: stored[4].Wrapped}
	kms.down.Store(true)
	setRows(1, 2, 3, 4, 5)
	if err := reload("KMS down, new active version 5", 2, keyprovider.ErrUnwrap); err != nil {
		if gcerrors.Code(err) != gcerrors.PermissionDenied || !strings.Contains(err.Error(), "active version 5") {
			t.Errorf("KMS down, new active version 5: Reload = %v (code %v)", err, gcerrors.Code(err))
		}
	}
	warned("KMS down, new active version 5", "active version 5")
	holds("KMS down, new active version 5", 4, 1, 2, 3, 4)

	// The KMS is back: version 1's new form and version 5 are unwrapped,
	// once.
	kms.down.Store(false)
	reload("KMS back", 2, nil)
	reload("KMS back, again", 0, nil)
	warned("KMS back", "")
	holds("KMS back", 5, 1, 2, 3, 4, 5)

	// A new version wrapped by a KMS key this instance cannot use: left
	// out, and tried again at every reload.
	k6, _ := keyprovider.GenerateKey(6)
	keys[6] = k6
	secretBytes = append(secretBytes, k6.Bytes())
	stored[6] = keytable.WrappedKey{Version: 6, Wrapped: wrap(otherKEK, k6)}
	setRows(1, 2, 3, 4, 5, 6)
	reload("version 6 under another KMS key", 1, nil)
	warned("version 6 under another KMS key", "version 6 left out")
	reload("version 6 under another KMS key, again", 1, nil)
	warned("version 6 under another KMS key, again", "version 6 left out")
	holds("version 6 under another KMS key", 5, 1, 2, 3, 4, 5)

	// A wrapped key moved to another version's row: the KMS decrypts it,
	// cloudkek refuses it. For a new version it is left out; a held
	// version keeps its key.
	stored[6] = keytable.WrappedKey{Version: 6, Wrapped: stored[3].Wrapped}
	setRows(1, 2, 3, 4, 5, 6)
	reload("version 3's key in version 6's row", 1, nil)
	warned("version 3's key in version 6's row", "wrapped for version 3")
	saved1 := stored[1]
	stored[1] = keytable.WrappedKey{Version: 1, Wrapped: stored[2].Wrapped}
	setRows(1, 2, 3, 4, 5)
	reload("version 2's key in version 1's row", 1, nil)
	warned("version 2's key in version 1's row", "keeping the key held before")
	holds("wrapped keys moved", 5, 1, 2, 3, 4, 5)

	// Other material stored for a held version: refused, the key held is
	// kept.
	other1, _ := keyprovider.GenerateKey(1)
	secretBytes = append(secretBytes, other1.Bytes())
	stored[1] = keytable.WrappedKey{Version: 1, Wrapped: wrap(kek, other1)}
	setRows(1, 2, 3, 4, 5)
	reload("other material for version 1", 1, nil)
	if err := warned("other material for version 1", "version 1"); err != nil && !errors.Is(err, keytable.ErrKeyChanged) {
		t.Errorf("other material for version 1: reported %v, want ErrKeyChanged", err)
	}
	holds("other material for version 1", 5, 1, 2, 3, 4, 5)
	stored[1] = saved1
	setRows(1, 2, 3, 4, 5)
	reload("version 1 restored", 0, nil) // the bytes it holds
	warned("version 1 restored", "")

	// A retired version (tombstone) is dropped without a KMS call, and
	// its key is not kept: stored again, it is unwrapped again.
	saved3 := stored[3]
	stored[3] = keytable.WrappedKey{Version: 3}
	setRows(1, 2, 3, 4, 5)
	reload("version 3 retired", 0, nil)
	warned("version 3 retired", "")
	holds("version 3 retired", 5, 1, 2, 4, 5)
	delete(held, 3)
	stored[3] = saved3
	setRows(1, 2, 3, 4, 5)
	reload("version 3 stored again", 1, nil)
	warned("version 3 stored again", "")
	holds("version 3 stored again", 5, 1, 2, 3, 4, 5)

	// A source that fails, or that does not hold exactly one active key,
	// changes nothing and costs no KMS call, even with a new version.
	errReset := errors.New("connection reset by peer")
	src.fail(errReset)
	reload("source down", 0, errReset)
	warned("source down", "connection reset")
	stored[7] = row(7, true)
	setRows(1, 2, 3, 4, 5, 7)
	reload("two active versions", 0, keytable.ErrCorrupt)
	warned("two active versions", "both active")
	stored[5] = keytable.WrappedKey{Version: 5, Wrapped: stored[5].Wrapped}
	stored[7] = keytable.WrappedKey{Version: 7, Wrapped: stored[7].Wrapped}
	setRows(1, 2, 3, 4, 5, 7)
	reload("no active version", 0, keytable.ErrNoActiveKey)
	warned("no active version", "none of the 6 stored versions is active")
	holds("failed loads", 5, 1, 2, 3, 4, 5)

	// A version whose row is gone is dropped, without a KMS call.
	stored[5] = keytable.WrappedKey{Version: 5, Wrapped: stored[5].Wrapped, Active: true}
	setRows(1, 2, 3, 5)
	reload("version 4 removed", 0, nil)
	warned("version 4 removed", "")
	holds("version 4 removed", 5, 1, 2, 3, 5)

	if n := kms.encrypts.Load() - ownEncrypts; n != 0 {
		t.Errorf("the provider made %d KMS Encrypt calls, want 0", n)
	}
}
