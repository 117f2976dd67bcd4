// Package gormcrypt connects colcrypt's blind indexes to GORM: a column type
// for index fields, a plugin that fills them in from the encrypted field they
// index on every Create, Save and Update, and a query scope that finds rows
// by plaintext over every live index-key version.
//
// A model declares an index field with a colcrypt struct tag naming the
// index (a *blindindex.Index registered with the plugin) and the encrypted
// field it is computed from:
//
//	type User struct {
//		ID        uint
//		Email     encryptedtype.String
//		EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:users.email;source:Email"`
//	}
//
//	emails, err := blindindex.New("users.email", indexKeys, blindindex.Config{
//		Normalize: blindindex.Chain(blindindex.TrimSpace, blindindex.NFKC, blindindex.Fold),
//	})
//	err = db.Use(gormcrypt.New(emails))
//
//	db.Create(&User{Email: encryptedtype.NewString("Alice@Example.com")})
//	var u User
//	err = db.Scopes(gormcrypt.Where("Email", "alice@example.com")).First(&u).Error
//
// The source field may be an encryptedtype.String or Bytes, a
// rotation.MigratingString or MigratingBytes (while a plaintext column is
// being encrypted), a string or []byte, or a pointer to one of them; a nil
// pointer gives a NULL index. The
// index field may be a BlindIndex, *BlindIndex, string or *string. A string
// cannot hold NULL: writing a nil source whose index field is a string is
// ErrUnsupportedValue (it would store "", which a UNIQUE index takes once),
// so a nullable source wants one of the other three.
//
// What the plugin sees: it computes index values in GORM callbacks from the
// values GORM is about to write, so it covers Create (one row, a slice,
// CreateInBatches, maps), Save, Updates with a struct or a map, Update and
// UpdateColumn(s) on a model, and upserts. It cannot see SQL it does not
// build: Exec, Raw, gorm.Expr values (rejected with ErrUnsupportedValue),
// and statements without a model, such as db.Table("users").Updates(map…).
// Keep index fields out of Omit.
//
// Upserts: in the DO UPDATE SET part of a clause.OnConflict (ON DUPLICATE
// KEY UPDATE on MySQL), a source taken from the inserted row
// (clause.AssignmentColumns) takes its index from the inserted row too, and
// a source assigned a value gets the index of that value. Any other
// assignment of a source, such as an SQL expression, is
// ErrUnsupportedValue. UpdateAll needs nothing more.
//
// Updates with a struct of another type than the model (a patch struct):
// GORM writes its fields by column name, and the model's tags decide which
// columns are indexes. A patch struct that writes a source column must have
// a field for its index column (by column name; an index field type, with
// or without the colcrypt tag), which the plugin fills in; if it has none,
// or its source field is not encrypted where the model's is, the update
// fails with ErrUnsupportedValue.
//
// In a map (Updates, Update, Create) or an upsert assignment, the value for
// an encrypted source must be an encryptedtype value, a rotation Migrating
// value or nil: a plain string or []byte would be stored unencrypted, and is
// ErrUnsupportedValue.
//
// This package imports GORM; package blindindex does not, and is what
// database/sql and sqlc code uses directly.
package gormcrypt

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/internal/coltype"
	"github.com/colcrypt/colcrypt/rotation"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// PluginName is the name the plugin registers under in gorm.Config.Plugins.
const PluginName = "colcrypt:blindindex"

// TagKey is the struct tag key of index fields.
const TagKey = "colcrypt"

