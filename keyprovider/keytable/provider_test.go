package keytable_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/keytable"
)

// memSource is a Source held in memory, whose content and failures the
// test controls.
type memSource struct {
	mu    sync.Mutex
	rows  []keytable.WrappedKey
	err   error
	gate  chan struct{} // when set, LoadKeys waits for it
	loads atomic.Int64
}

func (s *memSource) LoadKeys(ctx context.Context) ([]keytable.WrappedKey, error) {
	s.loads.Add(1)
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	out := make([]keytable.WrappedKey, len(s.rows))
	for i, r := range s.rows {
		out[i] = keytable.WrappedKey{Version: r.Version, Wrapped: bytes.Clone(r.Wrapped), Active: r.Active}
	}
	return out, nil
}

func (s *memSource) set(rows ...keytable.WrappedKey) {
	s.mu.Lock()
	s.rows = rows
	s.err = nil
	s.mu.Unlock()
}

func (s *memSource) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// countingKEK counts the calls to the KEK it wraps.
type countingKEK struct {
	kek            keyprovider.KEK
	wraps, unwraps atomic.Int64
}

func (c *countingKEK) WrapKey(ctx context.Context, k keyprovider.Key) ([]byte, error) {
	c.wraps.Add(1)
	return c.kek.WrapKey(ctx, k)
}

func (c *countingKEK) UnwrapKey(ctx context.Context, v uint32, w []byte) (keyprovider.Key, error) {
	c.unwraps.Add(1)
	return c.kek.UnwrapKey(ctx, v, w)
}

func (c *countingKEK) calls() int64 { return c.wraps.Load() + c.unwraps.Load() }

// unavailableKEK stands for a KMS that cannot be reached.
type unavailableKEK struct{}

func (unavailableKEK) WrapKey(context.Context, keyprovider.Key) ([]byte, error) {
	return nil, fmt.Errorf("%w: fakekms: connection refused", keyprovider.ErrWrap)
}

func (unavailableKEK) UnwrapKey(context.Context, uint32, []byte) (keyprovider.Key, error) {
	return keyprovider.Key{}, fmt.Errorf("%w: fakekms: connection refused", keyprovider.ErrUnwrap)
}

type fixture struct {
	t    testing.TB
	kek  *keyprovider.LocalKEK
	keys map[uint32]keyprovider.Key
}

func newFixture(t testing.TB) *fixture {
	kek, err := keyprovider.NewLocalKEK(bytes.Repeat([]byte{0x5c}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, kek: kek, keys: map[uint32]keyprovider.Key{}}
}

func (f *fixture) key(v uint32) keyprovider.Key {
	if k, ok := f.keys[v]; ok {
		return k
	}
	k, err := keyprovider.GenerateKey(v)
	if err != nil {
		f.t.Fatal(err)
	}
	f.keys[v] = k
	return k
}

// row returns version v's key wrapped by the fixture's KEK.
func (f *fixture) row(v uint32, active bool) keytable.WrappedKey {
	w, err := f.kek.WrapKey(context.Background(), f.key(v))
	if err != nil {
		f.t.Fatal(err)
	}
	return keytable.WrappedKey{Version: v, Wrapped: w, Active: active}
}

// secrets returns every text form of every key the fixture made.
func (f *fixture) secrets() []string {
	var out []string
	for _, k := range f.keys {
		if !k.Valid() {
			continue
		}
		b := k.Bytes()
		out = append(out, string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b)[:20], base64.RawURLEncoding.EncodeToString(b)[:20])
	}
	return out
}

func (f *fixture) assertNoSecrets(what, text string) {
	f.t.Helper()
	for _, s := range f.secrets() {
		if strings.Contains(text, s) {
			f.t.Errorf("%s contains key material: %q", what, text)
		}
	}
}

// errSink collects the errors a Provider reports.
type errSink struct {
	mu   sync.Mutex
	errs []error
	ch   chan error
}

