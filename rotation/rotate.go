package rotation

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// Rotate re-saves every value of the table that is not under the active key
// version, and recomputes every blind-index value that is missing or not
// under the active index-key version, while the application keeps running.
//
// It walks the primary key in order (keyset pagination, never OFFSET), in
// batches. Each batch is one transaction: it locks the next rows that need
// work with SELECT … FOR UPDATE SKIP LOCKED, decrypts and re-encrypts their
// values in Go, writes them back in one UPDATE and commits. A value is only
// ever overwritten with the re-encryption of what the same transaction read
// under lock, so a concurrent write by the application is never lost: it
// either committed before the lock (and is what gets re-encrypted) or waits
// for the commit (and overwrites the rotated value). Rows the application
// holds locked are skipped and picked up by a later pass; Rotate returns
// when a count finds no value left on an old version. NULL stays NULL, and
// ORM hooks are not fired.
//
// A row with a value that does not decrypt (or, outside
// Options.EncryptPlaintext, is not in the wire format) is not written at
// all: it is reported to Options.OnFailure and in Result.Failures, later
// passes skip it, and Rotate returns an error wrapping ErrFailures once the
// rest is done.
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
		return res, err
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
	failed map[string]bool // primary keys of res.Failures
	done   int64
	total  int64
	pass   int
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
	pending, err := r.countPending(ctx, "")
	if err != nil {
		return err
	}
	r.total = pending
	delay := 50 * time.Millisecond
	for pass := 1; ; pass++ {
		r.mu.Lock()
		r.pass = pass
		r.res.Passes = pass
		before := r.done
		exclude := r.excludeLiteral()
		r.progressLocked()
		r.mu.Unlock()

		if err := r.sweep(ctx, exclude); err != nil {
			return err
		}
		if r.opts.DryRun || r.opts.SinglePass {
			break
		}
		// The active versions again, in case a reloading provider moved
		// on: values under a newer version are not left to rewrite.
		pre, _, err := activePrefixes(ctx, r.j.cipher, r.p)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.pre = pre // no worker is running
		exclude = r.excludeLiteral()
		progressed := r.done > before
		r.mu.Unlock()
		left, err := r.countPending(ctx, exclude)
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		r.mu.Lock()
		r.total = r.done + left
		r.mu.Unlock()
		// The rows left are locked by the application (or were rolled
		// back on a deadlock): wait a little, longer while nothing moves.
		if progressed {
			delay = 50 * time.Millisecond
		} else if delay < 2*time.Second {
			delay *= 2
		}
		if err := sleep(ctx, delay); err != nil {
			return fmt.Errorf("rotation: stopped after %d passes: %w", pass, err)
		}
	}
	return r.finish(ctx)
}

// finish drops from the failures the rows that no longer need work (the
// application rewrote them meanwhile) and returns ErrFailures if any are
// left.
func (r *runner) finish(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.res.Failures) == 0 {
		return nil
	}
	if !r.opts.DryRun {
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
			still[pk] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rotation: rechecking failed rows: %w", err)
		}
		kept := r.res.Failures[:0]
		for _, f := range r.res.Failures {
			if still[f.PK] {
				kept = append(kept, f)
			}
		}
		r.res.Failures = kept
	}
	if n := len(r.res.Failures); n > 0 {
		return fmt.Errorf("%w: %d rows of %s left untouched (see the failures reported)", ErrFailures, n, r.p.table)
	}
	return nil
}

// excludeLiteral returns the failed primary keys as an array literal, or
// "" when there are none. r.mu must be held.
func (r *runner) excludeLiteral() string {
	if len(r.res.Failures) == 0 {
		return ""
	}
	var a arrayLit
	a.reset()
	for _, f := range r.res.Failures {
		a.add(f.PK)
	}
	return a.String()
}

// countPending counts the rows Rotate would still rewrite, leaving out the
// primary keys of the array literal exclude.
func (r *runner) countPending(ctx context.Context, exclude string) (int64, error) {
	q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", r.p.qtable, r.p.pendingSQL(r.pre))
	var args []any
	if exclude != "" {
		q += fmt.Sprintf(" AND NOT (%s = ANY (%s))", r.p.qpk, r.p.pkCast(1, true))
		args = append(args, exclude)
	}
	var n int64
	if err := r.j.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("rotation: counting the rows left in %s: %w", r.p.table, err)
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
	started bool   // last is set
	done    bool   // no rows left after last
	exclude string // array literal of failed primary keys, or ""
}