var (
	// ErrNoPlugin is returned (through the statement's error) by Where when
	// the plugin is not registered on the *gorm.DB.
	ErrNoPlugin = errors.New("gormcrypt: plugin not registered (call db.Use(gormcrypt.New(indexes...)))")

	// ErrUnknownIndex is returned when a model's tag names an index that
	// was not given to New.
	ErrUnknownIndex = errors.New("gormcrypt: blind index not registered with the plugin")

	// ErrTag is returned for a malformed colcrypt struct tag, an index
	// field or source field of an unsupported type, or a source field that
	// does not exist.
	ErrTag = errors.New("gormcrypt: invalid colcrypt struct tag")

	// ErrUnsupportedValue is returned when a source value is written in a
	// form the plugin cannot compute an index from, such as a gorm.Expr in
	// Updates(map…) or in an upsert's DO UPDATE SET, or through a patch
	// struct without the index column: writing it would leave the index
	// stale. It is also returned for a plain string or []byte written to
	// an encrypted source through a map or an upsert, which would be
	// stored unencrypted, and for a nil source whose index field is a
	// string, which cannot hold the NULL index.
	ErrUnsupportedValue = errors.New("gormcrypt: cannot compute a blind index from this value")

	// ErrNoField is returned by Where for a field that is neither an index
	// field nor the source of exactly one.
	ErrNoField = errors.New("gormcrypt: no blind index for this field")
)

// BlindIndex is the column type of a blind-index field: it holds a stored
// index value ("b<version>:…"), which the plugin computes, or SQL NULL,
// which a source holding nil gives. AutoMigrate creates a text column; add
// gorm:"index" or gorm:"uniqueIndex" for the B-tree a lookup needs.
//
// The zero BlindIndex is neither: it is an index the plugin has not
// computed, and writing it fails with ErrNoPlugin rather than store a NULL
// that no lookup finds and no UNIQUE index constrains (as happens when the
// plugin is not registered with db.Use, or the field has no colcrypt tag).
// Compare BlindIndex values with String and Valid, not ==, which also
// compares whether a value was computed.
type BlindIndex struct {
	v   string
	set bool // computed by the plugin, or read from the database
}

// String returns the stored index value, or "" for NULL. Index values are
// not secret but do reveal which rows are equal.
func (b BlindIndex) String() string { return b.v }

// Valid reports whether b holds a non-NULL value; it is false also for a
// zero BlindIndex, which the plugin has not computed.
func (b BlindIndex) Valid() bool { return b.v != "" }

// Value implements driver.Valuer: the stored text, or NULL. For the zero
// BlindIndex, which the plugin has not computed, it returns an error
// wrapping ErrNoPlugin.
func (b BlindIndex) Value() (driver.Value, error) {
	if !b.set {
		return nil, errNotComputed
	}
	if b.v == "" {
		return nil, nil
	}
	return b.v, nil
}

var errNotComputed = fmt.Errorf("%w: a BlindIndex field is written without a value the plugin computed: register the plugin (db.Use(gormcrypt.New(indexes...))) and tag the field colcrypt:\"blindindex:<name>;source:<Field>\"", ErrNoPlugin)

// Scan implements sql.Scanner: it accepts text, bytes and NULL.
func (b *BlindIndex) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*b = BlindIndex{set: true}
	case string:
		*b = BlindIndex{v: v, set: true}
	case []byte:
		*b = BlindIndex{v: string(v), set: true}
	default:
		return fmt.Errorf("gormcrypt: cannot scan a %T into a BlindIndex", src)
	}
	return nil
}

// GormDataType tells AutoMigrate to create a text column.
func (BlindIndex) GormDataType() string { return "text" }

// GormDBDataType picks the column type per database. MySQL and MariaDB
// cannot put a UNIQUE index on TEXT without a prefix length, and compare
// strings case-insensitively by default, which would merge index values
// that differ only in case; there the column is VARCHAR(64) in ASCII with a
// binary collation, which holds every index value (at most 55 bytes:
// "b4294967295:" and 43 characters of base64url). A `gorm:"type:…"` tag
// on the field wins.
func (BlindIndex) GormDBDataType(db *gorm.DB, f *schema.Field) string {
	if f != nil && f.TagSettings["TYPE"] != "" {
		return ""
	}
	if db.Dialector.Name() == "mysql" {
		return "varchar(64) CHARACTER SET ascii COLLATE ascii_bin"
	}
	return "text"
}

// Plugin is the GORM plugin that fills in blind-index fields. Create it with
// New and register it with db.Use.
type Plugin struct {
	indexes  []*blindindex.Index
	byName   map[string]*blindindex.Index
	bindings sync.Map // *schema.Schema → *modelBindings
}

