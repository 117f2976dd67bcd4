package rotation

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Table describes a table whose columns colcrypt encrypts: its name, its
// primary key, its encrypted columns and the blind indexes computed from
// them. Package gormrotation derives one from a GORM model.
//
// Names are SQL identifiers exactly as stored in the catalog (case
// sensitive, unquoted): the job quotes them itself, so any name, however
// hostile, is safe to pass.
type Table struct {
	// Schema is the table's schema: on PostgreSQL empty means the
	// search_path; on MySQL it is the database, empty for the connection's
	// current one; on SQLite the attached database ("main", "temp" or an
	// ATTACH name), empty for the table as an unqualified name finds it in
	// temp or main.
	Schema string
	// Name is the table's name.
	Name string
	// PrimaryKey is the column the job pages over: a single NOT NULL
	// column with a unique index (a primary key). On PostgreSQL it may be
	// of any orderable type; on MySQL an integer, character or binary
	// string type; on SQLite anything but a type the driver reads as a
	// time (DATE, DATETIME, TIMESTAMP). Composite keys are not supported.
	PrimaryKey string
	// Columns are the encrypted columns holding the wire format of package
	// encryptedtype: on PostgreSQL TEXT, VARCHAR, CITEXT or BYTEA; on
	// MySQL the CHAR, VARCHAR, TEXT, BINARY, VARBINARY and BLOB types; on
	// SQLite columns of TEXT or BLOB affinity.
	Columns []Column
	// Dialect is the database's SQL dialect. The zero value,
	// DetectDialect, takes it from the type of the *sql.DB's driver (see
	// DetectDialect); set it when the driver is wrapped (by tracing, for
	// instance) or not one colcrypt knows. Package gormrotation sets it
	// from the GORM dialector.
	Dialect Dialect
}

// Column is one encrypted column and the blind indexes computed from its
// plaintext.
type Column struct {
	// Name is the column's name.
	Name string
	// Indexes are the blind-index columns computed from this column's
	// plaintext.
	Indexes []Index
}

// Index is a blind-index column computed from the plaintext of an encrypted
// column, such as email_bidx from email.
type Index struct {
	// Column is the name of the column that holds the index values.
	Column string
	// Indexer computes its values. It must be configured exactly as the
	// application's (same name, normaliser, bits and keys): Rotate checks
	// a sample of stored values before it writes any, when the Indexer
	// can recompute old versions (as *blindindex.Index can).
	Indexer Indexer
}

// String returns the table's name as it appears in SQL, quoted: with
// backquotes for MySQL, double quotes for the others.
func (t Table) String() string { return qualifiedIn(dialectOf(t.Dialect), t.Schema, t.Name) }

// quoteIdent quotes an SQL identifier: it is wrapped in double quotes and
// every double quote in it doubled, which PostgreSQL reads back as exactly
// name, whatever it contains. Names with a NUL byte, which no PostgreSQL
// identifier can hold, are rejected by validate before they get here.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// qualifiedIn returns the quoted, schema-qualified name of a table in
// dialect d.
func qualifiedIn(d sqlDialect, schema, name string) string {
	if schema == "" {
		return d.quote(name)
	}
	return d.quote(schema) + "." + d.quote(name)
}

// checkName rejects names that cannot be SQL identifiers.
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalidTable, what)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: %s name contains a NUL byte", ErrInvalidTable, what)
	}
	return nil
}

// validate checks the description without touching the database.
func (t Table) validate() error {
	if t.Schema != "" {
		if err := checkName("schema", t.Schema); err != nil {
			return err
		}
	}
	if t.Dialect < DetectDialect || t.Dialect > SQLite {
		return fmt.Errorf("%w: unknown %v", ErrInvalidTable, t.Dialect)
	}
	if err := checkName("table", t.Name); err != nil {
		return err
	}
	if err := checkName("primary key", t.PrimaryKey); err != nil {
		return err
	}
	if len(t.Columns) == 0 {
		return fmt.Errorf("%w: table %s: no encrypted columns", ErrInvalidTable, t)
	}
	seen := map[string]string{t.PrimaryKey: "the primary key"}
	use := func(name, as string) error {
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("%w: table %s: column %q is both %s and %s", ErrInvalidTable, t, name, prev, as)
		}
		seen[name] = as
		return nil
	}
	for _, c := range t.Columns {
		if err := checkName("column", c.Name); err != nil {
			return err
		}
		if err := use(c.Name, "an encrypted column"); err != nil {
			return err
		}
		for _, ix := range c.Indexes {
			if err := checkName("index column", ix.Column); err != nil {
				return err
			}
			if ix.Indexer == nil {
				return fmt.Errorf("%w: table %s: index column %q has no Indexer", ErrInvalidTable, t, ix.Column)
			}
			if err := use(ix.Column, "an index column"); err != nil {
				return err
			}
		}
	}
	return nil
}

