package keytable

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// Defaults of Options.
const (
	// DefaultRefreshInterval is how often a Provider reloads its keys in
	// the background when Options.RefreshInterval is zero.
	DefaultRefreshInterval = time.Minute
	// DefaultMinReloadInterval is the least time between two on-demand
	// reloads (Reload, or a value under an unknown version) when
	// Options.MinReloadInterval is zero.
	DefaultMinReloadInterval = time.Second
	// DefaultLoadTimeout bounds each background load (the query and any
	// unwrapping) when Options.LoadTimeout is zero.
	DefaultLoadTimeout = 30 * time.Second
)

// A WrappedKey is one stored key: its version, its material wrapped by a
// KEK, and whether it is the active version.
//
// An empty Wrapped marks a retired version (a tombstone, as Table.Retire
// leaves): the Provider holds no key for it, drops the key if it held
// one, and does not report it. A tombstone must not be active.
type WrappedKey struct {
	Version uint32
	Wrapped []byte
	Active  bool
}

// A Source returns every stored key, wrapped. *Table is the Source for
// the PostgreSQL key table; another store (another database, a file, a
// secrets manager) can be one by implementing LoadKeys.
//
// LoadKeys does I/O; a Provider calls it only up front and in the
// background, never from Active or Key.
type Source interface {
	LoadKeys(ctx context.Context) ([]WrappedKey, error)
}

// Options tunes a Provider. The zero Options is ready to use.
type Options struct {
	// RefreshInterval is how often the keys are reloaded in the
	// background; zero means DefaultRefreshInterval, a negative value
	// turns the periodic refresh off (Reload, Changed and unknown-version
	// reloads still work). With a Postgres notification listener (package
	// pgnotify) changes are seen within a second, and the periodic
	// refresh is the safety net for missed notifications.
	RefreshInterval time.Duration

	// MinReloadInterval is the least time between two on-demand reloads:
	// calls of Reload, which encryptedtype.Codec.Open makes when it meets
	// an unknown version, and the background reload that Key schedules
	// when it is asked for an unknown version. A Reload sooner than that
	// fails at once with ErrReloadThrottled (unless it waited for a load
	// that was running, see Reload), so that values naming bogus versions
	// cannot make every read query the database. Zero means
	// DefaultMinReloadInterval.
	MinReloadInterval time.Duration

	// LoadTimeout bounds each background load. Zero means
	// DefaultLoadTimeout.
	LoadTimeout time.Duration

	// OnError is called, from the goroutine that loaded, with every load
	// that failed or was only partly applied: the provider keeps serving
	// the keys it had and reports the error here. A partly applied load
	// (some versions left out or kept as they were, see Provider) is
	// reported here and in Status.LastError only: it is not an error of
	// Reload, which returns an error only when the load itself failed.
	// OnError must not block for long. Nil means log it with
	// slog.Default at level Error. Errors never contain key material.
	OnError func(error)
}

// Status describes what a Provider holds, for health checks and the
// operator's CLI.
type Status struct {
	// Active is the version new values are written under.
	Active uint32
	// Versions are the versions held, ascending.
	Versions []uint32
	// LoadedAt is when the keys were last loaded and swapped in, also
	// if that load left some versions out.
	LoadedAt time.Time
	// LastError is the error of the last load, nil if it loaded every
	// version. When the last load was applied but left versions out or
	// kept them as they were, LastError is that warning and LastErrorAt
	// equals LoadedAt; otherwise the load failed and changed nothing.
	LastError error
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time
}

