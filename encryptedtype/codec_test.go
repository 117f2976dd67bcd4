package encryptedtype

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

var wireFormat = regexp.MustCompile(`^v[1-9][0-9]*:[A-Za-z0-9_-]+$`)

func newCodec(t testing.TB, versions ...uint32) *Codec {
	t.Helper()
	var keys []keyprovider.Key
	for _, v := range versions {
		keys = append(keys, newKey(t, v))
	}
	return NewCodec(newStatic(t, versions[len(versions)-1], keys...))
}

func mustSeal(t testing.TB, c *Codec, plaintext string) []byte {
	t.Helper()
	v, err := c.Seal(context.Background(), []byte(plaintext))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The seed's five tests: round trip, two encryptions differ, tampered value
// rejected, truncated value rejected, other key rejected.

func TestRoundTrip(t *testing.T) {
	c := newCodec(t, 1)
	for _, pt := range []string{"sk_live_abc123def456", "", "Grüße 🔐", strings.Repeat("x", 100000)} {
		v := mustSeal(t, c, pt)
		if !wireFormat.Match(v) {
			t.Fatalf("value not in wire format: %.40q", v)
		}
		if bytes.Contains(v, []byte(pt)) && pt != "" {
			t.Fatal("value contains its plaintext")
		}
		got, err := c.Open(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != pt {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(pt))
		}
	}
}

func TestTwoEncryptionsDiffer(t *testing.T) {
	c := newCodec(t, 1)
	a, b := mustSeal(t, c, "hello"), mustSeal(t, c, "hello")
	if bytes.Equal(a, b) {
		t.Fatal("two encryptions of the same plaintext are equal")
	}
	// The nonces differ, not just the encoding.
	ra, _ := b64.DecodeString(string(a[3:]))
	rb, _ := b64.DecodeString(string(b[3:]))
	if bytes.Equal(ra[:NonceSize], rb[:NonceSize]) {
		t.Fatal("nonce reused")
	}
}

func TestTamperedRejected(t *testing.T) {
	c := newCodec(t, 1)
	v := mustSeal(t, c, "secret")
	raw, _ := b64.DecodeString(string(v[3:]))
	raw[14] ^= 0x01
	_, err := c.Open(context.Background(), []byte("v1:"+b64.EncodeToString(raw)))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestTruncatedRejected(t *testing.T) {
	c := newCodec(t, 1)
	v := mustSeal(t, c, "sk_live_abc123def456")
	// As the seed does it: cut the string.
	for cut := 1; cut < len(v); cut++ {
		got, err := c.Open(context.Background(), v[:len(v)-cut])
		if err == nil || got != nil {
			t.Fatalf("cut %d: accepted a truncated value", cut)
		}
	}
	// Cut the payload, re-encoded cleanly: the tag check must catch it.
	raw, _ := b64.DecodeString(string(v[3:]))
	_, err := c.Open(context.Background(), []byte("v1:"+b64.EncodeToString(raw[:len(raw)-10])))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestOtherKeyRejected(t *testing.T) {
	a, b := newCodec(t, 1), newCodec(t, 1)
	_, err := b.Open(context.Background(), mustSeal(t, a, "secret"))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

// Every single-bit flip of nonce, ciphertext and tag is rejected.
func TestEveryBitFlipRejected(t *testing.T) {
	c := newCodec(t, 1)
	v := mustSeal(t, c, "sk_live_abc123def456")
	raw, err := b64.DecodeString(string(v[3:]))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := range 8 {
			raw[i] ^= 1 << bit
			got, err := c.Open(context.Background(), []byte("v1:"+b64.EncodeToString(raw)))
			raw[i] ^= 1 << bit
			if !errors.Is(err, ErrAuth) || got != nil {
				t.Fatalf("byte %d bit %d: got (%d bytes, %v), want ErrAuth", i, bit, len(got), err)
			}
		}
	}
}

func TestVersionSwapRejected(t *testing.T) {
	c := newCodec(t, 1, 2)
	v := mustSeal(t, c, "secret") // under v2
	_, err := c.Open(context.Background(), append([]byte("v1:"), v[3:]...))
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestOldVersionsStayReadable(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	old := NewCodec(newStatic(t, 1, k1))
	v1 := mustSeal(t, old, "written under v1")
	c := NewCodec(newStatic(t, 2, k1, k2))
	v2 := mustSeal(t, c, "written under v2")
	if ver, _ := Version(v2); ver != 2 {
		t.Fatalf("new value under version %d, want 2", ver)
	}
	for _, v := range [][]byte{v1, v2} {
		if _, err := c.Open(context.Background(), v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Open(context.Background(), v2); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("got %v, want ErrUnknownVersion", err)
	}
}

func TestMalformedInput(t *testing.T) {
	c := newCodec(t, 1)
	good := mustSeal(t, c, "sk_live_abc123def456")
	payload := string(good[3:])
	raw, _ := b64.DecodeString(payload)
	cases := []struct {
		name, value string
		want        error
	}{
		{"empty", "", ErrNotEncrypted},
		{"plaintext", "alice@example.com", ErrNotEncrypted},
		{"payload only", payload, ErrNotEncrypted},
		{"no colon", "v1", ErrNotEncrypted},
		{"v only", "v:" + payload, ErrNotEncrypted},
		{"uppercase prefix", "V1:" + payload, ErrNotEncrypted},
		{"other letter", "x1:" + payload, ErrNotEncrypted},
		{"space", " v1:" + payload, ErrNotEncrypted},
		{"leading zero", "v01:" + payload, ErrMalformed},
		{"version zero", "v0:" + payload, ErrMalformed},
		{"version overflow", "v4294967296:" + payload, ErrMalformed},
		{"version too long", "v123456789012:" + payload, ErrMalformed},
		{"empty payload", "v1:", ErrMalformed},
		{"bad base64", "v1:" + payload[:10] + "*" + payload[11:], ErrMalformed},
		{"std alphabet", "v1:" + base64.RawStdEncoding.EncodeToString(append(raw, 0xfb, 0xff)), ErrMalformed},
		{"padding", "v1:" + base64.URLEncoding.EncodeToString(raw[:len(raw)-1]), ErrMalformed},
		{"newline", "v1:" + payload[:8] + "\n" + payload[8:], ErrMalformed},
		{"carriage return", "v1:" + payload[:8] + "\r" + payload[8:], ErrMalformed},
		{"CRLF", "v1:" + payload[:8] + "\r\n" + payload[8:], ErrMalformed},
		{"three line breaks", "v1:\n" + payload[:8] + "\n" + payload[8:] + "\n", ErrMalformed},
		{"trailing space", "v1:" + payload + " ", ErrMalformed},
		{"short", "v1:" + b64.EncodeToString(raw[:Overhead-1]), ErrMalformed},
		{"unknown version", "v9:" + payload, ErrUnknownVersion},
		{"max version unknown", "v4294967295:" + payload, ErrUnknownVersion},
		{"oversized", "v1:" + strings.Repeat("A", MaxValueSize), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, open := range []func(string) ([]byte, error){
				func(s string) ([]byte, error) { return c.Open(context.Background(), []byte(s)) },
				c.openString,
			} {
				got, err := open(tc.value)
				if !errors.Is(err, tc.want) || got != nil {
					t.Fatalf("got (%d bytes, %v), want %v", len(got), err, tc.want)
				}
				if tc.value != "" && len(tc.value) > 4 && strings.Contains(err.Error(), tc.value[4:]) {
					t.Fatal("error contains the input")
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		err  error
	}{
		{"v1:AAAA", 1, nil},
		{"v4294967295:AAAA", 4294967295, nil},
		{"v4294967296:AAAA", 0, ErrMalformed},
		{"v007:AAAA", 0, ErrMalformed},
		{"plain", 0, ErrNotEncrypted},
	} {
		got, err := Version([]byte(tc.in))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Version(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestOversizedPlaintextRefused(t *testing.T) {
	c := newCodec(t, 1)
	_, err := c.Seal(context.Background(), make([]byte, MaxValueSize))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
}

func TestContextCanceled(t *testing.T) {
	c := newCodec(t, 1)
	v := mustSeal(t, c, "x")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Seal(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Seal: got %v", err)
	}
	if _, err := c.Open(ctx, v); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open: got %v", err)
	}
}

func TestNoProvider(t *testing.T) {
	withDefault(t, nil)
	SetDefault(nil)
	if _, err := Seal(context.Background(), []byte("x")); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("Seal: got %v", err)
	}
	if _, err := Open(context.Background(), []byte("v1:AAAA")); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("Open: got %v", err)
	}
	if _, err := NewString("x").Value(); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("Value: got %v", err)
	}
	var s String
	if err := s.Scan("v1:AAAA"); !errors.Is(err, ErrNoProvider) {
		t.Fatalf("Scan: got %v", err)
	}
}

// reloading is a provider that learns version 2 only when reloaded.
type reloading struct {
	mu      sync.Mutex
	keys    *keyprovider.Static
	next    *keyprovider.Static
	reloads atomic.Int32
	fail    error // Reload loads nothing and returns fail
	warn    error // Reload loads next and returns warn
}

func (r *reloading) Active() (keyprovider.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys.Active()
}

func (r *reloading) Key(v uint32) (keyprovider.Key, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys.Key(v)
}

func (r *reloading) Reload(ctx context.Context) error {
	r.reloads.Add(1)
	if r.fail != nil {
		return r.fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = r.next
	return r.warn
}

func TestOpenReloadsOnUnknownVersion(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	other := NewCodec(newStatic(t, 2, k1, k2))
	v2 := mustSeal(t, other, "from another instance")

	r := &reloading{keys: newStatic(t, 1, k1), next: newStatic(t, 2, k1, k2)}
	c := NewCodec(r)
	got, err := c.Open(context.Background(), v2)
	if err != nil || string(got) != "from another instance" {
		t.Fatalf("got %q, %v", got, err)
	}
	if n := r.reloads.Load(); n != 1 {
		t.Fatalf("%d reloads, want 1", n)
	}
	// A version nobody has: one reload per Open, then ErrUnknownVersion.
	_, err = c.Open(context.Background(), append([]byte("v3:"), v2[3:]...))
	if !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("got %v, want ErrUnknownVersion", err)
	}

	failing := &reloading{keys: newStatic(t, 1, k1), fail: errors.New("database down")}
	_, err = NewCodec(failing).Open(context.Background(), v2)
	if !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "database down") {
		t.Fatalf("got %v, want ErrUnknownVersion naming the reload failure", err)
	}
}

// A Reload that reports an error but loaded the version (a warning about
// another version, or a refusal because a reload just ran) must not fail
// the value.
func TestOpenRetriesAfterReloadError(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	v2 := mustSeal(t, NewCodec(newStatic(t, 2, k1, k2)), "new version")
	r := &reloading{keys: newStatic(t, 1, k1), next: newStatic(t, 2, k1, k2), warn: errors.New("version 9 left out")}
	got, err := NewCodec(r).Open(context.Background(), v2)
	if err != nil || string(got) != "new version" {
		t.Fatalf("got %q, %v; want the value", got, err)
	}
}

// A reload the provider declines (it loaded a moment ago) is not a
// failure: the version is simply unknown.
func TestOpenThrottledReload(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	v2 := mustSeal(t, NewCodec(newStatic(t, 2, k1, k2)), "x")
	r := &reloading{keys: newStatic(t, 1, k1), fail: fmt.Errorf("%w: next reload allowed in 1s", keyprovider.ErrReloadThrottled)}
	_, err := NewCodec(r).Open(context.Background(), v2)
	if !errors.Is(err, ErrUnknownVersion) || errors.Is(err, keyprovider.ErrReloadThrottled) {
		t.Fatalf("got %v, want ErrUnknownVersion alone", err)
	}
}

// A version the provider stops holding (a retired key) is dropped from the
// cache on the first refusal.
func TestRetiredVersionLeavesCache(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	r := &reloading{keys: newStatic(t, 1, k1, k2), next: newStatic(t, 2, k2)}
	c := NewCodec(r)
	v1 := mustSeal(t, c, "old")
	if _, err := c.Open(context.Background(), v1); err != nil {
		t.Fatal(err)
	}
	if _, ok := (*c.cache.Load())[1]; !ok {
		t.Fatal("version 1 not cached after use")
	}
	_ = r.Reload(context.Background())
	if _, err := c.Open(context.Background(), v1); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("got %v, want ErrUnknownVersion", err)
	}
	if _, ok := (*c.cache.Load())[1]; ok {
		t.Fatal("the retired version is still cached")
	}
	if e := c.last.Load(); e != nil && e.key.Version() == 1 {
		t.Fatal("the retired version is still the last entry")
	}
	if _, err := c.Open(context.Background(), mustSeal(t, c, "new")); err != nil {
		t.Fatal(err)
	}
}

// The longest plaintext Seal accepts makes a value Open accepts, and one
// byte more is refused by Seal, not written and lost.
func TestSealOpenAtTheSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 64 MiB values")
	}
	for _, version := range []uint32{1, keyprovider.MaxVersion} {
		c := newCodec(t, version)
		prefix := len("v:") + len(strconv.FormatUint(uint64(version), 10))
		n := (MaxValueSize-prefix)*3/4 - Overhead // the largest plaintext whose value fits
		if prefix+b64.EncodedLen(n+Overhead) > MaxValueSize || prefix+b64.EncodedLen(n+1+Overhead) <= MaxValueSize {
			t.Fatalf("v%d: %d is not the largest plaintext that fits", version, n)
		}
		v, err := c.Seal(context.Background(), make([]byte, n))
		if err != nil {
			t.Fatalf("v%d: %d bytes: %v", version, n, err)
		}
		if len(v) > MaxValueSize {
			t.Fatalf("v%d: value of %d bytes", version, len(v))
		}
		if _, err := c.Open(context.Background(), v); err != nil {
			t.Fatalf("v%d: %d bytes sealed, then Open: %v", version, n, err)
		}
		if _, err := c.Seal(context.Background(), make([]byte, n+1)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("v%d: %d bytes: got %v, want ErrMalformed", version, n+1, err)
		}
	}
}

// A reloading provider hands out new Key values for the same versions; the
// codec must follow the material, not the first Key it saw.
func TestCacheFollowsKeyMaterial(t *testing.T) {
	k1 := newKey(t, 1)
	same, err := keyprovider.NewKey(1, k1.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r := &reloading{keys: newStatic(t, 1, k1), next: newStatic(t, 1, same)}
	c := NewCodec(r)
	v := mustSeal(t, c, "x")
	_ = r.Reload(context.Background())
	if _, err := c.Open(context.Background(), v); err != nil {
		t.Fatalf("same material under a new Key value: %v", err)
	}
	r.next = newStatic(t, 1, newKey(t, 1))
	_ = r.Reload(context.Background())
	if _, err := c.Open(context.Background(), v); !errors.Is(err, ErrAuth) {
		t.Fatalf("changed material: got %v, want ErrAuth", err)
	}
}

// A new Key value with the same version and material (keyprovider.Key.Equal)
// keeps the AEAD already built; another material gets a new one.
func TestCacheReusesAEADForEqualKey(t *testing.T) {
	k1 := newKey(t, 1)
	same, err := keyprovider.NewKey(1, k1.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec(newStatic(t, 1, k1))
	a1, err := c.aeadFor(k1)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.aeadFor(same)
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Error("an Equal key under a new Key value built a second AEAD")
	}
	if e := (*c.cache.Load())[1]; e == nil || e.key != same {
		t.Error("the cache does not hold the newest Key value")
	}
	a3, err := c.aeadFor(newKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if a3 == a1 {
		t.Error("other material under the same version reused the AEAD")
	}
}

func TestConcurrentUse(t *testing.T) {
	k1, k2 := newKey(t, 1), newKey(t, 2)
	withDefault(t, newStatic(t, 1, k1))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				pt := strings.Repeat(string(rune('a'+g)), i%40)
				v, err := NewString(pt).Value()
				if err != nil {
					errs <- err
					return
				}
				var s String
				if err := s.Scan(v); err != nil {
					errs <- err
					return
				}
				if s.Plaintext() != pt {
					errs <- errors.New("concurrent round trip returned another value")
					return
				}
				if g == 0 && i == 100 {
					// Switch provider mid-flight: readers must still read.
					SetDefault(newStatic(t, 2, k1, k2))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
