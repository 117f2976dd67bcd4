package rotation

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// Rotate re-saves every value of the table that is not under the active key
// version, recomputes every blind-index value that is missing or not under
// the active index-key version beside a non-NULL source value, and clears
// (sets to NULL) every blind-index value beside a NULL source value in an
// index column that can hold NULL, while the application keeps running.
//
// It walks the primary key in order (keyset pagination, never OFFSET), in
// batches. Each batch is one transaction: it locks the next rows that need
// work with SELECT … FOR UPDATE SKIP LOCKED (on SQLite, it takes the
// database's write lock first), decrypts and re-encrypts their values in
// Go, writes them back in one UPDATE and commits. A value is only
// ever overwritten with the re-encryption of what the same transaction read
// under lock, so a concurrent write by the application is never lost: it
// either committed before the lock (and is what gets re-encrypted) or waits
// for the commit (and overwrites the rotated value). Rows the application
// holds locked are skipped and picked up by a later pass (SQLite waits for
// the application's transactions instead); Rotate returns
// when a count finds no value left on an old version. NULL stays NULL, and
// ORM hooks are not fired. Passes that keep taking the same rows without
// making them current or finding them failed (three or more in a row, over
// ten seconds or more) stop Rotate with ErrIncomplete rather than loop
// without end.
//
// The index of NULL is NULL: an index value beside a NULL source value
// (IndexCensus.Orphaned), which hand-written SQL that sets the source to
// NULL can leave behind, cannot be recomputed and says nothing about the
// row but what the source held before, so Rotate sets it to NULL, whatever
// index-key version it is under. An index value is one that
// blindindex.Version parses ("b<N>:…" or "a<N>:…", Census's test); any
// other value beside a NULL source, such as the empty string of an index
// column declared NOT NULL with an empty default, is no index of
// anything, and is left alone: it is neither work nor a failure. The
// batch UPDATE sets an index value to NULL only where the row's source is
// NULL as it writes it, under the batch's lock: an application that sets the source waits for the
// batch, and its index value is not cleared. An index column declared NOT
// NULL (as the catalog says: on PostgreSQL, also through a NOT NULL
// domain) cannot hold NULL: its index values beside a NULL source are left
// as they are, counted by Census (IndexCensus.Orphaned) but neither
// pending nor failures. A CHECK constraint that forbids NULL is not read
// from the catalog: the write that clears the value breaks it, and the row
// is a failure (ErrOrphanIndex) while the rest of its batch is written,
// row by row as for a duplicate (below); declare such a column NOT NULL.
// Before it writes, Rotate refuses (ErrIndexMismatch) to clear the values
// of an index column that holds index values only beside NULL source
// values: the description most likely names the wrong source (see
// CheckIndexes).
//
// A row with a value that does not decrypt (or, outside
// Options.EncryptPlaintext, is not in the wire format), whose new value
// would not fit its column (ErrValueTooLong), whose cleared index value a
// CHECK constraint refuses (ErrOrphanIndex), or whose new index value
// another row holds in a unique index (ErrDuplicate, below), is not
// written at all: it is reported to Options.OnFailure and in
// Result.Failures, later passes skip it, and Rotate returns an error
// wrapping ErrFailures once the rest is done. A value does not decrypt
// when the Cipher's error wraps encryptedtype.ErrAuth, ErrMalformed,
// ErrNotEncrypted or ErrUnknownVersion, and nothing else; any other error
// of the Cipher, such as a key provider's I/O error, or ErrUnknownVersion
// from an *encryptedtype.Codec whose provider failed to reload, stops
// Rotate with that error (wrapped), the batch in progress rolled back:
// running Rotate again resumes. In the columns of Options.EncryptPlaintext, the values
// that look current are decrypted as well once the passes are over, and a
// value found then that is not under the active version (written after
// the passes) makes Rotate pass over the table again (see
// Options.EncryptPlaintext): a nil error means that every value the last
// check read was under the active version.
//
// A row whose new values would break a unique index of the table (a
// blind-index column with a UNIQUE index, where another row already holds
// the new index value: the same normalised plaintext) is a failure too
// (ErrDuplicate), found as the batch is written: the batch's UPDATE fails
// with the database's unique violation (PostgreSQL 23505, also at COMMIT
// for a deferred constraint; MySQL 1062; SQLite SQLITE_CONSTRAINT_UNIQUE),
// its transaction is rolled back, and the batch is made again in a new
// transaction: its rows are locked and read again (those that no longer
// need work, or that the application now holds locked, are left to later
// passes), decrypted and re-encrypted from what was read, and written one
// row per statement, each in a savepoint. A row whose statement breaks a
// unique index is rolled back to its savepoint and tried again once the
// other rows are written (one of them may be giving up the value, such as
// an index value cleared beside a NULL source); one that still breaks it
// is rolled back, so that nothing of it is written, and reported with its
// primary key and the index column (never the value); every other row is
// written. A unique violation is a duplicate only when it is of a unique
// index of this table on a column that the row's write changes; any other
// (a trigger's write to another table, say) stops Rotate like any other
// error of the database. Batches without a duplicate
// cost what they did. On SQLite the batch UPDATE is UPDATE OR ABORT, so
// that a conflict clause of the table's (ON CONFLICT REPLACE, which would
// delete the other row, or IGNORE, FAIL, ROLLBACK) does not apply. A
// batch that clears index values beside a NULL source and breaks a CHECK
// constraint (PostgreSQL 23514, MySQL 3819, MariaDB 4025, SQLite
// SQLITE_CONSTRAINT_CHECK) is written again row by row the same way: a
// row that clears one and breaks the constraint fails (ErrOrphanIndex).
// Any other error of the write, a CHECK violation by a row that clears
// nothing included, stops Rotate, as before. A dry run writes nothing and
// so finds no duplicate.
//
// Rotate keeps no state of its own: stopped at any moment (ctx cancelled,
// process killed), every row is either untouched or fully rewritten, and
// calling Rotate again finishes the job. When ctx ends, Rotate returns what
// it did so far and an error wrapping ctx's error.
//
// The Cipher must hold every key version that is stored and write under the
// new one; the Indexers likewise for the index keys.
func (j *Job) Rotate(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	res := &Result{DryRun: opts.DryRun}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchSize < 0 || opts.BatchSize > MaxBatchSize {
		return res, fmt.Errorf("rotation: BatchSize %d is not between 1 and %d", opts.BatchSize, MaxBatchSize)
	}
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.Workers < 0 || opts.Workers > 256 {
		return res, fmt.Errorf("rotation: Workers %d is not between 1 and 256", opts.Workers)
	}
	if opts.Pause < 0 {
		return res, fmt.Errorf("rotation: negative Pause %v", opts.Pause)
	}
	if opts.MaxFailures == 0 {
		opts.MaxFailures = DefaultMaxFailures
	}
	p, err := resolve(ctx, j.db, j.table, opts.EncryptPlaintext)
	if err != nil {
		return res, j.hint(err)
	}
	if m := p.sql().maxParams(); m > 0 && opts.BatchSize*(1+p.width()) > m {
		return res, fmt.Errorf("rotation: BatchSize %d is too large for %s: a batch of this table is written with %d parameters a row, and one statement takes at most %d; use at most %d",
			opts.BatchSize, p.dialect, 1+p.width(), m, m/(1+p.width()))
	}
	r := &runner{j: j, p: p, opts: opts, start: start, res: res, failed: map[string]bool{}}
	err = r.run(ctx)
	res.Elapsed = time.Since(start)
	return res, err
}