// New returns a plugin computing the given indexes. Each index is found by
// its name (blindindex.Index.Name) from the tags of model fields.
func New(indexes ...*blindindex.Index) *Plugin {
	return &Plugin{indexes: indexes}
}

// Name implements gorm.Plugin.
func (p *Plugin) Name() string { return PluginName }

// Initialize implements gorm.Plugin: it checks the indexes and registers
// the callbacks. It fails for a nil index or two indexes with one name.
func (p *Plugin) Initialize(db *gorm.DB) error {
	p.byName = make(map[string]*blindindex.Index, len(p.indexes))
	for _, ix := range p.indexes {
		if ix == nil {
			return fmt.Errorf("%w: nil *blindindex.Index", ErrUnknownIndex)
		}
		if _, dup := p.byName[ix.Name()]; dup {
			return fmt.Errorf("gormcrypt: two blind indexes are called %q", ix.Name())
		}
		p.byName[ix.Name()] = ix
	}
	if err := db.Callback().Create().Before("gorm:create").After("gorm:before_create").
		Register("colcrypt:blindindex_create", p.beforeCreate); err != nil {
		return err
	}
	return db.Callback().Update().Before("gorm:update").After("gorm:before_update").
		Register("colcrypt:blindindex_update", p.beforeUpdate)
}

// binding is one index field of a model.
type binding struct {
	index  *blindindex.Index
	field  *schema.Field // the index field
	source *schema.Field // the encrypted field it is computed from

	// unwritable, when set, is reported if a row writes the source: the
	// index cannot be written with it (see destBindings).
	unwritable error
}

type modelBindings struct {
	list []binding
	err  error
}

// bindingsFor returns the index fields of the model s, parsing its tags once.
func (p *Plugin) bindingsFor(s *schema.Schema) ([]binding, error) {
	if v, ok := p.bindings.Load(s); ok {
		mb := v.(*modelBindings)
		return mb.list, mb.err
	}
	mb := &modelBindings{}
	mb.list, mb.err = p.parseBindings(s)
	v, _ := p.bindings.LoadOrStore(s, mb)
	mb = v.(*modelBindings)
	return mb.list, mb.err
}

func (p *Plugin) parseBindings(s *schema.Schema) ([]binding, error) {
	var list []binding
	for _, f := range s.Fields {
		tag, ok := f.Tag.Lookup(TagKey)
		if !ok {
			continue
		}
		indexName, sourceName, err := ParseTag(tag)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %w", ErrTag, s.Name, f.Name, err)
		}
		ix, ok := p.byName[indexName]
		if !ok {
			return nil, fmt.Errorf("%w: %s.%s names index %q", ErrUnknownIndex, s.Name, f.Name, indexName)
		}
		if f.DBName == "" {
			return nil, fmt.Errorf("%w: %s.%s is not a column", ErrTag, s.Name, f.Name)
		}
		if !indexFieldType(f.FieldType) {
			return nil, fmt.Errorf("%w: %s.%s is a %s; an index field must be a gormcrypt.BlindIndex, *gormcrypt.BlindIndex, string or *string", ErrTag, s.Name, f.Name, f.FieldType)
		}
		src := s.LookUpField(sourceName)
		if src == nil {
			return nil, fmt.Errorf("%w: %s.%s: source field %q does not exist", ErrTag, s.Name, f.Name, sourceName)
		}
		if src == f {
			return nil, fmt.Errorf("%w: %s.%s is its own source", ErrTag, s.Name, f.Name)
		}
		if !sourceFieldType(src.FieldType) {
			return nil, fmt.Errorf("%w: %s.%s: source field %s is a %s; it must be an encryptedtype.String or Bytes, a rotation.MigratingString or MigratingBytes, a string or []byte, or a pointer to one", ErrTag, s.Name, f.Name, src.Name, src.FieldType)
		}
		list = append(list, binding{index: ix, field: f, source: src})
	}
	return list, nil
}

