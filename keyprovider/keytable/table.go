package keytable

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// DefaultTable is the key table's name when Config.Table is empty.
const DefaultTable = "encryption_keys"

// MaxVersion is the largest version the key table holds: its version
// column is a PostgreSQL INTEGER, so versions run from 1 to 2147483647,
// less than keyprovider.MaxVersion.
const MaxVersion = math.MaxInt32

// Config names the key table and its notification channel. The zero Config
// is the table "encryption_keys" and the channel "colcrypt_encryption_keys".
type Config struct {
	// Table is the table's name, optionally schema-qualified
	// ("app.encryption_keys"): lower-case letters, digits and
	// underscores, not starting with a digit, at most 63 bytes a part.
	// Empty means DefaultTable.
	Table string

	// Channel is the PostgreSQL notification channel that Add, AddNew,
	// Activate, Retire, Rewrap and Import notify in their transaction, and
	// that package pgnotify listens on. Same rules as a table name part.
	// Empty means "colcrypt_" followed by Table with "." replaced by "_",
	// cut to 63 bytes.
	Channel string
}

// Table is the PostgreSQL key table: every key version, wrapped by a KEK,
// with at most one active. It is the Source of a Provider, and has the
// operator's operations: Create, Add, AddNew, Activate, Retire, Rewrap and
// Import.
//
// A version names one key forever: Retire does not delete a version's row
// but keeps it as a tombstone (its key column emptied, never active), so
// that AddNew never hands out a retired number again and Add and Import
// refuse one with ErrRetired. Do not delete rows by hand for the same
// reason. Every change runs in one transaction that takes a SHARE ROW
// EXCLUSIVE lock on the table (changes wait for each other; reads do not
// wait) and sends a notification on the table's channel before it
// commits, so listeners see it as soon as it is committed.
//
// Table works with any database/sql driver for PostgreSQL (pgx's stdlib,
// lib/pq); it does not import one.
type Table struct {
	db      *sql.DB
	kek     keyprovider.KEK
	name    string // as configured
	ident   string // quoted, possibly schema-qualified
	index   string // quoted index name (unqualified)
	channel string
}

var identPart = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// NewTable returns the key table named by cfg in db, whose keys are
// wrapped by kek. It does no I/O; call Create to create the table.
func NewTable(db *sql.DB, kek keyprovider.KEK, cfg Config) (*Table, error) {
	if db == nil {
		return nil, errors.New("keytable: NewTable: nil *sql.DB")
	}
	if kek == nil {
		return nil, errors.New("keytable: NewTable: nil KEK")
	}
	name := cfg.Table
	if name == "" {
		name = DefaultTable
	}
	ident, index, err := tableIdents(name)
	if err != nil {
		return nil, err
	}
	channel := cfg.Channel
	if channel == "" {
		channel = "colcrypt_" + strings.ReplaceAll(name, ".", "_")
		channel = channel[:min(len(channel), 63)]
	} else if !identPart.MatchString(channel) {
		return nil, fmt.Errorf("keytable: channel name %q: want lower-case letters, digits and underscores, at most 63 bytes", channel)
	}
	return &Table{db: db, kek: kek, name: name, ident: ident, index: index, channel: channel}, nil
}

func tableIdents(name string) (ident, index string, err error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return "", "", fmt.Errorf("keytable: table name %q: want table or schema.table", name)
	}
	quoted := make([]string, len(parts))
	for i, p := range parts {
		if !identPart.MatchString(p) {
			return "", "", fmt.Errorf("keytable: table name %q: want lower-case letters, digits and underscores, not starting with a digit, at most 63 bytes a part", name)
		}
		quoted[i] = `"` + p + `"`
	}
	idx := parts[len(parts)-1] + "_one_active"
	return strings.Join(quoted, "."), `"` + idx[:min(len(idx), 63)] + `"`, nil
}

// Name returns the table's name, as configured.
func (t *Table) Name() string { return t.name }

// Channel returns the table's PostgreSQL notification channel.
func (t *Table) Channel() string { return t.channel }

