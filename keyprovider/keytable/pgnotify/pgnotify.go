// Package pgnotify delivers PostgreSQL notifications of changes to the
// colcrypt key table, so that every application instance reloads its keys
// within a second of a change instead of at its next periodic refresh.
//
// Every change that keytable.Table makes (Add, AddNew, Activate, Retire,
// Rewrap, Import) sends a notification on the table's channel in the
// transaction that makes it. A Listener holds one dedicated pgx
// connection, LISTENs on the channel and calls a function, typically
// keytable.Provider.Changed, for every notification:
//
//	keys, err := table.NewProvider(ctx, keytable.Options{})
//	l, err := pgnotify.Listen(ctx, dsn, table.Channel(), keys.Changed, pgnotify.Options{})
//	defer l.Close()
//
// A lost connection is reported and re-established, with backoff; after
// every (re)connection the function is called once more, because
// notifications sent while nobody listened are lost. The periodic refresh
// of keytable.Provider remains the safety net.
//
// This package imports pgx; packages keyprovider and keytable do not.
package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of Options.
const (
	DefaultRetryDelay    = 500 * time.Millisecond
	DefaultMaxRetryDelay = 30 * time.Second
	DefaultPingInterval  = 30 * time.Second
)

// Options tunes a Listener. The zero Options is ready to use.
type Options struct {
	// OnError is called with every connection failure; the listener
	// reconnects on its own. Nil means log it with slog.Default at level
	// Warn.
	OnError func(error)

	// RetryDelay is the wait before the first reconnection attempt; it
	// doubles after each failed attempt, up to MaxRetryDelay. Zero means
	// DefaultRetryDelay and DefaultMaxRetryDelay.
	RetryDelay, MaxRetryDelay time.Duration

	// PingInterval is how long the listener waits for a notification
	// before it pings the server to detect a dead connection. Zero means
	// DefaultPingInterval.
	PingInterval time.Duration
}

// A Listener listens for notifications on one channel until it is closed.
type Listener struct {
	cfg      *pgx.ConnConfig
	channel  string
	onNotify func()
	opts     Options

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var channelName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Listen connects to the PostgreSQL server at connString (a URL or
// key=value DSN, as pgx.ParseConfig reads), LISTENs on channel, calls
// onNotify once (to catch up with changes made before it listened), and
// then calls onNotify for every notification on the channel, from one
// goroutine, until Close. onNotify must not block for long.
//
// ctx bounds the first connection only: Listen fails if it cannot connect
// and listen, so that a wrong DSN is seen at start-up. Later failures are
// reported through Options.OnError and retried.
func Listen(ctx context.Context, connString, channel string, onNotify func(), opts Options) (*Listener, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		// pgx quotes what it cannot parse and hides a password only where
		// it recognises one: keep none of it but a file's read error.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("pgnotify: the connection string names a file that cannot be read: %s: %w", pe.Op, pe.Err)
		}
		return nil, errors.New("pgnotify: the connection string does not parse (not repeated here, as it may hold a password)")
	}
	return ListenConfig(ctx, cfg, channel, onNotify, opts)
}

// ListenConfig is Listen with a parsed pgx configuration. It copies cfg.
func ListenConfig(ctx context.Context, cfg *pgx.ConnConfig, channel string, onNotify func(), opts Options) (*Listener, error) {
	if cfg == nil {
		return nil, errors.New("pgnotify: nil ConnConfig")
	}
	if onNotify == nil {
		return nil, errors.New("pgnotify: nil onNotify")
	}
	if !channelName.MatchString(channel) {
		return nil, fmt.Errorf("pgnotify: channel name %q: want lower-case letters, digits and underscores, at most 63 bytes", channel)
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) {
			slog.Default().Warn("colcrypt: key table notification listener", "error", err)
		}
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	if opts.MaxRetryDelay <= 0 {
		opts.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if opts.MaxRetryDelay < opts.RetryDelay {
		opts.MaxRetryDelay = opts.RetryDelay
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	l := &Listener{cfg: cfg.Copy(), channel: channel, onNotify: onNotify, opts: opts, done: make(chan struct{})}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	onNotify()
	go l.run(runCtx, conn)
	return l, nil
}

// Close stops listening, closes the connection and waits for the
// listener's goroutine to end. onNotify is not called after Close returns.
// It always returns nil.
func (l *Listener) Close() error {
	if l == nil || l.cancel == nil {
		return nil
	}
	l.closeOnce.Do(l.cancel)
	<-l.done
	return nil
}

// connect opens a connection and LISTENs on the channel.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: connecting: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("pgnotify: LISTEN %s: %w", l.channel, err)
	}
	return conn, nil
}

func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	for {
		err := l.wait(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		l.opts.OnError(fmt.Errorf("pgnotify: listening on %s: %w", l.channel, err))
		closeConn(conn)
		if conn = l.reconnect(ctx); conn == nil {
			return // closed
		}
		l.onNotify() // notifications may have been missed meanwhile
	}
}

// wait delivers notifications until the connection fails or ctx ends.
func (l *Listener) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.opts.PingInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if n != nil && n.Channel == l.channel {
				l.onNotify()
			}
			continue
		}
		if !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
			return err
		}
		// Quiet for PingInterval: make sure the connection is alive.
		pctx, cancel := context.WithTimeout(ctx, l.opts.PingInterval)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// reconnect connects again with backoff; it returns nil when ctx ends.
func (l *Listener) reconnect(ctx context.Context) *pgx.Conn {
	delay := l.opts.RetryDelay
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(l.opts.PingInterval, 10*time.Second))
		conn, err := l.connect(cctx)
		cancel()
		if err == nil {
			return conn
		}
		if ctx.Err() != nil {
			return nil
		}
		l.opts.OnError(err)
		delay = min(2*delay, l.opts.MaxRetryDelay)
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