// ParseTag parses the value of a colcrypt struct tag,
// "blindindex:<index name>;source:<field>", into its two parts. Packages
// that read the same models (such as rotation/gormrotation) use it so that
// a tag means the same everywhere.
func ParseTag(tag string) (index, source string, err error) {
	for part := range strings.SplitSeq(tag, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return "", "", fmt.Errorf("%q is not key:value", part)
		}
		switch strings.ToLower(k) {
		case "blindindex":
			index = v
		case "source":
			source = v
		default:
			return "", "", fmt.Errorf("unknown key %q (want blindindex and source)", k)
		}
	}
	if index == "" || source == "" {
		return "", "", errors.New(`want colcrypt:"blindindex:<index name>;source:<field>"`)
	}
	return index, source, nil
}

var (
	typeBlindIndex = reflect.TypeFor[BlindIndex]()
	typeString     = reflect.TypeFor[string]()
)

func indexFieldType(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t == typeBlindIndex || t == typeString
}

// encryptedFieldType reports whether t is an encryptedtype type, one of
// rotation's Migrating types, or a pointer to one: a field whose values are
// encrypted when written.
func encryptedFieldType(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return coltype.Is(t)
}

func sourceFieldType(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t == typeString || t == reflect.TypeFor[[]byte]() || coltype.Scalar(t)
}

// plaintextOf returns the plaintext a source value holds, with null true for
// a nil pointer or nil.
func plaintextOf(v any) (s string, null bool, err error) {
	switch v := v.(type) {
	case nil:
		return "", true, nil
	case encryptedtype.String:
		return v.Plaintext(), false, nil
	case *encryptedtype.String:
		if v == nil {
			return "", true, nil
		}
		return v.Plaintext(), false, nil
	case encryptedtype.Bytes:
		return string(v.Plaintext()), false, nil
	case *encryptedtype.Bytes:
		if v == nil {
			return "", true, nil
		}
		return string(v.Plaintext()), false, nil
	case rotation.MigratingString:
		return v.Plaintext(), false, nil
	case *rotation.MigratingString:
		if v == nil {
			return "", true, nil
		}
		return v.Plaintext(), false, nil
	case rotation.MigratingBytes:
		return string(v.Plaintext()), false, nil
	case *rotation.MigratingBytes:
		if v == nil {
			return "", true, nil
		}
		return string(v.Plaintext()), false, nil
	case string:
		return v, false, nil
	case *string:
		if v == nil {
			return "", true, nil
		}
		return *v, false, nil
	case []byte:
		return string(v), false, nil
	case *[]byte:
		if v == nil {
			return "", true, nil
		}
		return string(*v), false, nil
	}
	return "", false, fmt.Errorf("%w: a %T", ErrUnsupportedValue, v)
}

// checkLiteral refuses a plain string or []byte written to an encrypted
// source column through a map or an ON CONFLICT assignment: GORM would store
// it as it is, unencrypted, while the plugin indexed it. A nil *string or
// *[]byte is NULL, and passes.
func (b binding) checkLiteral(v any) error {
	if !encryptedFieldType(b.source.FieldType) {
		return nil
	}
	switch p := v.(type) {
	case *string:
		if p == nil { // NULL, which needs no encrypting
			return nil
		}
	case *[]byte:
		if p == nil {
			return nil
		}
	}
	switch v.(type) {
	case string, *string, []byte, *[]byte:
		return fmt.Errorf("%w: a %T for %s, an encrypted field, would be stored unencrypted; wrap it with encryptedtype.NewString or NewBytes (or rotation.NewMigratingString or NewMigratingBytes)", ErrUnsupportedValue, v, b.source.Name)
	}
	return nil
}

// compute returns the index value for a source value: "" and null for NULL.
func (b binding) compute(src any) (value string, null bool, err error) {
	pt, null, err := plaintextOf(src)
	if err != nil || null {
		return "", null, err
	}
	v, err := b.index.Compute(pt)
	if err != nil {
		return "", false, fmt.Errorf("gormcrypt: computing blind index %q of %s: %w", b.index.Name(), b.source.Name, err)
	}
	return v, false, nil
}