// runner is one Rotate in progress.
type runner struct {
	j     *Job
	p     *plan
	opts  Options
	start time.Time
	pre   prefixes

	mu     sync.Mutex // guards everything below, and serialises the callbacks
	res    *Result
	failed map[string]bool // identities (plan.keyID) of the rows of res.Failures
	// failKeys are the keys of res.Failures, one each, in the same order.
	failKeys []failedRow
	done     int64
	total    int64
	pass     int
	// taken are the rows that the batches of the pass in progress took
	// and did not fail (see stallGuard).
	taken passPrint

	// unique caches the unique indexes of the table by name (see
	// uniqueColumns).
	unique map[string]uniqueIndex
}

// failedRow is the key of a failed row.
type failedRow struct {
	id  string // plan.keyID: type and value, for bookkeeping
	key any    // as SQL takes it back (batch.key)
}

func (r *runner) run(ctx context.Context) error {
	pre, _, err := activePrefixes(ctx, r.j.cipher, r.p)
	if err != nil {
		return err
	}
	r.pre = pre
	if err := r.checkIndexes(ctx); err != nil {
		return err
	}
	pending, err := r.countPending(ctx, exclusion{})
	if err != nil {
		return err
	}
	r.total = pending
	pass := 0
	for check := 1; ; check++ {
		if err := r.passes(ctx, &pass); err != nil {
			return err
		}
		// Drop from the failures the rows that no longer need work (the
		// application rewrote them meanwhile), then check what the passes
		// left in the columns being converted.
		if err := r.recheck(ctx); err != nil {
			return err
		}
		left, err := r.checkConverted(ctx)
		if err != nil {
			return err
		}
		if left == 0 || r.opts.DryRun || r.opts.SinglePass {
			break
		}
		if check >= maxFinalChecks {
			return fmt.Errorf("%w: the check after the passes found %d values of %s not under the active key version (%s…), %d checks in a row, each after more passes: "+
				"something keeps writing plaintext (or values under an old version) into the table; "+
				"stop it (the application should write the columns being converted with MigratingString, MigratingBytes or the encrypted types), then run Rotate again",
				ErrIncomplete, left, r.p.table, r.pre.value, check)
		}
		// Written after the last pass's count: make more passes.
		r.mu.Lock()
		exclude := r.exclusion()
		r.mu.Unlock()
		n, err := r.countPending(ctx, exclude)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.total = r.done + n
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.res.Failures); n > 0 {
		return fmt.Errorf("%w: %d rows of %s left untouched (see the failures reported)", ErrFailures, n, r.p.table)
	}
	return nil
}

// maxFinalChecks bounds the checks after the passes (checkConverted) that
// find values not under the active version, each followed by more passes,
// before Rotate gives up with ErrIncomplete.
const maxFinalChecks = 3

// stallPatience is how long passes may keep taking the same rows before
// Rotate gives up on them (see stallGuard): long enough for a writer that
// briefly puts rows back (an instance whose key provider has not reloaded
// yet) to stop, short enough not to spin on a row that cannot be made
// current. A variable for the package's tests.
var stallPatience = 10 * time.Second

// stalledRepeats is the least number of passes in a row, after a first,
// that take the same rows and record no failure before Rotate stops with
// ErrIncomplete, once stallPatience has passed (see stallGuard).
const stalledRepeats = 2

// passes makes passes over the table until a count finds no row left that
// needs work (or after one, for a dry run or Options.SinglePass); *pass
// numbers them. Rows that the application holds locked are waited for,
// without a bound but ctx. Passes that keep taking the same rows without
// a failure stop it with ErrIncomplete (see stallGuard).
func (r *runner) passes(ctx context.Context, pass *int) error {
	delay := 50 * time.Millisecond
	var guard stallGuard
	for {
		*pass++
		r.mu.Lock()
		r.pass = *pass
		r.res.Passes = *pass
		before := r.done
		failedBefore := len(r.res.Failures)
		r.taken = passPrint{}
		exclude := r.exclusion()
		r.progressLocked()
		r.mu.Unlock()

		if err := r.sweep(ctx, exclude); err != nil {
			return err
		}
		if r.opts.DryRun || r.opts.SinglePass {
			return nil
		}
		// The active versions again, in case a reloading provider moved
		// on: values under a newer version are not left to rewrite.
		pre, _, err := activePrefixes(ctx, r.j.cipher, r.p)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.pre = pre // no worker is running
		exclude = r.exclusion()
		progressed := r.done > before
		newFailures := len(r.res.Failures) - failedBefore
		taken := r.taken
		r.mu.Unlock()
		left, err := r.countPending(ctx, exclude)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if guard.stalled(taken, newFailures, time.Now()) {
			return fmt.Errorf("%w: %d rows of %s still need work, but the last %d passes, over %s, each took the same %d rows and left them needing it, with no failure to report: "+
				"stopping rather than looping (either something writes them back as fast as they are rewritten, or this is a bug in colcrypt: please report it)",
				ErrIncomplete, left, r.p.table, guard.repeats+1, stallPatience, taken.n)
		}
		r.mu.Lock()
		r.total = r.done + left
		r.mu.Unlock()
		// The rows left are locked by the application (or were rolled
		// back on a deadlock, or put back by a writer): wait a little,
		// longer while nothing moves or the same rows come back.
		if progressed && guard.repeats == 0 {
			delay = 50 * time.Millisecond
		} else if delay < 2*time.Second {
			delay *= 2
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("rotation: stopped after %d passes: %w", *pass, err)
		}
	}
}

// passPrint identifies the rows a pass took (and did not fail) whatever
// their order: their number, and the sum and the exclusive or of a hash of
// each one's primary key. Two passes with equal prints took the same
// rows, but for a negligible chance.
type passPrint struct {
	n        int64
	sum, xor uint64
}

// add adds the row whose primary key's text form is pk (FNV-1a).
func (pp *passPrint) add(pk string) {
	v := uint64(14695981039346656037)
	for i := 0; i < len(pk); i++ {
		v ^= uint64(pk[i])
		v *= 1099511628211
	}
	pp.n++
	pp.sum += v
	pp.xor ^= v
}

// merge adds the rows of o.
func (pp *passPrint) merge(o passPrint) {
	pp.n += o.n
	pp.sum += o.sum
	pp.xor ^= o.xor
}

// stallGuard stops a Rotate that cannot finish: one whose passes keep
// taking the same rows, neither making them current nor finding them
// failed. Every row a batch takes under lock is written or fails, and a
// row written no longer needs work, so that a later pass takes only
// other rows: rows the application wrote meanwhile, or held locked (a
// pass skips those). A row taken again and again means that what is
// written does not make it current, or that a writer puts it back each
// time; looping over it would never end. Passes that take no row (every
// row left is locked by the application) are waited on as before.
type stallGuard struct {
	last    passPrint
	repeats int
	since   time.Time // when the passes began taking last
}

// stalled records the rows a pass took (and did not fail) and how many
// failures it recorded, at time now, and reports whether at least
// stalledRepeats passes in a row, after a first, took the same rows, at
// least one, with no failure, for at least stallPatience.
func (g *stallGuard) stalled(taken passPrint, newFailures int, now time.Time) bool {
	if taken.n == 0 || newFailures > 0 || taken != g.last {
		g.last, g.repeats, g.since = taken, 0, now
		return false
	}
	g.repeats++
	return g.repeats >= stalledRepeats && now.Sub(g.since) >= stallPatience
}

