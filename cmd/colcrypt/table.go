package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/glebarez/go-sqlite" // the pure-Go "sqlite" database/sql driver (modernc.org/sqlite)
	"github.com/go-sql-driver/mysql"  // the "mysql" database/sql driver
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// The environment variables of the index keys.
const (
	envIndexKeys       = "COLCRYPT_INDEX_KEYS"
	envActiveIndexKey  = "COLCRYPT_ACTIVE_INDEX_KEY"
	envDatabaseURL     = "DATABASE_URL"
	connectTimeout     = 30 * time.Second
	defaultPrimaryKey  = "id"
	flagDatabaseURL    = "database-url"
	flagDriver         = "driver"
	flagBlindIndexName = "blind-index"
	flagAllIndexes     = "all-blind-indexes"
)

// listFlag is a flag that may be repeated.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// tableFlags are the flags that name the database and describe the table.
type tableFlags struct {
	databaseURL string
	driver      string
	schema      string
	table       string
	pk          string
	columns     listFlag
	indexes     listFlag
	// allIndexes vouches that --blind-index names every blind index of
	// the table, so that none is looked for.
	allIndexes bool
}

// newFlagSet returns a flag set for command name that reports errors as
// usage errors, with the table flags registered when tf is not nil.
func newFlagSet(name string, tf *tableFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if tf != nil {
		fs.StringVar(&tf.databaseURL, flagDatabaseURL, "", "database URL (default $DATABASE_URL)")
		fs.StringVar(&tf.driver, flagDriver, "", "postgres, mysql or sqlite (default: from the URL)")
		fs.StringVar(&tf.schema, "schema", "", "schema of the table")
		fs.StringVar(&tf.table, "table", "", "table name")
		fs.StringVar(&tf.pk, "pk", defaultPrimaryKey, "primary key column")
		fs.Var(&tf.columns, "column", "encrypted column (repeatable)")
		fs.Var(&tf.indexes, flagBlindIndexName, "blind index spec (repeatable)")
		fs.BoolVar(&tf.allIndexes, flagAllIndexes, false, "the --blind-index flags name every blind index of the table: do not look for others")
	}
	return fs
}

// parse parses args into fs, turning every problem into a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags only)", fs.Arg(0))
	}
	return nil
}

// indexSpec is a parsed --blind-index.
type indexSpec struct {
	column, source, name string
	cfg                  blindindex.Config
}

// parseIndexSpec parses INDEX_COLUMN=SOURCE_COLUMN[,name=N][,normalize=…][,bits=B][,slow[=T:M:P]].
func parseIndexSpec(spec, table string) (indexSpec, error) {
	parts := strings.Split(spec, ",")
	col, src, ok := strings.Cut(parts[0], "=")
	if !ok || col == "" || src == "" {
		return indexSpec{}, usagef("--blind-index %q: want INDEX_COLUMN=SOURCE_COLUMN[,options]", spec)
	}
	s := indexSpec{column: col, source: src, name: table + "." + src}
	for _, opt := range parts[1:] {
		k, v, hasValue := strings.Cut(opt, "=")
		switch k {
		case "name":
			if v == "" {
				return s, usagef("--blind-index %q: empty name", spec)
			}
			s.name = v
		case "normalize":
			var ns []blindindex.Normalizer
			for f := range strings.SplitSeq(v, "+") {
				switch strings.ToLower(f) {
				case "trimspace", "trim":
					ns = append(ns, blindindex.TrimSpace)
				case "nfkc":
					ns = append(ns, blindindex.NFKC)
				case "fold":
					ns = append(ns, blindindex.Fold)
				case "digits", "digitsonly":
					ns = append(ns, blindindex.DigitsOnly)
				case "", "none":
				default:
					return s, usagef("--blind-index %q: unknown normaliser %q (want trimspace, nfkc, fold or digits)", spec, f)
				}
			}
			if len(ns) > 0 {
				s.cfg.Normalize = blindindex.Chain(ns...)
			}
		case "bits":
			b, err := strconv.Atoi(v)
			if err != nil || b < 1 || b > blindindex.MaxBits {
				return s, usagef("--blind-index %q: bits must be 1 to %d", spec, blindindex.MaxBits)
			}
			s.cfg.Bits = b
		case "slow":
			a := &blindindex.Argon2id{}
			if hasValue {
				f := strings.Split(v, ":")
				if len(f) != 3 {
					return s, usagef("--blind-index %q: slow=TIME:MEMORY_KIB:THREADS", spec)
				}
				t, err1 := strconv.ParseUint(f[0], 10, 32)
				m, err2 := strconv.ParseUint(f[1], 10, 32)
				p, err3 := strconv.ParseUint(f[2], 10, 8)
				if err1 != nil || err2 != nil || err3 != nil {
					return s, usagef("--blind-index %q: slow=TIME:MEMORY_KIB:THREADS, as numbers", spec)
				}
				a.Time, a.MemoryKiB, a.Threads = uint32(t), uint32(m), uint8(p)
			}
			s.cfg.Slow = a
		default:
			return s, usagef("--blind-index %q: unknown option %q (want name, normalize, bits or slow)", spec, k)
		}
	}
	return s, nil
}