// plan is a Table resolved against the catalog: quoted names, column types
// and the SQL of every statement the job runs.
type plan struct {
	table   Table
	dialect Dialect // the zero value is PostgreSQL's
	qtable  string  // quoted, qualified
	qpk     string  // quoted
	pkType  string  // PostgreSQL: format_type of the primary key, e.g. "bigint"
	pkKind  keyKind // how keys go back into SQL
	// MySQL, for a character-string key: its character set and collation,
	// which the batch UPDATE names to join on the key.
	pkCharset, pkCollation string
	cols                   []colPlan
	idx                    []idxPlan // every index, in the order of the row layout

	// schemaName and tableName are the table's schema (MySQL: database;
	// SQLite: attached database) and name as the catalog spells them,
	// unquoted; set on MySQL and SQLite.
	schemaName, tableName string

	// keepOrphans is set when no index value beside a NULL source is
	// cleared, in any index column: on SQLite, for a database whose text
	// encoding is not UTF-8 (see sqliteIndexValue).
	keepOrphans bool
}

// colPlan is one encrypted column of a plan.
type colPlan struct {
	name      string
	q         string
	bytea     bool
	charset   string      // MySQL: the character set of a text column
	limit     lengthLimit // the most a value holds
	plaintext bool        // Options.EncryptPlaintext names it
	idx       []int       // positions in plan.idx
}

// idxPlan is one blind-index column of a plan.
type idxPlan struct {
	name    string
	q       string
	bytea   bool
	charset string      // MySQL: the character set of a text column
	limit   lengthLimit // the most a value holds
	notNull bool        // declared NOT NULL (or of a NOT NULL domain): it cannot be set to NULL
	src     int         // position of the source column in plan.cols
	ix      Indexer
}

func (c colPlan) ref() colRef {
	return colRef{q: c.q, bytea: c.bytea, charset: c.charset, limit: c.limit}
}
func (c idxPlan) ref() colRef {
	return colRef{q: c.q, bytea: c.bytea, charset: c.charset, limit: c.limit, notNull: c.notNull}
}

// clearable reports whether Rotate sets to NULL the index values of index
// k (a position in plan.idx) that stand beside a NULL source (those that
// isIndexValue accepts): whether the index column can be set to NULL, as
// the catalog declares it. (Whether the source can be NULL is left to the
// values: a PostgreSQL column of a NOT NULL domain, for one, can hold
// NULL all the same.) In a column that is not clearable, such values are
// only counted (IndexCensus.Orphaned): they are no work for Rotate. A
// CHECK constraint that forbids NULL is not read from the catalog: the
// write breaks it, and the row fails (ErrOrphanIndex).
func (p *plan) clearable(k int) bool {
	return !p.idx[k].notNull && !p.keepOrphans
}

// orphan reports whether index k (a position in plan.idx) of row i of b
// holds an index value that Rotate clears: one that isIndexValue accepts,
// beside a NULL source, in a clearable column.
func (p *plan) orphan(b *batch, i, k int) bool {
	if !p.clearable(k) {
		return false
	}
	if _, null := b.value(i, p.idx[k].src); !null {
		return false
	}
	v, null := b.value(i, len(p.cols)+k)
	return !null && isIndexValue(v)
}

// lengthLimit is the most a column holds, as the catalog declares it:
// chars characters and bytes bytes (as the new value's UTF-8, which for the
// ASCII of the wire format and of index values is its length in any
// character set). Zero means no limit the job knows of. A new value that
// does not fit is a failure of its row, never written: MySQL in a
// non-strict sql_mode would cut it short, and PostgreSQL and a strict
// MySQL would fail the whole batch.
type lengthLimit struct {
	chars, bytes int64
}

