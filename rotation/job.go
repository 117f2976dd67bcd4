package rotation

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
)

var (
	// ErrInvalidTable is returned (wrapped) for a Table description that
	// is invalid or does not match the database: an empty name, a column
	// that does not exist or is not text or bytea, a primary key without a
	// unique index, a column given twice.
	ErrInvalidTable = errors.New("rotation: invalid table description")

	// ErrFailures is returned (wrapped) by Rotate when some rows could not
	// be rewritten (a value that does not decrypt, a new value too long
	// for its column, an index value beside a NULL source that a CHECK
	// constraint keeps from being cleared, or a new index value that
	// another row already holds in a unique index) and were left
	// untouched, and by Verify when some values failed: the Result or
	// Census lists them.
	ErrFailures = errors.New("rotation: some rows could not be rewritten")

	// ErrValueTooLong is wrapped by the Failure of a row whose new value
	// (the ciphertext, or a blind-index value) would not fit its column, as
	// the catalog declares it (VARCHAR(n) and the other sized types on
	// MySQL, varchar(n) on PostgreSQL). Nothing of the row is written:
	// widen the column, then run Rotate again.
	ErrValueTooLong = errors.New("rotation: the new value does not fit the column")

	// ErrIndexMismatch is returned (wrapped) by Rotate, before it writes
	// anything, when an Indexer does not reproduce the index values stored
	// in the table: it is not configured as the application's index is
	// (name, normaliser, bits or keys), and the values it would write would
	// break lookups. CheckIndexes runs the same check on its own, and
	// Verify reports values that do not match with it.
	ErrIndexMismatch = errors.New("rotation: blind index values do not match their Indexer")

	// ErrOrphanIndex is wrapped by the Failure of a row whose blind-index
	// value beside a NULL source value, which Rotate sets to NULL (the
	// index of NULL is NULL, see IndexCensus.Orphaned), could not be set
	// to NULL: the row's write broke a CHECK constraint of the table, such
	// as CHECK (email_bidx IS NOT NULL), which the catalog's NOT NULL does
	// not show. Nothing of the row is written; the rest of its batch is.
	// Declare the index column NOT NULL (Rotate leaves the index values
	// beside a NULL source of a NOT NULL column as they are), change the
	// constraint, or give the row its source value, then run Rotate again.
	ErrOrphanIndex = errors.New("rotation: a blind index value stands beside a NULL source value")

	// ErrDuplicate is wrapped by the Failure of a row whose write would
	// break a unique index (or UNIQUE constraint) of the table: another
	// row already holds this index value, that is the same normalised
	// plaintext. Resolve the duplicate (delete or change one of the two
	// rows), then run Rotate again.
	//
	// It happens to a blind-index column with a UNIQUE index, which
	// compares stored values: during an index-key rotation, a value the
	// application wrote under the new index key and an equal one still
	// under the old key coexist until Rotate recomputes the old one; and
	// while encrypting plaintext (Options.EncryptPlaintext) whose index
	// column is still NULL, the plaintext may hold variants that
	// normalise alike ("A@x.com" and "a@x.com"), or the application may
	// have inserted an indexed duplicate of a row not yet indexed. Of two
	// rows that Rotate indexes in the same run, the first written keeps
	// the value and the other fails.
	//
	// Nothing of the row is written, and the rest of the table is. The
	// Failure names the row's primary key and the index column (Column
	// is empty when the database's error does not tell which, and the
	// error says so); it never holds the value.
	ErrDuplicate = errors.New("rotation: another row already holds this index value")

	// ErrIncomplete is returned (wrapped) by Rotate when it stops with
	// work left that is no failure of a row, rather than loop without
	// end: its passes kept taking the same rows, neither making them
	// current nor finding them failed (at least three passes in a row,
	// over at least ten seconds, backing off, without a failure: a writer
	// that puts rows back only briefly is waited out); or, with Options.EncryptPlaintext, the checks after the
	// passes kept finding values not under the active version, written
	// meanwhile (three checks in a row, each followed by more passes).
	// The error gives counts, never values. What was written is written;
	// running Rotate again, once whatever keeps writing those rows has
	// stopped, resumes.
	ErrIncomplete = errors.New("rotation: stopped with rows left that it cannot finish")

	// ErrTooManyFailures is returned (wrapped) by Rotate when as many rows
	// failed as Options.MaxFailures allows: usually a key version is
	// missing from the keyring, and every row on it fails.
	ErrTooManyFailures = errors.New("rotation: too many rows could not be rewritten")
)