// setup is what a table command works with.
type setup struct {
	db    *sql.DB
	job   *rotation.Job
	keys  *keyprovider.Static
	ikeys *keyprovider.Static // nil without blind indexes
	// indexVersions lists the versions of COLCRYPT_INDEX_KEYS when it
	// holds more than one (an index-key rotation in progress).
	indexVersions []uint32
	// unindexed lists, during an index-key rotation, the columns of the
	// table that hold blind index values but that no --blind-index
	// names: the command does not look at them, and says so.
	unindexed []strayIndex
	// searchErr is why the search for such columns failed (a role that
	// may not read every column, say): the command goes on and says so.
	searchErr error
}

// indexKeyVersions returns the distinct versions of the index keyring in
// the environment, in order, or nil when it is not set or does not parse
// (it is only read here to warn; a command that uses it reports its
// errors). keyprovider.ParseKeys accepts a version given twice (the
// keyring, keyprovider.NewStatic, refuses it): it counts once here.
func indexKeyVersions() []uint32 {
	raw := os.Getenv(envIndexKeys)
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	keys, err := keyprovider.ParseKeys(raw)
	if err != nil {
		return nil
	}
	vs := make([]uint32, len(keys))
	for i, k := range keys {
		vs[i] = k.Version()
	}
	slices.Sort(vs)
	return slices.Compact(vs)
}

// warnUnindexed warns on w, for command cmd, when st.unindexed is set: an
// index-key rotation is in progress and the table has columns holding
// blind index values that no --blind-index names, so the command neither
// counts, rotates nor checks them.
//
// again marks the repeat that rotate prints after its progress lines: the
// search's failure, with its driver error, is said once.
func (st *setup) warnUnindexed(w io.Writer, cmd string, again bool) {
	if !again {
		st.warnSearchFailed(w, cmd)
	}
	if len(st.unindexed) == 0 {
		return
	}
	fmt.Fprintf(w, "colcrypt %s: WARNING: %s holds index key versions %s (an index key rotation in progress),\n",
		cmd, envIndexKeys, versionList(st.indexVersions))
	if st.ikeys == nil {
		fmt.Fprintf(w, "  but no --%s was given: this command leaves the table's blind index columns out.\n", flagBlindIndexName)
	} else {
		fmt.Fprintf(w, "  and this command leaves out the blind index columns no --%s names.\n", flagBlindIndexName)
	}
	for _, s := range st.unindexed {
		sampled := fmt.Sprintf("%d of %d sampled values are blind index values", s.sampled, s.sampled+s.other)
		if s.sampled+s.other == 1 {
			sampled = "its 1 sampled value is a blind index value"
		}
		fmt.Fprintf(w, "  Column %s holds blind index values but no --%s names it (%s).\n",
			strconv.Quote(s.column), flagBlindIndexName, sampled)
	}
	fmt.Fprintf(w, "  Give every blind index of the table with --%s INDEX_COLUMN=SOURCE_COLUMN[,options], as the\n"+
		"  application configures it, and keep every index key version until `colcrypt status --check`\n"+
		"  with those flags exits 0. If a column only looks like a blind index, pass --%s.\n",
		flagBlindIndexName, flagAllIndexes)
}

// warnSearchFailed warns on w, for command cmd, that the search for blind
// index columns no --blind-index names could not be made.
func (st *setup) warnSearchFailed(w io.Writer, cmd string) {
	if st.searchErr == nil {
		return
	}
	fmt.Fprintf(w, "colcrypt %s: WARNING: %s holds index key versions %s (an index key rotation in progress), but\n"+
		"  the table could not be sampled for blind index columns no --%s names: %v\n"+
		"  Pass --%s if the --%s flags name every blind index of the table.\n",
		cmd, envIndexKeys, versionList(st.indexVersions), flagBlindIndexName, st.searchErr, flagAllIndexes, flagBlindIndexName)
}

