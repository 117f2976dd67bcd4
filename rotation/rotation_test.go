package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{
		"users":                      `"users"`,
		"Users":                      `"Users"`,
		`we"ird`:                     `"we""ird"`,
		`x"; DROP TABLE users; --`:   `"x""; DROP TABLE users; --"`,
		`""`:                         `""""""`,
		"naïve table":                `"naïve table"`,
		`back\slash`:                 `"back\slash"`,
		"semi;colon'quote":           `"semi;colon'quote"`,
		"a\"\"b":                     `"a""""b"`,
		strings.Repeat(`"`, 3) + "x": `"""""""x"`,
	} {
		if got := quoteIdent(in); got != want {
			t.Errorf("quoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
	if got := qualifiedIn(postgresDialect{}, `s"x`, "t"); got != `"s""x"."t"` {
		t.Errorf("qualified: %s", got)
	}
	if got := qualifiedIn(postgresDialect{}, "", "t.u"); got != `"t.u"` {
		t.Errorf("qualified without schema: %s", got)
	}
}

// fakeIndexer is an Indexer that writes "b<version>:<plaintext length>".
type fakeIndexer struct {
	version int
	err     error
}

func (f fakeIndexer) Compute(pt string) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	return fmt.Sprintf("b%d:%d", f.version, len(pt)), nil
}

func TestTableValidate(t *testing.T) {
	ix := fakeIndexer{version: 1}
	ok := Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: ix}}}, {Name: "b"}}}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid table: %v", err)
	}
	for name, tbl := range map[string]Table{
		"no name":           {PrimaryKey: "id", Columns: []Column{{Name: "a"}}},
		"no pk":             {Name: "t", Columns: []Column{{Name: "a"}}},
		"no columns":        {Name: "t", PrimaryKey: "id"},
		"empty column":      {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: ""}}},
		"NUL in table":      {Name: "t\x00", PrimaryKey: "id", Columns: []Column{{Name: "a"}}},
		"NUL in schema":     {Schema: "s\x00", Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}}},
		"NUL in column":     {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a\x00b"}}},
		"pk encrypted":      {Name: "t", PrimaryKey: "a", Columns: []Column{{Name: "a"}}},
		"column twice":      {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}, {Name: "a"}}},
		"index is a column": {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a", Indexes: []Index{{Column: "b", Indexer: ix}}}, {Name: "b"}}},
		"index twice":       {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a", Indexes: []Index{{Column: "x", Indexer: ix}, {Column: "x", Indexer: ix}}}}},
		"nil indexer":       {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a", Indexes: []Index{{Column: "x"}}}}},
		"empty index":       {Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a", Indexes: []Index{{Column: "", Indexer: ix}}}}},
	} {
		if err := tbl.validate(); !errors.Is(err, ErrInvalidTable) {
			t.Errorf("%s: got %v, want ErrInvalidTable", name, err)
		}
	}
	codec := testCodec(t, 1)
	if _, err := New(nil, ok, codec); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("New with a nil DB: %v", err)
	}
}

func TestArrayLit(t *testing.T) {
	var a arrayLit
	a.reset()
	if got := a.String(); got != "{}" {
		t.Errorf("empty: %s", got)
	}
	a.add("1")
	a.add(`a"b\c`)
	a.addNull()
	a.addBytes([]byte("v2:x_-"))
	a.add("")
	a.add("NULL")
	if got, want := a.String(), `{"1","a\"b\\c",NULL,"v2:x_-","","NULL"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	a.reset()
	a.add("x")
	if got := a.String(); got != `{"x"}` {
		t.Errorf("after reset: %s", got)
	}
}

func TestSQLText(t *testing.T) {
	ix := fakeIndexer{version: 3}
	p := &plan{
		table: Table{Name: "t"}, qtable: `"s"."t"`, qpk: `"id"`, pkType: "bigint",
		cols: []colPlan{{name: "a", q: `"a"`, idx: []int{0}}, {name: "b", q: `"b"`, bytea: true}},
		idx:  []idxPlan{{name: "a_bidx", q: `"a_bidx"`, src: 0, ix: ix}},
	}
	pre := prefixes{value: "v2:", index: []string{"b3:"}}
	got := p.pendingSQL(pre)
	want := `(("a" IS NOT NULL AND left("a", 3) <> 'v2:') OR ("a" IS NOT NULL AND ("a_bidx" IS NULL OR left("a_bidx", 3) <> 'b3:')) OR ` +
		`("a" IS NULL AND "a_bidx" IS NOT NULL AND ("a_bidx"::text COLLATE "C" ~ '` + indexValuePattern + `')) OR ("b" IS NOT NULL AND substr("b", 1, 3) <> decode('76323a', 'hex')))`
	if got != want {
		t.Errorf("pendingSQL:\n got %s\nwant %s", got, want)
	}
	r := &runner{p: p, pre: pre, opts: Options{BatchSize: 10}}
	q, args := r.selectSQL(&cursor{started: true, last: "41", exclude: `{"7"}`})
	if !strings.Contains(q, `AND "id" > $1::text::bigint AND NOT ("id" = ANY ($2::text::bigint[])) ORDER BY "id" LIMIT 10 FOR UPDATE SKIP LOCKED`) ||
		!strings.HasPrefix(q, `SELECT "id"::text AS colcrypt_pk, "a", "b", "a_bidx" FROM "s"."t" WHERE `) || len(args) != 2 {
		t.Errorf("selectSQL: %s %v", q, args)
	}
	r.opts.DryRun = true
	if q, _ := r.selectSQL(&cursor{}); strings.Contains(q, "FOR UPDATE") || strings.Contains(q, "$1") {
		t.Errorf("dry-run selectSQL: %s", q)
	}
	u := r.updateSQL()
	want = `UPDATE "s"."t" AS colcrypt_t SET "a" = COALESCE(colcrypt_v.c2, colcrypt_t."a"), "b" = COALESCE(colcrypt_v.c3, colcrypt_t."b"), ` +
		`"a_bidx" = CASE WHEN (colcrypt_t."a" IS NULL AND colcrypt_t."a_bidx" IS NOT NULL AND (colcrypt_t."a_bidx"::text COLLATE "C" ~ '` + indexValuePattern + `')) ` +
		`THEN NULL ELSE COALESCE(colcrypt_v.c4, colcrypt_t."a_bidx") END ` +
		`FROM unnest($1::text::bigint[], $2::text::text[], $3::text::bytea[], $4::text::text[]) AS colcrypt_v(k, c2, c3, c4) WHERE colcrypt_t."id" = colcrypt_v.k`
	if u != want {
		t.Errorf("updateSQL:\n got %s\nwant %s", u, want)
	}

	// An index column declared NOT NULL cannot be cleared: an index
	// value beside a NULL source is no work there, and never set to NULL.
	p.idx[0].notNull = true
	if got := p.pendingSQL(pre); strings.Contains(got, `"a" IS NULL`) {
		t.Errorf("pendingSQL with a NOT NULL index column: %s", got)
	}
	if u := r.updateSQL(); strings.Contains(u, "CASE") {
		t.Errorf("updateSQL with a NOT NULL index column: %s", u)
	}
	// A bytea index column is matched through its escape encoding.
	p.idx[0].notNull, p.idx[0].bytea = false, true
	if got, want := p.orphanSQL(0, ""), `("a" IS NULL AND "a_bidx" IS NOT NULL AND (encode("a_bidx", 'escape') COLLATE "C" ~ '`+indexValuePattern+`'))`; got != want {
		t.Errorf("orphanSQL of a bytea column:\n got %s\nwant %s", got, want)
	}
}

func testCodec(t testing.TB, active uint32, versions ...uint32) *encryptedtype.Codec {
	t.Helper()
	var keys []keyprovider.Key
	for _, v := range append([]uint32{active}, versions...) {
		k, err := keyprovider.GenerateKey(v)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	s, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return encryptedtype.NewCodec(s)
}

// sameKeys returns a codec over the keys of c's provider with another
// active version.
func sameKeys(t testing.TB, c *encryptedtype.Codec, active uint32, versions ...uint32) *encryptedtype.Codec {
	t.Helper()
	var keys []keyprovider.Key
	for _, v := range versions {
		k, err := c.Provider().Key(v)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	s, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return encryptedtype.NewCodec(s)
}

func TestActivePrefixes(t *testing.T) {
	ctx := context.Background()
	p := &plan{idx: []idxPlan{{q: `"x"`, ix: fakeIndexer{version: 7}}}}
	pre, v, err := activePrefixes(ctx, testCodec(t, 12), p)
	if err != nil || v != 12 || pre.value != "v12:" || len(pre.index) != 1 || pre.index[0] != "b7:" {
		t.Errorf("activePrefixes: %+v %d %v", pre, v, err)
	}
	for _, bad := range []Indexer{fakeIndexer{version: 0}, fakeIndexer{err: errors.New("no key")}, badIndexer("b1-x"), badIndexer("B1:x"), badIndexer("b1 ; DROP:")} {
		p.idx[0].ix = bad
		if _, _, err := activePrefixes(ctx, testCodec(t, 1), p); err == nil {
			t.Errorf("indexer %v: no error", bad)
		}
	}
	p.idx = nil
	if _, _, err := activePrefixes(ctx, badCipher{}, p); err == nil {
		t.Error("a Cipher that does not write the wire format: no error")
	}
}

type badIndexer string

func (b badIndexer) Compute(string) (string, error) { return string(b), nil }

type badCipher struct{}

func (badCipher) Seal(context.Context, []byte) ([]byte, error) { return []byte("x1:abc"), nil }
func (badCipher) Open(context.Context, []byte) ([]byte, error) { return nil, errors.New("no") }

// TestTransform runs the per-row work of a batch on rows in memory: values
// on the old version are re-encrypted, current ones left alone (NULL in
// the output), NULLs stay NULL, stale or missing index values are
// recomputed, an index value beside a NULL source is cleared (its row
// written, the UPDATE setting it to NULL) or, in a NOT NULL index column,
// left alone, a value beside a NULL source that is not an index value
// (such as "") is left alone, and a row with one bad value is left out
// entirely.
func TestTransform(t *testing.T) {
	ctx := context.Background()
	old := testCodec(t, 1, 2)
	codec := sameKeys(t, old, 2, 1, 2)
	seal := func(c *encryptedtype.Codec, s string) []byte {
		v, err := c.Seal(ctx, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ix := fakeIndexer{version: 2}
	p := &plan{
		table: Table{Name: "t"},
		cols:  []colPlan{{name: "a", idx: []int{0}}, {name: "b"}, {name: "c", plaintext: true}},
		idx:   []idxPlan{{name: "a_bidx", src: 0, ix: ix}},
	}
	pre, _, err := activePrefixes(ctx, codec, p)
	if err != nil {
		t.Fatal(err)
	}
	j := &Job{cipher: codec}
	r := &runner{j: j, p: p, pre: pre, opts: Options{BatchSize: 10}}
	b := newBatch(p, 10)
	add := func(pk string, vals ...[]byte) {
		b.pks = append(b.pks, pk)
		for _, v := range vals {
			b.vals = append(b.vals, v)
			b.nulls = append(b.nulls, v == nil)
		}
	}
	tampered := seal(old, "x")
	if m := len(tampered) / 2; tampered[m] == 'A' { // another base64url character: still well formed
		tampered[m] = 'B'
	} else {
		tampered[m] = 'A'
	}
	add("1", seal(old, "alpha"), seal(old, "beta"), nil, []byte("b1:5"))               // a, b old; c NULL; index old
	add("2", seal(codec, "gamma"), seal(codec, "d"), seal(codec, "e"), []byte("b2:5")) // all current: nothing to do
	add("3", seal(codec, "delta"), nil, []byte("plain text"), nil)                     // index missing; c plaintext
	add("4", seal(old, "eps"), tampered, nil, []byte("b1:3"))                          // b tampered: row fails
	add("5", nil, []byte("PLAINSECRET"), nil, []byte("b1:0"))                          // a NULL (index cleared); b plaintext, not allowed
	add("6", []byte("v1:AAAA"), seal(old, "z"), nil, nil)                              // a malformed
	add("7", []byte(""), nil, []byte(""), nil)                                         // empty: plaintext in c, not in a
	add("8", nil, seal(codec, "f"), nil, []byte("b2:QUFB"))                            // a NULL, index current: cleared
	add("9", nil, nil, nil, nil)                                                       // all NULL: nothing to do
	add("10", nil, nil, nil, []byte(""))                                               // a NULL, index '': not an index value, left alone
	add("11", nil, nil, nil, []byte("b1:9"))                                           // a NULL, index not parsed as one: left alone

	st, rowFails, err := r.transform(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var fails []Failure
	for _, rf := range rowFails {
		if b.pks[rf.row] != rf.f.PK {
			t.Errorf("failure of row %s given as row %d (%s)", rf.f.PK, rf.row, b.pks[rf.row])
		}
		fails = append(fails, rf.f)
	}
	if st.rows != 3 || st.values != 2 || st.plaintext != 1 || st.index != 2 || st.cleared != 1 {
		t.Errorf("stats %+v", st)
	}
	got := map[string]string{}
	for _, f := range fails {
		got[f.PK] = f.Column
		if strings.Contains(f.String(), "PLAINSECRET") || strings.Contains(f.String(), "alpha") {
			t.Errorf("failure text %q holds a value", f)
		}
	}
	wantFails := map[string]string{"4": "b", "5": "b", "6": "a", "7": "a"}
	if fmt.Sprint(got) != fmt.Sprint(wantFails) {
		t.Errorf("failures %v, want %v", got, wantFails)
	}
	for _, f := range fails {
		switch f.PK {
		case "4":
			if !errors.Is(f.Err, encryptedtype.ErrAuth) {
				t.Errorf("row 4: %v", f.Err)
			}
		case "5", "7":
			if !errors.Is(f.Err, encryptedtype.ErrNotEncrypted) {
				t.Errorf("row %s: %v", f.PK, f.Err)
			}
		case "6":
			if !errors.Is(f.Err, encryptedtype.ErrMalformed) {
				t.Errorf("row 6: %v", f.Err)
			}
		}
	}

	// The output arrays: rows 1, 3 and 8 (and not 2 or 9, which had
	// nothing to do).
	args := b.args()
	if args[0] != `{"1","3","8"}` {
		t.Fatalf("primary keys %v", args[0])
	}
	elems := func(s any) []string {
		return strings.Split(strings.Trim(s.(string), "{}"), ",")
	}
	a, bb, c, bidx := elems(args[1]), elems(args[2]), elems(args[3]), elems(args[4])
	open := func(s string) string {
		pt, err := codec.Open(ctx, []byte(strings.Trim(s, `"`)))
		if err != nil {
			t.Fatalf("output %s: %v", s, err)
		}
		if !strings.HasPrefix(strings.Trim(s, `"`), "v2:") {
			t.Errorf("output %s is not under version 2", s)
		}
		return string(pt)
	}
	if open(a[0]) != "alpha" || open(bb[0]) != "beta" || c[0] != "NULL" || bidx[0] != `"b2:5"` {
		t.Errorf("row 1 output: %v %v %v %v", a[0], bb[0], c[0], bidx[0])
	}
	if a[1] != "NULL" || bb[1] != "NULL" || open(c[1]) != "plain text" || bidx[1] != `"b2:5"` {
		t.Errorf("row 3 output: %v %v %v %v", a[1], bb[1], c[1], bidx[1])
	}
	// Row 8 writes nothing new: the UPDATE clears its index (clearSQL).
	if a[2] != "NULL" || bb[2] != "NULL" || c[2] != "NULL" || bidx[2] != "NULL" {
		t.Errorf("row 8 output: %v %v %v %v", a[2], bb[2], c[2], bidx[2])
	}

	// In an index column declared NOT NULL, the index value beside a NULL
	// source is left alone: row 8 has nothing else to do, and neither
	// fails nor is written. Row 5 fails for its plaintext b, as before.
	p.idx[0].notNull = true
	st, rowFails, err = r.transform(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, rf := range rowFails {
		got[rf.f.PK] = rf.f.Column
	}
	wantFails = map[string]string{"4": "b", "5": "b", "6": "a", "7": "a"}
	if fmt.Sprint(got) != fmt.Sprint(wantFails) || st.rows != 2 || st.cleared != 0 {
		t.Errorf("NOT NULL index column: failures %v (want %v), stats %+v", got, wantFails, st)
	}
	if args := b.args(); args[0] != `{"1","3"}` {
		t.Errorf("NOT NULL index column: primary keys written %v", args[0])
	}
	p.idx[0].notNull = false

	// No active index key stops the job instead of failing rows.
	p.idx[0].ix = fakeIndexer{err: fmt.Errorf("%w: none", keyprovider.ErrInvalidKey)}
	if _, _, err := r.transform(ctx, b); !errors.Is(err, keyprovider.ErrInvalidKey) {
		t.Errorf("indexer without a key: %v", err)
	}
}

func TestMigratingString(t *testing.T) {
	codec := testCodec(t, 1)
	encryptedtype.SetDefault(codec.Provider())
	defer encryptedtype.SetDefault(nil)

	var s MigratingString
	if err := s.Scan("hello@example.com"); err != nil || s.Plaintext() != "hello@example.com" || s.WasEncrypted() {
		t.Errorf("plaintext: %q %v %v", s.Plaintext(), s.WasEncrypted(), err)
	}
	v, err := s.Value()
	if err != nil {
		t.Fatal(err)
	}
	if ver, err := encryptedtype.Version([]byte(v.(string))); err != nil || ver != 1 {
		t.Errorf("Value is not the wire format: %v", err)
	}
	var back MigratingString
	if err := back.Scan([]byte(v.(string))); err != nil || back.Plaintext() != "hello@example.com" || !back.WasEncrypted() {
		t.Errorf("ciphertext: %q %v %v", back.Plaintext(), back.WasEncrypted(), err)
	}
	if err := back.Scan(""); err != nil || back.Plaintext() != "" || back.WasEncrypted() {
		t.Errorf("empty: %v", err)
	}
	for _, bad := range []any{nil, "v1:AAAA", "v01:abc", 42, v.(string)[:len(v.(string))-3]} {
		if err := back.Scan(bad); err == nil {
			t.Errorf("Scan(%v): no error", bad)
		}
	}
	if err := back.Scan(nil); !errors.Is(err, encryptedtype.ErrNull) {
		t.Errorf("NULL: %v", err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		if got := fmt.Sprintf(f, s); got != redacted {
			t.Errorf("Sprintf(%s) = %s", f, got)
		}
	}
	if j, _ := s.MarshalJSON(); string(j) != `"[REDACTED]"` {
		t.Errorf("MarshalJSON: %s", j)
	}

	var b MigratingBytes
	if err := b.Scan([]byte{0xff, 0, 'x'}); err != nil || string(b.Plaintext()) != "\xff\x00x" || b.WasEncrypted() {
		t.Errorf("bytes plaintext: %v", err)
	}
	v, err = NewMigratingBytes([]byte("blob")).Value()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Scan(v); err != nil || string(b.Plaintext()) != "blob" || !b.WasEncrypted() {
		t.Errorf("bytes ciphertext: %v", err)
	}
	if fmt.Sprint(b) != redacted || (MigratingBytes{}).Plaintext() != nil {
		t.Error("MigratingBytes printing or zero value")
	}
}

func TestIsTransient(t *testing.T) {
	if !isTransient(fmt.Errorf("x: %w", sqlStateErr("40P01"))) || !isTransient(sqlStateErr("40001")) {
		t.Error("deadlock or serialization failure not transient")
	}
	if isTransient(sqlStateErr("23505")) || isTransient(errors.New("x")) {
		t.Error("unique violation or plain error transient")
	}
}

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

// FuzzScanMigrating checks that no input makes the migrating types panic,
// and that a value in the wire format is never returned as plaintext.
func FuzzScanMigrating(f *testing.F) {
	codec := testCodec(f, 1)
	encryptedtype.SetDefault(codec.Provider())
	f.Cleanup(func() { encryptedtype.SetDefault(nil) })
	v, _ := codec.Seal(context.Background(), []byte("seed"))
	for _, s := range []string{"", "plain", "v1:", "v1:AAAA", string(v), "v01:x", "v99999999999:x", "v1:" + strings.Repeat("A", 40)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var s MigratingString
		err := s.Scan(in)
		if err != nil {
			return
		}
		if !s.WasEncrypted() && s.Plaintext() != string(in) {
			t.Fatal("plaintext read is not the input")
		}
		if _, verr := encryptedtype.Version(in); !s.WasEncrypted() && verr == nil {
			t.Fatal("a wire-format value was returned as plaintext")
		}
	})
}