func newErrSink() *errSink { return &errSink{ch: make(chan error, 1000)} }

func (s *errSink) report(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	select {
	case s.ch <- err:
	default:
	}
}

func (s *errSink) all() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// next waits for the next reported error.
func (s *errSink) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no error reported within 5s")
		return nil
	}
}

func newProvider(t *testing.T, src keytable.Source, kek keyprovider.KEK, opts keytable.Options) *keytable.Provider {
	t.Helper()
	p, err := keytable.NewProvider(context.Background(), src, kek, opts)
	if err != nil {
		t.Fatalf("NewProvider: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func activeVersion(t *testing.T, p keyprovider.Provider) uint32 {
	t.Helper()
	k, err := p.Active()
	if err != nil {
		t.Fatalf("Active: %v", err)
	}
	return k.Version()
}

// eventually polls cond every millisecond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestProviderServesKeys(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, false), f.row(2, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1})

	if v := activeVersion(t, p); v != 2 {
		t.Fatalf("active version %d, want 2", v)
	}
	for _, v := range []uint32{1, 2} {
		k, err := p.Key(v)
		if err != nil || k != mustSame(t, f.key(v), k) {
			t.Fatalf("Key(%d) = %v, %v", v, k, err)
		}
	}
	if _, err := p.Key(3); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Fatalf("Key(3) = %v, want ErrUnknownVersion", err)
	}
	if got := p.Versions(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("Versions = %v", got)
	}
	st := p.Status()
	if st.Active != 2 || st.LastError != nil || st.LoadedAt.IsZero() {
		t.Errorf("Status = %+v", st)
	}
	var _ keyprovider.Reloader = p
}

// mustSame fails unless a and b hold the same material, and returns b.
func mustSame(t *testing.T, a, b keyprovider.Key) keyprovider.Key {
	t.Helper()
	if a.Version() != b.Version() || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("key %v differs from %v", b, a)
	}
	return b
}

func TestNewProviderFails(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tests := []struct {
		name string
		rows []keytable.WrappedKey
		kek  keyprovider.KEK
		err  error
		want []error
		text string
	}{
		{name: "empty", want: []error{keytable.ErrNoActiveKey}, text: "empty"},
		{name: "no active", rows: []keytable.WrappedKey{f.row(1, false)}, want: []error{keytable.ErrNoActiveKey}},
		{name: "two active", rows: []keytable.WrappedKey{f.row(1, true), f.row(2, true)}, want: []error{keytable.ErrCorrupt}},
		{name: "twice", rows: []keytable.WrappedKey{f.row(1, true), f.row(1, false)}, want: []error{keytable.ErrCorrupt}},
		{name: "version 0", rows: []keytable.WrappedKey{{Version: 0, Wrapped: []byte("x"), Active: true}}, want: []error{keytable.ErrCorrupt}},
		{name: "source fails", err: errors.New("connection refused"), text: "connection refused"},
		{name: "KMS unavailable", rows: []keytable.WrappedKey{f.row(1, true)}, kek: unavailableKEK{},
			want: []error{keyprovider.ErrUnwrap}, text: "fakekms"},
		{name: "wrong KEK", rows: []keytable.WrappedKey{f.row(1, true)}, kek: mustLocal(t, 0x77),
			want: []error{keyprovider.ErrUnwrap}, text: "local KEK " + f.kek.ID()},
		{name: "wrapped for another version", rows: []keytable.WrappedKey{{Version: 2, Wrapped: f.row(1, true).Wrapped, Active: true}},
			want: []error{keyprovider.ErrUnwrap}, text: "version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &memSource{}
			src.set(tt.rows...)
			if tt.err != nil {
				src.fail(tt.err)
			}
			kek := tt.kek
			if kek == nil {
				kek = f.kek
			}
			p, err := keytable.NewProvider(ctx, src, kek, keytable.Options{})
			if err == nil {
				_ = p.Close()
				t.Fatal("NewProvider succeeded")
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
			f.assertNoSecrets("error", err.Error())
		})
	}
}