// incomplete reports whether the command leaves out blind index columns,
// or could not tell: columns found that no --blind-index names, or a
// sample that could not be read.
func (st *setup) incomplete() bool { return len(st.unindexed) > 0 || st.searchErr != nil }

// unindexedClause says, in a sentence about the table, that the columns
// of st.unindexed were not looked at (verb: "looked at", "rotated",
// "checked"), and why; or, when the sample could not be read, that other
// blind index columns may not have been.
func (st *setup) unindexedClause(verb string) string {
	if len(st.unindexed) == 0 && st.searchErr != nil {
		return fmt.Sprintf("the table could not be sampled for blind index columns that no --%s names (see the warning), so any such column was not %s",
			flagBlindIndexName, verb)
	}
	if st.ikeys == nil {
		holds := "column %s holds"
		if len(st.unindexed) > 1 {
			holds = "columns %s hold"
		}
		return fmt.Sprintf("the blind index columns were not %s (no --%s, while %s holds versions %s): "+holds+" blind index values",
			verb, flagBlindIndexName, envIndexKeys, versionList(st.indexVersions), strayList(st.unindexed))
	}
	if len(st.unindexed) > 1 {
		return fmt.Sprintf("columns %s hold blind index values but were not %s (no --%s names them, while %s holds versions %s)",
			strayList(st.unindexed), verb, flagBlindIndexName, envIndexKeys, versionList(st.indexVersions))
	}
	return fmt.Sprintf("column %s holds blind index values but was not %s (no --%s names it, while %s holds versions %s)",
		strayList(st.unindexed), verb, flagBlindIndexName, envIndexKeys, versionList(st.indexVersions))
}