// KEK returns the KEK the table's keys are wrapped by.
func (t *Table) KEK() keyprovider.KEK { return t.kek }

// DDL returns the SQL that creates the key table with the given name
// (empty means DefaultTable) and the partial unique index that allows at
// most one active key, for projects that manage their schema with a
// migration tool. Table.Create runs the same statements. For the default
// name it is:
//
//	CREATE TABLE IF NOT EXISTS "encryption_keys" (
//	    id         INTEGER PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
//	    version    INTEGER NOT NULL UNIQUE CHECK (version > 0),
//	    key        BYTEA NOT NULL, -- wrapped by a key-encryption key (KEK)
//	    active     BOOLEAN NOT NULL DEFAULT false,
//	    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
//	);
//	-- At most one active key.
//	CREATE UNIQUE INDEX IF NOT EXISTS "encryption_keys_one_active"
//	    ON "encryption_keys" (active) WHERE active;
func DDL(table string) (string, error) {
	if table == "" {
		table = DefaultTable
	}
	ident, index, err := tableIdents(table)
	if err != nil {
		return "", err
	}
	stmts := ddlStatements(ident, index)
	return stmts[0] + ";\n-- At most one active key.\n" + stmts[1] + ";\n", nil
}

func ddlStatements(ident, index string) [2]string {
	return [2]string{
		"CREATE TABLE IF NOT EXISTS " + ident + ` (
    id         INTEGER PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
    version    INTEGER NOT NULL UNIQUE CHECK (version > 0),
    key        BYTEA NOT NULL, -- wrapped by a key-encryption key (KEK)
    active     BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`,
		"CREATE UNIQUE INDEX IF NOT EXISTS " + index + "\n    ON " + ident + " (active) WHERE active",
	}
}

// Create creates the key table and its index if they do not exist, for
// programs that do not use a migration tool (those run DDL's SQL in a
// migration instead). It is safe to call at every start.
func (t *Table) Create(ctx context.Context) error {
	return t.inTx(ctx, false, func(tx *sql.Tx) error {
		// Two instances starting at once must not race in CREATE … IF NOT
		// EXISTS, which can fail on the catalog's unique indexes.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "colcrypt keytable "+t.ident); err != nil {
			return fmt.Errorf("keytable: creating %s: %w", t.name, err)
		}
		for _, s := range ddlStatements(t.ident, t.index) {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("keytable: creating %s: %w", t.name, err)
			}
		}
		return nil
	})
}

// LoadKeys returns every version in the table, its key wrapped, in
// ascending version order. A retired version (a tombstone) is included
// with an empty Wrapped; a Provider holds no key for it. It implements
// Source.
func (t *Table) LoadKeys(ctx context.Context) ([]WrappedKey, error) {
	return t.load(ctx, t.db)
}

// querier is what *sql.DB and *sql.Tx have in common that load needs.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (t *Table) load(ctx context.Context, q querier) ([]WrappedKey, error) {
	rows, err := q.QueryContext(ctx, "SELECT version, key, active FROM "+t.ident+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("keytable: reading %s: %w", t.name, err)
	}
	defer rows.Close()
	var out []WrappedKey
	for rows.Next() {
		var v int64
		var w WrappedKey
		if err := rows.Scan(&v, &w.Wrapped, &w.Active); err != nil {
			return nil, fmt.Errorf("keytable: reading %s: %w", t.name, err)
		}
		if v < 1 || v > MaxVersion {
			return nil, fmt.Errorf("%w: %s holds version %d", ErrCorrupt, t.name, v)
		}
		w.Version = uint32(v)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keytable: reading %s: %w", t.name, err)
	}
	return out, nil
}

// NewProvider returns a Provider serving the table's keys, unwrapped with
// the table's KEK. It is NewProvider(ctx, t, t.KEK(), opts).
func (t *Table) NewProvider(ctx context.Context, opts Options) (*Provider, error) {
	return NewProvider(ctx, t, t.kek, opts)
}