// A Cipher decrypts and encrypts column values in the wire format of
// package encryptedtype. *encryptedtype.Codec is the Cipher to use.
type Cipher interface {
	// Seal encrypts plaintext under the active key version.
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)
	// Open decrypts a wire-format value written under any version.
	Open(ctx context.Context, value []byte) ([]byte, error)
}

// An Indexer computes blind-index values under the active index-key
// version. *blindindex.Index is the Indexer to use.
//
// An index value starts with a prefix naming its key version, up to and
// including the first ':' ("b2:…"); the job takes a stored value to be
// current when it starts with the prefix of the values Compute returns.
//
// When an Indexer also has the method
//
//	ComputeVersion(version uint32, plaintext string) (string, error)
//
// (as *blindindex.Index does), Rotate checks it against a sample of stored
// index values before writing, and Verify checks every stored index value.
type Indexer interface {
	Compute(plaintext string) (string, error)
}

// versionComputer is the optional method of an Indexer that recomputes a
// value under an old version.
type versionComputer interface {
	ComputeVersion(version uint32, plaintext string) (string, error)
}

// A Job rotates, counts and verifies the encrypted columns of one table.
// It holds no state between calls: every call reads the table afresh, so a
// Rotate that was interrupted (or killed) is finished by calling it again.
// A Job is safe for concurrent use, though running two Rotates on one table
// at once gains nothing.
type Job struct {
	db      *sql.DB
	table   Table // with Dialect set
	cipher  Cipher
	guessed bool // Dialect is PostgreSQL because the driver was not recognised
}

// New returns a job over table t of db, decrypting and encrypting values
// with c, normally an *encryptedtype.Codec holding every key version that
// may be stored and writing under the new one. New checks the description
// but does not touch the database; every method checks it against the
// catalog first.
//
// db is PostgreSQL, MySQL/MariaDB or SQLite: see Table.Dialect. When it
// is not set, New takes it from the type of db's driver.
func New(db *sql.DB, t Table, c Cipher) (*Job, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil *sql.DB", ErrInvalidTable)
	}
	if c == nil {
		return nil, fmt.Errorf("%w: nil Cipher", ErrInvalidTable)
	}
	if codec, ok := c.(*encryptedtype.Codec); ok && codec == nil {
		// Such as encryptedtype.Default() before SetDefault: it would
		// panic on the first value.
		return nil, fmt.Errorf("%w: nil *encryptedtype.Codec as the Cipher (was encryptedtype.SetDefault called?)", ErrInvalidTable)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	for _, col := range t.Columns {
		for _, ix := range col.Indexes {
			if bi, ok := ix.Indexer.(*blindindex.Index); ok && bi == nil {
				return nil, fmt.Errorf("%w: table %s: index column %q has a nil *blindindex.Index as its Indexer", ErrInvalidTable, t, ix.Column)
			}
		}
	}
	t.Columns = append([]Column(nil), t.Columns...)
	for i := range t.Columns {
		t.Columns[i].Indexes = append([]Index(nil), t.Columns[i].Indexes...)
	}
	guessed := false
	if t.Dialect == DetectDialect {
		var known bool
		t.Dialect, known = detectDialect(db.Driver())
		guessed = !known
	}
	return &Job{db: db, table: t, cipher: c, guessed: guessed}, nil
}

// Table returns the job's table description, with its Dialect set (as
// detected, when it was not).
func (j *Job) Table() Table { return j.table }