// open checks the table flags, reads the keys and connects to the database.
func (tf *tableFlags) open(ctx context.Context) (*setup, error) {
	if tf.table == "" {
		return nil, usagef("--table is required")
	}
	if len(tf.columns) == 0 {
		return nil, usagef("at least one --column is required")
	}
	if tf.pk == "" {
		return nil, usagef("--pk must not be empty")
	}
	t := rotation.Table{Schema: tf.schema, Name: tf.table, PrimaryKey: tf.pk}
	byName := map[string]int{}
	for _, c := range tf.columns {
		if _, dup := byName[c]; dup {
			return nil, usagef("--column %q given twice", c)
		}
		byName[c] = len(t.Columns)
		t.Columns = append(t.Columns, rotation.Column{Name: c})
	}
	var specs []indexSpec
	for _, s := range tf.indexes {
		spec, err := parseIndexSpec(s, tf.table)
		if err != nil {
			return nil, err
		}
		if _, ok := byName[spec.source]; !ok {
			return nil, usagef("--blind-index %s=%s: %q is not one of the --column columns", spec.column, spec.source, spec.source)
		}
		specs = append(specs, spec)
	}
	url := tf.databaseURL
	if url == "" {
		url = os.Getenv(envDatabaseURL)
	}
	if url == "" {
		return nil, usagef("no database: pass --%s or set %s", flagDatabaseURL, envDatabaseURL)
	}
	dbc, err := parseDatabase(url, tf.driver)
	if err != nil {
		return nil, err
	}
	t.Dialect = dbc.dialect

	st := &setup{}
	keys, err := keyprovider.FromEnv()
	if err != nil {
		return nil, fmt.Errorf("data keys: %w", err)
	}
	st.keys = keys
	if len(specs) > 0 {
		ikeys, err := keyprovider.FromEnvVars(envIndexKeys, envActiveIndexKey)
		if err != nil {
			return nil, fmt.Errorf("blind index keys (needed for --%s): %w", flagBlindIndexName, err)
		}
		st.ikeys = ikeys
		st.indexVersions = ikeys.Versions()
	} else {
		st.indexVersions = indexKeyVersions()
	}
	if len(st.indexVersions) < 2 {
		st.indexVersions = nil
	}
	for _, s := range specs {
		ix, err := blindindex.New(s.name, st.ikeys, s.cfg)
		if err != nil {
			return nil, usagef("--blind-index %s=%s: %v", s.column, s.source, err)
		}
		i := byName[s.source]
		t.Columns[i].Indexes = append(t.Columns[i].Indexes, rotation.Index{Column: s.column, Indexer: ix})
	}

	db, err := sql.Open(dbc.driver, dbc.dsn)
	if err != nil {
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	job, err := rotation.New(db, t, newCipher(keys))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	st.db, st.job = db, job
	if st.indexVersions != nil && !tf.allIndexes {
		// An index-key rotation: look for blind index columns that no
		// --blind-index names. The table without its indexes is checked
		// against the catalog first (existence, names, MySQL's character
		// set), with the job's own errors.
		bare := t
		bare.Columns = nil
		for _, c := range t.Columns {
			bare.Columns = append(bare.Columns, rotation.Column{Name: c.Name})
		}
		named := append([]string(nil), tf.columns...)
		for _, s := range specs {
			named = append(named, s.column)
		}
		rj, err := rotation.New(db, bare, encryptedtype.NewCodec(keys))
		if err == nil {
			err = rj.CheckIndexes(ctx)
		}
		if err == nil {
			// A sample that cannot be read (a role without SELECT on
			// every column) does not stop the command: it says so.
			st.unindexed, st.searchErr = findStrayIndexes(ctx, db, job.Table(), named)
		}
		if err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	return st, nil
}

// newCipher returns the Cipher of a table command's job: a Codec over the
// data keys. Tests replace it to count decryptions.
var newCipher = func(keys keyprovider.Provider) rotation.Cipher { return encryptedtype.NewCodec(keys) }

// close closes the database.
func (st *setup) close() { _ = st.db.Close() }

// database is where a table command connects.
type database struct {
	driver  string // the database/sql driver: pgx, mysql or sqlite
	dsn     string // what the driver is given
	dialect rotation.Dialect
}

// hasPrefixFold reports whether s starts with prefix, ignoring case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

var (
	// schemeRE matches a URL scheme and its "://".
	schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
	// mysqlDSNRE matches a go-sql-driver/mysql DSN without a scheme:
	// [user[:password]]@[net](addr)/dbname or user[:password]@/dbname.
	mysqlDSNRE = regexp.MustCompile(`^\S*@((tcp[46]?|unix)?\(|/)`)
	// pgKeywordRE matches a keyword of a PostgreSQL keyword/value
	// connection string.
	pgKeywordRE = regexp.MustCompile(`(?i)(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|service|connect_timeout)\s*=`)
)

// dialectFlag is the --driver value of d.
func dialectFlag(d rotation.Dialect) string {
	switch d {
	case rotation.MySQL:
		return "mysql"
	case rotation.SQLite:
		return "sqlite"
	}
	return "postgres"
}

// urlScheme returns the lower-cased scheme of a scheme://… URL, or "".
func urlScheme(url string) string {
	m := schemeRE.FindStringSubmatch(url)
	if m == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// parseDatabase interprets --database-url (or DATABASE_URL) and --driver.
// Without --driver, the URL's scheme names the database: mysql:// is a
// go-sql-driver/mysql DSN after the scheme, sqlite:// (or sqlite3://) a
// file path after it, and file: an SQLite URI given to the driver as it
// is; anything else is PostgreSQL (a URL or a key=value string, as pgx
// reads it). With --driver, a URL without one of these schemes is given to
// that driver as it is. A URL meant for another database is refused rather
// than given to the wrong driver, whose errors could quote it. Errors
// never repeat the URL, or any part of it but its scheme, as it may hold a
// password.
func parseDatabase(url, driver string) (database, error) {
	var dialect rotation.Dialect
	scheme := urlScheme(url)
	switch {
	case driver != "":
		d, err := rotation.ParseDialect(driver)
		if err != nil || d == rotation.DetectDialect {
			return database{}, usagef("--%s must be postgres, mysql or sqlite", flagDriver)
		}
		dialect = d
	case scheme == "mysql":
		dialect = rotation.MySQL
	case scheme == "sqlite", scheme == "sqlite3", hasPrefixFold(url, "file:"):
		dialect = rotation.SQLite
	default:
		dialect = rotation.Postgres
	}
	// wrong refuses a URL meant for another database: what describes it
	// without quoting it.
	wrong := func(what, hint string) error {
		if driver != "" {
			return usagef("--%s %s with %s%s", flagDriver, dialectFlag(dialect), what, hint)
		}
		return usagef("the database URL is %s%s", what, hint)
	}
	const sqliteHint = ": give the path of an SQLite database file, or sqlite:///path/to/file.db"
	switch dialect {
	case rotation.MySQL:
		if scheme != "" && scheme != "mysql" {
			return database{}, wrong("a "+scheme+":// URL", ": want mysql://user:password@tcp(host:3306)/dbname")
		}
		dsn := url
		if scheme == "mysql" {
			dsn = dsn[len("mysql://"):]
		}
		if _, err := mysql.ParseDSN(dsn); err != nil {
			return database{}, usagef("the database URL is not a MySQL DSN such as mysql://user:password@tcp(host:3306)/dbname")
		}
		return database{driver: "mysql", dsn: dsn, dialect: rotation.MySQL}, nil
	case rotation.SQLite:
		switch {
		case scheme != "" && scheme != "sqlite" && scheme != "sqlite3" && scheme != "file":
			return database{}, wrong("a "+scheme+":// URL", sqliteHint)
		case scheme == "" && !hasPrefixFold(url, "file:") && mysqlDSNRE.MatchString(url):
			return database{}, wrong("what looks like a MySQL DSN", sqliteHint)
		case scheme == "" && !hasPrefixFold(url, "file:") && pgKeywordRE.MatchString(url):
			return database{}, wrong("what looks like a PostgreSQL keyword=value string", sqliteHint)
		}
		dsn, err := sqliteDSN(url)
		if err != nil {
			return database{}, err
		}
		return database{driver: "sqlite", dsn: dsn, dialect: rotation.SQLite}, nil
	}
	switch {
	case scheme != "" && scheme != "postgres" && scheme != "postgresql":
		return database{}, wrong("a "+scheme+":// URL", ": want postgres://, mysql:// or sqlite://")
	case scheme == "" && hasPrefixFold(url, "file:"):
		return database{}, wrong("an SQLite file: URI", "")
	case scheme == "" && !pgKeywordRE.MatchString(url) && mysqlDSNRE.MatchString(url):
		// A keyword=value string may hold "@/" in a value (a password).
		return database{}, wrong("what looks like a MySQL DSN", ": write mysql://… or pass --driver mysql")
	}
	// Parsed here for a message of our own: pgx quotes what it cannot
	// parse, with only a best-effort redaction of the password.
	if _, err := pgconn.ParseConfig(url); err != nil {
		// ParseConfig also reads the files the URL names (sslrootcert,
		// sslcert, sslkey, passfile, service): a file it cannot read is
		// no syntax error.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return database{}, fmt.Errorf("the database URL names a file (sslrootcert, sslcert, sslkey, passfile or service file) that cannot be read: %s: %w", pe.Op, pe.Err)
		}
		return database{}, usagef("the database URL is not a PostgreSQL URL or keyword=value string such as postgres://user:password@host:5432/dbname (not repeated here, as it may hold a password)")
	}
	return database{driver: "pgx", dsn: url, dialect: rotation.Postgres}, nil
}

// sqliteDSN returns the DSN of an SQLite database: sqlite:///abs/path.db
// (or sqlite://relative/path.db), with optional ?query parameters for the
// driver, becomes file:<path>?<query>; a file: URI or a plain path is
// given as it is. The file must exist: SQLite would create an empty one.
// Its errors do not repeat the path, which could be a misplaced URL.
func sqliteDSN(url string) (string, error) {
	path, query := url, ""
	switch {
	case hasPrefixFold(url, "sqlite://"):
		path, query, _ = strings.Cut(url[len("sqlite://"):], "?")
	case hasPrefixFold(url, "sqlite3://"):
		path, query, _ = strings.Cut(url[len("sqlite3://"):], "?")
	case hasPrefixFold(url, "file:"):
		path, _, _ = strings.Cut(url[len("file:"):], "?")
		if strings.HasPrefix(path, "//") { // file:///abs/path or file://localhost/abs/path
			path = strings.TrimPrefix(path[2:], "localhost")
		}
		if path == "" || path == ":memory:" {
			return "", usagef("an SQLite database for colcrypt must be a file, not memory")
		}
		if err := statSQLite(path); err != nil {
			return "", err
		}
		return url, nil
	}
	if path == "" || path == ":memory:" {
		return "", usagef("an SQLite database URL names a file: sqlite:///path/to/file.db")
	}
	if err := statSQLite(path); err != nil {
		return "", err
	}
	dsn := "file:" + path
	if query != "" {
		dsn += "?" + query
	}
	return dsn, nil
}

// statSQLite checks that the SQLite database file at path exists, with an
// error that does not repeat the path.
func statSQLite(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no SQLite database file at the path of the database URL (SQLite would create an empty one)")
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in pe.Path only
		}
		return fmt.Errorf("the SQLite database file of the database URL: %w", err)
	case fi.IsDir():
		return errors.New("the path of the database URL is a directory, not an SQLite database file")
	}
	return nil
}