// fits returns nil when v fits within the limit, or else an error wrapping
// ErrValueTooLong that gives the lengths, never the value.
func (l lengthLimit) fits(v []byte) error {
	if l.bytes > 0 && int64(len(v)) > l.bytes {
		return fmt.Errorf("%w: the new value is %d bytes long and the column holds at most %d", ErrValueTooLong, len(v), l.bytes)
	}
	if l.chars > 0 {
		if n := int64(utf8.RuneCount(v)); n > l.chars {
			return fmt.Errorf("%w: the new value is %d characters long and the column holds at most %d", ErrValueTooLong, n, l.chars)
		}
	}
	return nil
}

// width is the number of values in a row after its primary key.
func (p *plan) width() int { return len(p.cols) + len(p.idx) }

// quote quotes a name in the plan's dialect, for SQL and messages.
func (p *plan) quote(name string) string { return p.sql().quote(name) }

// attr is a column as the catalog describes it.
type attr struct {
	typ     string // format_type
	typname string // pg_type.typname (of the base type for a domain)
	typmod  int    // atttypmod (the domain's typtypmod for a domain), -1 for none
	notNull bool   // attnotnull
	// domainNotNull reports a domain declared NOT NULL: the column
	// cannot be set to NULL, though it may read as NULL (see CREATE
	// DOMAIN), so the primary key's check does not take it.
	domainNotNull bool
	attnum        int
}

// resolve looks the table up in the catalog and builds its plan.
// plaintext names the columns whose non-wire-format values are plaintext
// to encrypt.
func resolve(ctx context.Context, db *sql.DB, t Table, plaintext []string) (*plan, error) {
	d := dialectOf(t.Dialect)
	p := &plan{table: t, dialect: t.Dialect, qtable: qualifiedIn(d, t.Schema, t.Name), qpk: d.quote(t.PrimaryKey)}
	if err := d.resolve(ctx, db, p, plaintext); err != nil {
		return nil, err
	}
	return p, nil
}

// resolvePostgres is resolve on PostgreSQL.
func resolvePostgres(ctx context.Context, db *sql.DB, p *plan, plaintext []string) error {
	t := p.table
	// The quoted name is a bound parameter, parsed by to_regclass: it
	// never becomes SQL text.
	var oid sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1)::oid::bigint`, p.qtable).Scan(&oid); err != nil {
		return fmt.Errorf("rotation: looking up table %s: %w", t, err)
	}
	if !oid.Valid {
		return fmt.Errorf("%w: table %s does not exist", ErrInvalidTable, t)
	}
	rows, err := db.QueryContext(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod),
		       COALESCE(bt.typname, ty.typname),
		       CASE WHEN ty.typtype = 'd' THEN ty.typtypmod ELSE a.atttypmod END,
		       a.attnotnull, ty.typtype = 'd' AND ty.typnotnull, a.attnum
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_type bt ON ty.typtype = 'd' AND bt.oid = ty.typbasetype
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, oid.Int64)
	if err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	attrs := map[string]attr{}
	for rows.Next() {
		var name string
		var a attr
		if err := rows.Scan(&name, &a.typ, &a.typname, &a.typmod, &a.notNull, &a.domainNotNull, &a.attnum); err != nil {
			rows.Close()
			return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
		}
		attrs[name] = a
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotation: reading the columns of %s: %w", t, err)
	}

	pk, ok := attrs[t.PrimaryKey]
	if !ok {
		return fmt.Errorf("%w: table %s has no column %s (the primary key)", ErrInvalidTable, t, quoteIdent(t.PrimaryKey))
	}
	if !pk.notNull {
		return fmt.Errorf("%w: table %s: primary key column %s is nullable", ErrInvalidTable, t, quoteIdent(t.PrimaryKey))
	}
	var unique bool
	if err := db.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_index i
		               WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL
		                 AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND i.indkey[0] = $2)`,
		oid.Int64, pk.attnum).Scan(&unique); err != nil {
		return fmt.Errorf("rotation: reading the indexes of %s: %w", t, err)
	}
	if !unique {
		return fmt.Errorf("%w: table %s: column %s has no unique index on it alone; the job pages over a single-column primary key", ErrInvalidTable, t, quoteIdent(t.PrimaryKey))
	}
	p.pkType = pk.typ
	p.pkKind = keyPgText

	return p.addColumns(plaintext, func(name, what string) (colRef, error) {
		a, ok := attrs[name]
		if !ok {
			return colRef{}, fmt.Errorf("%w: table %s has no column %s (%s)", ErrInvalidTable, t, quoteIdent(name), what)
		}
		notNull := a.notNull || a.domainNotNull
		switch a.typname {
		case "bytea":
			return colRef{bytea: true, notNull: notNull}, nil
		case "text", "citext":
			return colRef{notNull: notNull}, nil
		case "varchar":
			// varchar(n): the typmod is n + 4 (VARHDRSZ), in characters.
			ref := colRef{notNull: notNull}
			if a.typmod >= 4 {
				ref.limit.chars = int64(a.typmod - 4)
			}
			return ref, nil
		}
		return colRef{}, fmt.Errorf("%w: table %s: column %s is %s; %s must be text, varchar, citext or bytea", ErrInvalidTable, t, quoteIdent(name), a.typ, what)
	})
}

