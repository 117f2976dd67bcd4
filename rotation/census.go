package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// Census counts, for each encrypted column and each blind-index column of a
// table, how many values sit on each key version and how many are NULL,
// plaintext or not decryptable. Census fills it without decrypting;
// Verify decrypts every value as well.
type Census struct {
	// Table is the table counted.
	Table Table
	// Rows is the number of rows.
	Rows int64
	// ActiveVersion is the key version new values are written under.
	ActiveVersion uint32
	// Pending is the number of rows that Rotate would rewrite: with a
	// value not under ActiveVersion, an index value missing or not under
	// its active version beside a non-NULL source value, or an index
	// value beside a NULL source value in an index column that can hold
	// NULL, which Rotate clears (see IndexCensus.Orphaned).
	Pending int64
	// Columns are the encrypted columns, in the order of Table.Columns.
	Columns []ColumnCensus
	// Indexes are the blind-index columns, in the order of Table.Columns
	// and their Indexes.
	Indexes []IndexCensus
	// Verified reports whether every value was decrypted (Verify), rather
	// than only parsed (Census).
	Verified bool
	// Failures lists the values that failed (Verify only), in primary-key
	// order, at most VerifyOptions.MaxFailures of them.
	Failures []Failure
	// FailureCount is the number of values that failed (Verify only),
	// including those beyond Failures.
	FailureCount int64
}

// Done reports whether every value is under the active versions: Pending is
// zero and no value is plaintext or malformed.
func (c *Census) Done() bool {
	if c.Pending != 0 {
		return false
	}
	for _, col := range c.Columns {
		if col.Plaintext != 0 || col.Malformed != 0 {
			return false
		}
	}
	return true
}

// ColumnCensus counts the values of one encrypted column.
type ColumnCensus struct {
	// Column is the column's name.
	Column string
	// Versions counts the values in the wire format by the key version
	// they name.
	Versions map[uint32]int64
	// Null counts NULLs.
	Null int64
	// Plaintext counts values that are not in the wire format at all
	// (encryptedtype.ErrNotEncrypted): plaintext awaiting encryption, or
	// damage.
	Plaintext int64
	// Malformed counts values that start like the wire format but are not
	// valid (encryptedtype.ErrMalformed).
	Malformed int64
	// UnknownKey counts the values (also counted in Versions) under a
	// version the Cipher's provider does not hold. It is counted when the
	// Cipher has a Provider method, as *encryptedtype.Codec does.
	UnknownKey int64
	// Undecryptable counts the values that are not decryptable with the
	// keys at hand: Malformed plus UnknownKey and, from Verify, values that
	// fail authentication.
	Undecryptable int64
	// Pending counts the non-NULL values not under the active version
	// (plaintext and malformed values included).
	Pending int64
}

// IndexCensus counts the values of one blind-index column.
type IndexCensus struct {
	// Column is the index column's name; Source the encrypted column it is
	// computed from.
	Column, Source string
	// Active is the prefix of values under the active index-key version,
	// such as "b2:".
	Active string
	// Versions counts the index values by the index-key version they name.
	Versions map[uint32]int64
	// Null counts NULLs.
	Null int64
	// Missing counts NULLs beside a non-NULL source value: rows written
	// without their index (Rotate computes it).
	Missing int64
	// Orphaned counts the index values beside a NULL source value: values
	// that blindindex.Version parses ("b<N>:…" or "a<N>:…", under any
	// index-key version), also counted in Versions. The index of NULL is
	// NULL: the gormcrypt plugin writes NULL, but hand-written SQL that
	// sets the source to NULL can leave the old index value behind. In
	// an index column that can hold NULL, Rotate sets them to NULL, and
	// they count in Pending; in a column declared NOT NULL they are only
	// counted here, neither pending nor failures: Rotate leaves them as
	// they are. A value beside a NULL source that is not an index value,
	// such as the empty string of a NOT NULL column with an empty default
	// (common in MySQL and sqlc schemas), is no orphan: it
	// counts in Malformed only, and Rotate leaves it alone. Verify does
	// not report orphans as failures.
	Orphaned int64
	// Malformed counts values that are not index values (blindindex.Version
	// does not parse them), beside a NULL source value or not.
	Malformed int64
	// Mismatched counts values that differ from what the Indexer computes
	// from the decrypted source (Verify only, for an Indexer with
	// ComputeVersion).
	Mismatched int64
	// Pending counts the values Rotate would compute (missing, or not
	// under the active version, beside a non-NULL source value) or clear
	// (Orphaned, in a column that can hold NULL).
	Pending int64
}

