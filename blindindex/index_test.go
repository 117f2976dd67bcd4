package blindindex_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/keyprovider"
)

func testKey(t testing.TB, version uint32, fill byte) keyprovider.Key {
	t.Helper()
	k, err := keyprovider.NewKey(version, bytes.Repeat([]byte{fill}, keyprovider.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testKeyring(t testing.TB, active uint32, keys ...keyprovider.Key) *keyprovider.Static {
	t.Helper()
	ks, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func mustNew(t testing.TB, name string, keys blindindex.Keyring, cfg blindindex.Config) *blindindex.Index {
	t.Helper()
	ix, err := blindindex.New(name, keys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func mustCompute(t testing.TB, ix *blindindex.Index, s string) string {
	t.Helper()
	v, err := ix.Compute(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var email = blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold)

func TestNormalisationMakesEqualValues(t *testing.T) {
	ix := mustNew(t, "users.email", testKeyring(t, 1, testKey(t, 1, 1)), blindindex.Config{Normalize: email})
	a := mustCompute(t, ix, "a@x.com")
	for _, s := range []string{"A@x.com", " a@X.COM\n", "ａ@x.com"} {
		if got := mustCompute(t, ix, s); got != a {
			t.Errorf("Compute(%q) = %s, want %s (same as a@x.com)", s, got, a)
		}
	}
	if got := mustCompute(t, ix, "b@x.com"); got == a {
		t.Error("b@x.com has the same index value as a@x.com")
	}
	if !ix.Equal("A@X.com ", "a@x.com") || ix.Equal("a@x.com", "b@x.com") {
		t.Error("Equal disagrees with the normaliser")
	}
}

func TestIndexesAreSeparated(t *testing.T) {
	ks := testKeyring(t, 1, testKey(t, 1, 1))
	seen := map[string]string{}
	configs := map[string]blindindex.Config{
		"users.email":        {},
		"users.backup_email": {},
		"users.email/bits":   {Bits: 255},
		"users.email/slow":   {Slow: &blindindex.Argon2id{Time: 1, MemoryKiB: 64}},
	}
	for label, cfg := range configs {
		name, _, _ := strings.Cut(label, "/")
		v := mustCompute(t, mustNew(t, name, ks, cfg), "same@example.com")
		_, mac, _ := strings.Cut(v, ":")
		for prev, pv := range seen {
			_, pmac, _ := strings.Cut(pv, ":")
			if strings.HasPrefix(pmac, mac[:20]) || strings.HasPrefix(mac, pmac[:20]) {
				t.Errorf("%s and %s give related values %s and %s", label, prev, v, pv)
			}
		}
		seen[label] = v
	}
	if v := seen["users.email/slow"]; !strings.HasPrefix(v, "a1:") {
		t.Errorf("slow value %s does not start with a1:", v)
	}
	if v := seen["users.email"]; !strings.HasPrefix(v, "b1:") {
		t.Errorf("fast value %s does not start with b1:", v)
	}
}

func TestTruncation(t *testing.T) {
	ks := testKeyring(t, 7, testKey(t, 7, 9))
	for bits := 1; bits <= blindindex.MaxBits; bits++ {
		ix := mustNew(t, "t.bits", ks, blindindex.Config{Bits: bits})
		if ix.Bits() != bits {
			t.Fatalf("Bits() = %d, want %d", ix.Bits(), bits)
		}
		for _, in := range []string{"", "a", "hello world"} {
			v := mustCompute(t, ix, in)
			prefix, payload, ok := strings.Cut(v, ":")
			if !ok || prefix != "b7" {
				t.Fatalf("bits %d: value %q has no b7: prefix", bits, v)
			}
			raw, err := base64.RawURLEncoding.Strict().DecodeString(payload)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) != (bits+7)/8 {
				t.Fatalf("bits %d: %d bytes", bits, len(raw))
			}
			if unused := 8*len(raw) - bits; raw[len(raw)-1]&(1<<unused-1) != 0 {
				t.Fatalf("bits %d: unused low bits of %08b are not zero", bits, raw[len(raw)-1])
			}
			if cur, err := ix.IsCurrent(v); err != nil || !cur {
				t.Fatalf("bits %d: IsCurrent(%s) = %v, %v", bits, v, cur, err)
			}
		}
	}
	if ix := mustNew(t, "t.bits", ks, blindindex.Config{}); ix.Bits() != blindindex.MaxBits {
		t.Errorf("default Bits() = %d, want %d", ix.Bits(), blindindex.MaxBits)
	}
}

func TestIsCurrentRejectsOtherShapes(t *testing.T) {
	ks := testKeyring(t, 1, testKey(t, 1, 1))
	full := mustNew(t, "users.email", ks, blindindex.Config{})
	short := mustNew(t, "users.email", ks, blindindex.Config{Bits: 64})
	v := mustCompute(t, short, "x")
	if _, err := full.IsCurrent(v); !errors.Is(err, blindindex.ErrMalformed) {
		t.Errorf("full-length IsCurrent of a 64-bit value: %v, want ErrMalformed", err)
	}
	slowValue := "a1:" + strings.Repeat("A", 43)
	if _, err := full.IsCurrent(slowValue); !errors.Is(err, blindindex.ErrMalformed) {
		t.Errorf("fast IsCurrent of a slow value: %v, want ErrMalformed", err)
	}
}

func TestRotation(t *testing.T) {
	k1, k2 := testKey(t, 1, 1), testKey(t, 2, 2)
	old := mustNew(t, "users.email", testKeyring(t, 1, k1), blindindex.Config{Normalize: email})
	v1 := mustCompute(t, old, "a@x.com")

	// Version 2 becomes active; version 1 stays live.
	ix := mustNew(t, "users.email", testKeyring(t, 2, k1, k2), blindindex.Config{Normalize: email})
	v2 := mustCompute(t, ix, "A@x.com")
	if v2 == v1 || !strings.HasPrefix(v2, "b2:") {
		t.Fatalf("after rotation Compute = %s (before: %s)", v2, v1)
	}
	got, err := ix.Lookup("a@X.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != v1 || got[1] != v2 {
		t.Errorf("Lookup = %v, want [%s %s]", got, v1, v2)
	}
	if cur, err := ix.IsCurrent(v1); err != nil || cur {
		t.Errorf("IsCurrent(old) = %v, %v, want false", cur, err)
	}
	if cur, err := ix.IsCurrent(v2); err != nil || !cur {
		t.Errorf("IsCurrent(new) = %v, %v, want true", cur, err)
	}
	if a, o, err := ix.LookupPair("A@x.com "); err != nil || a != v2 || o != v1 {
		t.Errorf("LookupPair = %s, %s, %v, want %s, %s", a, o, err, v2, v1)
	}
	if a, o, err := old.LookupPair("a@x.com"); err != nil || a != v1 || o != v1 {
		t.Errorf("LookupPair with one version = %s, %s, %v, want %s twice", a, o, err, v1)
	}
	three := mustNew(t, "users.email", testKeyring(t, 2, k1, k2, testKey(t, 3, 3)), blindindex.Config{Normalize: email})
	if _, _, err := three.LookupPair("a@x.com"); !errors.Is(err, blindindex.ErrTooManyVersions) {
		t.Errorf("LookupPair with three versions: %v, want ErrTooManyVersions", err)
	}
	if got, err := ix.ComputeVersion(1, "a@x.com"); err != nil || got != v1 {
		t.Errorf("ComputeVersion(1) = %s, %v, want %s", got, err, v1)
	}
	if ver, err := blindindex.Version(v1); err != nil || ver != 1 {
		t.Errorf("Version = %d, %v", ver, err)
	}
}

// brokenKeyring lists versions it does not hold, or none.
type brokenKeyring struct {
	*keyprovider.Static
	versions []uint32
}

func (b brokenKeyring) Versions() []uint32 { return b.versions }

// failingKeyring has no active key.
type failingKeyring struct{ brokenKeyring }

func (failingKeyring) Active() (keyprovider.Key, error) {
	return keyprovider.Key{}, errors.New("keyring is down")
}

func TestKeyringErrors(t *testing.T) {
	const secret = "secret-plaintext@example.com"
	ks := testKeyring(t, 1, testKey(t, 1, 1))

	ix := mustNew(t, "users.email", brokenKeyring{ks, []uint32{1, 5}}, blindindex.Config{})
	_, err := ix.Lookup(secret)
	if !errors.Is(err, blindindex.ErrUnknownVersion) {
		t.Errorf("Lookup with a missing version: %v, want ErrUnknownVersion", err)
	}
	if _, _, err := ix.LookupPair(secret); !errors.Is(err, blindindex.ErrUnknownVersion) {
		t.Errorf("LookupPair with a missing version: %v, want ErrUnknownVersion", err)
	}
	if _, err := ix.ComputeVersion(5, secret); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("ComputeVersion(5): %v, want ErrUnknownVersion", err)
	}

	ix = mustNew(t, "users.email", brokenKeyring{ks, nil}, blindindex.Config{})
	_, err2 := ix.Lookup(secret)
	if !errors.Is(err2, blindindex.ErrNoVersions) {
		t.Errorf("Lookup with no versions: %v, want ErrNoVersions", err2)
	}

	ix = mustNew(t, "users.email", failingKeyring{brokenKeyring{ks, []uint32{1}}}, blindindex.Config{})
	_, err3 := ix.Compute(secret)
	if err3 == nil {
		t.Error("Compute with a failing keyring: no error")
	}
	if _, err := ix.IsCurrent("b1:AAAA"); err == nil {
		t.Error("IsCurrent with a failing keyring: no error")
	}
	for _, e := range []error{err, err2, err3} {
		if e != nil && strings.Contains(e.Error(), secret) {
			t.Errorf("error %q contains the plaintext", e)
		}
	}

	if _, err := blindindex.New("users.email", nil, blindindex.Config{}); !errors.Is(err, blindindex.ErrConfig) {
		t.Errorf("New with nil keyring: %v, want ErrConfig", err)
	}
}

// reloadingKeyring hands out a new Key value for every call, as a keyring
// that reloads from a table does.
type reloadingKeyring struct {
	mu     sync.Mutex
	secret byte
}

func (r *reloadingKeyring) key() keyprovider.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, _ := keyprovider.NewKey(1, bytes.Repeat([]byte{r.secret}, 32))
	return k
}
func (r *reloadingKeyring) Active() (keyprovider.Key, error) { return r.key(), nil }
func (r *reloadingKeyring) Key(v uint32) (keyprovider.Key, error) {
	if v != 1 {
		return keyprovider.Key{}, keyprovider.ErrUnknownVersion
	}
	return r.key(), nil
}
func (r *reloadingKeyring) Versions() []uint32 { return []uint32{1} }

func TestReloadedKeys(t *testing.T) {
	r := &reloadingKeyring{secret: 1}
	ix := mustNew(t, "users.email", r, blindindex.Config{})
	want := mustCompute(t, mustNew(t, "users.email", testKeyring(t, 1, testKey(t, 1, 1)), blindindex.Config{}), "x")
	for range 3 {
		if got := mustCompute(t, ix, "x"); got != want {
			t.Fatalf("Compute = %s, want %s", got, want)
		}
	}
	// Same version, new material: the keyring is the source of truth.
	r.mu.Lock()
	r.secret = 2
	r.mu.Unlock()
	want2 := mustCompute(t, mustNew(t, "users.email", testKeyring(t, 1, testKey(t, 1, 2)), blindindex.Config{}), "x")
	if got := mustCompute(t, ix, "x"); got != want2 {
		t.Fatalf("after the key changed Compute = %s, want %s", got, want2)
	}
}

func TestConcurrentUse(t *testing.T) {
	ks := testKeyring(t, 2, testKey(t, 1, 1), testKey(t, 2, 2))
	ix := mustNew(t, "users.email", ks, blindindex.Config{Normalize: email, Bits: 100})
	want := make([]string, 50)
	for i := range want {
		want[i] = mustCompute(t, mustNew(t, "users.email", ks, blindindex.Config{Normalize: email, Bits: 100}), fmt.Sprintf("User%d@X.com", i))
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range want {
				in := fmt.Sprintf("user%d@x.COM", i)
				if g%2 == 0 {
					if got, err := ix.Compute(in); err != nil || got != want[i] {
						t.Errorf("Compute(%d) = %s, %v", i, got, err)
					}
				} else if got, err := ix.Lookup(in); err != nil || got[1] != want[i] {
					t.Errorf("Lookup(%d) = %v, %v", i, got, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestComputeAllocations(t *testing.T) {
	ix := mustNew(t, "users.email", testKeyring(t, 1, testKey(t, 1, 1)), blindindex.Config{})
	in := strings.Repeat("x", 32)
	mustCompute(t, ix, in)
	if n := testing.AllocsPerRun(100, func() { _, _ = ix.Compute(in) }); n > 1 && !raceEnabled {
		t.Errorf("Compute allocates %v times, want 1 (the value)", n)
	}
	long := strings.Repeat("y", 10000) // hashed in place, however long
	want := mustCompute(t, ix, long)
	if got := mustCompute(t, ix, long); got != want {
		t.Error("Compute of a long input is not deterministic")
	}
}

func TestFilter(t *testing.T) {
	type row struct{ id, email string }
	ix := mustNew(t, "users.email", testKeyring(t, 1, testKey(t, 1, 1)), blindindex.Config{Normalize: email, Bits: 4})
	rows := []row{{"1", "A@x.com"}, {"2", "b@x.com"}, {"3", " a@x.com"}, {"4", "c@y.com"}}
	got := blindindex.Filter(ix, rows, "a@X.com", func(r row) string { return r.email })
	if len(got) != 2 || got[0].id != "1" || got[1].id != "3" {
		t.Errorf("Filter = %v, want rows 1 and 3", got)
	}
	if len(rows) != 4 || rows[1].id != "2" {
		t.Error("Filter modified its input")
	}
}

func TestSuggestBits(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		fp   float64
		want int
	}{
		{1_000_000, 0.01, 27},
		{1_000_000, 2, 19},
		{1_000_000, 1, 20},
		{100_000, 0.001, 27},
		{0, 1, 1},
		{1, 1, 1},
		{10, 1000, 1},
		{math.MaxUint64, 1e-60, blindindex.MaxBits},
		{1000, 0, blindindex.MaxBits},
		{1000, -1, blindindex.MaxBits},
		{1000, math.NaN(), blindindex.MaxBits},
		{1000, math.Inf(1), 1},
	} {
		if got := blindindex.SuggestBits(c.n, c.fp); got != c.want {
			t.Errorf("SuggestBits(%d, %v) = %d, want %d", c.n, c.fp, got, c.want)
		}
		if got := blindindex.SuggestBits(c.n, c.fp); c.fp > 0 && c.n > 1 && got < blindindex.MaxBits {
			if fp := blindindex.FalsePositives(c.n, got); fp > c.fp {
				t.Errorf("FalsePositives(%d, %d) = %v, more than the %v asked for", c.n, got, fp, c.fp)
			}
		}
	}
	if fp := blindindex.FalsePositives(1<<20+1, 20); fp != 1 {
		t.Errorf("FalsePositives(2^20+1, 20) = %v, want 1", fp)
	}
	if fp := blindindex.FalsePositives(0, 0); fp != 0 {
		t.Errorf("FalsePositives(0, 0) = %v", fp)
	}
}

// TestFalsePositivesMeasured checks SuggestBits against a real index: with
// the suggested bits, lookups among n distinct values return about the
// asked-for number of wrong values.
func TestFalsePositivesMeasured(t *testing.T) {
	const n, fp = 20000, 4.0
	bits := blindindex.SuggestBits(n, fp) // 13
	ix := mustNew(t, "t.fp", testKeyring(t, 1, testKey(t, 1, 3)), blindindex.Config{Bits: bits})
	count := map[string]int{}
	vals := make([]string, n)
	for i := range n {
		vals[i] = mustCompute(t, ix, fmt.Sprint(i))
		count[vals[i]]++
	}
	total := 0
	for _, v := range vals {
		total += count[v] - 1
	}
	mean := float64(total) / n
	if mean > fp || mean < fp/4 {
		t.Errorf("bits %d: a lookup returns %.2f wrong values on average, want about %v or fewer", bits, mean, fp)
	}
}

// An Index not made by New fails with ErrConfig instead of panicking.
func TestZeroIndex(t *testing.T) {
	var nilIndex *blindindex.Index
	for _, ix := range []*blindindex.Index{nilIndex, {}} {
		if _, err := ix.Compute("x"); !errors.Is(err, blindindex.ErrConfig) {
			t.Errorf("Compute: %v", err)
		}
		if _, err := ix.ComputeVersion(1, "x"); !errors.Is(err, blindindex.ErrConfig) {
			t.Errorf("ComputeVersion: %v", err)
		}
		if _, err := ix.Lookup("x"); !errors.Is(err, blindindex.ErrConfig) {
			t.Errorf("Lookup: %v", err)
		}
		if _, _, err := ix.LookupPair("x"); !errors.Is(err, blindindex.ErrConfig) {
			t.Errorf("LookupPair: %v", err)
		}
		if _, err := ix.IsCurrent("b1:AAAA"); !errors.Is(err, blindindex.ErrConfig) {
			t.Errorf("IsCurrent: %v", err)
		}
		if got := blindindex.Filter(ix, []string{"a", "b"}, "a", func(s string) string { return s }); len(got) != 1 {
			t.Errorf("Filter: %v", got)
		}
	}
}

// misnumbered is a keyring whose Key hands out version 1's key whatever
// version it is asked for.
type misnumbered struct{ *keyprovider.Static }

func (m misnumbered) Key(uint32) (keyprovider.Key, error) { return m.Static.Key(1) }

// A keyring that answers one version with another's key is refused, not
// used: the value would name a version whose key did not make it.
func TestKeyringVersionMismatch(t *testing.T) {
	ks := misnumbered{testKeyring(t, 2, testKey(t, 1, 1), testKey(t, 2, 2))}
	ix := mustNew(t, "users.email", ks, blindindex.Config{})
	if _, err := ix.ComputeVersion(2, "x"); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("ComputeVersion: %v, want ErrInvalidKey", err)
	}
	if _, err := ix.Lookup("x"); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("Lookup: %v, want ErrInvalidKey", err)
	}
	ks1 := misnumbered{testKeyring(t, 1, testKey(t, 1, 1), testKey(t, 2, 2))}
	if _, _, err := mustNew(t, "users.email", ks1, blindindex.Config{}).LookupPair("x"); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("LookupPair: %v, want ErrInvalidKey", err)
	}
}