// sweep makes one pass over the table with the configured workers.
func (r *runner) sweep(ctx context.Context, exclude string) error {
	cur := &cursor{exclude: exclude}
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
			if !isTransient(err) || transient >= 10 {
				return err
			}
			// A deadlock or serialization failure rolled the batch back;
			// its rows are left to a later pass.
			transient++
			r.mu.Lock()
			r.res.Retried++
			r.mu.Unlock()
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
	var q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	} = r.j.db
	var tx *sql.Tx
	if !r.opts.DryRun {
		tx, err = r.j.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
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
	newFails := r.reportFailures(fails)

	// Write back in one statement, and commit.
	if tx != nil {
		if st.rows > 0 {
			res, err := tx.ExecContext(ctx, r.updateSQL(), b.args()...)
			if err != nil {
				return false, fmt.Errorf("rotation: writing a batch of %s: %w", r.p.table, err)
			}
			if got, err := res.RowsAffected(); err == nil && got != st.rows {
				return false, fmt.Errorf("rotation: writing a batch of %s: %d rows updated, want %d", r.p.table, got, st.rows)
			}
		}
		err := tx.Commit()
		tx = nil
		if err != nil {
			return false, fmt.Errorf("rotation: committing a batch of %s: %w", r.p.table, err)
		}
	}

	r.mu.Lock()
	r.res.Rows += st.rows
	r.res.Values += st.values
	r.res.Plaintext += st.plaintext
	r.res.IndexValues += st.index
	r.done += st.rows + int64(newFails)
	over := r.opts.MaxFailures > 0 && len(r.res.Failures) > r.opts.MaxFailures
	nf := len(r.res.Failures)
	r.progressLocked()
	r.mu.Unlock()
	if over {
		return false, fmt.Errorf("%w: %d rows so far (more than MaxFailures); is a key version missing from the keyring?", ErrTooManyFailures, nf)
	}
	return n == r.opts.BatchSize, nil
}