// VerifyOptions control Verify.
type VerifyOptions struct {
	// BatchSize is the number of rows read per query; 0 means 1000.
	BatchSize int
	// SkipIndexes leaves out the check of index values against their
	// Indexer, which costs one index computation per value: an Argon2id
	// computation in blindindex's slow mode.
	SkipIndexes bool
	// MaxFailures bounds Census.Failures; 0 means 1000, -1 no bound.
	// Census.FailureCount counts them all.
	MaxFailures int
	// OnFailure, when set, is called for every failed value as it is
	// found.
	OnFailure func(Failure)
}

// censusBatch is the number of rows Census reads per query.
const censusBatch = 5000

// Census counts the table's values by key version without decrypting them,
// reading the table in primary-key order in short queries that take no
// locks. It reads only the first bytes of each encrypted value, so a value
// that merely starts like one of the wire format (a plaintext such as
// "v2:…", or damage) is counted under the version it names; Verify
// decrypts them.
func (j *Job) Census(ctx context.Context) (*Census, error) {
	return j.scan(ctx, false, VerifyOptions{BatchSize: censusBatch})
}

// Verify decrypts every value of the table, and checks every index value
// against its Indexer, without writing anything. It returns the census
// with the failures listed, and an error wrapping ErrFailures when there
// are any. Plaintext values are failures here, even in a column being
// converted.
func (j *Job) Verify(ctx context.Context, opts VerifyOptions) (*Census, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchSize < 0 || opts.BatchSize > MaxBatchSize {
		return nil, fmt.Errorf("rotation: BatchSize %d is not between 1 and %d", opts.BatchSize, MaxBatchSize)
	}
	if opts.MaxFailures == 0 {
		opts.MaxFailures = DefaultMaxFailures
	}
	c, err := j.scan(ctx, true, opts)
	if err != nil {
		return c, err
	}
	if c.FailureCount > 0 {
		return c, fmt.Errorf("%w: %d values of %s failed", ErrFailures, c.FailureCount, j.table)
	}
	return c, nil
}

// prefixLen is how much of each encrypted value Census reads: enough for
// "v4294967295:" and the first bytes after it, which is all that
// encryptedtype.Version looks at.
const prefixLen = 16