// recheck drops from the failures the rows that no longer need work.
func (r *runner) recheck(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.res.Failures) == 0 || r.opts.DryRun {
		return nil
	}
	if r.p.sql().maxParams() > 0 {
		ex := r.exclusion()
		still, err := r.pendingAmong(ctx, ex.keys)
		if err != nil {
			return fmt.Errorf("rotation: rechecking failed rows: %w", err)
		}
		r.keepFailures(still)
		return nil
	}
	lit := r.excludeLiteral()
	q := fmt.Sprintf("SELECT %s::text AS colcrypt_pk FROM %s WHERE %s = ANY (%s) AND %s",
		r.p.qpk, r.p.qtable, r.p.qpk, r.p.pkCast(1, true), r.p.pendingSQL(r.pre))
	rows, err := r.j.db.QueryContext(ctx, q, lit)
	if err != nil {
		return fmt.Errorf("rotation: rechecking failed rows: %w", err)
	}
	still := map[string]bool{}
	for rows.Next() {
		var pk string
		if err := rows.Scan(&pk); err != nil {
			rows.Close()
			return fmt.Errorf("rotation: rechecking failed rows: %w", err)
		}
		still[pk] = true // PostgreSQL: the text form is the identity
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotation: rechecking failed rows: %w", err)
	}
	r.keepFailures(still)
	return nil
}

// checkConverted, when Options.EncryptPlaintext names columns, reads every
// encrypted value of the table once the passes are over, and returns how
// many it found that are not under the active version, in rows that are
// not failures: values written after the last pass's count (plaintext, by
// an application that still writes it, or under an old version), which
// Rotate must take in more passes before it can say that every value is
// under the active version. It also decrypts every value of the columns
// being converted that starts with the active version's prefix, which the
// passes took to be done: a plaintext that happens to start like a
// ciphertext of the active version ("v2:…") would otherwise stay
// plaintext, reported as converted. Those that do not decrypt are
// reported as failures (ErrFailures), and nothing is written. It reads in
// primary-key order, in batches, without locks: the whole values of the
// columns being converted, the first bytes of the others.
func (r *runner) checkConverted(ctx context.Context) (int64, error) {
	p := r.p
	converting := false
	for _, c := range p.cols {
		converting = converting || c.plaintext
	}
	if !converting {
		return 0, nil
	}
	d := p.sql()
	prefix := []byte(r.pre.value)
	list := []string{d.pkSelect(p)}
	for _, c := range p.cols {
		if c.plaintext {
			list = append(list, c.q)
		} else {
			list = append(list, d.prefixExpr(c.ref(), len(prefix)))
		}
	}
	size := r.opts.BatchSize
	b := newBatchWidth(p.pkKind == keyNative, len(p.cols), size)
	var left int64
	var last any
	for first := true; ; first = false {
		var args []any
		if !first {
			args = append(args, last)
		}
		rows, err := r.j.db.QueryContext(ctx, p.pageSQL(list, !first, size), args...)
		if err == nil {
			err = b.read(rows)
		}
		if err != nil {
			return 0, fmt.Errorf("rotation: checking the converted values of %s: %w", p.table, err)
		}
		n := b.rows()
		var fails []rowFailure
		for i := range n {
			r.mu.Lock()
			known := r.failed[b.id(i)]
			r.mu.Unlock()
			if known {
				continue
			}
			var stale int64
			failed := false
			for ci, c := range p.cols {
				raw, null := b.value(i, ci)
				if null {
					continue
				}
				if !bytes.HasPrefix(raw, prefix) {
					stale++ // for more passes to take
					continue
				}
				if !c.plaintext {
					continue
				}
				_, err := r.j.cipher.Open(ctx, raw)
				if err == nil {
					continue
				}
				if ctx.Err() != nil {
					return 0, fmt.Errorf("rotation: stopped: %w", ctx.Err())
				}
				if !valueError(err) {
					return 0, fmt.Errorf("rotation: decrypting a value of column %s: %w", c.q, err)
				}
				fails = append(fails, rowFailure{row: i, f: Failure{PK: b.pks[i], Column: c.name,
					Err: fmt.Errorf("%w (a value of a column being converted starts like a value of the active key version but does not decrypt: plaintext that looks like a ciphertext, or damage; it is left as it is)", err)}})
				failed = true
				break
			}
			if !failed {
				left += stale // a failed row is left to the failures
			}
		}
		if _, over := r.reportFailures(fails, b); over {
			return 0, r.tooMany()
		}
		if n < size {
			return left, nil
		}
		last = b.key(n - 1)
	}
}

// keepFailures drops from the failures the rows whose identity
// (plan.keyID) is not in still. r.mu must be held.
func (r *runner) keepFailures(still map[string]bool) {
	kept := r.res.Failures[:0]
	keys := r.failKeys[:0]
	for i, f := range r.res.Failures {
		fk := r.failKeys[i]
		if still[fk.id] {
			kept = append(kept, f)
			keys = append(keys, fk)
		} else {
			delete(r.failed, fk.id)
		}
	}
	clear(r.res.Failures[len(kept):])
	clear(r.failKeys[len(keys):])
	r.res.Failures, r.failKeys = kept, keys
}

// exclusion is the failed rows a pass leaves out. PostgreSQL takes their
// keys as one array literal; the other dialects as a list of parameters,
// of which the batch SELECT names the first maxExcluded (rows beyond those
// are read again, and skipped as failures already reported).
type exclusion struct {
	lit  string // PostgreSQL: an array literal, or ""
	keys []any  // the others: the keys as batch.key returns them
}

// maxExcluded is the number of failed keys a batch SELECT names, outside
// PostgreSQL.
const maxExcluded = 500

// exclusion returns the failed rows' keys. r.mu must be held.
func (r *runner) exclusion() exclusion {
	if len(r.res.Failures) == 0 {
		return exclusion{}
	}
	if r.p.pkKind == keyPgText {
		return exclusion{lit: r.excludeLiteral()}
	}
	keys := make([]any, len(r.failKeys))
	for i, fk := range r.failKeys {
		keys[i] = fk.key
	}
	return exclusion{keys: keys}
}

// pendingAmong returns, of the rows with the given keys (batch.key), the
// identities (plan.keyID) of those that still need work, outside
// PostgreSQL.
// It asks in chunks, to stay within the number of parameters a statement
// takes.
func (r *runner) pendingAmong(ctx context.Context, keys []any) (map[string]bool, error) {
	p := r.p
	d := p.sql()
	still := map[string]bool{}
	for start := 0; start < len(keys); start += maxExcluded {
		chunk := keys[start:min(len(keys), start+maxExcluded)]
		var b strings.Builder
		fmt.Fprintf(&b, "SELECT %s FROM %s WHERE %s IN (", d.pkSelect(p), p.qtable, p.qpk)
		for i := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.keyParam(p, i+1))
		}
		fmt.Fprintf(&b, ") AND %s", p.pendingSQL(r.pre))
		rows, err := r.j.db.QueryContext(ctx, b.String(), chunk...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var key any
			if err := rows.Scan(&key); err != nil {
				rows.Close()
				return nil, err
			}
			text, err := scannedKeyText(key, p.pkKind)
			if err != nil {
				rows.Close()
				return nil, err
			}
			still[p.keyID(key, text)] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return still, nil
}

// scannedKeyText is the text form of a primary key scanned into an any:
// for keyNative as batch.read makes it, else the text the SELECT made.
func scannedKeyText(key any, kind keyKind) (string, error) {
	if kind == keyNative {
		return keyText(key)
	}
	switch k := key.(type) {
	case string:
		return k, nil
	case []byte:
		return string(k), nil
	}
	return "", fmt.Errorf("a primary key's text form is a %T", key)
}