// Failure is a row (or, from Verify, a value) that could not be processed.
// It carries the row's primary key and why, never the value.
type Failure struct {
	// PK is the row's primary key, as text. On SQLite, where a key column
	// without a type can hold the integer 1 and the text '1' in two rows,
	// two failures may show the same PK.
	PK string
	// Column is the column whose value failed: the encrypted column, for
	// ErrValueTooLong the column that the new value would not fit, for
	// ErrOrphanIndex the index column (or "" when the row clears more
	// than one, which the error names), and for ErrDuplicate the column of
	// the unique index that the row's new value would break (usually the
	// blind-index column), or "" when the database does not say which.
	Column string
	// Err is why: it wraps encryptedtype.ErrAuth, ErrMalformed,
	// ErrUnknownVersion or ErrNotEncrypted, or ErrIndexMismatch,
	// ErrValueTooLong, ErrOrphanIndex or ErrDuplicate. Its text never
	// holds a plaintext, a stored value, a blind-index value or key
	// material.
	Err error
}

// String describes the failure in one line.
func (f Failure) String() string {
	if f.Column == "" {
		return fmt.Sprintf("row %s: %v", f.PK, f.Err)
	}
	return fmt.Sprintf("row %s: column %s: %v", f.PK, quoteIdent(f.Column), f.Err)
}

// Option values.
const (
	// DefaultBatchSize is the number of rows per batch when
	// Options.BatchSize is 0.
	DefaultBatchSize = 1000
	// DefaultMaxFailures is the limit on failed rows when
	// Options.MaxFailures is 0.
	DefaultMaxFailures = 1000
	// MaxBatchSize bounds Options.BatchSize, and with it the memory a
	// worker holds.
	MaxBatchSize = 100000
)

// Options control Rotate. The zero Options rotate in batches of
// DefaultBatchSize with one worker and no pause.
type Options struct {
	// BatchSize is the number of rows each transaction locks and writes;
	// 0 means DefaultBatchSize. On MySQL and SQLite, where a batch is
	// written with a parameter per value, it is also bounded by the
	// number of parameters a statement takes (65535 and 32766) divided by
	// 1 + the number of columns written.
	BatchSize int
	// Workers is the number of batches in flight at once, each on its own
	// connection; 0 means 1. Batches are taken in primary-key order, so
	// workers never contend for rows. On SQLite, where a batch holds the
	// database's write lock, more than one gains nothing.
	Workers int
	// Pause is how long each worker sleeps after each batch, to leave the
	// database to the application.
	Pause time.Duration
	// DryRun reads and decrypts what would be rewritten, and re-encrypts it
	// in memory, but writes nothing and takes no row locks. It makes one
	// pass: the Result counts what a real run would write and lists the
	// rows that would fail, except those whose write would break a
	// unique index (ErrDuplicate), which only writing finds.
	DryRun bool
	// SinglePass stops after the first pass over the table, without
	// waiting for rows that the application had locked (a later Rotate
	// picks them up). By default Rotate makes passes until no value is
	// left on an old version.
	SinglePass bool
	// EncryptPlaintext names columns being converted from plaintext: a
	// value of these columns that is not in the wire format at all
	// (encryptedtype.ErrNotEncrypted) is taken as plaintext and encrypted.
	// In every other column such a value is a failure, so a damaged value
	// is never mistaken for plaintext. A value that starts like the wire
	// format but does not decrypt is a failure in every column.
	//
	// In these columns Rotate does not take a value that starts with the
	// active version's prefix ("v2:…") to be done: once the passes are
	// over, it reads them all and decrypts them (without locks, and
	// writing nothing), and reports as failures those that do not
	// decrypt, such as a plaintext that happens to start like a
	// ciphertext. Census cannot tell such a value apart; Verify can.
	//
	// That check reads every encrypted value of the table (the first
	// bytes of the columns not named here), and a value it finds that is
	// not under the active version, in a row that has not failed (a
	// plaintext that the application wrote after the passes, say), is
	// work left: Rotate makes more passes and checks again, up to three
	// checks, then stops with ErrIncomplete. So a nil error means that
	// every value the last check read was under the active version (and
	// decrypted, in these columns). A dry run and SinglePass skip this:
	// they promise no such thing.
	EncryptPlaintext []string
	// MaxFailures is the number of failed rows after which Rotate stops
	// with ErrTooManyFailures, so that a missing key is not reported once
	// per row of the table; 0 means 1000, and -1 no limit. Rotate stops
	// as soon as MaxFailures rows have failed: the batch in progress still
	// writes its rows that did not fail, and Result.Failures lists exactly
	// MaxFailures rows. Failed rows are held in memory, one entry each.
	MaxFailures int
	// Progress, when set, is called after every batch and at the start of
	// every pass, from one goroutine at a time.
	Progress func(Progress)
	// OnFailure, when set, is called once for every row that fails, as it
	// is found, from one goroutine at a time.
	OnFailure func(Failure)
}