// addColumns fills in the plan's encrypted and index columns. kind looks a
// column up in the catalog and returns it (its quoted name as the catalog
// spells it, or "" for the name as given; whether it is binary; on MySQL
// its character set; its length limit; whether it can be set to NULL), or
// an error wrapping ErrInvalidTable when it does not exist or cannot hold
// the wire format; what says what the column is for, for that error.
func (p *plan) addColumns(plaintext []string, kind func(name, what string) (colRef, error)) error {
	t := p.table
	plain := map[string]bool{}
	for _, name := range plaintext {
		plain[name] = true
	}
	for _, c := range t.Columns {
		k, err := kind(c.Name, "an encrypted column")
		if err != nil {
			return err
		}
		cp := colPlan{name: c.Name, q: k.q, bytea: k.bytea, charset: k.charset, limit: k.limit, plaintext: plain[c.Name]}
		if cp.q == "" {
			cp.q = p.quote(c.Name)
		}
		delete(plain, c.Name)
		for _, ix := range c.Indexes {
			k, err := kind(ix.Column, "an index column")
			if err != nil {
				return err
			}
			if k.q == "" {
				k.q = p.quote(ix.Column)
			}
			cp.idx = append(cp.idx, len(p.idx))
			p.idx = append(p.idx, idxPlan{name: ix.Column, q: k.q, bytea: k.bytea, charset: k.charset, limit: k.limit, notNull: k.notNull, src: len(p.cols), ix: ix.Indexer})
		}
		p.cols = append(p.cols, cp)
	}
	for name := range plain {
		return fmt.Errorf("%w: EncryptPlaintext names %s, which is not an encrypted column of %s", ErrInvalidTable, p.quote(name), t)
	}
	return nil
}

// selectList is the primary key (as text, or on SQLite as it is) followed
// by every column of the row layout. On PostgreSQL the key's text form gets
// a name of its own, so that ORDER BY the key sorts by the column, not by
// its text (an output column named like an input column would take
// precedence).
func (p *plan) selectList() string {
	var b strings.Builder
	b.WriteString(p.sql().pkSelect(p))
	for _, c := range p.cols {
		b.WriteString(", ")
		b.WriteString(c.q)
	}
	for _, ix := range p.idx {
		b.WriteString(", ")
		b.WriteString(ix.q)
	}
	return b.String()
}

// orderBy is the primary key as ORDER BY names it: on MySQL qualified with
// the table, so that it can never be taken for an output column's name.
func (p *plan) orderBy() string {
	if p.dialect == MySQL {
		return p.qtable + "." + p.qpk
	}
	return p.qpk
}

// prefixes are the stored-value prefixes that name the active key versions:
// "v<version>:" for the encrypted columns and, per index, "<mode><version>:".
type prefixes struct {
	value string
	index []string
}

// prefixSQL returns an SQL expression that is true when column q (bytea or
// text) is not NULL and does not start with prefix. prefix is checked by
// activePrefixes to be letters, digits and a colon, so it is safe as a
// literal; for bytea it is given in hex all the same.
func prefixMismatchSQL(q string, bytea bool, prefix string) string {
	if bytea {
		return fmt.Sprintf("substr(%s, 1, %d) <> decode('%x', 'hex')", q, len(prefix), prefix)
	}
	return fmt.Sprintf("left(%s, %d) <> '%s'", q, len(prefix), prefix)
}