// excludeLiteral returns the failed primary keys as an array literal, or
// "" when there are none. r.mu must be held.
func (r *runner) excludeLiteral() string {
	if len(r.res.Failures) == 0 {
		return ""
	}
	var a arrayLit
	a.reset()
	for _, fk := range r.failKeys {
		a.add(fk.id) // PostgreSQL: the key's text form
	}
	return a.String()
}

// countPending counts the rows Rotate would still rewrite, leaving out the
// failed rows of exclude.
func (r *runner) countPending(ctx context.Context, exclude exclusion) (int64, error) {
	q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", r.p.qtable, r.p.pendingSQL(r.pre))
	var args []any
	if exclude.lit != "" {
		q += fmt.Sprintf(" AND NOT (%s = ANY (%s))", r.p.qpk, r.p.pkCast(1, true))
		args = append(args, exclude.lit)
	}
	var n int64
	if err := r.j.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("rotation: counting the rows left in %s: %w", r.p.table, err)
	}
	if len(exclude.keys) > 0 {
		// Counted above, and no work for this run: subtract them.
		still, err := r.pendingAmong(ctx, exclude.keys)
		if err != nil {
			return 0, fmt.Errorf("rotation: counting the rows left in %s: %w", r.p.table, err)
		}
		n = max(0, n-int64(len(still)))
	}
	return n, nil
}

// progressLocked calls the progress callback; r.mu must be held.
func (r *runner) progressLocked() {
	if r.opts.Progress == nil {
		return
	}
	el := time.Since(r.start)
	p := Progress{Pass: r.pass, Done: r.done, Failed: int64(len(r.res.Failures)), Total: r.total, Elapsed: el, ETA: -1}
	if p.Total < p.Done {
		p.Total = p.Done
	}
	if s := el.Seconds(); s > 0 && r.done > 0 {
		p.Rate = float64(r.done) / s
		p.ETA = time.Duration(float64(p.Total-p.Done) / p.Rate * float64(time.Second))
	}
	r.opts.Progress(p)
}

// cursor is the position of a pass in the primary key, shared by its
// workers. Its mutex is held while a worker runs its locking SELECT, so
// batches are taken one after another, in key order, while the rest of
// each batch's work runs in parallel.
type cursor struct {
	mu      sync.Mutex
	last    string // primary key of the last row taken, as text
	lastKey any    // the same as the driver returned it, for keyNative
	started bool   // last is set
	done    bool   // no rows left after last
	exclude string // PostgreSQL: array literal of failed primary keys, or ""
	// The other dialects: failed primary keys (batch.key), at most
	// maxExcluded.
	excludeKeys []any
}

// key returns the last primary key taken as SQL takes it back.
func (c *cursor) key() any {
	if c.lastKey != nil {
		return c.lastKey
	}
	return c.last
}

// newCursor returns the cursor of a pass that leaves out the failed rows
// of exclude: on PostgreSQL all of them, elsewhere the first maxExcluded
// (one parameter each).
func newCursor(exclude exclusion) *cursor {
	return &cursor{exclude: exclude.lit, excludeKeys: exclude.keys[:min(len(exclude.keys), maxExcluded)]}
}

// sweep makes one pass over the table with the configured workers.
func (r *runner) sweep(ctx context.Context, exclude exclusion) error {
	cur := newCursor(exclude)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range r.opts.Workers {
		wg.Go(func() {
			if err := r.worker(wctx, cur); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rotation: stopped: %w", err)
	}
	if err := context.Cause(wctx); err != nil {
		return err
	}
	return nil
}

// worker takes and processes batches until the pass is over.
func (r *runner) worker(ctx context.Context, cur *cursor) error {
	b := newBatch(r.p, r.opts.BatchSize)
	transient := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		more, err := r.batch(ctx, cur, b)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !r.p.sql().transient(err) || transient >= 10 {
				return err
			}
			// A deadlock or serialization failure rolled the batch back;
			// its rows are left to a later pass.
			transient++
			r.mu.Lock()
			r.res.Retried++
			r.mu.Unlock()
			if r.p.dialect == SQLite {
				// The database was busy for longer than the driver's busy
				// timeout: give the application some room.
				if err := sleep(ctx, time.Duration(transient)*50*time.Millisecond); err != nil {
					return err
				}
			}
			continue
		}
		transient = 0
		if !more {
			return nil
		}
		if r.opts.Pause > 0 {
			if err := sleep(ctx, r.opts.Pause); err != nil {
				return err
			}
		}
	}
}

// batch processes the next batch of the pass. It reports whether there may
// be more.
func (r *runner) batch(ctx context.Context, cur *cursor, b *batch) (more bool, err error) {
	var q querier = r.j.db
	var tx batchTx
	if !r.opts.DryRun {
		tx, err = r.p.sql().begin(ctx, r.j.db)
		if err != nil {
			return false, fmt.Errorf("rotation: starting a transaction: %w", err)
		}
		defer func() {
			if tx != nil {
				_ = tx.Rollback()
			}
		}()
		q = tx
	}

	// Take the next rows, under the cursor's lock.
	cur.mu.Lock()
	if cur.done {
		cur.mu.Unlock()
		return false, nil
	}
	query, args := r.selectSQL(cur)
	rows, err := q.QueryContext(ctx, query, args...)
	if err == nil {
		err = b.read(rows)
	}
	if err != nil {
		cur.mu.Unlock()
		return false, fmt.Errorf("rotation: reading a batch of %s: %w", r.p.table, err)
	}
	n := b.rows()
	if n > 0 {
		cur.last, cur.started = b.pks[n-1], true
		if b.native {
			cur.lastKey = b.keys[n-1]
		}
	}
	if n < r.opts.BatchSize {
		cur.done = true
	}
	cur.mu.Unlock()
	if n == 0 {
		return false, nil
	}

	// Decrypt and re-encrypt.
	st, fails, err := r.transform(ctx, b)
	if err != nil {
		return false, err
	}
	newFails, over := r.reportFailures(fails, b)
	taken := r.takenRows(b)

	// Write back in one statement, and commit. When that breaks a unique
	// index (a new blind-index value that another row holds), or a CHECK
	// constraint while clearing index values, the batch is rolled back and
	// written again row by row.
	if tx != nil {
		dup := false
		if st.rows > 0 {
			query, args := r.writeSQL(b)
			res, err := tx.ExecContext(ctx, query, args...)
			switch {
			case err != nil && r.isDuplicate(err):
				dup = true
			case err != nil && st.cleared > 0 && r.isCheck(err):
				// Most likely a CHECK constraint that the index column
				// holds a value: written row by row, the rows that
				// clear one fail (ErrOrphanIndex), the others are
				// written (see writeRow).
				dup = true
			case err != nil:
				return false, fmt.Errorf("rotation: writing a batch of %s: %w", r.p.table, redactDuplicate(err))
			default:
				if got, err := res.RowsAffected(); err == nil && got != st.rows {
					return false, fmt.Errorf("rotation: writing a batch of %s: %d rows updated, want %d", r.p.table, got, st.rows)
				}
			}
		}
		if !dup {
			err := tx.Commit()
			// A deferred unique constraint (PostgreSQL) is checked here.
			dup = err != nil && st.rows > 0 && r.isDuplicate(err)
			tx = nil
			if err != nil && !dup {
				return false, fmt.Errorf("rotation: committing a batch of %s: %w", r.p.table, redactDuplicate(err))
			}
		}
		if dup {
			if tx != nil {
				_ = tx.Rollback()
				tx = nil
			}
			var nf int
			var o bool
			st, nf, o, err = r.rewriteByRow(ctx, b)
			if err != nil {
				return false, err
			}
			newFails += nf
			over = over || o
		}
	}

	r.mu.Lock()
	r.taken.merge(taken)
	r.res.Rows += st.rows
	r.res.Values += st.values
	r.res.Plaintext += st.plaintext
	r.res.IndexValues += st.index
	r.res.ClearedIndexValues += st.cleared
	r.done += st.rows + int64(newFails)
	r.progressLocked()
	r.mu.Unlock()
	if over {
		return false, r.tooMany()
	}
	return n == r.opts.BatchSize, nil
}