func mustLocal(t *testing.T, b byte) *keyprovider.LocalKEK {
	k, err := keyprovider.NewLocalKEK(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRefreshFailureKeepsKeys: a source that fails, or returns something
// unusable, leaves the keys in place and is reported; the provider picks
// up the next good load.
func TestRefreshFailureKeepsKeys(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, false), f.row(2, true))
	sink := newErrSink()
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: 5 * time.Millisecond, OnError: sink.report})
	codec := encryptedtype.NewCodec(p)
	ctx := context.Background()
	old, err := codec.Seal(ctx, []byte("sealed before the failure"))
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := p.Key(2)

	bad := []struct {
		name string
		set  func()
		want error
	}{
		{"source down", func() { src.fail(errors.New("dial tcp: connection refused")) }, nil},
		{"table emptied", func() { src.set() }, keytable.ErrNoActiveKey},
		{"no active", func() { src.set(f.row(1, false), f.row(2, false)) }, keytable.ErrNoActiveKey},
		{"two active", func() { src.set(f.row(1, true), f.row(2, true)) }, keytable.ErrCorrupt},
		{"active garbage", func() {
			src.set(f.row(1, false), keytable.WrappedKey{Version: 3, Wrapped: []byte("not a wrapped key"), Active: true})
		}, keyprovider.ErrUnwrap},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			b.set()
			// Drain reports from before, then wait for one of this failure.
			for {
				err := sink.next(t)
				if b.want == nil && strings.Contains(err.Error(), "connection refused") || b.want != nil && errors.Is(err, b.want) {
					break
				}
			}
			if v := activeVersion(t, p); v != 2 {
				t.Fatalf("active version %d after a failed refresh, want 2", v)
			}
			if k, err := p.Key(2); err != nil || k != k2 {
				t.Fatalf("Key(2) = %v, %v after a failed refresh", k, err)
			}
			pt, err := codec.Open(ctx, old)
			if err != nil || string(pt) != "sealed before the failure" {
				t.Fatalf("Open = %q, %v", pt, err)
			}
			if st := p.Status(); st.LastError == nil {
				t.Errorf("Status().LastError = nil during failures")
			}
		})
	}
	// Recovery: version 3 becomes active.
	src.set(f.row(1, false), f.row(2, false), f.row(3, true))
	eventually(t, "version 3 active", func() bool { return activeVersion(t, p) == 3 })
	eventually(t, "LastError cleared", func() bool { return p.Status().LastError == nil })
	for _, err := range sink.all() {
		f.assertNoSecrets("reported error", err.Error())
	}
}