// reportFailures records the failed rows not seen before and returns how
// many there were.
func (r *runner) reportFailures(fails []Failure) int {
	if len(fails) == 0 {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range fails {
		if r.failed[f.PK] {
			continue
		}
		n++
		r.failed[f.PK] = true
		r.res.Failures = append(r.res.Failures, f)
		if r.opts.OnFailure != nil {
			r.opts.OnFailure(f)
		}
	}
	return n
}

// selectSQL returns the query that takes the next batch after the cursor,
// with its arguments. cur.mu must be held.
func (r *runner) selectSQL(cur *cursor) (string, []any) {
	var b strings.Builder
	var args []any
	fmt.Fprintf(&b, "SELECT %s FROM %s WHERE %s", r.p.selectList(), r.p.qtable, r.p.pendingSQL(r.pre))
	if cur.started {
		args = append(args, cur.last)
		fmt.Fprintf(&b, " AND %s > %s", r.p.qpk, r.p.pkCast(len(args), false))
	}
	if cur.exclude != "" {
		args = append(args, cur.exclude)
		fmt.Fprintf(&b, " AND NOT (%s = ANY (%s))", r.p.qpk, r.p.pkCast(len(args), true))
	}
	fmt.Fprintf(&b, " ORDER BY %s LIMIT %d", r.p.qpk, r.opts.BatchSize)
	if !r.opts.DryRun {
		b.WriteString(" FOR UPDATE SKIP LOCKED")
	}
	return b.String(), args
}

// updateSQL returns the statement that writes a batch back: one UPDATE
// joined to the unnested arrays of primary keys and new values. A NULL new
// value leaves the column as it is.
func (r *runner) updateSQL() string {
	var set, arrays, names []string
	arrays = append(arrays, r.p.pkCast(1, true))
	names = append(names, "k")
	add := func(q string, bytea bool) {
		n := len(arrays) + 1
		typ := "text"
		if bytea {
			typ = "bytea"
		}
		arrays = append(arrays, fmt.Sprintf("$%d::text::%s[]", n, typ))
		names = append(names, fmt.Sprintf("c%d", n))
		set = append(set, fmt.Sprintf("%s = COALESCE(colcrypt_v.c%d, colcrypt_t.%s)", q, n, q))
	}
	for _, c := range r.p.cols {
		add(c.q, c.bytea)
	}
	for _, ix := range r.p.idx {
		add(ix.q, ix.bytea)
	}
	return fmt.Sprintf("UPDATE %s AS colcrypt_t SET %s FROM unnest(%s) AS colcrypt_v(%s) WHERE colcrypt_t.%s = colcrypt_v.k",
		r.p.qtable, strings.Join(set, ", "), strings.Join(arrays, ", "), strings.Join(names, ", "), r.p.qpk)
}

// stats counts what a batch rewrote.
type stats struct {
	rows, values, plaintext, index int64
}

// transform decrypts and re-encrypts the values of a batch that need it,
// filling the batch's output arrays. Rows with a value that fails are left
// out of the output and returned as failures. An error is returned only for
// what stops the job: ctx ending, or no usable active key.
func (r *runner) transform(ctx context.Context, b *batch) (stats, []Failure, error) {
	var st stats
	var fails []Failure
	p := r.p
	nc := len(p.cols)
	b.resetOut()
	out := b.rowOut
	for i := range b.rows() {
		for k := range out {
			out[k] = nil
		}
		var (
			fail                 *Failure
			values, plain, index int64
		)
	cols:
		for ci, c := range p.cols {
			raw, null := b.value(i, ci)
			if null {
				continue // NULL stays NULL; its indexes are left alone
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
				out[nc+k] = []byte(v)
				index++
			}
		}
		if fail != nil {
			fails = append(fails, *fail)
			continue
		}
		if values+plain+index == 0 {
			continue // nothing to do (the SELECT only returns rows with work)
		}
		b.addOut(b.pks[i])
		st.rows++
		st.values += values
		st.plaintext += plain
		st.index += index
	}
	return st, fails, nil
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

// checkIndexes checks, before anything is written, that every Indexer that
// can recompute old versions reproduces a sample of the stored index
// values: an Indexer configured differently from the application's would
// otherwise overwrite good index values with useless ones.
func (r *runner) checkIndexes(ctx context.Context) error {
	const sample = 16
	for _, ix := range r.p.idx {
		vc, ok := ix.ix.(versionComputer)
		if !ok {
			continue
		}
		src := r.p.cols[ix.src]
		q := fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s IS NOT NULL AND %s IS NOT NULL ORDER BY %s LIMIT %d",
			src.q, ix.q, r.p.qtable, src.q, ix.q, r.p.qpk, sample)
		rows, err := r.j.db.QueryContext(ctx, q)
		if err != nil {
			return fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
		}
		type pair struct{ v, idx []byte }
		var pairs []pair
		for rows.Next() {
			var v, i any
			if err := rows.Scan(&v, &i); err != nil {
				rows.Close()
				return fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
			}
			pairs = append(pairs, pair{asBytes(v), asBytes(i)})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rotation: sampling index column %s: %w", ix.q, err)
		}
		checked, bad := 0, 0
		for _, pr := range pairs {
			version, err := blindindex.Version(string(pr.idx))
			if err != nil {
				continue // malformed: rewritten by the rotation
			}
			pt, _, err := r.open(ctx, src, pr.v)
			if err != nil {
				continue // reported when its row comes up
			}
			want, err := vc.ComputeVersion(version, string(pt))
			if errors.Is(err, keyprovider.ErrUnknownVersion) {
				continue
			}
			if err != nil {
				return fmt.Errorf("rotation: index column %s: %w", ix.q, err)
			}
			checked++
			if want != string(pr.idx) {
				bad++
			}
		}
		if bad > 0 {
			return fmt.Errorf("%w: index column %s: %d of the %d stored values checked differ from what the Indexer computes; "+
				"configure it exactly as the application does (index name, normaliser, bits, slow mode, index keys)", ErrIndexMismatch, ix.q, bad, checked)
		}
	}
	return nil
}

// isTransient reports whether err is a deadlock, serialization failure or
// lock timeout, after which the batch can simply be tried again later. It
// recognises the SQLState method of the errors of pgx and lib/pq.
func isTransient(err error) bool {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		switch s.SQLState() {
		case "40001", "40P01", "55P03":
			return true
		}
	}
	return false
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