// takenRows returns the print of the rows of b that are not failures,
// taken by a batch (see stallGuard).
func (r *runner) takenRows(b *batch) passPrint {
	var pp passPrint
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range b.rows() {
		if len(r.failed) > 0 && r.failed[b.id(i)] {
			continue
		}
		pp.add(b.pks[i])
	}
	return pp
}

// isDuplicate reports whether err, from writing a batch, is a unique
// violation.
func (r *runner) isDuplicate(err error) bool {
	_, ok := r.p.sql().duplicate(r.p, err)
	return ok
}

// isCheck reports whether err, from writing a batch, is a CHECK
// constraint violation.
func (r *runner) isCheck(err error) bool {
	_, ok := r.p.sql().check(err)
	return ok
}

// rowSavepoint is the savepoint each row written by rewriteByRow is
// written in.
const rowSavepoint = "colcrypt_row"

// rewriteByRow writes the rows of b that the batch's one statement was to
// write, after that statement broke a unique index and its transaction
// was rolled back: a new blind-index value equal to one that another row
// holds (the same normalised plaintext); or broke a CHECK constraint,
// while it cleared index values beside a NULL source. It makes the
// batch's guarantees again in a transaction of its own: it takes those
// rows again under lock, with the batch's SELECT … FOR UPDATE SKIP LOCKED (on SQLite,
// under the database's write lock), leaving out any that no longer need
// work or that the application now holds locked (a later pass takes
// them); decrypts and re-encrypts what it read (see transform); and
// writes each row with a statement of its own, in a savepoint. A row
// whose statement breaks a unique index (of this table, on a column the
// row's write changes) is rolled back to the savepoint and written again
// after the other rows, as long as a round of those retries writes one
// (a later row may give up the value: an index value cleared beside a
// NULL source, say); one that still breaks it is a failure
// (ErrDuplicate): nothing of it is written; so is one
// that clears an index value and breaks a CHECK constraint
// (ErrOrphanIndex). Any other error stops the job as the batch's write
// would. It returns what it
// wrote, how many failures it recorded, and whether MaxFailures has been
// reached. b is read again.
func (r *runner) rewriteByRow(ctx context.Context, b *batch) (st stats, newFails int, over bool, err error) {
	p := r.p
	d := p.sql()
	keys := make([]any, len(b.outRows))
	for n, i := range b.outRows {
		keys[n] = b.key(i)
	}
	tx, err := d.begin(ctx, r.j.db)
	if err != nil {
		return stats{}, 0, false, fmt.Errorf("rotation: starting a transaction: %w", err)
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	if q := d.immediate(); q != "" {
		// Deferred unique constraints are checked by each row's
		// statement, not at COMMIT.
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return stats{}, 0, false, fmt.Errorf("rotation: writing a batch of %s row by row: %w", p.table, err)
		}
	}
	query, args := r.relockSQL(keys)
	rows, err := tx.QueryContext(ctx, query, args...)
	if err == nil {
		err = b.read(rows)
	}
	if err != nil {
		return stats{}, 0, false, fmt.Errorf("rotation: reading a batch of %s again: %w", p.table, err)
	}
	_, fails, err := r.transform(ctx, b)
	if err != nil {
		return stats{}, 0, false, err
	}
	newFails, over = r.reportFailures(fails, b)
	var dups []rowFailure
	failed := map[int]*Failure{} // duplicates, to be tried again
	var retry []int
	for n := range b.outRows {
		f, err := r.writeRow(ctx, tx, b, n)
		if err != nil {
			return stats{}, newFails, over, err
		}
		switch {
		case f == nil:
			st.add(b.outStats[n])
		case errors.Is(f.Err, ErrDuplicate):
			failed[n] = f
			retry = append(retry, n)
		default:
			dups = append(dups, rowFailure{row: b.outRows[n], f: *f})
		}
	}
	// A row that broke a unique index may have done so only until a later
	// row gave up the value: try the duplicates again, as long as a round
	// writes one of them.
	for written := len(retry) > 0; written; {
		written = false
		var still []int
		for _, n := range retry {
			f, err := r.writeRow(ctx, tx, b, n)
			if err != nil {
				return stats{}, newFails, over, err
			}
			if f != nil {
				failed[n] = f
				still = append(still, n)
				continue
			}
			delete(failed, n)
			written = true
			st.add(b.outStats[n])
		}
		retry = still
	}
	for _, n := range retry {
		dups = append(dups, rowFailure{row: b.outRows[n], f: *failed[n]})
	}
	slices.SortStableFunc(dups, func(x, y rowFailure) int { return x.row - y.row })
	err = tx.Commit()
	tx = nil
	if err != nil {
		return stats{}, newFails, over, fmt.Errorf("rotation: committing a batch of %s: %w", p.table, redactDuplicate(err))
	}
	nd, o := r.reportFailures(dups, b)
	return st, newFails + nd, over || o, nil
}

// relockSQL returns the query that takes again, under lock, the rows with
// the given keys (batch.key) that still need work, with its arguments.
func (r *runner) relockSQL(keys []any) (string, []any) {
	p := r.p
	d := p.sql()
	var b strings.Builder
	var args []any
	fmt.Fprintf(&b, "SELECT %s FROM %s WHERE %s AND ", p.selectList(), p.qtable, p.pendingSQL(r.pre))
	if p.pkKind == keyPgText {
		var a arrayLit
		a.reset()
		for _, k := range keys {
			a.add(k.(string))
		}
		args = append(args, a.String())
		fmt.Fprintf(&b, "%s = ANY (%s)", p.qpk, p.pkCast(1, true))
	} else {
		fmt.Fprintf(&b, "%s IN (", p.qpk)
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, k)
			b.WriteString(d.keyParam(p, len(args)))
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " ORDER BY %s%s", p.orderBy(), d.lockClause())
	return b.String(), args
}

// writeRow writes output row n of b by itself, in the savepoint
// rowSavepoint of tx. When its statement breaks a unique index, or a CHECK
// constraint while it clears an index value beside a NULL source, the row
// is rolled back to the savepoint and its failure returned.
func (r *runner) writeRow(ctx context.Context, tx batchTx, b *batch, n int) (*Failure, error) {
	p := r.p
	fail := func(err error) (*Failure, error) {
		return nil, fmt.Errorf("rotation: writing a row of %s: %w", p.table, redactDuplicate(err))
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT "+rowSavepoint); err != nil {
		return fail(err)
	}
	query, args := r.writeSQL(b.outRow(n))
	res, err := tx.ExecContext(ctx, query, args...)
	if err == nil {
		if got, err := res.RowsAffected(); err == nil && got != 1 {
			return nil, fmt.Errorf("rotation: writing a row of %s: %d rows updated, want 1", p.table, got)
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+rowSavepoint); err != nil {
			return fail(err)
		}
		return nil, nil
	}
	dup, ok := p.sql().duplicate(p, err)
	if !ok {
		name, isCheck := p.sql().check(err)
		cleared := r.clearedIndexes(b, n)
		if !isCheck || len(cleared) == 0 {
			return fail(err)
		}
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+rowSavepoint); err != nil {
			return fail(err)
		}
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+rowSavepoint); err != nil {
			return fail(err)
		}
		f := r.checkFailure(b, n, name, cleared)
		return &f, nil
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+rowSavepoint); err != nil {
		return fail(err)
	}
	f, isDup, ferr := r.duplicateFailure(ctx, tx, b, n, dup)
	if ferr != nil {
		return fail(ferr)
	}
	if !isDup {
		// Not a duplicate value of this row: the job stops with the
		// database's error, as for any other.
		return fail(err)
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+rowSavepoint); err != nil {
		return fail(err)
	}
	return &f, nil
}