// typed converts an index value to the Go type of the index field.
func (b binding) typed(value string, null bool) reflect.Value {
	t := b.field.FieldType
	if null {
		if t == typeBlindIndex {
			return reflect.ValueOf(BlindIndex{set: true}) // NULL, computed
		}
		return reflect.Zero(t)
	}
	var v reflect.Value
	if t.Kind() == reflect.Pointer {
		v = reflect.New(t.Elem())
		setBase(v.Elem(), value)
	} else {
		v = reflect.New(t).Elem()
		setBase(v, value)
	}
	return v
}

func setBase(v reflect.Value, value string) {
	if v.Type() == typeBlindIndex {
		v.Set(reflect.ValueOf(BlindIndex{v: value, set: true}))
	} else {
		v.SetString(value)
	}
}

// fill computes the index of b from the struct rv and stores it there.
func (b binding) fill(ctx context.Context, rv reflect.Value) error {
	src, _ := b.source.ValueOf(ctx, rv)
	value, null, err := b.compute(src)
	if err != nil {
		return err
	}
	if null && b.field.FieldType == typeString {
		// A nil source has a NULL index, which a string cannot hold: it
		// would store "", and a second such row would break a UNIQUE
		// index.
		return fmt.Errorf("%w: %s is nil, and its index field %s is a string, which cannot hold the NULL index; make %s a *string or gormcrypt.BlindIndex", ErrUnsupportedValue, b.source.Name, b.field.Name, b.field.Name)
	}
	b.field.ReflectValueOf(ctx, rv).Set(b.typed(value, null))
	return nil
}

// fillMap computes the index of b into m when m writes its source.
func (b binding) fillMap(m map[string]any, written func(*schema.Field) bool) error {
	src, ok := m[b.source.DBName]
	if !ok {
		if src, ok = m[b.source.Name]; !ok {
			return nil
		}
	}
	if !written(b.source) {
		return nil
	}
	if err := b.checkLiteral(src); err != nil {
		return err
	}
	value, null, err := b.compute(src)
	if err != nil {
		return fmt.Errorf("%s: %w", b.source.Name, err)
	}
	delete(m, b.field.Name)
	if null {
		m[b.field.DBName] = nil
	} else {
		m[b.field.DBName] = BlindIndex{v: value, set: true}
	}
	return nil
}

// omitIndex leaves out of the statement the index column of a source that
// it does not write (Omit, a field GORM may not write, a Select without
// it), unless the statement names the index column itself: the index
// field was not computed, and the stored index still goes with the stored
// source.
func omitIndex(stmt *gorm.Statement, f *schema.Field) {
	for _, s := range stmt.Selects {
		// "users.email_bidx", `email_bidx` and "email_bidx" name it too.
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			s = s[i+1:]
		}
		s = strings.Trim(s, "`\"")
		if s == f.DBName || s == f.Name {
			return
		}
	}
	stmt.Omits = append(stmt.Omits, f.DBName)
}

// ensureSelected adds the index column to a restricted Select, so that it is
// written with its source.
func ensureSelected(stmt *gorm.Statement, f *schema.Field, selected map[string]bool, restricted bool) {
	if restricted {
		if v, ok := selected[f.DBName]; !ok || !v {
			stmt.Selects = append(stmt.Selects, f.DBName)
			selected[f.DBName] = true
		}
	}
}

// writeSet is what a statement writes, as the hooks see it.
type writeSet struct {
	list       []binding
	selected   map[string]bool
	restricted bool
	written    func(*schema.Field) bool
	maps       bool // the statement writes maps, which prepare filled in
}