// Add stores k, wrapped by the table's KEK, as a new inactive version. It
// fails with ErrVersionExists if the table holds k's version already, and
// with an error matching both ErrVersionExists and ErrRetired if that
// version was retired: a retired version is never given a key again. The
// wrapping is checked by unwrapping it before anything is stored.
func (t *Table) Add(ctx context.Context, k keyprovider.Key) error {
	if !k.Valid() {
		return fmt.Errorf("%w: zero Key", keyprovider.ErrInvalidKey)
	}
	if err := checkVersion(k.Version()); err != nil {
		return err
	}
	wrapped, err := wrapChecked(ctx, t.kek, k)
	if err != nil {
		return err
	}
	return t.inTx(ctx, true, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO "+t.ident+" (version, key) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
			int64(k.Version()), wrapped)
		if err != nil {
			return fmt.Errorf("keytable: adding version %d to %s: %w", k.Version(), t.name, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			var retired bool
			if err := tx.QueryRowContext(ctx, "SELECT octet_length(key) = 0 FROM "+t.ident+" WHERE version = $1", int64(k.Version())).Scan(&retired); err != nil {
				return fmt.Errorf("%w: version %d in %s (and checking whether it was retired failed: %w)", ErrVersionExists, k.Version(), t.name, err)
			}
			if retired {
				return fmt.Errorf("%w: %w: version %d was retired from %s and is never reused", ErrVersionExists, ErrRetired, k.Version(), t.name)
			}
			return fmt.Errorf("%w: version %d in %s", ErrVersionExists, k.Version(), t.name)
		}
		return t.notify(ctx, tx, "add", k.Version())
	})
}

// AddNew generates a random key (keyprovider.GenerateKey) and stores it,
// wrapped, as a new inactive version one above the highest in the table,
// retired versions (tombstones) included, so that a retired number is
// never reused (1 in an empty table). It returns the new version; the key
// itself never leaves the table unwrapped.
//
// Rows deleted from the table (by hand, or by Retire before it kept
// tombstones) leave no trace: if the highest versions were deleted that
// way, Add their keys back, or Add a key above them, before calling
// AddNew.
func (t *Table) AddNew(ctx context.Context) (uint32, error) {
	var version uint32
	err := t.inTx(ctx, true, func(tx *sql.Tx) error {
		var maxV int64
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+t.ident).Scan(&maxV); err != nil {
			return fmt.Errorf("keytable: reading %s: %w", t.name, err)
		}
		if maxV >= MaxVersion {
			return fmt.Errorf("%w: %s already holds the highest version, %d", keyprovider.ErrInvalidKey, t.name, MaxVersion)
		}
		version = uint32(maxV + 1)
		k, err := keyprovider.GenerateKey(version)
		if err != nil {
			return err
		}
		wrapped, err := wrapChecked(ctx, t.kek, k)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+t.ident+" (version, key) VALUES ($1, $2)", int64(version), wrapped); err != nil {
			return fmt.Errorf("keytable: adding version %d to %s: %w", version, t.name, err)
		}
		return t.notify(ctx, tx, "add", version)
	})
	if err != nil {
		return 0, err
	}
	return version, nil
}