// duplicateFailure returns the failure of output row n of b, whose write
// broke a unique index. Its column is the one column of the index that
// the row's write changes: the index's columns are taken from the
// database's error (SQLite) or from the catalog, by the name the error
// gives (PostgreSQL, MySQL). When they cannot be known, or more than one
// is changed, Column is empty and the error says why. It reports false
// when the violation is not a duplicate value of the row: of an index of
// another table (a trigger's write, say), or of one of this table on
// columns that the row's write leaves as they are. It runs in the row's
// savepoint, to which it rolls back when a catalog query fails.
func (r *runner) duplicateFailure(ctx context.Context, tx batchTx, b *batch, n int, dup dupError) (Failure, bool, error) {
	p := r.p
	if dup.other {
		return Failure{}, false, nil
	}
	cols := dup.columns
	if cols == nil && dup.index != "" {
		ui, err := r.uniqueColumns(ctx, tx, dup.index)
		if err != nil {
			return Failure{}, false, err
		}
		if !ui.found {
			return Failure{}, false, nil
		}
		cols = ui.cols
	}
	inIndex := map[string]bool{}
	for _, c := range cols {
		inIndex[p.quote(c)] = true
	}
	// The columns of the index that the row's write changes: a new value,
	// or an index value cleared beside a NULL source.
	i, w, nc := b.outRows[n], p.width(), len(p.cols)
	var hit []string
	for k := range w {
		changed := b.outVals[n*w+k] != nil
		if !changed && k >= nc {
			changed = p.orphan(b, i, k-nc)
		}
		if changed && inIndex[p.colRef(k).q] {
			if k < nc {
				hit = append(hit, p.cols[k].name)
			} else {
				hit = append(hit, p.idx[k-nc].name)
			}
		}
	}
	if len(cols) > 0 && len(hit) == 0 {
		return Failure{}, false, nil
	}
	var what string
	switch {
	case dup.index != "":
		what = "unique index " + p.quote(dup.index)
	case len(cols) > 0:
		what = "a unique index on " + quoteAll(p, cols)
	default:
		what = "a unique index"
	}
	const fix = "resolve the duplicate (change or delete one of the two rows), then run the rotation again; nothing of the row is written"
	f := Failure{PK: b.pks[i]}
	switch {
	case len(hit) == 1:
		f.Column = hit[0]
		f.Err = fmt.Errorf("%w (%s): the same normalised plaintext; %s", ErrDuplicate, what, fix)
	case len(hit) > 1:
		f.Err = fmt.Errorf("%w (%s, of which the row's write changes %s): %s", ErrDuplicate, what, quoteAll(p, hit), fix)
	default:
		f.Err = fmt.Errorf("%w (%s; the column cannot be known from the database's error): %s", ErrDuplicate, what, fix)
	}
	return f, true, nil
}

// clearedIndexes returns the index columns (positions in plan.idx) that
// output row n of b sets to NULL beside a NULL source (see plan.orphan).
func (r *runner) clearedIndexes(b *batch, n int) []int {
	var ks []int
	for k := range r.p.idx {
		if r.p.orphan(b, b.outRows[n], k) {
			ks = append(ks, k)
		}
	}
	return ks
}

// checkFailure returns the failure of output row n of b, whose write,
// which sets the index columns cleared to NULL beside a NULL source,
// broke a CHECK constraint (named name, or "" when the error does not
// say): most likely one that the index column holds a value, which the
// catalog does not declare NOT NULL (Rotate leaves the index values of a
// NOT NULL column alone). Column names the index column when it is one.
func (r *runner) checkFailure(b *batch, n int, name string, cleared []int) Failure {
	p := r.p
	what := "a CHECK constraint"
	switch {
	case name != "" && p.dialect == SQLite:
		what = fmt.Sprintf("a CHECK constraint (%s)", name) // a name, or the constraint's expression
	case name != "":
		what = "CHECK constraint " + p.quote(name)
	}
	names := make([]string, len(cleared))
	for i, k := range cleared {
		names[i] = p.idx[k].name
	}
	f := Failure{PK: b.pks[b.outRows[n]]}
	if len(cleared) == 1 {
		f.Column = names[0]
	}
	f.Err = fmt.Errorf("%w: the row's write sets %s to NULL beside a NULL source value (the index of NULL is NULL) and breaks %s, "+
		"which most likely requires an index value there; declare the index column NOT NULL (Rotate then leaves index values beside a NULL source as they are), "+
		"change the constraint, or give the row its source value, then run Rotate again; nothing of the row is written",
		ErrOrphanIndex, quoteAll(p, names), what)
	return f
}

// quoteAll quotes names in the plan's dialect, separated by commas.
func quoteAll(p *plan, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = p.quote(n)
	}
	return strings.Join(q, ", ")
}

// uniqueIndex is what the catalog says of a unique index named in a
// unique violation: its columns (nil when unknown, or on expressions
// only), and whether it is an index of the table.
type uniqueIndex struct {
	cols  []string
	found bool
}

// uniqueColumns returns the table's unique index named name, from the
// catalog through tx, once per Rotate. When the catalog cannot be read,
// its columns are unknown (nil) and it is taken to be the table's, and
// the transaction is rolled back to the row's savepoint, which PostgreSQL
// needs after an error.
func (r *runner) uniqueColumns(ctx context.Context, tx batchTx, name string) (uniqueIndex, error) {
	r.mu.Lock()
	ui, ok := r.unique[name]
	r.mu.Unlock()
	if ok {
		return ui, nil
	}
	cols, found, err := r.p.sql().uniqueColumns(ctx, tx, r.p, name)
	ui = uniqueIndex{cols: cols, found: found}
	if err != nil {
		if ctx.Err() != nil {
			return uniqueIndex{}, ctx.Err()
		}
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+rowSavepoint); err != nil {
			return uniqueIndex{}, err
		}
		ui = uniqueIndex{found: true}
	}
	r.mu.Lock()
	if r.unique == nil {
		r.unique = map[string]uniqueIndex{}
	}
	r.unique[name] = ui
	r.mu.Unlock()
	return ui, nil
}

// tooMany is the error that stops Rotate when MaxFailures rows failed.
func (r *runner) tooMany() error {
	r.mu.Lock()
	nf := len(r.res.Failures)
	r.mu.Unlock()
	return fmt.Errorf("%w: %d rows (MaxFailures is %d); is a key version missing from the keyring?", ErrTooManyFailures, nf, r.opts.MaxFailures)
}

// rowFailure is a failure of row row of a batch.
type rowFailure struct {
	row int
	f   Failure
}