// Provider is a keyprovider.Provider (and keyprovider.Reloader) whose keys
// are stored wrapped in a Source, typically the key table, and held
// unwrapped in memory.
//
// Active and Key never do I/O: they read an immutable snapshot of the
// keys. The snapshot is replaced by loads, which happen when the provider
// is made, every RefreshInterval in the background, when Changed is
// called (by a notification listener), when Reload is called, and shortly
// after Key is asked for a version it does not hold. A key is unwrapped
// once per version: a load whose wrapped key is unchanged reuses the key
// it holds and makes no KEK call.
//
// A failed load changes nothing: the provider keeps serving the keys it
// had and reports the error through Options.OnError. A load is applied
// only if the source has exactly one active key and that key unwraps.
// A version whose wrapped key changed and no longer unwraps, or unwraps to
// different material, keeps the key held before (a version names one key
// forever) and is reported. Versions retired from the source (a tombstone
// row, see WrappedKey, or no row at all) are dropped: from that load on
// Key returns ErrUnknownVersion for them and the Provider keeps no
// reference to their keys. Key values handed out before stay with their
// holders: an encryptedtype.Codec keeps the cipher it built for a version
// until it finds that the provider no longer knows the version, and Go
// does not wipe memory it frees.
type Provider struct {
	src   Source
	kek   keyprovider.KEK
	opts  Options
	state atomic.Pointer[snapshot]

	sem chan struct{} // one load at a time; acquired with a context
	gen atomic.Uint64 // number of loads started

	ended atomic.Uint64 // number of loads ended (both counters change with p.sem held)

	throttleMu   sync.Mutex
	lastOnDemand time.Time // start of the last on-demand load

	statusMu    sync.Mutex
	loadedAt    time.Time
	lastErr     error // failure or warning of the last load
	lastErrAt   time.Time
	lastFailure error         // failure of the last load, nil if it was applied
	kick        chan struct{} // unknown version seen by Key
	changed     chan struct{} // Changed called
	stop        chan struct{}
	stopOnce    sync.Once
	done        chan struct{}
	closeCtx    context.Context
	closeCancel context.CancelFunc
}

// snapshot is an immutable set of keys.
type snapshot struct {
	active keyprovider.Key
	keys   map[uint32]entry
}

type entry struct {
	key     keyprovider.Key
	wrapped []byte // as loaded; a load with the same bytes reuses key
}