// prepare returns the index fields of the statement's model and what the
// statement writes, or false when there is nothing to fill in. When the
// statement writes maps it fills them in itself and sets maps.
func (p *Plugin) prepare(db *gorm.DB, update bool) (writeSet, bool) {
	stmt := db.Statement
	if db.Error != nil || stmt.Schema == nil {
		return writeSet{}, false
	}
	list, err := p.bindingsFor(stmt.Schema)
	if err != nil {
		db.AddError(err)
		return writeSet{}, false
	}
	if len(list) == 0 {
		return writeSet{}, false
	}
	w := writeSet{list: list}
	w.selected, w.restricted = stmt.SelectAndOmitColumns(!update, update)
	w.written = func(f *schema.Field) bool {
		v, ok := w.selected[f.DBName]
		return (!update || f.Updatable) && ((ok && v) || (!ok && !w.restricted))
	}
	maps, ok := destMaps(stmt.Dest)
	if !ok {
		return w, true
	}
	w.maps = true
	for _, m := range maps {
		for _, b := range list {
			if err := b.fillMap(m, w.written); err != nil {
				db.AddError(err)
				return writeSet{}, false
			}
			if _, ok := m[b.field.DBName]; ok {
				ensureSelected(stmt, b.field, w.selected, w.restricted)
			}
		}
	}
	return w, true
}

// beforeCreate fills in index fields before INSERT, and the assignments of
// an ON CONFLICT clause.
func (p *Plugin) beforeCreate(db *gorm.DB) {
	w, ok := p.prepare(db, false)
	if !ok {
		return
	}
	stmt := db.Statement
	if !w.maps { // for maps, prepare filled the indexes in
		for _, b := range w.list {
			if !w.written(b.source) {
				omitIndex(stmt, b.field)
				continue
			}
			if err := eachStruct(stmt.ReflectValue, func(rv reflect.Value) error { return b.fill(stmt.Context, rv) }); err != nil {
				db.AddError(err)
				return
			}
			ensureSelected(stmt, b.field, w.selected, w.restricted)
		}
	}
	if err := upsert(stmt, w.list); err != nil {
		db.AddError(err)
	}
}

// upsert keeps the index columns in step with the source columns that the
// DO UPDATE SET part of an ON CONFLICT clause (MySQL's ON DUPLICATE KEY
// UPDATE) assigns: a source taken from the inserted row
// (clause.AssignmentColumns, "excluded.<column>") gets its index column from
// the inserted row too; a source assigned a value gets the index of that
// value; anything else, such as an SQL expression, is ErrUnsupportedValue.
// UpdateAll needs nothing: GORM assigns every inserted column, index
// columns included.
func upsert(stmt *gorm.Statement, list []binding) error {
	c, ok := stmt.Clauses["ON CONFLICT"]
	if !ok {
		return nil
	}
	oc, ok := c.Expression.(clause.OnConflict)
	if !ok || oc.DoNothing || oc.UpdateAll || len(oc.DoUpdates) == 0 {
		return nil
	}
	var extra []clause.Assignment
	ours := map[string]bool{} // index columns assigned by extra
	for _, b := range list {
		for _, a := range oc.DoUpdates {
			if stmt.Schema.LookUpField(a.Column.Name) != b.source {
				continue
			}
			ia, keep, err := b.assignment(stmt, a.Value)
			if err != nil {
				return fmt.Errorf("%w (in the ON CONFLICT assignment of %s)", err, b.source.Name)
			}
			if !keep {
				extra = append(extra, ia)
				ours[b.field.DBName] = true
			}
			break
		}
	}
	if len(extra) == 0 {
		return nil
	}
	// A new slice: the caller's clause.OnConflict may be reused.
	set := make(clause.Set, 0, len(oc.DoUpdates)+len(extra))
	for _, a := range oc.DoUpdates {
		if f := stmt.Schema.LookUpField(a.Column.Name); f != nil && ours[f.DBName] {
			continue // replaced by ours
		}
		set = append(set, a)
	}
	oc.DoUpdates = append(set, extra...)
	stmt.AddClause(oc)
	return nil
}

// assignment returns the assignment of b's index column that goes with an
// ON CONFLICT assignment of value to b's source, or keep for a source that
// keeps its current value ("email = email").
func (b binding) assignment(stmt *gorm.Statement, value any) (a clause.Assignment, keep bool, err error) {
	a.Column = clause.Column{Name: b.field.DBName}
	if col, ok := value.(clause.Column); ok {
		if stmt.Schema.LookUpField(col.Name) == b.source {
			switch {
			case strings.EqualFold(col.Table, "excluded"):
				a.Value = clause.Column{Table: "excluded", Name: b.field.DBName}
				return a, false, nil
			case col.Table == "" || col.Table == clause.CurrentTable || col.Table == stmt.Table:
				return a, true, nil
			}
		}
		return a, false, fmt.Errorf("%w: column %s.%s", ErrUnsupportedValue, col.Table, col.Name)
	}
	if err := b.checkLiteral(value); err != nil {
		return a, false, err
	}
	v, null, err := b.compute(value)
	if err != nil {
		return a, false, err
	}
	if !null {
		a.Value = BlindIndex{v: v, set: true}
	}
	return a, false, nil
}