// Activate makes version the active one, in one transaction: afterwards
// exactly one key is active. The version's stored key must unwrap with the
// table's KEK (it is checked first, so that a bad row never becomes the
// key every instance needs). Activating the active version changes
// nothing. A version the table does not hold is an error wrapping
// keyprovider.ErrUnknownVersion; a retired one, an error wrapping both
// keyprovider.ErrUnknownVersion and ErrRetired.
//
// Other instances see the new active version when they next load: within
// a second with a pgnotify listener, otherwise at their next refresh.
// Until then they go on writing under the old version, which stays
// readable: do not retire it before every instance has moved on.
func (t *Table) Activate(ctx context.Context, version uint32) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	return t.inTx(ctx, true, func(tx *sql.Tx) error {
		var wrapped []byte
		var active bool
		err := tx.QueryRowContext(ctx, "SELECT key, active FROM "+t.ident+" WHERE version = $1", int64(version)).Scan(&wrapped, &active)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %d is not in %s", keyprovider.ErrUnknownVersion, version, t.name)
		}
		if err != nil {
			return fmt.Errorf("keytable: reading version %d from %s: %w", version, t.name, err)
		}
		if len(wrapped) == 0 {
			return t.retiredError(version)
		}
		if active {
			return nil
		}
		if _, err := t.kek.UnwrapKey(ctx, version, wrapped); err != nil {
			return fmt.Errorf("keytable: not activating version %d: %w", version, err)
		}
		// Deactivate first: the unique index is checked per statement.
		if _, err := tx.ExecContext(ctx, "UPDATE "+t.ident+" SET active = false WHERE active"); err != nil {
			return fmt.Errorf("keytable: activating version %d in %s: %w", version, t.name, err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+t.ident+" SET active = true WHERE version = $1", int64(version)); err != nil {
			return fmt.Errorf("keytable: activating version %d in %s: %w", version, t.name, err)
		}
		return t.notify(ctx, tx, "activate", version)
	})
}

// A UsageCheck reports whether any stored value may still be encrypted
// under version. Build one from rotation.Job.Census (see the package
// documentation), or write your own
// (for example a count of values with the prefix
// "v<version>:" in every encrypted column). It must answer true when it
// cannot be sure.
type UsageCheck func(ctx context.Context, version uint32) (inUse bool, err error)

// RetireOptions says how Retire decides that a version is no longer used.
type RetireOptions struct {
	// InUse is asked, while the table is locked against other changes,
	// whether any value may still be under the version. Retire refuses
	// with ErrKeyInUse if it says yes, and with its error if it fails.
	InUse UsageCheck

	// Force retires the version without asking InUse. Values still under
	// it become unreadable (ErrUnknownVersion) for good, unless the key
	// is kept elsewhere (it cannot be put back into this table: the
	// version stays retired).
	Force bool
}

// Retire removes version's key from the table for good. The row stays as
// a tombstone: its key column is emptied (an empty BYTEA) and it is never
// active, so the version number is never given to another key (AddNew
// skips it, Add and Import refuse it with ErrRetired). At its next load
// every Provider drops the key: Key then returns ErrUnknownVersion for it
// and the Provider keeps no reference to the key. Key values that callers
// obtained before are theirs to drop: an encryptedtype.Codec, for
// example, keeps the cipher it built for the version until it finds that
// the provider no longer knows the version, and Go does not wipe memory
// it frees.
//
// Retire refuses with ErrActiveKey for the active version, even with
// Force; with ErrNoUsageCheck when opts has neither InUse nor Force; and
// with ErrKeyInUse when InUse says values may still be under it. A
// version the table does not hold is an error wrapping
// keyprovider.ErrUnknownVersion; one already retired, an error wrapping
// both keyprovider.ErrUnknownVersion and ErrRetired.
//
// Retire a version only after the rotation job has re-saved its values
// and every instance has seen a newer active version (an instance that
// has not may still write under it).
func (t *Table) Retire(ctx context.Context, version uint32, opts RetireOptions) error {
	if err := checkVersion(version); err != nil {
		return err
	}
	if opts.InUse == nil && !opts.Force {
		return fmt.Errorf("%w: version %d", ErrNoUsageCheck, version)
	}
	return t.inTx(ctx, true, func(tx *sql.Tx) error {
		var active, retired bool
		err := tx.QueryRowContext(ctx, "SELECT active, octet_length(key) = 0 FROM "+t.ident+" WHERE version = $1", int64(version)).Scan(&active, &retired)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %d is not in %s", keyprovider.ErrUnknownVersion, version, t.name)
		}
		if err != nil {
			return fmt.Errorf("keytable: reading version %d from %s: %w", version, t.name, err)
		}
		if retired {
			return t.retiredError(version)
		}
		if active {
			return fmt.Errorf("%w: version %d is active in %s", ErrActiveKey, version, t.name)
		}
		if !opts.Force {
			inUse, err := opts.InUse(ctx, version)
			if err != nil {
				return fmt.Errorf("keytable: not retiring version %d: usage check failed: %w", version, err)
			}
			if inUse {
				return fmt.Errorf("%w: values may still be under version %d", ErrKeyInUse, version)
			}
		}
		// A tombstone, not a DELETE: MAX(version) never goes back, so the
		// number is never reused.
		if _, err := tx.ExecContext(ctx, "UPDATE "+t.ident+" SET key = ''::bytea, active = false WHERE version = $1", int64(version)); err != nil {
			return fmt.Errorf("keytable: retiring version %d from %s: %w", version, t.name, err)
		}
		return t.notify(ctx, tx, "retire", version)
	})
}