func (j *Job) scan(ctx context.Context, verify bool, opts VerifyOptions) (*Census, error) {
	p, err := resolve(ctx, j.db, j.table, nil)
	if err != nil {
		return nil, j.hint(err)
	}
	d := p.sql()
	pre, active, err := activePrefixes(ctx, j.cipher, p)
	if err != nil {
		return nil, err
	}
	c := &Census{Table: j.table, ActiveVersion: active, Verified: verify}
	for _, col := range p.cols {
		c.Columns = append(c.Columns, ColumnCensus{Column: col.name, Versions: map[uint32]int64{}})
	}
	for k, ix := range p.idx {
		c.Indexes = append(c.Indexes, IndexCensus{Column: ix.name, Source: p.cols[ix.src].name, Active: pre.index[k], Versions: map[uint32]int64{}})
	}

	// Which versions the keyring holds, when the Cipher tells.
	var provider keyprovider.Provider
	if pc, ok := j.cipher.(interface{ Provider() keyprovider.Provider }); ok {
		provider = pc.Provider()
	}
	known := map[uint32]bool{}
	holds := func(v uint32) bool {
		if provider == nil {
			return true
		}
		ok, seen := known[v]
		if !seen {
			_, err := provider.Key(v)
			ok = err == nil
			known[v] = ok
		}
		return ok
	}

	// The select list: whole values to verify, else only their prefixes.
	list := []string{d.pkSelect(p)} // see plan.selectList
	for _, col := range p.cols {
		if verify {
			list = append(list, col.q)
		} else {
			list = append(list, d.prefixExpr(col.ref(), prefixLen))
		}
	}
	for _, ix := range p.idx {
		list = append(list, ix.q)
	}
	fail := func(f Failure) {
		c.FailureCount++
		if opts.MaxFailures < 0 || len(c.Failures) < opts.MaxFailures {
			c.Failures = append(c.Failures, f)
		}
		if opts.OnFailure != nil {
			opts.OnFailure(f)
		}
	}

	b := newBatch(p, opts.BatchSize)
	nc := len(p.cols)
	var last any
	for first := true; ; first = false {
		var args []any
		if !first {
			args = append(args, last)
		}
		rows, err := j.db.QueryContext(ctx, p.pageSQL(list, !first, opts.BatchSize), args...)
		if err == nil {
			err = b.read(rows)
		}
		if err != nil {
			return c, fmt.Errorf("rotation: reading %s: %w", j.table, err)
		}
		n := b.rows()
		for i := range n {
			c.Rows++
			pending := false
			for ci, col := range p.cols {
				cc := &c.Columns[ci]
				raw, null := b.value(i, ci)
				var pt []byte
				decrypted := false
				if null {
					cc.Null++
				} else {
					if !bytes.HasPrefix(raw, []byte(pre.value)) {
						cc.Pending++
						pending = true
					}
					v, err := encryptedtype.Version(raw)
					switch {
					case errors.Is(err, encryptedtype.ErrNotEncrypted):
						cc.Plaintext++
						if verify {
							fail(Failure{PK: b.pks[i], Column: col.name, Err: err})
						}
					case err != nil:
						cc.Malformed++
						cc.Undecryptable++
						if verify {
							fail(Failure{PK: b.pks[i], Column: col.name, Err: err})
						}
					default:
						cc.Versions[v]++
						if !holds(v) {
							cc.UnknownKey++
							cc.Undecryptable++
							if verify {
								fail(Failure{PK: b.pks[i], Column: col.name, Err: fmt.Errorf("%w: %d", encryptedtype.ErrUnknownVersion, v)})
							}
						} else if verify {
							pt, err = j.cipher.Open(ctx, raw)
							if err != nil {
								if ctx.Err() != nil {
									return c, ctx.Err()
								}
								cc.Undecryptable++
								fail(Failure{PK: b.pks[i], Column: col.name, Err: err})
							} else {
								decrypted = true
							}
						}
					}
				}
				for _, k := range col.idx {
					ic := &c.Indexes[k]
					iv, inull := b.value(i, nc+k)
					if inull {
						ic.Null++
						if !null {
							ic.Missing++
							ic.Pending++
							pending = true
						}
						continue
					}
					v, verr := blindindex.Version(string(iv))
					switch {
					case null && verr == nil:
						// The index of NULL is NULL: Rotate clears an
						// index value beside it, whatever its version,
						// where the column can hold NULL (see
						// isIndexValue, plan.orphan).
						ic.Orphaned++
						if p.clearable(k) {
							ic.Pending++
							pending = true
						}
					case null:
						// Not an index value (such as the empty string): left alone.
					case !bytes.HasPrefix(iv, []byte(pre.index[k])):
						ic.Pending++
						pending = true
					}
					if verr != nil {
						ic.Malformed++
						continue
					}
					ic.Versions[v]++
					vc, ok := p.idx[k].ix.(versionComputer)
					if !decrypted || !ok || opts.SkipIndexes {
						continue
					}
					want, err := vc.ComputeVersion(v, string(pt))
					if errors.Is(err, keyprovider.ErrUnknownVersion) {
						continue
					}
					if err != nil {
						return c, fmt.Errorf("rotation: index column %s: %w", p.idx[k].q, err)
					}
					if want != string(iv) {
						ic.Mismatched++
						fail(Failure{PK: b.pks[i], Column: p.idx[k].name, Err: fmt.Errorf("%w: the stored index value is not the index of the decrypted %s", ErrIndexMismatch, p.quote(col.name))})
					}
				}
			}
			if pending {
				c.Pending++
			}
		}
		if n < opts.BatchSize {
			return c, nil
		}
		last = b.key(n - 1)
	}
}

// pageSQL returns the query that reads list from the next page of at most
// size rows in primary-key order: after the key given as its one
// parameter, or from the start.
func (p *plan) pageSQL(list []string, after bool, size int) string {
	q := fmt.Sprintf("SELECT %s FROM %s", strings.Join(list, ", "), p.qtable)
	if after {
		q += fmt.Sprintf(" WHERE %s > %s", p.qpk, p.sql().keyParam(p, 1))
	}
	return q + fmt.Sprintf(" ORDER BY %s LIMIT %d", p.orderBy(), size)
}