// pendingSQL returns the condition of a row that Rotate rewrites: a value
// not under the active version, an index value missing or not under the
// active index-key version beside a non-NULL value, or, in an index
// column that can hold NULL (plan.clearable), an index value beside a
// NULL value (which Rotate clears: the index of NULL is NULL). It is
// exactly what transform finds work in: a row it selects is written or
// fails (see plan.orphan).
func (p *plan) pendingSQL(pre prefixes) string {
	d := p.sql()
	var terms []string
	for _, c := range p.cols {
		terms = append(terms, fmt.Sprintf("(%s IS NOT NULL AND %s)", c.q, d.prefixMismatch(c.ref(), pre.value)))
		for _, i := range c.idx {
			ix := p.idx[i]
			terms = append(terms, fmt.Sprintf("(%s IS NOT NULL AND (%s IS NULL OR %s))", c.q, ix.q, d.prefixMismatch(ix.ref(), pre.index[i])))
			if p.clearable(i) {
				terms = append(terms, p.orphanSQL(i, ""))
			}
		}
	}
	return "(" + strings.Join(terms, " OR ") + ")"
}

// orphanSQL returns the condition that index k (a position in plan.idx)
// holds an index value beside a NULL source, its columns qualified with
// qual ("" or "colcrypt_t."): the SQL form of plan.orphan, without the
// test of clearable.
func (p *plan) orphanSQL(k int, qual string) string {
	ix := p.idx[k].ref()
	ix.q = qual + ix.q
	return fmt.Sprintf("(%s%s IS NULL AND %s IS NOT NULL AND %s)", qual, p.cols[p.idx[k].src].q, ix.q, p.sql().indexValue(ix))
}

// clearSQL returns the value a batch UPDATE assigns to index column k (a
// position in plan.idx), given expr, the value it assigns otherwise: NULL
// where the table's source column is NULL and the index column holds an
// index value (see plan.orphan), since the index of NULL is NULL, when
// the index column can hold NULL; expr as it is when not. Any other value
// beside a NULL source (such as the empty string) is left as it is.
//
// The source tested is the one the row holds as it is written: what the
// batch read under its lock, so that the UPDATE clears exactly the index
// values transform counted, and never one whose source an application
// has set (the lock makes the application wait for the batch; on
// PostgreSQL and SQLite, where a value left as it is is not written, the
// test would keep its index value even without the lock). The batch
// leaves a NULL source NULL and a non-NULL one non-NULL, so the test holds
// whether the database evaluates it before or after assigning the source
// column (MySQL does not say, for a multiple-table UPDATE).
func (p *plan) clearSQL(k int, expr string) string {
	if !p.clearable(k) {
		return expr
	}
	return fmt.Sprintf("CASE WHEN %s THEN NULL ELSE %s END", p.orphanSQL(k, "colcrypt_t."), expr)
}

// pkCast returns the SQL that turns text parameter n into the primary
// key's type; array makes it an array of that type. PostgreSQL only.
func (p *plan) pkCast(n int, array bool) string {
	if array {
		return fmt.Sprintf("$%d::text::%s[]", n, p.pkType)
	}
	return fmt.Sprintf("$%d::text::%s", n, p.pkType)
}

// describedColumn returns a function that finds the catalog column of a
// name in the table description (what says which: "an encrypted column",
// "an index column") with lookup, refusing a name that is no column of t
// and a column named twice (the primary key pk counts as named). nameOf
// gives a catalog column's own name.
func describedColumn[C any](t Table, quote func(string) string, pk string, lookup func(string) (C, bool), nameOf func(C) string) func(name, what string) (C, error) {
	seen := map[string]bool{pk: true}
	return func(name, what string) (C, error) {
		c, ok := lookup(name)
		if !ok {
			return c, fmt.Errorf("%w: table %s has no column %s (%s)", ErrInvalidTable, t, quote(name), what)
		}
		n := nameOf(c)
		if seen[n] {
			return c, fmt.Errorf("%w: table %s: %s names column %s, which the description names twice", ErrInvalidTable, t, quote(name), quote(n))
		}
		seen[n] = true
		return c, nil
	}
}