func TestLoadRules(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, false), f.row(2, true))
	sink := newErrSink()
	kek := &countingKEK{kek: f.kek}
	p := newProvider(t, src, kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Nanosecond, OnError: sink.report})
	ctx := context.Background()
	k1, _ := p.Key(1)
	reload := func() error {
		t.Helper()
		time.Sleep(time.Millisecond) // past MinReloadInterval
		return p.Reload(ctx)
	}

	t.Run("unchanged rows make no KEK call", func(t *testing.T) {
		before := kek.calls()
		for range 20 {
			if err := reload(); err != nil {
				t.Fatal(err)
			}
		}
		if n := kek.calls() - before; n != 0 {
			t.Fatalf("%d KEK calls for unchanged rows", n)
		}
		if k, _ := p.Key(1); k != k1 {
			t.Fatal("Key(1) changed identity")
		}
	})

	t.Run("re-wrapped key keeps its Key value", func(t *testing.T) {
		src.set(f.row(1, false), f.row(2, true)) // fresh nonces: new wrapped bytes
		before := kek.unwraps.Load()
		if err := reload(); err != nil {
			t.Fatal(err)
		}
		if n := kek.unwraps.Load() - before; n != 2 {
			t.Errorf("%d unwraps for two re-wrapped versions, want 2", n)
		}
		if k, _ := p.Key(1); k != k1 {
			t.Fatal("Key(1) is a new Key value after a re-wrap of the same material")
		}
	})

	t.Run("changed material is refused", func(t *testing.T) {
		other, _ := keyprovider.GenerateKey(1)
		w, _ := f.kek.WrapKey(ctx, other)
		src.set(keytable.WrappedKey{Version: 1, Wrapped: w}, f.row(2, true))
		// A warning, not a failure: the load was applied.
		if err := reload(); err != nil {
			t.Fatalf("Reload = %v, want nil (the warning goes to OnError)", err)
		}
		got := sink.next(t)
		if !errors.Is(got, keytable.ErrKeyChanged) {
			t.Fatalf("reported %v, want ErrKeyChanged", got)
		}
		if st := p.Status(); !errors.Is(st.LastError, keytable.ErrKeyChanged) || !st.LastErrorAt.Equal(st.LoadedAt) {
			t.Fatalf("Status = %+v, want the warning at LoadedAt", st)
		}
		if k, _ := p.Key(1); k != k1 {
			t.Fatal("Key(1) switched to the new material")
		}
		f.assertNoSecrets("error", got.Error())
		src.set(f.row(1, false), f.row(2, true))
		if err := reload(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("held version that no longer unwraps is kept", func(t *testing.T) {
		w, _ := mustLocal(t, 0x99).WrapKey(ctx, f.key(1)) // a KEK this instance lacks
		src.set(keytable.WrappedKey{Version: 1, Wrapped: w}, f.row(2, true))
		if err := reload(); err != nil {
			t.Fatalf("Reload = %v, want nil", err)
		}
		if err := sink.next(t); !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "keeping the key held before") {
			t.Fatalf("reported %v", err)
		}
		if k, _ := p.Key(1); k != k1 {
			t.Fatal("Key(1) lost")
		}
	})

	t.Run("new version that does not unwrap is left out", func(t *testing.T) {
		src.set(f.row(1, false), f.row(2, true), keytable.WrappedKey{Version: 4, Wrapped: []byte("junk")}, f.row(5, false))
		if err := reload(); err != nil {
			t.Fatalf("Reload = %v, want nil", err)
		}
		if err := sink.next(t); !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "version 4 left out") {
			t.Fatalf("reported %v", err)
		}
		if err := p.Status().LastError; !strings.Contains(fmt.Sprint(err), "version 4 left out") {
			t.Fatalf("Status().LastError = %v", err)
		}
		if got := p.Versions(); !slices.Equal(got, []uint32{1, 2, 5}) {
			t.Fatalf("Versions = %v, want [1 2 5]", got)
		}
	})

	t.Run("retired version (tombstone) is dropped without a warning", func(t *testing.T) {
		src.set(f.row(1, false), f.row(2, true), f.row(5, false))
		if err := reload(); err != nil {
			t.Fatal(err)
		}
		reported := len(sink.all())
		r1, r2 := f.row(1, false), f.row(2, true)
		src.set(r1, r2, f.row(5, false))
		if err := reload(); err != nil {
			t.Fatal(err)
		}
		for _, tomb := range [][]byte{nil, {}} {
			src.set(r1, r2, keytable.WrappedKey{Version: 5, Wrapped: tomb})
			before := kek.unwraps.Load()
			if err := reload(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Key(5); !errors.Is(err, keyprovider.ErrUnknownVersion) {
				t.Fatalf("Key(5) after its tombstone = %v", err)
			}
			if got := p.Versions(); !slices.Equal(got, []uint32{1, 2}) {
				t.Fatalf("Versions = %v, want [1 2]", got)
			}
			if n := kek.unwraps.Load() - before; n != 0 {
				t.Fatalf("%d unwraps for a tombstone", n)
			}
		}
		if errs := sink.all(); len(errs) != reported {
			t.Fatalf("a tombstone was reported: %v", errs[reported:])
		}
		if err := p.Status().LastError; err != nil {
			t.Fatalf("Status().LastError = %v", err)
		}
		// A tombstone twice, or marked active, is a corrupt source.
		src.set(f.row(2, true), keytable.WrappedKey{Version: 5}, keytable.WrappedKey{Version: 5})
		if err := reload(); !errors.Is(err, keytable.ErrCorrupt) {
			t.Fatalf("Reload with version 5 twice = %v, want ErrCorrupt", err)
		}
		src.set(f.row(1, false), keytable.WrappedKey{Version: 2, Active: true})
		if err := reload(); !errors.Is(err, keytable.ErrCorrupt) {
			t.Fatalf("Reload with an active tombstone = %v, want ErrCorrupt", err)
		}
		if activeVersion(t, p) != 2 {
			t.Fatal("a failed load changed the active key")
		}
		if _, err := p.Key(2); err != nil {
			t.Fatalf("Key(2) after a failed load: %v", err)
		}
		src.set(f.row(1, false), f.row(2, true), f.row(5, false))
		if err := reload(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("retired version is dropped", func(t *testing.T) {
		src.set(f.row(2, true), f.row(5, false))
		if err := reload(); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Key(1); !errors.Is(err, keyprovider.ErrUnknownVersion) {
			t.Fatalf("Key(1) after retirement = %v", err)
		}
	})
}

// TestEnvelopeCaching: after start-up, writing and reading 10,000 values,
// with background refreshes and change notifications going on, makes no
// wrap or unwrap call: each version is unwrapped once.
func TestEnvelopeCaching(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, false), f.row(2, true))
	kek := &countingKEK{kek: f.kek}
	p := newProvider(t, src, kek, keytable.Options{RefreshInterval: time.Millisecond})
	if got := kek.unwraps.Load(); got != 2 {
		t.Fatalf("%d unwraps at start-up for 2 versions, want 2", got)
	}
	if got := kek.wraps.Load(); got != 0 {
		t.Fatalf("%d wraps at start-up, want 0", got)
	}
	// A value under version 1, as if written before a rotation.
	old, err := encryptedtype.NewCodec(keyprovider.Provider(mustStatic(t, f.key(1)))).Seal(context.Background(), []byte("old"))
	if err != nil {
		t.Fatal(err)
	}

	kek.wraps.Store(0)
	kek.unwraps.Store(0)
	loadsBefore := src.loads.Load()
	codec := encryptedtype.NewCodec(p)
	ctx := context.Background()
	const rows = 10_000
	for i := range rows {
		pt := fmt.Appendf(nil, "row %d", i)
		v, err := codec.Seal(ctx, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.Open(ctx, v)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("row %d: Open = %q, %v", i, got, err)
		}
		if _, err := codec.Open(ctx, old); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			p.Changed()
		}
	}
	eventually(t, "a few background loads", func() bool { return src.loads.Load() > loadsBefore+2 })
	if n := kek.calls(); n != 0 {
		t.Fatalf("%d KEK calls while reading and writing %d values, want 0", n, rows)
	}
}

func mustStatic(t *testing.T, k keyprovider.Key) *keyprovider.Static {
	s, err := keyprovider.NewStatic(k.Version(), k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReloadRateLimit: values naming unknown versions cannot make every
// read query the source.
func TestReloadRateLimit(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Hour, OnError: func(error) {}})
	codec := encryptedtype.NewCodec(p)
	ctx := context.Background()
	hostile := []byte("v99:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")

	base := src.loads.Load()
	if err := p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var throttled atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, err := codec.Open(ctx, hostile)
				if !errors.Is(err, keyprovider.ErrUnknownVersion) {
					t.Errorf("Open(hostile) = %v", err)
					return
				}
				if errors.Is(err, keytable.ErrReloadThrottled) {
					throttled.Add(1)
				}
				_, _ = p.Key(98) // schedules a background reload, throttled too
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // give kicked reloads a chance to (wrongly) run
	if n := src.loads.Load() - base; n != 1 {
		t.Fatalf("%d loads for 5,000 hostile values, want 1 (the explicit Reload)", n)
	}
	// A declined reload is no failure: Open reports the version unknown.
	if throttled.Load() != 0 {
		t.Errorf("%d of 5000 Open errors wrap ErrReloadThrottled, want none", throttled.Load())
	}
}

// TestUnknownVersionSchedulesReload: a Scan-style lookup (no context, no
// Reload) of a version added elsewhere is served soon after, through the
// background reload that Key schedules.
func TestUnknownVersionSchedulesReload(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: 20 * time.Millisecond})
	base := src.loads.Load()
	src.set(f.row(1, true), f.row(2, false))
	if _, err := p.Key(2); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Fatalf("Key(2) = %v", err)
	}
	eventually(t, "version 2 loaded", func() bool { _, err := p.Key(2); return err == nil })

	// Hammering unknown versions loads at most once per MinReloadInterval.
	start := time.Now()
	before := src.loads.Load()
	for time.Since(start) < 200*time.Millisecond {
		_, _ = p.Key(77)
	}
	elapsed := time.Since(start)
	if n, limit := src.loads.Load()-before, int64(elapsed/(20*time.Millisecond))+2; n > limit {
		t.Fatalf("%d loads in %v of unknown-version lookups, want at most %d", n, elapsed, limit)
	}
	if src.loads.Load() == base {
		t.Fatal("no load at all")
	}
}