// beforeUpdate fills in index fields before UPDATE, for the sources the
// statement writes.
func (p *Plugin) beforeUpdate(db *gorm.DB) {
	w, ok := p.prepare(db, true)
	if !ok || w.maps {
		return
	}
	stmt := db.Statement
	list := w.list
	// A struct (or slice) is written: Save, Updates(struct).
	dest := reflect.ValueOf(stmt.Dest)
	for dest.Kind() == reflect.Pointer && !dest.IsNil() {
		dest = dest.Elem()
	}
	if dest.Kind() == reflect.Struct && dest.Type() != stmt.Schema.ModelType {
		// Updates with a struct of another type: GORM writes the fields of
		// that struct whose column (or Go name) is a column of the model,
		// so the model's index fields are mapped onto it by column.
		ds := &gorm.Statement{DB: stmt.DB}
		if err := ds.Parse(stmt.Dest); err != nil {
			db.AddError(fmt.Errorf("gormcrypt: cannot read the %T given to Updates, so cannot fill in its blind indexes: %w", stmt.Dest, err))
			return
		}
		list = destBindings(list, stmt.Schema, ds.Schema)
	}
	if dest.Kind() == reflect.Struct && !dest.CanAddr() {
		// Updates(User{…}) passes a struct by value: write into a copy.
		cp := reflect.New(dest.Type())
		cp.Elem().Set(dest)
		stmt.Dest, dest = cp.Interface(), cp.Elem()
	}
	for _, b := range list {
		if !w.written(b.source) {
			if b.field != nil {
				omitIndex(stmt, b.field)
			}
			continue
		}
		err := eachStruct(dest, func(rv reflect.Value) error {
			// Updates(struct) skips zero fields unless they are selected.
			if v, ok := w.selected[b.source.DBName]; !(ok && v) {
				if _, zero := b.source.ValueOf(stmt.Context, rv); zero {
					return nil
				}
			}
			if b.unwritable != nil {
				return b.unwritable
			}
			ensureSelected(stmt, b.field, w.selected, w.restricted)
			return b.fill(stmt.Context, rv)
		})
		if err != nil {
			db.AddError(err)
			return
		}
	}
}

// destBindings maps the index fields of the model (schema m) onto d, the
// schema of a struct of another type given to Updates. The model's tags
// decide which columns are indexes; d's own colcrypt tags are not read. A
// binding whose source column d writes but whose index column d cannot
// write carries the error to report (unwritable) if a row does write the
// source.
func destBindings(model []binding, m, d *schema.Schema) []binding {
	var list []binding
	for _, b := range model {
		src := d.LookUpField(b.source.DBName)
		if src == nil || src.DBName == "" {
			continue // d does not write the source
		}
		nb := binding{index: b.index, source: src}
		f := d.LookUpField(b.field.DBName)
		switch {
		case !sourceFieldType(src.FieldType):
			nb.unwritable = fmt.Errorf("%w: %s.%s is a %s", ErrUnsupportedValue, d.Name, src.Name, src.FieldType)
		case encryptedFieldType(b.source.FieldType) && !encryptedFieldType(src.FieldType):
			nb.unwritable = fmt.Errorf("%w: %s.%s, a %s, would be stored unencrypted in %s.%s", ErrUnsupportedValue, d.Name, src.Name, src.FieldType, m.Name, b.source.Name)
		case f == nil || f.DBName == "" || !f.Updatable:
			nb.unwritable = fmt.Errorf("%w: %s writes %s but has no updatable field for its blind index column %s; give %s one, like %s.%s (or update with the model or a map)", ErrUnsupportedValue, d.Name, b.source.DBName, b.field.DBName, d.Name, m.Name, b.field.Name)
		case !indexFieldType(f.FieldType):
			nb.unwritable = fmt.Errorf("%w: %s.%s, the blind index column %s, is a %s; an index field must be a gormcrypt.BlindIndex, *gormcrypt.BlindIndex, string or *string", ErrUnsupportedValue, d.Name, f.Name, f.DBName, f.FieldType)
		}
		if nb.unwritable == nil {
			nb.field = f
		}
		list = append(list, nb)
	}
	return list
}

