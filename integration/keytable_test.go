package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gocloud.dev/gcerrors"
	"gocloud.dev/secrets"
	"gocloud.dev/secrets/localsecrets"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/keyprovider/cloudkek"
	"github.com/colcrypt/colcrypt/keyprovider/keytable"
	"github.com/colcrypt/colcrypt/keyprovider/keytable/pgnotify"
)

// The tests of the key table (package keyprovider/keytable): its SQL, its
// provider against a real table, LISTEN/NOTIFY between two "instances",
// KMS wrapping through gocloud's local keeper, and moving from
// environment keys to the table. Each test works in its own key table.
// Run them alone with -run KeyTable.

// notifyDeadline is how soon another instance must see a change to the
// key table through LISTEN/NOTIFY.
const notifyDeadline = time.Second

// ktErrors collects the errors a provider or listener reports.
type ktErrors struct {
	mu   sync.Mutex
	errs []error
}

func (e *ktErrors) report(err error) {
	e.mu.Lock()
	e.errs = append(e.errs, err)
	e.mu.Unlock()
}

func (e *ktErrors) list() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.errs)
}

// none fails t if anything was reported.
func (e *ktErrors) none(t *testing.T, who string) {
	t.Helper()
	for _, err := range e.list() {
		t.Errorf("%s reported: %v", who, err)
	}
}