// NewProvider loads the keys from src, unwrapping them with kek, and
// returns a Provider serving them, with its background refresh started.
// It fails if the first load fails, if the source holds no active key, or
// if the active key does not unwrap: the error names the source's problem
// or the KEK (for example "cloudkek awskms") that failed. A non-active
// version that does not unwrap is reported through Options.OnError and
// left out.
//
// Call Close when the provider is no longer needed, to stop the
// background refresh.
func NewProvider(ctx context.Context, src Source, kek keyprovider.KEK, opts Options) (*Provider, error) {
	if src == nil {
		return nil, errors.New("keytable: NewProvider: nil Source")
	}
	if kek == nil {
		return nil, errors.New("keytable: NewProvider: nil KEK")
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.MinReloadInterval <= 0 {
		opts.MinReloadInterval = DefaultMinReloadInterval
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = DefaultLoadTimeout
	}
	if opts.OnError == nil {
		opts.OnError = logError
	}
	p := &Provider{
		src:     src,
		kek:     kek,
		opts:    opts,
		sem:     make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	p.closeCtx, p.closeCancel = context.WithCancel(context.Background())
	p.sem <- struct{}{} // nobody else has p yet
	p.gen.Add(1)
	warn, err := p.loadLocked(ctx)
	p.ended.Add(1)
	p.release()
	if err != nil {
		p.closeCancel()
		return nil, err
	}
	if warn != nil {
		p.opts.OnError(warn)
	}
	go p.run()
	return p, nil
}

var errNotMade = errors.New("keytable: Provider not made with NewProvider")

func logError(err error) {
	slog.Default().Error("colcrypt: key table load failed; still serving the keys held before", "error", err)
}

// Active returns the key new values are written under. It does no I/O.
func (p *Provider) Active() (keyprovider.Key, error) {
	if p == nil {
		return keyprovider.Key{}, fmt.Errorf("%w: nil keytable.Provider", keyprovider.ErrInvalidKey)
	}
	s := p.state.Load()
	if s == nil {
		return keyprovider.Key{}, fmt.Errorf("%w: keytable.Provider not made with NewProvider", keyprovider.ErrInvalidKey)
	}
	return s.active, nil
}

// Key returns the key of the given version. It does no I/O. For a version
// it does not hold it returns an error wrapping
// keyprovider.ErrUnknownVersion and schedules a background reload, at most
// one per Options.MinReloadInterval, so that a key another instance just
// added is picked up even by code that cannot call Reload (sql.Scanner).
func (p *Provider) Key(version uint32) (keyprovider.Key, error) {
	if p == nil {
		return keyprovider.Key{}, fmt.Errorf("%w: %d (nil keytable.Provider)", keyprovider.ErrUnknownVersion, version)
	}
	s := p.state.Load()
	if s != nil {
		if e, ok := s.keys[version]; ok {
			return e.key, nil
		}
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return keyprovider.Key{}, fmt.Errorf("%w: %d", keyprovider.ErrUnknownVersion, version)
}

// Versions returns the versions held, ascending.
func (p *Provider) Versions() []uint32 {
	if p == nil {
		return nil
	}
	s := p.state.Load()
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.keys))
}

// Status returns what the provider holds and how its last load went.
func (p *Provider) Status() Status {
	if p == nil {
		return Status{LastError: errNotMade}
	}
	var st Status
	if s := p.state.Load(); s != nil { // one snapshot: Active is among Versions
		st.Versions = slices.Sorted(maps.Keys(s.keys))
		st.Active = s.active.Version()
	}
	p.statusMu.Lock()
	st.LoadedAt, st.LastError, st.LastErrorAt = p.loadedAt, p.lastErr, p.lastErrAt
	p.statusMu.Unlock()
	return st
}

// Reload loads the keys from the source now and swaps them in; it
// implements keyprovider.Reloader, and encryptedtype.Codec.Open calls it
// when it meets a version the provider does not hold.
//
// One load runs at a time. A call that waits while another load runs
// shares that load if it started after the call was made; otherwise it
// loads itself once the running load has ended. Reloads are rate-limited:
// a call that would load less than Options.MinReloadInterval after the
// previous on-demand load (a Reload's, or the one Key schedules for an
// unknown version) started fails at once with an error wrapping
// ErrReloadThrottled, without I/O, unless it waited for a load that was
// running when it was called: it then returns that load's outcome, since
// that load is the on-demand load of its turn (typically the one the
// caller's own Key call scheduled).
//
// Reload returns an error only when the load failed, which changes
// nothing: the provider keeps the keys it had. A load that was applied
// but left some versions out or kept them as they were (see Provider) is
// a success for Reload; that warning is reported through Options.OnError
// and kept in Status().LastError. Failures are reported through
// Options.OnError too.
func (p *Provider) Reload(ctx context.Context) error {
	if p == nil || p.sem == nil {
		return errNotMade
	}
	e := p.ended.Load() // before gen: a load that ends in between was running
	g := p.gen.Load()
	if err := p.acquire(ctx); err != nil {
		return err
	}
	defer p.release()
	if p.gen.Load() != g {
		// A load started after this call was made, and has finished.
		return p.lastLoadFailure()
	}
	if wait := p.takeOnDemand(); wait > 0 {
		if p.ended.Load() != e {
			// A load was running when this call was made (no load has
			// started since), and it has ended: share its outcome
			// rather than refuse as if nothing had loaded.
			return p.lastLoadFailure()
		}
		return fmt.Errorf("%w: next reload allowed in %v", ErrReloadThrottled, wait.Round(time.Millisecond))
	}
	return p.loadAndReport(ctx)
}

// lastLoadFailure returns the failure of the last load, nil if it was
// applied.
func (p *Provider) lastLoadFailure() error {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	return p.lastFailure
}

// Changed tells the provider that the source has changed: it reloads in
// the background as soon as possible, without the rate limit of Reload.
// Several calls before the reload starts cause one reload. It never
// blocks; a notification listener (package pgnotify) calls it.
func (p *Provider) Changed() {
	if p == nil {
		return
	}
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// Close stops the background refresh and waits for a load in progress to
// end. The provider goes on serving the keys it holds. Close always
// returns nil.
func (p *Provider) Close() error {
	if p == nil || p.done == nil {
		return nil
	}
	p.stopOnce.Do(func() {
		close(p.stop)
		p.closeCancel()
	})
	<-p.done
	return nil
}

// takeOnDemand records the start of an on-demand load if one is allowed
// now and returns 0, or returns how long until one is allowed.
func (p *Provider) takeOnDemand() time.Duration {
	p.throttleMu.Lock()
	defer p.throttleMu.Unlock()
	now := time.Now()
	if !p.lastOnDemand.IsZero() {
		if wait := p.opts.MinReloadInterval - now.Sub(p.lastOnDemand); wait > 0 {
			return wait
		}
	}
	p.lastOnDemand = now
	return 0
}

func (p *Provider) acquire(ctx context.Context) error {
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Provider) release() { <-p.sem }

// run is the background goroutine.
func (p *Provider) run() {
	defer close(p.done)
	var tick <-chan time.Time
	if p.opts.RefreshInterval > 0 {
		t := time.NewTicker(p.opts.RefreshInterval)
		defer t.Stop()
		tick = t.C
	}
	var pending *time.Timer // a throttled kick, waiting for its turn
	var pendingC <-chan time.Time
	var pendingGen uint64 // p.gen when the throttled kick came
	defer func() {
		if pending != nil {
			pending.Stop()
		}
	}()
	schedule := func(wait time.Duration, g uint64) {
		pending = time.NewTimer(wait)
		pendingC, pendingGen = pending.C, g
	}
	for {
		select {
		case <-p.stop:
			return
		case <-tick:
			p.backgroundLoad()
		case <-p.changed:
			p.backgroundLoad()
		case <-p.kick:
			if pendingC != nil {
				continue // one is scheduled already
			}
			g := p.gen.Load()
			if wait := p.onDemandLoad(g); wait > 0 {
				schedule(wait, g)
			}
		case <-pendingC:
			pendingC = nil
			if wait := p.onDemandLoad(pendingGen); wait > 0 {
				schedule(wait, pendingGen)
			}
		}
	}
}

// backgroundLoad loads with the provider's own context and timeout,
// outside the rate limit.
func (p *Provider) backgroundLoad() {
	ctx, cancel := context.WithTimeout(p.closeCtx, p.opts.LoadTimeout)
	defer cancel()
	if err := p.acquire(ctx); err != nil {
		return
	}
	defer p.release()
	_ = p.loadAndReport(ctx)
}

// onDemandLoad is the background load that Key schedules for an unknown
// version seen when p.gen was g. It does nothing if a load has started
// since (that load covers it), and returns how long to wait if the rate
// limit refuses it now. The allowance is taken only with p.sem held, so
// that a Reload never finds it used up by a load that has not started.
func (p *Provider) onDemandLoad(g uint64) (wait time.Duration) {
	ctx, cancel := context.WithTimeout(p.closeCtx, p.opts.LoadTimeout)
	defer cancel()
	if err := p.acquire(ctx); err != nil {
		return 0
	}
	defer p.release()
	if p.gen.Load() != g {
		return 0
	}
	if wait := p.takeOnDemand(); wait > 0 {
		return wait
	}
	_ = p.loadAndReport(ctx)
	return 0
}

// loadAndReport loads (p.sem held), records the outcome and reports
// failures and warnings through Options.OnError. It returns the failure,
// nil if the load was applied (even with a warning).
func (p *Provider) loadAndReport(ctx context.Context) error {
	p.gen.Add(1)
	defer p.ended.Add(1)
	warn, err := p.loadLocked(ctx)
	if err != nil && p.closeCtx.Err() != nil && errors.Is(err, context.Canceled) {
		return err // closing: not worth reporting
	}
	if e := cmp.Or(err, warn); e != nil {
		p.opts.OnError(e)
	}
	return err
}

// loadLocked loads from the source and swaps the keys in (p.sem held).
// err means nothing changed; warn means the keys were swapped in but some
// versions were left out or kept as they were.
func (p *Provider) loadLocked(ctx context.Context) (warn, err error) {
	defer func() {
		p.statusMu.Lock()
		defer p.statusMu.Unlock()
		now := time.Now()
		if err == nil {
			p.loadedAt = now
		}
		p.lastFailure = err
		if e := cmp.Or(err, warn); e != nil {
			p.lastErr, p.lastErrAt = e, now
		} else {
			p.lastErr = nil
		}
	}()
	rows, err := p.src.LoadKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keytable: loading keys: %w", err)
	}
	next, warn, err := p.build(ctx, p.state.Load(), rows)
	if err != nil {
		return nil, err
	}
	p.state.Store(next)
	return warn, nil
}

// build makes the next snapshot from the loaded rows, reusing what old
// holds. See the Provider documentation for the rules.
func (p *Provider) build(ctx context.Context, old *snapshot, rows []WrappedKey) (*snapshot, error, error) {
	var active *WrappedKey
	seen := make(map[uint32]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.Version == 0 {
			return nil, nil, fmt.Errorf("%w: the source holds a key with version 0", ErrCorrupt)
		}
		if seen[r.Version] {
			return nil, nil, fmt.Errorf("%w: the source holds version %d twice", ErrCorrupt, r.Version)
		}
		seen[r.Version] = true
		if r.Active && len(r.Wrapped) == 0 {
			return nil, nil, fmt.Errorf("%w: version %d is active but retired (its key is empty)", ErrCorrupt, r.Version)
		}
		if r.Active {
			if active != nil {
				return nil, nil, fmt.Errorf("%w: versions %d and %d are both active", ErrCorrupt, active.Version, r.Version)
			}
			active = r
		}
	}
	if active == nil {
		if len(rows) == 0 {
			return nil, nil, fmt.Errorf("%w: the key table is empty (add and activate a key first)", ErrNoActiveKey)
		}
		return nil, nil, fmt.Errorf("%w: none of the %d stored versions is active", ErrNoActiveKey, len(rows))
	}

	next := &snapshot{keys: make(map[uint32]entry, len(rows))}
	var warns []error
	for _, r := range rows {
		if len(r.Wrapped) == 0 {
			continue // retired (a tombstone): no key, dropped if held
		}
		var prev entry
		var held bool
		if old != nil {
			prev, held = old.keys[r.Version]
		}
		if held && bytes.Equal(prev.wrapped, r.Wrapped) {
			next.keys[r.Version] = prev // unchanged: no KEK call
			continue
		}
		k, err := p.kek.UnwrapKey(ctx, r.Version, r.Wrapped)
		if err == nil && k.Version() != r.Version {
			err = fmt.Errorf("%w: the KEK returned version %d for version %d", keyprovider.ErrUnwrap, k.Version(), r.Version)
		}
		switch {
		case err != nil && held:
			// Re-wrapped under a KEK this instance cannot use (yet):
			// keep the key it has.
			warns = append(warns, fmt.Errorf("keytable: version %d: its stored key changed and does not unwrap; keeping the key held before: %w", r.Version, err))
			next.keys[r.Version] = prev
		case err != nil && r.Active:
			return nil, nil, fmt.Errorf("keytable: active version %d: %w", r.Version, err)
		case err != nil:
			warns = append(warns, fmt.Errorf("keytable: version %d left out: %w", r.Version, err))
		case held && !prev.key.Equal(k):
			// A version names one key forever.
			warns = append(warns, fmt.Errorf("%w: version %d; keeping the key held before", ErrKeyChanged, r.Version))
			next.keys[r.Version] = prev
		case held:
			// Re-wrapped (KEK rotation): same material, keep the Key
			// value so that caches keyed by it stay valid.
			next.keys[r.Version] = entry{key: prev.key, wrapped: bytes.Clone(r.Wrapped)}
		default:
			next.keys[r.Version] = entry{key: k, wrapped: bytes.Clone(r.Wrapped)}
		}
	}
	next.active = next.keys[active.Version].key
	return next, errors.Join(warns...), nil
}

var (
	_ keyprovider.Provider = (*Provider)(nil)
	_ keyprovider.Reloader = (*Provider)(nil)
	_ Source               = (*Table)(nil)
	_ Keyring              = (*Provider)(nil)
	_ Keyring              = (*keyprovider.Static)(nil)
)