// destMaps returns the maps of a map destination.
func destMaps(dest any) ([]map[string]any, bool) {
	switch d := dest.(type) {
	case map[string]any:
		return []map[string]any{d}, true
	case *map[string]any:
		if d == nil {
			return nil, true
		}
		return []map[string]any{*d}, true
	case []map[string]any:
		return d, true
	case *[]map[string]any:
		if d == nil {
			return nil, true
		}
		return *d, true
	}
	return nil, false
}

// eachStruct calls fn for the struct rv, or for every struct of the slice or
// array rv, skipping nil pointers.
func eachStruct(rv reflect.Value, fn func(reflect.Value) error) error {
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Struct:
		if !rv.CanAddr() {
			return gorm.ErrInvalidValue
		}
		return fn(rv)
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			if err := eachStruct(rv.Index(i), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Where returns a GORM scope that keeps the rows whose field equals
// plaintext, by matching the field's blind index against the index values of
// plaintext under every live index-key version:
//
//	db.Scopes(gormcrypt.Where("Email", "alice@example.com")).First(&u)
//
// field names the encrypted source field (Go name or column name) of
// exactly one index field of the statement's model, or an index field
// itself. The condition is "<table>.<index column> IN (…)" (or "= …" with
// one live version), which a B-tree index on the index column serves.
//
// With a truncated index the result can hold rows of other values (false
// positives): use Find and blindindex.Filter rather than First.
func Where(field, plaintext string) func(*gorm.DB) *gorm.DB {
	return func(db *gorm.DB) *gorm.DB {
		p, ok := db.Config.Plugins[PluginName].(*Plugin)
		if !ok {
			db.AddError(ErrNoPlugin)
			return db
		}
		stmt := db.Statement
		model := stmt.Model
		if model == nil {
			model = stmt.Dest
		}
		if model == nil {
			db.AddError(fmt.Errorf("%w: gormcrypt.Where needs a model (db.Model(&User{}) or a destination)", ErrNoField))
			return db
		}
		if err := stmt.Parse(model); err != nil {
			db.AddError(err)
			return db
		}
		list, err := p.bindingsFor(stmt.Schema)
		if err != nil {
			db.AddError(err)
			return db
		}
		b, err := pick(list, stmt.Schema, field)
		if err != nil {
			db.AddError(err)
			return db
		}
		values, err := b.index.Lookup(plaintext)
		if err != nil {
			db.AddError(fmt.Errorf("gormcrypt: looking up blind index %q: %w", b.index.Name(), err))
			return db
		}
		in := make([]any, len(values))
		for i, v := range values {
			in[i] = v
		}
		return db.Where(clause.IN{Column: clause.Column{Table: clause.CurrentTable, Name: b.field.DBName}, Values: in})
	}
}

// pick finds the binding that field names.
func pick(list []binding, s *schema.Schema, field string) (binding, error) {
	f := s.LookUpField(field)
	if f == nil {
		return binding{}, fmt.Errorf("%w: %s has no field %q", ErrNoField, s.Name, field)
	}
	var found []binding
	for _, b := range list {
		if b.field == f {
			return b, nil
		}
		if b.source == f {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return binding{}, fmt.Errorf("%w: %s.%s has no blind index", ErrNoField, s.Name, f.Name)
	case 1:
		return found[0], nil
	}
	return binding{}, fmt.Errorf("%w: %s.%s has %d blind indexes: name the index field instead", ErrNoField, s.Name, f.Name, len(found))
}