// Progress is a snapshot of a running Rotate.
type Progress struct {
	// Pass is the pass over the table, from 1. Passes after the first pick
	// up rows that the application had locked.
	Pass int
	// Done is the number of rows processed: written (or, in a dry run,
	// that would be), or failed.
	Done int64
	// Failed is the number of rows that failed.
	Failed int64
	// Total is the number of rows to process: Done plus the rows still on
	// an old version, counted at the start of each pass.
	Total int64
	// Elapsed is the time since Rotate started.
	Elapsed time.Duration
	// Rate is Done per second of Elapsed.
	Rate float64
	// ETA is the estimated time to finish, or -1 when unknown.
	ETA time.Duration
}

// Result is what a Rotate did.
type Result struct {
	// Rows is the number of rows written (in a dry run, that would be).
	Rows int64
	// Values is the number of encrypted values re-encrypted under the
	// active key version.
	Values int64
	// Plaintext is the number of plaintext values encrypted (columns of
	// Options.EncryptPlaintext).
	Plaintext int64
	// IndexValues is the number of blind-index values recomputed under the
	// active index-key version.
	IndexValues int64
	// ClearedIndexValues is the number of blind-index values set to NULL
	// because their source value is NULL (see IndexCensus.Orphaned): index
	// values, in index columns that can hold NULL.
	ClearedIndexValues int64
	// Failures are the rows left untouched (a value could not be
	// decrypted, a new value would not fit, an index value beside a NULL
	// source could not be cleared for a CHECK constraint, another row
	// holds the new index value in a unique index), in the order found,
	// one per row.
	Failures []Failure
	// Passes is the number of passes made over the table.
	Passes int
	// Retried is the number of batches rolled back on a transient error
	// (deadlock, serialization failure, lock wait timeout, SQLite busy)
	// and left to a later pass.
	Retried int64
	// Elapsed is how long Rotate ran.
	Elapsed time.Duration
	// DryRun reports whether this was a dry run.
	DryRun bool
}

// Prefixes of stored values, as activePrefixes checks them before putting
// them into SQL as literals.
var (
	valuePrefixRE = regexp.MustCompile(`^v[1-9][0-9]{0,9}:$`)
	indexPrefixRE = regexp.MustCompile(`^[a-z][1-9][0-9]{0,9}:$`)
)

// activePrefixes returns the prefixes that name the active versions, by
// encrypting and indexing an empty value. The ciphertext is discarded.
func activePrefixes(ctx context.Context, c Cipher, p *plan) (prefixes, uint32, error) {
	v, err := c.Seal(ctx, nil)
	if err != nil {
		return prefixes{}, 0, fmt.Errorf("rotation: no active key: %w", err)
	}
	active, err := encryptedtype.Version(v)
	if err != nil {
		return prefixes{}, 0, fmt.Errorf("rotation: the Cipher does not write the wire format: %w", err)
	}
	pre := prefixes{value: string(v[:strings.IndexByte(string(v), ':')+1])}
	if !valuePrefixRE.MatchString(pre.value) {
		return prefixes{}, 0, errors.New("rotation: the Cipher does not write the wire format")
	}
	for _, ix := range p.idx {
		s, err := ix.ix.Compute("")
		if err != nil {
			return prefixes{}, 0, fmt.Errorf("rotation: index column %s: no active index key: %w", ix.q, err)
		}
		i := strings.IndexByte(s, ':')
		if i < 0 || !indexPrefixRE.MatchString(s[:i+1]) {
			return prefixes{}, 0, fmt.Errorf("rotation: index column %s: the Indexer's values do not start with <mode><version>:", ix.q)
		}
		pre.index = append(pre.index, s[:i+1])
	}
	return pre, active, nil
}