// reportFailures records the failed rows not seen before, up to
// MaxFailures in all, and returns how many it recorded and whether
// MaxFailures has been reached. fails are rows of b.
func (r *runner) reportFailures(fails []rowFailure, b *batch) (n int, over bool) {
	if len(fails) == 0 {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rf := range fails {
		if r.opts.MaxFailures > 0 && len(r.res.Failures) >= r.opts.MaxFailures {
			return n, true
		}
		id := b.id(rf.row)
		if r.failed[id] {
			continue
		}
		n++
		r.failed[id] = true
		r.res.Failures = append(r.res.Failures, rf.f)
		r.failKeys = append(r.failKeys, failedRow{id: id, key: b.key(rf.row)})
		if r.opts.OnFailure != nil {
			r.opts.OnFailure(rf.f)
		}
	}
	return n, r.opts.MaxFailures > 0 && len(r.res.Failures) >= r.opts.MaxFailures
}

// selectSQL returns the query that takes the next batch after the cursor,
// with its arguments. cur.mu must be held.
func (r *runner) selectSQL(cur *cursor) (string, []any) {
	p := r.p
	d := p.sql()
	var b strings.Builder
	var args []any
	fmt.Fprintf(&b, "SELECT %s FROM %s WHERE %s", p.selectList(), p.qtable, p.pendingSQL(r.pre))
	if cur.started {
		args = append(args, cur.key())
		fmt.Fprintf(&b, " AND %s > %s", p.qpk, d.keyParam(p, len(args)))
	}
	if cur.exclude != "" {
		args = append(args, cur.exclude)
		fmt.Fprintf(&b, " AND NOT (%s = ANY (%s))", p.qpk, p.pkCast(len(args), true))
	}
	if len(cur.excludeKeys) > 0 {
		fmt.Fprintf(&b, " AND %s NOT IN (", p.qpk)
		for i, k := range cur.excludeKeys {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, k)
			b.WriteString(d.keyParam(p, len(args)))
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT %d", p.orderBy(), r.opts.BatchSize)
	if !r.opts.DryRun {
		b.WriteString(d.lockClause())
	}
	return b.String(), args
}

// writeSQL returns the statement that writes the batch's output back, and
// its arguments.
func (r *runner) writeSQL(b *batch) (string, []any) {
	switch r.p.dialect {
	case MySQL:
		return mysqlUpdate(r.p, b)
	case SQLite:
		return sqliteUpdate(r.p, b)
	}
	return r.updateSQL(), b.args()
}

// updateSQL returns PostgreSQL's statement that writes a batch back: one
// UPDATE joined to the unnested arrays of primary keys and new values. A
// NULL new value leaves the column as it is, except that an index column
// is set to NULL where its source column is NULL (see clearSQL).
func (r *runner) updateSQL() string {
	var set, arrays, names []string
	arrays = append(arrays, r.p.pkCast(1, true))
	names = append(names, "k")
	add := func(q string, bytea bool) string {
		n := len(arrays) + 1
		typ := "text"
		if bytea {
			typ = "bytea"
		}
		arrays = append(arrays, fmt.Sprintf("$%d::text::%s[]", n, typ))
		names = append(names, fmt.Sprintf("c%d", n))
		return fmt.Sprintf("COALESCE(colcrypt_v.c%d, colcrypt_t.%s)", n, q)
	}
	for _, c := range r.p.cols {
		set = append(set, c.q+" = "+add(c.q, c.bytea))
	}
	for k, ix := range r.p.idx {
		set = append(set, ix.q+" = "+r.p.clearSQL(k, add(ix.q, ix.bytea)))
	}
	return fmt.Sprintf("UPDATE %s AS colcrypt_t SET %s FROM unnest(%s) AS colcrypt_v(%s) WHERE colcrypt_t.%s = colcrypt_v.k",
		r.p.qtable, strings.Join(set, ", "), strings.Join(arrays, ", "), strings.Join(names, ", "), r.p.qpk)
}

// stats counts what a batch rewrote.
type stats struct {
	rows, values, plaintext, index, cleared int64
}

// add adds o to s.
func (s *stats) add(o stats) {
	s.rows += o.rows
	s.values += o.values
	s.plaintext += o.plaintext
	s.index += o.index
	s.cleared += o.cleared
}

// transform decrypts and re-encrypts the values of a batch that need it,
// filling the batch's output arrays. Rows with a value that fails (see
// valueError), or with a new value that would not fit its column, are left
// out of the output and returned as failures. An index value beside a NULL
// source in a column that can hold NULL (plan.orphan) is counted as
// cleared, and its row written (the batch UPDATE sets it to NULL, see
// plan.clearSQL); any other value beside a NULL source is no work. Every
// row that pendingSQL selects is written or fails. An error is returned
// only for what stops the job: ctx ending, no usable active key, or a
// Cipher or Indexer error that is not about the value (a key provider
// that cannot be reached, say).
func (r *runner) transform(ctx context.Context, b *batch) (stats, []rowFailure, error) {
	var st stats
	var fails []rowFailure
	p := r.p
	nc := len(p.cols)
	b.resetOut()
	out := b.rowOut
	for i := range b.rows() {
		for k := range out {
			out[k] = nil
		}
		var (
			fail                          *Failure
			values, plain, index, cleared int64
		)
	cols:
		for ci, c := range p.cols {
			raw, null := b.value(i, ci)
			if null {
				// NULL stays NULL, and the index of NULL is NULL: an
				// index value beside it is cleared where its column can
				// hold NULL. Any other value (the empty string, say) is
				// left alone, and so is every value of a NOT NULL index
				// column.
				for _, k := range c.idx {
					if p.orphan(b, i, k) {
						cleared++
					}
				}
				continue
			}
			needValue := !bytes.HasPrefix(raw, []byte(r.pre.value))
			needIndex := false
			for _, k := range c.idx {
				old, onull := b.value(i, nc+k)
				if onull || !bytes.HasPrefix(old, []byte(r.pre.index[k])) {
					needIndex = true
				}
			}
			if !needValue && !needIndex {
				continue
			}
			pt, isPlain, err := r.open(ctx, c, raw)
			if err != nil {
				if ctx.Err() != nil {
					return st, nil, ctx.Err()
				}
				if !valueError(err) {
					// Not the value's fault: the same would happen to
					// every row. Stop; nothing of this batch is written,
					// and running Rotate again resumes.
					return st, nil, fmt.Errorf("rotation: decrypting a value of column %s: %w", c.q, err)
				}
				fail = &Failure{PK: b.pks[i], Column: c.name, Err: err}
				break cols
			}
			if needValue {
				ct, err := r.j.cipher.Seal(ctx, pt)
				if err != nil {
					if ctx.Err() == nil && errors.Is(err, encryptedtype.ErrMalformed) {
						fail = &Failure{PK: b.pks[i], Column: c.name, Err: err} // too long to encrypt
						break cols
					}
					return st, nil, fmt.Errorf("rotation: encrypting: %w", err)
				}
				if err := c.limit.fits(ct); err != nil {
					fail = &Failure{PK: b.pks[i], Column: c.name, Err: err}
					break cols
				}
				out[ci] = ct
				if isPlain {
					plain++
				} else {
					values++
				}
			}
			for _, k := range c.idx {
				old, onull := b.value(i, nc+k)
				if !onull && bytes.HasPrefix(old, []byte(r.pre.index[k])) {
					continue
				}
				v, err := p.idx[k].ix.Compute(string(pt))
				if err != nil {
					return st, nil, fmt.Errorf("rotation: index column %s: %w", p.idx[k].q, err)
				}
				if err := p.idx[k].limit.fits([]byte(v)); err != nil {
					fail = &Failure{PK: b.pks[i], Column: p.idx[k].name, Err: err}
					break cols
				}
				out[nc+k] = []byte(v)
				index++
			}
		}
		if fail != nil {
			fails = append(fails, rowFailure{row: i, f: *fail})
			continue
		}
		if values+plain+index+cleared == 0 {
			continue // nothing to do (the SELECT only returns rows with work)
		}
		b.addOut(i)
		row := stats{rows: 1, values: values, plaintext: plain, index: index, cleared: cleared}
		b.outStats = append(b.outStats, row)
		st.add(row)
	}
	return st, fails, nil
}

// valueError reports whether err, from Cipher.Open, is about the value
// itself: every error it wraps comes down to encryptedtype.ErrAuth,
// ErrMalformed, ErrNotEncrypted or ErrUnknownVersion. Such a value fails
// its row. Any other error (a key provider's I/O error, an invalid key, or
// ErrUnknownVersion together with a failed reload of the provider, as
// *encryptedtype.Codec returns it) would fail every row alike, and stops
// the job instead.
func valueError(err error) bool {
	switch err {
	case nil:
		return false
	case encryptedtype.ErrAuth, encryptedtype.ErrMalformed, encryptedtype.ErrNotEncrypted, encryptedtype.ErrUnknownVersion:
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return valueError(u.Unwrap())
	case interface{ Unwrap() []error }:
		errs := u.Unwrap()
		for _, e := range errs {
			if !valueError(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	return false
}

// open decrypts a value of column c. In a column being converted, a value
// that is not in the wire format at all is returned as the plaintext it is.
func (r *runner) open(ctx context.Context, c colPlan, raw []byte) (pt []byte, plaintext bool, err error) {
	if _, verr := encryptedtype.Version(raw); errors.Is(verr, encryptedtype.ErrNotEncrypted) {
		if c.plaintext {
			return raw, true, nil
		}
		return nil, false, fmt.Errorf("%w (plaintext? name the column in EncryptPlaintext to encrypt it)", encryptedtype.ErrNotEncrypted)
	}
	pt, err = r.j.cipher.Open(ctx, raw)
	return pt, false, err
}

// CheckIndexes runs the check Rotate makes before it writes anything: for
// every blind index of the table whose Indexer can compute old versions
// (a *blindindex.Index can), it reads up to 16 rows with both the source
// value and the index value set, in primary-key order, decrypts the source
// values and recomputes their index values under the index-key versions
// stored. It returns an error wrapping ErrIndexMismatch, naming the index
// column and how many of the values checked differ, when any differs: the
// Indexer is not configured as the application's (index name, normaliser,
// bits, slow mode or index keys), and Rotate would refuse to run with it.
//
// It also returns an error wrapping ErrIndexMismatch for a blind index
// whose column Rotate would clear where the source is NULL (a column that
// can hold NULL) when no row holds both a source value and an index value
// but some row holds an index value (see IndexCensus.Orphaned) beside a
// NULL source: the description most likely names the wrong source
// column, and Rotate, which sets the index of a NULL source to NULL,
// would clear every index value.
//
// It returns nil when every value checked matches, and also when nothing
// could be checked: no blind index, no row with both values set (and no
// index value beside a NULL source), or only values that do not decrypt or
// are under an index-key version the Indexer lacks. It writes nothing and
// locks no rows; Verify checks every value, not a sample.
func (j *Job) CheckIndexes(ctx context.Context) error {
	p, err := resolve(ctx, j.db, j.table, nil)
	if err != nil {
		return j.hint(err)
	}
	r := &runner{j: j, p: p}
	return r.checkIndexes(ctx)
}

// checkIndexes checks, before anything is written, that every Indexer that
// can recompute old versions reproduces a sample of the stored index
// values: an Indexer configured differently from the application's would
// otherwise overwrite good index values with useless ones. It also checks
// that no index column that Rotate clears beside a NULL source holds
// values only there (see CheckIndexes).
func (r *runner) checkIndexes(ctx context.Context) error {
	for k := range r.p.idx {
		paired, err := r.checkIndex(ctx, k)
		if err != nil {
			return err
		}
		if !paired && r.p.clearable(k) {
			if err := r.checkOrphans(ctx, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkIndex checks a sample of the stored values of index k (a position
// in plan.idx) against its Indexer, when it can recompute old versions. It
// reports whether some row holds both the source value and an index value
// (as far as it needs to know: always true for an index that is not
// clearable and whose Indexer cannot recompute old versions).
func (r *runner) checkIndex(ctx context.Context, k int) (paired bool, err error) {
	const sample = 16
	ix := r.p.idx[k]
	src := r.p.cols[ix.src]
	vc, ok := ix.ix.(versionComputer)
	if !ok {
		if !r.p.clearable(k) {
			return true, nil
		}
		return r.exists(ctx, fmt.Sprintf("%s IS NOT NULL AND %s IS NOT NULL", src.q, ix.q))
	}
	q := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s IS NOT NULL AND %s IS NOT NULL ORDER BY %s LIMIT %d",
		src.q, ix.q, r.p.qtable, src.q, ix.q, r.p.orderBy(), sample)
	rows, err := r.j.db.QueryContext(ctx, q)
	if err != nil {
		return false, fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
	}
	type pair struct{ v, idx []byte }
	var pairs []pair
	for rows.Next() {
		var v, i any
		if err := rows.Scan(&v, &i); err != nil {
			rows.Close()
			return false, fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
		}
		pairs = append(pairs, pair{asBytes(v), asBytes(i)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
	}
	checked, bad := 0, 0
	for _, pr := range pairs {
		version, err := blindindex.Version(string(pr.idx))
		if err != nil {
			continue // malformed: rewritten by the rotation
		}
		pt, _, err := r.open(ctx, src, pr.v)
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if !valueError(err) {
				return false, fmt.Errorf("rotation: decrypting a value of column %s: %w", src.q, err)
			}
			continue // reported when its row comes up
		}
		want, err := vc.ComputeVersion(version, string(pt))
		if errors.Is(err, keyprovider.ErrUnknownVersion) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("rotation: index column %s: %w", ix.q, err)
		}
		checked++
		if want != string(pr.idx) {
			bad++
		}
	}
	if bad > 0 {
		return false, fmt.Errorf("%w: index column %s: %d of the %d stored values checked differ from what the Indexer computes; "+
			"configure it exactly as the application does (index name, normaliser, bits, slow mode, index keys)", ErrIndexMismatch, ix.q, bad, checked)
	}
	return len(pairs) > 0, nil
}

// checkOrphans returns an error wrapping ErrIndexMismatch when index k (a
// position in plan.idx), of which no row holds both the source value and
// an index value, holds a value beside a NULL source: every index value
// stands beside a NULL source, which says that the description names the
// wrong source column far more likely than that every source was set to
// NULL by hand. Rotate would clear them all.
func (r *runner) checkOrphans(ctx context.Context, k int) error {
	ix := r.p.idx[k]
	src := r.p.cols[ix.src]
	orphans, err := r.exists(ctx, r.p.orphanSQL(k, ""))
	if err != nil {
		return err
	}
	if orphans {
		return fmt.Errorf("%w: index column %s holds values only in rows where %s is NULL, never beside a value of it: "+
			"it is most likely computed from another column, and Rotate, which sets the index of a NULL source to NULL, would clear every one; "+
			"check the source column the description names (if it is right, set these index values to NULL first)", ErrIndexMismatch, ix.q, src.q)
	}
	return nil
}

// exists reports whether some row of the table meets cond, an SQL
// condition.
func (r *runner) exists(ctx context.Context, cond string) (bool, error) {
	q := fmt.Sprintf("SELECT 1 FROM %s WHERE %s LIMIT 1", r.p.qtable, cond)
	var one int
	switch err := r.j.db.QueryRowContext(ctx, q).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("rotation: sampling the blind index columns of %s: %w", r.p.table, err)
	}
	return true, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