// waitFor waits until some reported error satisfies match.
func (e *ktErrors) waitFor(t *testing.T, what string, match func(error) bool) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, err := range e.list() {
			if match(err) {
				return err
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s reported within 10s; reported: %v", what, e.list())
	return nil
}

// ktLocalKEK returns a LocalKEK with a random master key.
func ktLocalKEK(t *testing.T) *keyprovider.LocalKEK {
	t.Helper()
	master := make([]byte, 32)
	_, _ = rand.Read(master)
	k, err := keyprovider.NewLocalKEK(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ktCloudKEK returns a cloudkek.KEK on gocloud's local keeper
// (base64key://) with a random key.
func ktCloudKEK(t *testing.T) *cloudkek.KEK {
	t.Helper()
	sk, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := cloudkek.Open(testContext(t), "base64key://"+base64.URLEncoding.EncodeToString(sk[:]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// ktNewTableName returns a fresh key-table name and drops that table (and
// its renamed form, see TestKeyTableRefreshFailure) when t ends.
func ktNewTableName(t *testing.T, db *sql.DB) string {
	t.Helper()
	name := uniqueName(t)
	t.Cleanup(func() {
		dropTable(t, db, pgx.Identifier{name}.Sanitize())
		dropTable(t, db, pgx.Identifier{name + "_gone"}.Sanitize())
	})
	return name
}

// ktTable returns the key table called name in db, wrapped by kek,
// creating it.
func ktTable(t *testing.T, db *sql.DB, kek keyprovider.KEK, name string) *keytable.Table {
	t.Helper()
	tbl, err := keytable.NewTable(db, kek, keytable.Config{Table: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Create(testContext(t)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return tbl
}

// ktProvider starts a provider on src, closed when t ends.
func ktProvider(t *testing.T, src keytable.Source, kek keyprovider.KEK, opts keytable.Options) *keytable.Provider {
	t.Helper()
	p, err := keytable.NewProvider(testContext(t), src, kek, opts)
	if err != nil {
		t.Fatalf("NewProvider: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ktListen starts a pgnotify listener that calls p.Changed, closed when t
// ends. It pings every 100ms when there is no notification, so that the
// tests exercise that path too.
func ktListen(t *testing.T, dsn string, tbl *keytable.Table, p *keytable.Provider, onError func(error)) *pgnotify.Listener {
	t.Helper()
	return ktListenOpts(t, dsn, tbl, p, pgnotify.Options{OnError: onError, RetryDelay: 50 * time.Millisecond, PingInterval: 100 * time.Millisecond})
}

func ktListenOpts(t *testing.T, dsn string, tbl *keytable.Table, p *keytable.Provider, opts pgnotify.Options) *pgnotify.Listener {
	t.Helper()
	l, err := pgnotify.Listen(testContext(t), dsn, tbl.Channel(), p.Changed, opts)
	if err != nil {
		t.Fatalf("pgnotify.Listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// ktAddActive adds n new versions to tbl and activates the last.
func ktAddActive(t *testing.T, tbl *keytable.Table, n int) uint32 {
	t.Helper()
	ctx := testContext(t)
	var v uint32
	for range n {
		var err error
		if v, err = tbl.AddNew(ctx); err != nil {
			t.Fatalf("AddNew: %v", err)
		}
	}
	if err := tbl.Activate(ctx, v); err != nil {
		t.Fatalf("Activate(%d): %v", v, err)
	}
	return v
}

func ktActive(t *testing.T, p keyprovider.Provider) uint32 {
	t.Helper()
	k, err := p.Active()
	if err != nil {
		t.Fatalf("Active: %v", err)
	}
	return k.Version()
}

// ktSeal encrypts plaintext with c and checks the version it is under.
func ktSeal(t *testing.T, c *encryptedtype.Codec, plaintext string, want uint32) string {
	t.Helper()
	v, err := c.Seal(context.Background(), []byte(plaintext))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if got, _ := encryptedtype.Version(v); got != want {
		t.Fatalf("sealed under version %d, want %d", got, want)
	}
	return string(v)
}

// ktData is a data table of encrypted values.
type ktData struct {
	db    *sql.DB
	table string // quoted
}

func ktNewData(t *testing.T, db *sql.DB) *ktData {
	return &ktData{db: db, table: createTable(t, db, "v TEXT NOT NULL, plain TEXT NOT NULL")}
}

// insert stores plaintext encrypted by c (the plain column is the test's
// record of what the value should decrypt to).
func (d *ktData) insert(t *testing.T, c *encryptedtype.Codec, plaintext string, version uint32) {
	t.Helper()
	v := ktSeal(t, c, plaintext, version)
	if _, err := d.db.ExecContext(testContext(t), "INSERT INTO "+d.table+" (v, plain) VALUES ($1, $2)", v, plaintext); err != nil {
		t.Fatal(err)
	}
}

// raw returns every stored value by id.
func (d *ktData) raw(t *testing.T) map[int64]string {
	t.Helper()
	rows, err := d.db.QueryContext(testContext(t), "SELECT id, v FROM "+d.table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		out[id] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAll decrypts every row with each codec and compares with plain.
// It returns the number of rows.
func (d *ktData) checkAll(t *testing.T, codecs ...*encryptedtype.Codec) int {
	t.Helper()
	ctx := testContext(t)
	rows, err := d.db.QueryContext(ctx, "SELECT id, v, plain FROM "+d.table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var v, plain string
		if err := rows.Scan(&id, &v, &plain); err != nil {
			t.Fatal(err)
		}
		for i, c := range codecs {
			pt, err := c.Open(ctx, []byte(v))
			if err != nil || string(pt) != plain {
				t.Errorf("row %d, codec %d: Open = %q, %v; want %q", id, i, pt, err, plain)
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKeyTableTwoInstancesNotify runs two "instances" on one key table,
// each with its own connection pool, provider and LISTEN connection. One
// adds and activates a new version; the other, with no periodic refresh,
// holds it and encrypts under it within a second, through LISTEN/NOTIFY
// alone. Rows written by either are readable by both, through a Codec and
// through the column types' Scan.
func TestKeyTableTwoInstancesNotify(t *testing.T) {
	dsn := databaseURL(t)
	admin := openSQL(t, dsn)
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	name := ktNewTableName(t, admin)
	v1 := ktAddActive(t, ktTable(t, admin, kek, name), 1)

	type instance struct {
		tbl    *keytable.Table
		p      *keytable.Provider
		codec  *encryptedtype.Codec
		errors *ktErrors
	}
	start := func() *instance {
		db := openSQL(t, dsn)
		in := &instance{errors: &ktErrors{}}
		var err error
		if in.tbl, err = keytable.NewTable(db, kek, keytable.Config{Table: name}); err != nil {
			t.Fatal(err)
		}
		// No periodic refresh: only a notification can bring a change.
		in.p = ktProvider(t, in.tbl, kek, keytable.Options{RefreshInterval: -1, OnError: in.errors.report})
		ktListen(t, dsn, in.tbl, in.p, in.errors.report)
		in.codec = encryptedtype.NewCodec(in.p)
		return in
	}
	a, b := start(), start()
	time.Sleep(250 * time.Millisecond) // a couple of listener pings
	data := ktNewData(t, admin)
	data.insert(t, a.codec, "written by A under v1", v1)
	data.insert(t, b.codec, "written by B under v1", v1)

	// A adds a version: B holds it (it can read values under it) within a
	// second, while still writing under v1. Versions does not schedule a
	// reload, unlike Key, so only the notification can bring it.
	v2, err := a.tbl.AddNew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	for !slices.Contains(b.p.Versions(), v2) {
		if time.Since(added) > notifyDeadline {
			t.Fatalf("B does not hold version %d %v after A added it (holds %v)", v2, notifyDeadline, b.p.Versions())
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("B held the added version %v after the commit", time.Since(added))
	if got := ktActive(t, b.p); got != v1 {
		t.Fatalf("B writes under %d after an Add, want still %d", got, v1)
	}

	// A activates it: B encrypts under it within a second.
	if err := a.tbl.Activate(ctx, v2); err != nil {
		t.Fatal(err)
	}
	activated := time.Now()
	for {
		v, err := b.codec.Seal(ctx, []byte("probe"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := encryptedtype.Version(v); got == v2 {
			break
		}
		if time.Since(activated) > notifyDeadline {
			t.Fatalf("B does not encrypt under version %d %v after A activated it", v2, notifyDeadline)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("B encrypted under the activated version %v after the commit", time.Since(activated))
	data.insert(t, b.codec, "written by B under v2", v2)
	eventuallyActive(t, a.p, v2) // A's own listener, same path
	data.insert(t, a.codec, "written by A under v2", v2)

	// Both read everything, through Open …
	if n := data.checkAll(t, a.codec, b.codec); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
	// … and through the column types' Scan, with each as the default.
	_ = newKeyring(t) // exclusive use of the default provider
	for _, in := range []*instance{a, b} {
		func() {
			encryptedtype.SetDefault(in.p)
			rows, err := admin.QueryContext(ctx, "SELECT v, plain FROM "+data.table)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var v encryptedtype.String
				var plain string
				if err := rows.Scan(&v, &plain); err != nil {
					t.Fatalf("Scan: %v", err)
				}
				if v.Plaintext() != plain {
					t.Errorf("Scan read %q, want %q", v.Plaintext(), plain)
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		}()
	}
	a.errors.none(t, "instance A")
	b.errors.none(t, "instance B")
}

func eventuallyActive(t *testing.T, p *keytable.Provider, want uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ktActive(t, p) != want {
		if time.Now().After(deadline) {
			t.Fatalf("active version %d, want %d", ktActive(t, p), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyTableListenerReconnects: when the LISTEN connection is killed,
// the listener reports it, reconnects, and changes are seen again.
func TestKeyTableListenerReconnects(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	tbl := ktTable(t, db, kek, ktNewTableName(t, db))
	ktAddActive(t, tbl, 1)
	var errs ktErrors
	p := ktProvider(t, tbl, kek, keytable.Options{RefreshInterval: -1, OnError: errs.report})
	// The default PingInterval (30s): the listening backend is found by
	// its last query, which a ping would change.
	ktListenOpts(t, dsn, tbl, p, pgnotify.Options{OnError: errs.report, RetryDelay: 50 * time.Millisecond})

	res, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query = $1`, "LISTEN "+pgx.Identifier{tbl.Channel()}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("terminated %d listening backends, want 1", n)
	}
	errs.waitFor(t, "lost connection", func(err error) bool { return strings.Contains(err.Error(), "pgnotify: listening on") })

	// Wait until it listens again, then a change must arrive within a second.
	deadline := time.Now().Add(10 * time.Second)
	for !queryBool(t, db, `SELECT count(*) = 1 FROM pg_stat_activity WHERE query = $1`, "LISTEN "+pgx.Identifier{tbl.Channel()}.Sanitize()) {
		if time.Now().After(deadline) {
			t.Fatal("the listener did not reconnect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	v := ktAddActive(t, tbl, 1)
	activated := time.Now()
	for ktActive(t, p) != v {
		if time.Since(activated) > notifyDeadline {
			t.Fatalf("version %d not active %v after activation, after a reconnection", v, notifyDeadline)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyTableRefreshFailure: when the table disappears (renamed) or the
// provider's database pool is closed mid-run, refreshes fail, are
// reported through the callback, and the provider keeps serving the keys
// it had; when the table is back, refreshes succeed again.
func TestKeyTableRefreshFailure(t *testing.T) {
	dsn := databaseURL(t)
	admin := openSQL(t, dsn)
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	name := ktNewTableName(t, admin)
	ktAddActive(t, ktTable(t, admin, kek, name), 2) // v1, v2 active

	// The provider has a pool of its own, closed in the second part.
	pdb, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	tbl, err := keytable.NewTable(pdb, kek, keytable.Config{Table: name})
	if err != nil {
		t.Fatal(err)
	}
	var errs ktErrors
	p := ktProvider(t, tbl, kek, keytable.Options{RefreshInterval: 20 * time.Millisecond, OnError: errs.report})
	codec := encryptedtype.NewCodec(p)
	v2 := ktSeal(t, codec, "under version 2", 2)
	v1 := ktSeal(t, encryptedtype.NewCodec(mustStaticFrom(t, p, 1)), "under version 1", 1)
	k2, _ := p.Key(2)

	stillServing := func(when string) {
		t.Helper()
		if k, err := p.Active(); err != nil || k != k2 {
			t.Fatalf("%s: Active = %v, %v; want the version 2 key held before", when, k, err)
		}
		for _, c := range []struct{ v, want string }{{v1, "under version 1"}, {v2, "under version 2"}} {
			if pt, err := codec.Open(ctx, []byte(c.v)); err != nil || string(pt) != c.want {
				t.Fatalf("%s: Open = %q, %v", when, pt, err)
			}
		}
		ktSeal(t, codec, "still writing", 2)
		if p.Status().LastError == nil {
			t.Errorf("%s: Status().LastError is nil", when)
		}
	}

	// 1. The table is renamed away.
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s RENAME TO %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{name + "_gone"}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	err = errs.waitFor(t, "missing table", func(err error) bool { return strings.Contains(err.Error(), "does not exist") })
	t.Logf("reported: %v", err)
	stillServing("table renamed away")

	// It comes back: the next refresh succeeds.
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s RENAME TO %s",
		pgx.Identifier{name + "_gone"}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Status().LastError != nil {
		if time.Now().After(deadline) {
			t.Fatalf("refresh does not recover: %v", p.Status().LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// 2. Emptied by mistake: no active key is a failure, not a switch.
	if _, err := admin.ExecContext(ctx, "UPDATE "+pgx.Identifier{name}.Sanitize()+" SET active = false"); err != nil {
		t.Fatal(err)
	}
	errs.waitFor(t, "no active key", func(err error) bool { return errors.Is(err, keytable.ErrNoActiveKey) })
	stillServing("no active row")
	if _, err := admin.ExecContext(ctx, "UPDATE "+pgx.Identifier{name}.Sanitize()+" SET active = true WHERE version = 2"); err != nil {
		t.Fatal(err)
	}

	// 3. The provider's database pool is closed mid-run.
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	err = errs.waitFor(t, "closed database", func(err error) bool { return strings.Contains(err.Error(), "database is closed") })
	t.Logf("reported: %v", err)
	stillServing("database closed")
	if err := p.Reload(ctx); err == nil {
		t.Error("Reload on a closed database succeeded")
	}
	for _, err := range errs.list() {
		for _, k := range []keyprovider.Key{k2} {
			b := k.Bytes()
			if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(b)) || bytes.Contains([]byte(err.Error()), b) {
				t.Errorf("reported error contains key material: %v", err)
			}
		}
	}
}

// mustStaticFrom returns a Static holding only p's key of version v,
// active: a codec that writes under an older version.
func mustStaticFrom(t *testing.T, p keyprovider.Provider, v uint32) *keyprovider.Static {
	t.Helper()
	k, err := p.Key(v)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keyprovider.NewStatic(v, k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ktCountingKEK counts the calls to the KEK it wraps.
type ktCountingKEK struct {
	kek            keyprovider.KEK
	wraps, unwraps atomic.Int64
}

func (c *ktCountingKEK) WrapKey(ctx context.Context, k keyprovider.Key) ([]byte, error) {
	c.wraps.Add(1)
	return c.kek.WrapKey(ctx, k)
}

func (c *ktCountingKEK) UnwrapKey(ctx context.Context, v uint32, w []byte) (keyprovider.Key, error) {
	c.unwraps.Add(1)
	return c.kek.UnwrapKey(ctx, v, w)
}

// ktCountingSource counts loads.
type ktCountingSource struct {
	src   keytable.Source
	loads atomic.Int64
}

func (c *ktCountingSource) LoadKeys(ctx context.Context) ([]keytable.WrappedKey, error) {
	c.loads.Add(1)
	return c.src.LoadKeys(ctx)
}

// TestKeyTableEnvelopeCaching: with the keys wrapped by a KMS (gocloud's
// local keeper, behind a counting wrapper), writing and reading 10,000
// rows after start-up makes zero wrap and unwrap calls, although the
// provider reloads from the table all along (a short refresh interval and
// notifications): each version is unwrapped once, at start-up.
func TestKeyTableEnvelopeCaching(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	ctx := testContext(t)
	kek := &ktCountingKEK{kek: ktCloudKEK(t)}
	tbl := ktTable(t, db, kek, ktNewTableName(t, db))
	ktAddActive(t, tbl, 2) // v1, v2 active
	src := &ktCountingSource{src: tbl}
	var errs ktErrors
	p := ktProvider(t, src, kek, keytable.Options{RefreshInterval: 10 * time.Millisecond, OnError: errs.report})
	ktListen(t, dsn, tbl, p, errs.report)

	_ = newKeyring(t) // exclusive use of the default provider
	encryptedtype.SetDefault(p)
	codec := encryptedtype.Default()
	data := createTable(t, db, "email TEXT NOT NULL, plain TEXT NOT NULL")
	// A row under version 1, written before the counting starts.
	if _, err := db.ExecContext(ctx, "INSERT INTO "+data+" (email, plain) VALUES ($1, 'old')",
		ktSeal(t, encryptedtype.NewCodec(mustStaticFrom(t, p, 1)), "old", 1)); err != nil {
		t.Fatal(err)
	}

	kek.wraps.Store(0)
	kek.unwraps.Store(0)
	loads := src.loads.Load()

	const rows, batch = 10_000, 500
	for start := 0; start < rows; start += batch {
		var sb strings.Builder
		args := make([]any, 0, 2*batch)
		for i := start; i < start+batch; i++ {
			if i > start {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "($%d, $%d)", len(args)+1, len(args)+2)
			plain := fmt.Sprintf("user%05d@example.com", i)
			// Half through the column type's Value, half through the Codec.
			if i%2 == 0 {
				args = append(args, encryptedtype.NewString(plain), plain)
			} else {
				args = append(args, ktSeal(t, codec, plain, 2), plain)
			}
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+data+" (email, plain) VALUES "+sb.String(), args...); err != nil {
			t.Fatal(err)
		}
		// Notifications make the provider reload now and then too.
		if _, err := db.ExecContext(ctx, "SELECT pg_notify($1, 'test')", tbl.Channel()); err != nil {
			t.Fatal(err)
		}
	}

	r, err := db.QueryContext(ctx, "SELECT email, plain FROM "+data)
	if err != nil {
		t.Fatal(err)
	}
	n, old := 0, 0
	for r.Next() {
		var e encryptedtype.String
		var plain string
		if err := r.Scan(&e, &plain); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if e.Plaintext() != plain {
			t.Fatalf("read %q, want %q", e.Plaintext(), plain)
		}
		if plain == "old" {
			old++
		}
		n++
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n != rows+1 || old != 1 {
		t.Fatalf("read %d rows (%d old), want %d (1 old)", n, old, rows+1)
	}
	reloads := src.loads.Load() - loads
	if reloads < 3 {
		t.Errorf("only %d reloads during the test; the test means to show that reloads make no KEK call", reloads)
	}
	if w, u := kek.wraps.Load(), kek.unwraps.Load(); w != 0 || u != 0 {
		t.Fatalf("%d wraps and %d unwraps while writing and reading %d rows (%d reloads), want none", w, u, rows, reloads)
	}
	t.Logf("%d rows written and read, %d reloads, 0 KEK calls", rows, reloads)
	errs.none(t, "provider")
}

// ktDownKeeper is a gocloud secrets driver whose KMS is unreachable.
type ktDownKeeper struct{}

var errKTDown = errors.New("dial tcp 10.0.0.1:443: i/o timeout")

func (ktDownKeeper) Decrypt(context.Context, []byte) ([]byte, error) { return nil, errKTDown }
func (ktDownKeeper) Encrypt(context.Context, []byte) ([]byte, error) { return nil, errKTDown }
func (ktDownKeeper) Close() error                                    { return nil }
func (ktDownKeeper) ErrorAs(error, any) bool                         { return false }
func (ktDownKeeper) ErrorCode(error) gcerrors.ErrorCode              { return gcerrors.DeadlineExceeded }

// TestKeyTableUnavailableKMS: an instance that starts while its KMS is
// unreachable, or with the wrong KEK, fails with an error naming the KMS
// (or KEK), and table operations that need the KEK refuse.
func TestKeyTableUnavailableKMS(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	ctx := testContext(t)
	good := ktCloudKEK(t)
	name := ktNewTableName(t, db)
	tbl := ktTable(t, db, good, name)
	ktAddActive(t, tbl, 1)

	down := cloudkek.New(secrets.NewKeeper(ktDownKeeper{}), "gcpkms")
	_, err := keytable.NewProvider(ctx, tbl, down, keytable.Options{})
	if err == nil || !errors.Is(err, keyprovider.ErrUnwrap) || !strings.Contains(err.Error(), "cloudkek gcpkms") ||
		gcerrors.Code(err) != gcerrors.DeadlineExceeded {
		t.Fatalf("NewProvider with the KMS down = %v (code %v)", err, gcerrors.Code(err))
	}
	t.Logf("KMS down: %v", err)

	_, err = keytable.NewProvider(ctx, tbl, ktCloudKEK(t), keytable.Options{})
	if err == nil || !strings.Contains(err.Error(), "cloudkek base64key") {
		t.Fatalf("NewProvider with another key = %v", err)
	}
	t.Logf("wrong key: %v", err)

	downTbl, err := keytable.NewTable(db, down, keytable.Config{Table: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := downTbl.AddNew(ctx); !errors.Is(err, keyprovider.ErrWrap) {
		t.Errorf("AddNew with the KMS down = %v, want ErrWrap", err)
	}
	if n := len(ktRows(t, tbl)); n != 1 {
		t.Errorf("%d rows after a failed AddNew, want 1", n)
	}
}

func ktRows(t *testing.T, tbl *keytable.Table) []keytable.WrappedKey {
	t.Helper()
	rows, err := tbl.LoadKeys(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestKeyTableImportFromEnv moves a deployment from keys in the
// environment (FromEnv) to the key table wrapped by a KMS: the same
// versions and active version, so every existing row reads, and nothing
// but the keys is written.
func TestKeyTableImportFromEnv(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	ctx := testContext(t)
	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	t.Setenv(keyprovider.EnvKeys, keyprovider.EncodeKeys(k1, k2))
	t.Setenv(keyprovider.EnvActiveKey, "2")
	envKeys, err := keyprovider.FromEnv()
	if err != nil {
		t.Fatal(err)
	}

	// Rows written while the keys were in the environment.
	data := ktNewData(t, db)
	data.insert(t, encryptedtype.NewCodec(mustStaticFrom(t, envKeys, 1)), "from the v1 days", 1)
	data.insert(t, encryptedtype.NewCodec(envKeys), "from the v2 days", 2)
	before := data.raw(t)

	kek := ktCloudKEK(t)
	tbl := ktTable(t, db, kek, ktNewTableName(t, db))
	added, err := tbl.Import(ctx, envKeys)
	if err != nil || added != 2 {
		t.Fatalf("Import = %d, %v; want 2 added", added, err)
	}
	if added, err := tbl.Import(ctx, envKeys); err != nil || added != 0 {
		t.Fatalf("second Import = %d, %v; want 0 added (idempotent)", added, err)
	}

	p := ktProvider(t, tbl, kek, keytable.Options{})
	if ktActive(t, p) != 2 || !slices.Equal(p.Versions(), []uint32{1, 2}) {
		t.Fatalf("after Import: active %d, versions %v", ktActive(t, p), p.Versions())
	}
	codec := encryptedtype.NewCodec(p)
	data.checkAll(t, codec, encryptedtype.NewCodec(envKeys))
	data.insert(t, codec, "from the key table", 2)
	data.checkAll(t, encryptedtype.NewCodec(envKeys)) // and the old config reads new rows
	after := data.raw(t)
	for id, v := range before {
		if after[id] != v {
			t.Errorf("row %d was rewritten by the import", id)
		}
	}

	// Stored wrapped: the key column holds no raw key.
	for _, r := range ktRows(t, tbl) {
		k, _ := envKeys.Key(r.Version)
		if bytes.Contains(r.Wrapped, k.Bytes()) {
			t.Errorf("version %d is stored unwrapped", r.Version)
		}
	}

	// Conflicts change nothing.
	other1, _ := keyprovider.GenerateKey(1)
	conflicting, _ := keyprovider.NewStatic(2, other1, k2)
	if _, err := tbl.Import(ctx, conflicting); !errors.Is(err, keytable.ErrImportConflict) {
		t.Errorf("Import of other material = %v, want ErrImportConflict", err)
	}
	k3, _ := keyprovider.GenerateKey(3)
	otherActive, _ := keyprovider.NewStatic(3, k1, k2, k3)
	if _, err := tbl.Import(ctx, otherActive); !errors.Is(err, keytable.ErrImportConflict) {
		t.Errorf("Import with another active version = %v, want ErrImportConflict", err)
	}
	if n := len(ktRows(t, tbl)); n != 2 {
		t.Errorf("%d keys after refused imports, want 2", n)
	}
}

// TestKeyTableRetire: retiring refuses the active version, refuses
// without a usage check unless forced, refuses while the check finds
// values, and once done is seen by other instances within a second.
func TestKeyTableRetire(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	tbl := ktTable(t, db, kek, ktNewTableName(t, db))
	ktAddActive(t, tbl, 1) // v1 active
	p := ktProvider(t, tbl, kek, keytable.Options{RefreshInterval: -1})
	ktListen(t, dsn, tbl, p, nil)
	data := ktNewData(t, db)
	data.insert(t, encryptedtype.NewCodec(p), "under v1", 1)
	v3 := ktAddActive(t, tbl, 2) // v2, v3; v3 active
	v2 := v3 - 1

	census := func(ctx context.Context, version uint32) (bool, error) {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+data.table+" WHERE v LIKE $1", fmt.Sprintf("v%d:%%", version)).Scan(&n)
		return n > 0, err
	}
	if err := tbl.Retire(ctx, 1, keytable.RetireOptions{}); !errors.Is(err, keytable.ErrNoUsageCheck) {
		t.Errorf("Retire without a check = %v, want ErrNoUsageCheck", err)
	}
	if err := tbl.Retire(ctx, v3, keytable.RetireOptions{Force: true}); !errors.Is(err, keytable.ErrActiveKey) {
		t.Errorf("Retire of the active version = %v, want ErrActiveKey", err)
	}
	if err := tbl.Retire(ctx, 99, keytable.RetireOptions{Force: true}); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("Retire of a missing version = %v, want ErrUnknownVersion", err)
	}
	if err := tbl.Retire(ctx, 1, keytable.RetireOptions{InUse: census}); !errors.Is(err, keytable.ErrKeyInUse) {
		t.Errorf("Retire of a version in use = %v, want ErrKeyInUse", err)
	}
	checkFails := errors.New("census unavailable")
	if err := tbl.Retire(ctx, 1, keytable.RetireOptions{InUse: func(context.Context, uint32) (bool, error) { return false, checkFails }}); !errors.Is(err, checkFails) {
		t.Errorf("Retire with a failing check = %v", err)
	}
	if n := len(ktRows(t, tbl)); n != 3 {
		t.Fatalf("%d keys after refused retirements, want 3", n)
	}

	// Re-save the row under v3 (what the rotation job does), then retire.
	codec := encryptedtype.NewCodec(p)
	eventuallyActive(t, p, v3)
	if _, err := db.ExecContext(ctx, "UPDATE "+data.table+" SET v = $1", ktSeal(t, codec, "under v1", v3)); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Retire(ctx, 1, keytable.RetireOptions{InUse: census}); err != nil {
		t.Fatalf("Retire of an unused version: %v", err)
	}
	retired := time.Now()
	for slices.Contains(p.Versions(), 1) {
		if time.Since(retired) > notifyDeadline {
			t.Fatalf("the provider still holds version 1 %v after it was retired", notifyDeadline)
		}
		time.Sleep(time.Millisecond)
	}
	// Forced: v2 goes although the check is not asked.
	if err := tbl.Retire(ctx, v2, keytable.RetireOptions{Force: true, InUse: func(context.Context, uint32) (bool, error) {
		t.Error("InUse asked although Force is set")
		return true, nil
	}}); err != nil {
		t.Fatal(err)
	}
	data.checkAll(t, codec)
	// Retired versions stay as tombstones (empty key, inactive).
	got := ktRows(t, tbl)
	if len(got) != 3 || got[2].Version != v3 || !got[2].Active {
		t.Fatalf("rows after retiring: %+v", got)
	}
	for _, r := range got[:2] {
		if len(r.Wrapped) != 0 || r.Active {
			t.Errorf("retired version %d: %d key bytes, active %v; want a tombstone", r.Version, len(r.Wrapped), r.Active)
		}
	}
}

// TestKeyTableRetiredVersionNeverReused: a retired version stays in the
// table as a tombstone, so AddNew never hands its number out again, Add
// and Import refuse it, Activate and Retire report it, Rewrap leaves it
// alone, and providers drop its key without reporting anything.
func TestKeyTableRetiredVersionNeverReused(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	name := ktNewTableName(t, db)
	ident := pgx.Identifier{name}.Sanitize()
	tbl := ktTable(t, db, kek, name)
	v1 := ktAddActive(t, tbl, 1)
	v2, err := tbl.AddNew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var errs ktErrors
	p := ktProvider(t, tbl, kek, keytable.Options{RefreshInterval: -1, MinReloadInterval: time.Nanosecond, OnError: errs.report})
	k2, err := p.Key(v2)
	if err != nil {
		t.Fatal(err)
	}
	underV2 := ktSeal(t, encryptedtype.NewCodec(mustStaticFrom(t, p, v2)), "under the retired version", v2)

	// Retire the highest version.
	if err := tbl.Retire(ctx, v2, keytable.RetireOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	var keyLen int
	var active bool
	if err := db.QueryRowContext(ctx, "SELECT octet_length(key), active FROM "+ident+" WHERE version = $1", v2).Scan(&keyLen, &active); err != nil {
		t.Fatalf("the retired version's row: %v", err)
	}
	if keyLen != 0 || active {
		t.Fatalf("retired row: %d key bytes, active %v; want a tombstone", keyLen, active)
	}
	time.Sleep(time.Millisecond)
	if err := p.Reload(ctx); err != nil {
		t.Fatalf("Reload after Retire = %v", err)
	}
	if _, err := p.Key(v2); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Fatalf("Key(%d) after Retire = %v", v2, err)
	}
	if _, err := encryptedtype.NewCodec(p).Open(ctx, []byte(underV2)); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Fatalf("Open of a value under the retired version = %v, want ErrUnknownVersion", err)
	}

	// The number is never handed out again.
	v3, err := tbl.AddNew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v3 != v2+1 {
		t.Fatalf("AddNew after retiring version %d = %d, want %d", v2, v3, v2+1)
	}
	other2, _ := keyprovider.GenerateKey(v2)
	for what, k := range map[string]keyprovider.Key{"its own key": k2, "another key": other2} {
		if err := tbl.Add(ctx, k); !errors.Is(err, keytable.ErrRetired) || !errors.Is(err, keytable.ErrVersionExists) {
			t.Errorf("Add of the retired version with %s = %v, want ErrRetired and ErrVersionExists", what, err)
		}
	}
	if err := tbl.Activate(ctx, v2); !errors.Is(err, keytable.ErrRetired) || !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("Activate of the retired version = %v, want ErrRetired and ErrUnknownVersion", err)
	}
	if err := tbl.Retire(ctx, v2, keytable.RetireOptions{Force: true}); !errors.Is(err, keytable.ErrRetired) || !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("second Retire = %v, want ErrRetired and ErrUnknownVersion", err)
	}
	k1, _ := p.Key(v1)
	withRetired, _ := keyprovider.NewStatic(v1, k1, k2)
	if _, err := tbl.Import(ctx, withRetired); !errors.Is(err, keytable.ErrRetired) || !errors.Is(err, keytable.ErrImportConflict) {
		t.Errorf("Import of the retired version = %v, want ErrRetired and ErrImportConflict", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT octet_length(key) FROM "+ident+" WHERE version = $1", v2).Scan(&keyLen); err != nil || keyLen != 0 {
		t.Fatalf("the tombstone after refused operations: %d key bytes, %v", keyLen, err)
	}

	// The first provider holds the old KEK: stop it (and the load that its
	// Key miss above scheduled) before the keys move to another KEK, which
	// it could not unwrap.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	errs.none(t, "the provider before Rewrap")

	// Rewrap skips the tombstone; a provider with the new KEK loads cleanly.
	newKEK := ktLocalKEK(t)
	n, err := tbl.Rewrap(ctx, newKEK)
	if err != nil || n != 2 {
		t.Fatalf("Rewrap = %d, %v; want 2 (the tombstone has no key)", n, err)
	}
	newTbl, _ := keytable.NewTable(db, newKEK, keytable.Config{Table: name})
	fresh := ktProvider(t, newTbl, newKEK, keytable.Options{OnError: errs.report})
	if got := fresh.Versions(); !slices.Equal(got, []uint32{v1, v3}) {
		t.Fatalf("versions after Rewrap: %v, want [%d %d]", got, v1, v3)
	}
	if err := newTbl.Activate(ctx, v3); err != nil {
		t.Fatal(err)
	}
	if err := newTbl.Retire(ctx, v1, keytable.RetireOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	var activeRows, tombstones int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE octet_length(key) = 0) FROM "+ident).Scan(&activeRows, &tombstones); err != nil {
		t.Fatal(err)
	}
	if activeRows != 1 || tombstones != 2 {
		t.Fatalf("%d active rows and %d tombstones, want 1 and 2", activeRows, tombstones)
	}
	time.Sleep(time.Millisecond)
	if err := fresh.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fresh.Versions(); !slices.Equal(got, []uint32{v3}) || ktActive(t, fresh) != v3 {
		t.Fatalf("after retiring version %d: versions %v, active %d", v1, got, ktActive(t, fresh))
	}
	if v4, err := newTbl.AddNew(ctx); err != nil || v4 != v3+1 {
		t.Fatalf("AddNew = %d, %v; want %d", v4, err, v3+1)
	}
	// A tombstone is neither a key nor a warning.
	errs.none(t, "providers")
	if st := fresh.Status(); st.LastError != nil {
		t.Fatalf("Status().LastError = %v", st.LastError)
	}
}

// TestKeyTableRewrap rotates the KEK from a local master key to a KMS: one
// transaction re-wraps every key; no data value changes; instances that
// run with FallbackKEK(new, old) go on without a hitch, new instances
// start with the new KEK alone, and the old KEK no longer unwraps.
func TestKeyTableRewrap(t *testing.T) {
	dsn := databaseURL(t)
	db := openSQL(t, dsn)
	ctx := testContext(t)
	oldKEK, newKEK := ktLocalKEK(t), ktCloudKEK(t)
	name := ktNewTableName(t, db)
	oldTbl := ktTable(t, db, oldKEK, name)
	ktAddActive(t, oldTbl, 3)

	// A running instance, already given both KEKs.
	var errs ktErrors
	both := &ktCountingKEK{kek: keyprovider.FallbackKEK(newKEK, oldKEK)}
	running := ktProvider(t, oldTbl, both, keytable.Options{RefreshInterval: -1, OnError: errs.report})
	ktListen(t, dsn, oldTbl, running, errs.report)
	keysBefore := map[uint32]keyprovider.Key{}
	for _, v := range running.Versions() {
		keysBefore[v], _ = running.Key(v)
	}
	data := ktNewData(t, db)
	for v := uint32(1); v <= 3; v++ {
		data.insert(t, encryptedtype.NewCodec(mustStaticFrom(t, running, v)), fmt.Sprintf("under v%d", v), v)
	}
	rawBefore := data.raw(t)
	wrappedBefore := ktRows(t, oldTbl)

	// A rewrap from the wrong KEK fails and changes nothing.
	wrongTbl, _ := keytable.NewTable(db, ktLocalKEK(t), keytable.Config{Table: name})
	if _, err := wrongTbl.Rewrap(ctx, newKEK); !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("Rewrap from the wrong KEK = %v", err)
	}
	if !slices.EqualFunc(wrappedBefore, ktRows(t, oldTbl), func(a, b keytable.WrappedKey) bool { return bytes.Equal(a.Wrapped, b.Wrapped) }) {
		t.Fatal("a failed Rewrap changed the table")
	}

	unwraps := both.unwraps.Load()
	n, err := oldTbl.Rewrap(ctx, newKEK)
	rewrapped := time.Now()
	if err != nil || n != 3 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	for i, r := range ktRows(t, oldTbl) {
		if bytes.Equal(r.Wrapped, wrappedBefore[i].Wrapped) || r.Active != wrappedBefore[i].Active {
			t.Errorf("version %d not re-wrapped, or its active flag changed", r.Version)
		}
	}
	rawAfter := data.raw(t)
	for id, v := range rawBefore {
		if rawAfter[id] != v {
			t.Errorf("data row %d changed", id)
		}
	}

	// New instances: the new KEK works, the old one alone does not.
	newTbl, _ := keytable.NewTable(db, newKEK, keytable.Config{Table: name})
	fresh := ktProvider(t, newTbl, newKEK, keytable.Options{})
	data.checkAll(t, encryptedtype.NewCodec(fresh))
	if _, err := keytable.NewProvider(ctx, oldTbl, oldKEK, keytable.Options{}); err == nil || !strings.Contains(err.Error(), oldKEK.String()) {
		t.Fatalf("NewProvider with the old KEK after Rewrap = %v; want an error naming %s", err, oldKEK)
	}

	// The running instance reloaded on the notification, unwrapped the
	// three re-wrapped keys (with the new KEK), and kept the same keys.
	for both.unwraps.Load()-unwraps < 3 {
		if time.Since(rewrapped) > notifyDeadline+time.Second {
			t.Fatalf("the running instance unwrapped %d re-wrapped keys, want 3", both.unwraps.Load()-unwraps)
		}
		time.Sleep(time.Millisecond)
	}
	for v, k := range keysBefore {
		if got, err := running.Key(v); err != nil || got != k {
			t.Errorf("running instance: Key(%d) = %v, %v; want the key it had", v, got, err)
		}
	}
	data.checkAll(t, encryptedtype.NewCodec(running))
	errs.none(t, "running instance")
}

// TestKeyTableSQL checks the DDL and the table operations' guarantees in
// PostgreSQL itself: Create is idempotent; the partial unique index and
// the CHECK refuse bad rows; Activate leaves exactly one active key even
// when many run at once; Add refuses an existing version.
func TestKeyTableSQL(t *testing.T) {
	db := openSQL(t, databaseURL(t))
	ctx := testContext(t)
	kek := ktLocalKEK(t)
	name := ktNewTableName(t, db)
	tbl := ktTable(t, db, kek, name)
	if err := tbl.Create(ctx); err != nil {
		t.Fatalf("second Create: %v", err)
	}
	ident := pgx.Identifier{name}.Sanitize()

	for range 5 {
		if _, err := tbl.AddNew(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := ktRows(t, tbl); len(got) != 5 || got[4].Version != 5 {
		t.Fatalf("AddNew numbering: %+v", got)
	}
	if err := tbl.Activate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE "+ident+" SET active = true WHERE version = 2"); err == nil {
		t.Error("the partial unique index let a second key be active")
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO "+ident+" (version, key) VALUES (0, 'x')"); err == nil {
		t.Error("the table accepted version 0")
	}
	k, _ := keyprovider.GenerateKey(3)
	if err := tbl.Add(ctx, k); !errors.Is(err, keytable.ErrVersionExists) {
		t.Errorf("Add of an existing version = %v, want ErrVersionExists", err)
	}
	big, _ := keyprovider.GenerateKey(keytable.MaxVersion + 1)
	if err := tbl.Add(ctx, big); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("Add of version %d = %v, want ErrInvalidKey", keytable.MaxVersion+1, err)
	}
	if err := tbl.Activate(ctx, 42); !errors.Is(err, keyprovider.ErrUnknownVersion) {
		t.Errorf("Activate of a missing version = %v, want ErrUnknownVersion", err)
	}
	// A row that does not unwrap is never activated.
	if _, err := db.ExecContext(ctx, "INSERT INTO "+ident+" (version, key) VALUES (9, 'garbage')"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Activate(ctx, 9); !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Errorf("Activate of an unreadable row = %v, want ErrUnwrap", err)
	}

	// Many concurrent activations: all succeed, exactly one active after.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tbl.Activate(ctx, uint32(i%5+1)); err != nil {
				t.Errorf("concurrent Activate: %v", err)
			}
		}()
	}
	wg.Wait()
	var active int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+ident+" WHERE active").Scan(&active); err != nil {
		t.Fatal(err)
	}
	if active != 1 {
		t.Fatalf("%d active keys after concurrent activations, want 1", active)
	}
	// Concurrent AddNew: distinct versions.
	got := make(chan uint32, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := tbl.AddNew(ctx)
			if err != nil {
				t.Errorf("concurrent AddNew: %v", err)
			}
			got <- v
		}()
	}
	wg.Wait()
	close(got)
	seen := map[uint32]bool{}
	for v := range got {
		if seen[v] {
			t.Errorf("version %d handed out twice", v)
		}
		seen[v] = true
	}

	// Schema-qualified names work, and DDL is what Create runs.
	schema := uniqueName(t)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	qtbl := ktTable(t, db, kek, schema+".keys")
	v := ktAddActive(t, qtbl, 1)
	if p := ktProvider(t, qtbl, kek, keytable.Options{}); ktActive(t, p) != v {
		t.Fatal("schema-qualified table")
	}
	ddl, err := keytable.DDL(schema + ".keys2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		t.Fatalf("running DDL: %v", err)
	}
	if !queryBool(t, db, "SELECT count(*) = 1 FROM pg_indexes WHERE schemaname = $1 AND tablename = 'keys2' AND indexdef LIKE '%UNIQUE%WHERE active%'", schema) {
		t.Error("DDL did not create the partial unique index")
	}
}