func TestChangedReloads(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Hour})
	src.set(f.row(1, false), f.row(2, true))
	p.Changed()
	eventually(t, "version 2 active", func() bool { return activeVersion(t, p) == 2 })
}

func TestReloadWaitsForRunningLoad(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Hour})
	// Block the source, trigger a background load, and call Reload while
	// it runs: Reload waits for it, then loads itself (the running load
	// may have read the source before the change the caller wants).
	gate := make(chan struct{})
	src.mu.Lock()
	src.gate = gate
	src.mu.Unlock()
	base := src.loads.Load()
	p.Changed()
	eventually(t, "background load started", func() bool { return src.loads.Load() > base })
	errc := make(chan error, 1)
	go func() { errc <- p.Reload(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	src.mu.Lock()
	src.gate = nil
	src.mu.Unlock()
	close(gate)
	err := <-errc
	// The Reload came after the background load started, so it had to
	// load itself: allowed (first on-demand load).
	if err != nil {
		t.Fatalf("Reload = %v", err)
	}
	if n := src.loads.Load() - base; n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}

	// A Reload that times out waiting for a blocked load returns the
	// context's error.
	gate = make(chan struct{})
	src.mu.Lock()
	src.gate = gate
	src.mu.Unlock()
	p.Changed()
	eventually(t, "background load started", func() bool { return src.loads.Load() > base+2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Reload(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reload with a blocked load = %v, want DeadlineExceeded", err)
	}
	close(gate)
}

// TestReloadAfterUnknownVersionRace: Key misses a version another instance
// just added (which schedules a background load), then Reload is called,
// as encryptedtype.Codec.Open does. Whatever the order in which the
// background load and Reload get to load, Reload must not be refused as
// throttled unless a load that started after the miss had already ended
// when Reload was called; and when it returns nil, the version is held.
// Many fresh providers run at once to hit every interleaving.
func TestReloadAfterUnknownVersionRace(t *testing.T) {
	f := newFixture(t)
	f.key(1)
	f.key(2)
	rows1 := []keytable.WrappedKey{f.row(1, true)}
	rows2 := []keytable.WrappedKey{f.row(1, false), f.row(2, true)}
	const workers, each = 8, 625
	var failures, throttledAfterLoad atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := range each {
				src := &memSource{}
				src.set(rows1...)
				p, err := keytable.NewProvider(ctx, src, f.kek, keytable.Options{RefreshInterval: -1, OnError: func(error) {}})
				if err != nil {
					t.Error(err)
					return
				}
				src.set(rows2...) // another instance adds and activates version 2
				if _, err := p.Key(2); !errors.Is(err, keyprovider.ErrUnknownVersion) {
					t.Errorf("Key(2) before any reload = %v", err)
				}
				// A varying pause, as Codec.Open's own work makes, so that
				// Reload comes at every point of the scheduled load's
				// start.
				for range i % 16 {
					runtime.Gosched()
				}
				loadsBefore := src.loads.Load()
				err = p.Reload(ctx)
				_, kerr := p.Key(2)
				switch {
				case err == nil && kerr != nil:
					failures.Add(1)
					t.Errorf("Reload = nil but Key(2) = %v", kerr)
				case errors.Is(err, keytable.ErrReloadThrottled) && loadsBefore > 1:
					// The scheduled load had started (and has ended, or
					// Reload would have shared it) before Reload was
					// called: being throttled is right.
					throttledAfterLoad.Add(1)
				case err != nil:
					if failures.Add(1) <= 3 {
						t.Errorf("Reload = %v, though no load had started when it was called", err)
					}
				}
				_ = p.Close()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d providers: Reload refused after the scheduled load had ended; %d failures", throttledAfterLoad.Load(), workers*each, failures.Load())
}

// TestReloadSharesRunningOnDemandLoad: the background load that Key
// schedules is running when Reload is called; Reload waits for it and
// returns its outcome, rather than being refused by the rate limit that
// load used.
func TestReloadSharesRunningOnDemandLoad(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Hour, OnError: func(error) {}})
	gate := make(chan struct{})
	src.mu.Lock()
	src.gate = gate
	src.mu.Unlock()
	src.set(f.row(1, false), f.row(2, true))
	base := src.loads.Load()
	if _, err := p.Key(2); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Fatalf("Key(2) = %v", err)
	}
	eventually(t, "scheduled load started", func() bool { return src.loads.Load() > base })
	errc := make(chan error, 1)
	go func() { errc <- p.Reload(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	src.mu.Lock()
	src.gate = nil
	src.mu.Unlock()
	close(gate)
	if err := <-errc; err != nil {
		t.Fatalf("Reload = %v, want the outcome of the load it waited for", err)
	}
	if _, err := p.Key(2); err != nil {
		t.Fatalf("Key(2) = %v", err)
	}
	if n := src.loads.Load() - base; n != 1 {
		t.Fatalf("%d loads, want 1", n)
	}
	// The rate limit still holds: the next Reload is refused.
	if err := p.Reload(context.Background()); !errors.Is(err, keytable.ErrReloadThrottled) {
		t.Fatalf("second Reload = %v, want ErrReloadThrottled", err)
	}
	// A shared load that failed is Reload's failure.
	boom := errors.New("source down")
	gate = make(chan struct{})
	src.mu.Lock()
	src.gate = gate
	src.mu.Unlock()
	src.fail(boom)
	p.Changed()
	eventually(t, "background load started", func() bool { return src.loads.Load() > base+1 })
	go func() { errc <- p.Reload(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	src.mu.Lock()
	src.gate = nil
	src.mu.Unlock()
	close(gate)
	if err := <-errc; !errors.Is(err, boom) {
		t.Fatalf("Reload sharing a failed load = %v, want its error", err)
	}
}

// TestReloadWarningIsNotAFailure: a version left out of a load (here one
// wrapped under a KEK this instance lacks) does not make Reload fail; the
// warning goes to OnError and Status, and the new version is served.
func TestReloadWarningIsNotAFailure(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	foreign, err := mustLocal(t, 0x77).WrapKey(context.Background(), f.key(9))
	if err != nil {
		t.Fatal(err)
	}
	bad := keytable.WrappedKey{Version: 9, Wrapped: foreign}
	src.set(f.row(1, true), bad)
	sink := newErrSink()
	p := newProvider(t, src, f.kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Nanosecond, OnError: sink.report})
	if err := sink.next(t); !strings.Contains(err.Error(), "version 9 left out") {
		t.Fatalf("NewProvider reported %v", err)
	}
	src.set(f.row(1, false), f.row(2, true), bad)
	time.Sleep(time.Millisecond)
	if err := p.Reload(context.Background()); err != nil {
		t.Fatalf("Reload = %v, want nil: version 2 loaded, only version 9 was left out", err)
	}
	if activeVersion(t, p) != 2 {
		t.Fatal("version 2 not active")
	}
	got := sink.next(t)
	if !errors.Is(got, keyprovider.ErrUnwrap) || !strings.Contains(got.Error(), "version 9 left out") {
		t.Fatalf("reported %v", got)
	}
	f.assertNoSecrets("warning", got.Error())
	st := p.Status()
	if st.LastError == nil || !strings.Contains(st.LastError.Error(), "version 9 left out") || !st.LastErrorAt.Equal(st.LoadedAt) {
		t.Fatalf("Status = %+v", st)
	}
	// With the codec, as Codec.Open uses Reload.
	other := mustStatic(t, f.key(3))
	src.set(f.row(1, false), f.row(2, false), f.row(3, true), bad)
	time.Sleep(time.Millisecond)
	v, err := encryptedtype.NewCodec(other).Seal(context.Background(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := encryptedtype.NewCodec(p).Open(context.Background(), v); err != nil || string(pt) != "hello" {
		t.Fatalf("Open of a value under a newly added version = %q, %v", pt, err)
	}
}

func TestCloseStopsRefresh(t *testing.T) {
	f := newFixture(t)
	src := &memSource{}
	src.set(f.row(1, true))
	p, err := keytable.NewProvider(context.Background(), src, f.kek, keytable.Options{RefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "refreshes", func() bool { return src.loads.Load() > 3 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = p.Close() // twice is fine
	n := src.loads.Load()
	time.Sleep(20 * time.Millisecond)
	if src.loads.Load() != n {
		t.Fatal("loads after Close")
	}
	if v := activeVersion(t, p); v != 1 {
		t.Fatalf("active %d after Close", v)
	}
}

func TestNilAndZeroProvider(t *testing.T) {
	var p *keytable.Provider
	if _, err := p.Active(); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("nil Active = %v", err)
	}
	if _, err := p.Key(1); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("nil Key = %v", err)
	}
	if p.Versions() != nil || p.Status().LastError == nil || p.Reload(context.Background()) == nil || p.Close() != nil {
		t.Error("nil Provider: Versions, Status, Reload or Close misbehaves")
	}
	p.Changed()
	var z keytable.Provider
	if _, err := z.Active(); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("zero Active = %v", err)
	}
	if _, err := z.Key(1); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("zero Key = %v", err)
	}
	if z.Reload(context.Background()) == nil || z.Close() != nil {
		t.Error("zero Provider: Reload or Close misbehaves")
	}
	z.Changed()
	if _, err := keytable.NewProvider(context.Background(), nil, newFixture(t).kek, keytable.Options{}); err == nil {
		t.Error("nil source accepted")
	}
	if _, err := keytable.NewProvider(context.Background(), &memSource{}, nil, keytable.Options{}); err == nil {
		t.Error("nil KEK accepted")
	}
}

// BenchmarkProviderActive is the hot-path cost of the key-table provider;
// BenchmarkStaticActive beside it is the floor (a fixed keyring).
func BenchmarkProviderActive(b *testing.B) {
	f := newFixture(b)
	src := &memSource{}
	src.set(f.row(1, false), f.row(2, true))
	p, err := keytable.NewProvider(context.Background(), src, f.kek, keytable.Options{RefreshInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Active(); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Key(1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStaticActive(b *testing.B) {
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	s, err := keyprovider.NewStatic(2, k1, k2)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Active(); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Key(1); err != nil {
			b.Fatal(err)
		}
	}
}