// Rewrap rotates the KEK: in one transaction it unwraps every stored key
// with the table's KEK, wraps it under to, checks that to unwraps it to the
// same key, and stores it. Encrypted data is not touched: the data keys do
// not change, only their wrapping. Retired versions (tombstones) have no
// key and are left as they are. If any key fails, nothing is changed.
// It returns the number of keys re-wrapped.
//
// Afterwards, use a Table made with to. Running instances that cannot
// unwrap with to keep the keys they hold, and report each load until they
// are given to; run them with keyprovider.FallbackKEK(to, old) before
// calling Rewrap to avoid that.
func (t *Table) Rewrap(ctx context.Context, to keyprovider.KEK) (int, error) {
	if to == nil {
		return 0, errors.New("keytable: Rewrap: nil KEK")
	}
	n := 0
	err := t.inTx(ctx, true, func(tx *sql.Tx) error {
		rows, err := t.load(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if len(r.Wrapped) == 0 {
				continue // retired: nothing to re-wrap
			}
			k, err := t.kek.UnwrapKey(ctx, r.Version, r.Wrapped)
			if err != nil {
				return fmt.Errorf("keytable: rewrap: version %d: %w", r.Version, err)
			}
			w, err := wrapChecked(ctx, to, k)
			if err != nil {
				return fmt.Errorf("keytable: rewrap: %w", err)
			}
			if _, err := tx.ExecContext(ctx, "UPDATE "+t.ident+" SET key = $2 WHERE version = $1", int64(r.Version), w); err != nil {
				return fmt.Errorf("keytable: rewrap: version %d: %w", r.Version, err)
			}
			n++
		}
		return t.notify(ctx, tx, "rewrap", 0)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// A Keyring is a Provider that can list its versions, such as
// *keyprovider.Static (from FromEnv or NewPassphrase) or *Provider. It is
// keyprovider.Keyring, declared there once; the name is kept here so that
// code written against keytable.Keyring compiles unchanged.
type Keyring = keyprovider.Keyring

// Import stores every key of src in the table, wrapped by the table's KEK,
// under the same versions, and makes src's active version the active one,
// all in one transaction. It moves a deployment from keys in the
// environment (keyprovider.FromEnv) to the key table without re-encrypting
// any data: the data keys stay the same, only where they are kept
// changes.
//
// Import is idempotent: a version the table already holds with the same
// key material is left alone. It fails with ErrImportConflict, changing
// nothing, if the table holds one of the versions with other material or
// has another active version, and with an error matching both
// ErrImportConflict and ErrRetired if one of the versions was retired
// from the table. It returns the number of keys added.
func (t *Table) Import(ctx context.Context, src Keyring) (int, error) {
	if src == nil {
		return 0, errors.New("keytable: Import: nil Keyring")
	}
	active, err := src.Active()
	if err != nil {
		return 0, fmt.Errorf("keytable: import: source has no active key: %w", err)
	}
	var keys []keyprovider.Key
	for _, v := range src.Versions() {
		k, err := src.Key(v)
		if err != nil {
			return 0, fmt.Errorf("keytable: import: version %d: %w", v, err)
		}
		if err := checkVersion(v); err != nil {
			return 0, fmt.Errorf("keytable: import: %w", err)
		}
		keys = append(keys, k)
	}
	added := 0
	err = t.inTx(ctx, true, func(tx *sql.Tx) error {
		rows, err := t.load(ctx, tx)
		if err != nil {
			return err
		}
		stored := make(map[uint32]WrappedKey, len(rows))
		var tableActive uint32
		for _, r := range rows {
			stored[r.Version] = r
			if r.Active {
				tableActive = r.Version
			}
		}
		if tableActive != 0 && tableActive != active.Version() {
			return fmt.Errorf("%w: %s has active version %d, the source %d", ErrImportConflict, t.name, tableActive, active.Version())
		}
		for _, k := range keys {
			if r, ok := stored[k.Version()]; ok {
				if len(r.Wrapped) == 0 {
					return fmt.Errorf("%w: %w: version %d was retired from %s and is never reused", ErrImportConflict, ErrRetired, r.Version, t.name)
				}
				have, err := t.kek.UnwrapKey(ctx, r.Version, r.Wrapped)
				if err != nil {
					return fmt.Errorf("keytable: import: stored version %d: %w", r.Version, err)
				}
				if !have.Equal(k) {
					return fmt.Errorf("%w: %s holds version %d with other key material", ErrImportConflict, t.name, r.Version)
				}
				continue
			}
			w, err := wrapChecked(ctx, t.kek, k)
			if err != nil {
				return fmt.Errorf("keytable: import: %w", err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+t.ident+" (version, key) VALUES ($1, $2)", int64(k.Version()), w); err != nil {
				return fmt.Errorf("keytable: import: version %d: %w", k.Version(), err)
			}
			added++
		}
		if tableActive == 0 {
			if _, err := tx.ExecContext(ctx, "UPDATE "+t.ident+" SET active = true WHERE version = $1", int64(active.Version())); err != nil {
				return fmt.Errorf("keytable: import: activating version %d: %w", active.Version(), err)
			}
		}
		return t.notify(ctx, tx, "import", active.Version())
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

// retiredError is the error for an operation on a retired version.
func (t *Table) retiredError(version uint32) error {
	return fmt.Errorf("%w: %w: version %d was retired from %s", ErrRetired, keyprovider.ErrUnknownVersion, version, t.name)
}

// wrapChecked wraps k with kek and unwraps the result, to be sure that
// what is stored can be read back.
func wrapChecked(ctx context.Context, kek keyprovider.KEK, k keyprovider.Key) ([]byte, error) {
	w, err := kek.WrapKey(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", k.Version(), err)
	}
	back, err := kek.UnwrapKey(ctx, k.Version(), w)
	if err != nil {
		return nil, fmt.Errorf("version %d: the KEK cannot unwrap what it wrapped: %w", k.Version(), err)
	}
	if !back.Equal(k) {
		return nil, fmt.Errorf("%w: version %d: the KEK unwrapped another key than it wrapped (other material or version)", keyprovider.ErrUnwrap, k.Version())
	}
	return w, nil
}

// inTx runs f in a transaction, with the table locked against other
// changes when lock is set.
func (t *Table) inTx(ctx context.Context, lock bool, f func(*sql.Tx) error) error {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keytable: %s: begin: %w", t.name, err)
	}
	defer func() { _ = tx.Rollback() }()
	if lock {
		if _, err := tx.ExecContext(ctx, "LOCK TABLE "+t.ident+" IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return fmt.Errorf("keytable: locking %s: %w", t.name, err)
		}
	}
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("keytable: %s: commit: %w", t.name, err)
	}
	return nil
}

// notify sends "<op> <version>" on the table's channel, delivered to
// listeners when tx commits.
func (t *Table) notify(ctx context.Context, tx *sql.Tx, op string, version uint32) error {
	payload := op
	if version != 0 {
		payload += " " + strconv.FormatUint(uint64(version), 10)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, $2)", t.channel, payload); err != nil {
		return fmt.Errorf("keytable: notifying %s: %w", t.channel, err)
	}
	return nil
}

func checkVersion(v uint32) error {
	if v == 0 || v > MaxVersion {
		return fmt.Errorf("%w: version %d: the key table holds versions 1 to %d", keyprovider.ErrInvalidKey, v, MaxVersion)
	}
	return nil
}
