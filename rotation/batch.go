package rotation

import (
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// batch holds the rows of one batch as read, and the arrays written back.
// A worker reuses one batch for all its batches, so the memory a job holds
// depends on the batch size and the number of workers, not on the table.
type batch struct {
	width  int
	native bool     // keys are the values the driver returned (SQLite)
	pks    []string // primary keys as text
	keys   []any    // primary keys as the driver returned them, when native
	vals   [][]byte // rows × width; nil for NULL (see nulls)
	nulls  []bool
	blobs  []bool // rows × width: the driver returned []byte rather than a string

	holders []any // scan targets
	dest    []any

	out     []arrayLit // primary keys, then one per column of the row layout (PostgreSQL)
	rowOut  [][]byte   // the current row's new values; nil leaves one as it is
	outRows []int      // the rows written back, by position in the batch
	outVals [][]byte   // their new values, len(outRows) × width; nil leaves one as it is
	// outStats are what each row written rewrites, one per outRows (as
	// transform fills them in), so that rows written one at a time are
	// counted one at a time.
	outStats []stats
}

func newBatch(p *plan, size int) *batch {
	return newBatchWidth(p.pkKind == keyNative, p.width(), size)
}

// newBatchWidth returns a batch of rows of w values after the key; native
// as plan.pkKind == keyNative.
func newBatchWidth(native bool, w, size int) *batch {
	b := &batch{
		width:   w,
		native:  native,
		pks:     make([]string, 0, size),
		vals:    make([][]byte, 0, size*w),
		nulls:   make([]bool, 0, size*w),
		blobs:   make([]bool, 0, size*w),
		holders: make([]any, w),
		dest:    make([]any, w+1),
		out:     make([]arrayLit, w+1),
		rowOut:  make([][]byte, w),
	}
	for k := range b.holders {
		b.dest[k+1] = &b.holders[k]
	}
	return b
}

// read replaces the batch's rows with those of rows, and closes it.
func (b *batch) read(rows *sql.Rows) error {
	defer rows.Close()
	b.pks = b.pks[:0]
	clear(b.keys)
	b.keys = b.keys[:0]
	clear(b.vals)
	b.vals = b.vals[:0]
	b.nulls = b.nulls[:0]
	b.blobs = b.blobs[:0]
	var pk string
	var key any
	if b.native {
		b.dest[0] = &key
	} else {
		b.dest[0] = &pk
	}
	for rows.Next() {
		if err := rows.Scan(b.dest...); err != nil {
			return err
		}
		if b.native {
			text, err := keyText(key)
			if err != nil {
				return err
			}
			b.pks = append(b.pks, text)
			b.keys = append(b.keys, key)
			key = nil
		} else {
			b.pks = append(b.pks, pk)
		}
		for k, h := range b.holders {
			switch v := h.(type) {
			case nil:
				b.vals = append(b.vals, nil)
				b.nulls = append(b.nulls, true)
				b.blobs = append(b.blobs, false)
			case string:
				b.vals = append(b.vals, []byte(v))
				b.nulls = append(b.nulls, false)
				b.blobs = append(b.blobs, false)
			case []byte:
				b.vals = append(b.vals, v) // database/sql copied it into an any
				b.nulls = append(b.nulls, false)
				b.blobs = append(b.blobs, true)
			default:
				return fmt.Errorf("column %d of the row layout is a %T, want text or bytea", k+1, h)
			}
			b.holders[k] = nil
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// keyText returns the text form of a primary key as a driver returned it
// (SQLite): integers and floats in decimal, strings as they are, and
// binary keys as \x and hex, as PostgreSQL prints bytea.
func keyText(key any) (string, error) {
	switch k := key.(type) {
	case int64:
		return strconv.FormatInt(k, 10), nil
	case float64:
		return strconv.FormatFloat(k, 'g', -1, 64), nil
	case string:
		return k, nil
	case []byte:
		return `\x` + hex.EncodeToString(k), nil
	case nil:
		return "", errors.New("a primary key is NULL")
	}
	return "", fmt.Errorf("a primary key is a %T, which cannot be passed back as it is; the primary key must be an integer, real, text or blob", key)
}

// key returns the primary key of row i as the job passes it back into SQL:
// its text form, or the value as the driver returned it when native.
func (b *batch) key(i int) any {
	if b.native {
		return b.keys[i]
	}
	return b.pks[i]
}

// id returns the identity of row i's primary key (plan.keyID).
func (b *batch) id(i int) string {
	if b.native {
		return keyIDNative(b.keys[i], b.pks[i])
	}
	return b.pks[i]
}

// keyID returns the identity of a primary key as the job keeps track of
// failed rows: its text form, which outside SQLite names one row; on
// SQLite its type and text form, since a key column without a type can
// hold the integer 1 and the text '1' (or the blob X'31') in different
// rows. key is the key as the driver returned it (batch.key) and text its
// text form.
func (p *plan) keyID(key any, text string) string {
	if p.pkKind == keyNative {
		return keyIDNative(key, text)
	}
	return text
}

// keyIDNative is keyID for a key as the driver returned it.
func keyIDNative(key any, text string) string {
	switch key.(type) {
	case int64:
		return "i:" + text
	case float64:
		return "f:" + text
	case string:
		return "s:" + text
	case []byte:
		return "b:" + text
	}
	return fmt.Sprintf("%T:%s", key, text)
}

// rows returns the number of rows in the batch.
func (b *batch) rows() int { return len(b.pks) }

// value returns value k of row i, and whether it is NULL.
func (b *batch) value(i, k int) ([]byte, bool) {
	j := i*b.width + k
	return b.vals[j], b.nulls[j]
}

// resetOut empties the output arrays.
func (b *batch) resetOut() {
	for k := range b.out {
		b.out[k].reset()
	}
	b.outRows = b.outRows[:0]
	clear(b.outVals)
	b.outVals = b.outVals[:0]
	b.outStats = b.outStats[:0]
}

// addOut appends row i to the output: its primary key and rowOut. The
// caller appends what the row rewrites to outStats.
func (b *batch) addOut(i int) {
	b.out[0].add(b.pks[i])
	for k, v := range b.rowOut {
		if v == nil {
			b.out[k+1].addNull()
		} else {
			b.out[k+1].addBytes(v)
		}
	}
	b.outRows = append(b.outRows, i)
	b.outVals = append(b.outVals, b.rowOut...)
}

// outRow returns a view of b whose output is b's n-th output row alone,
// for the statement that writes that row by itself. It shares b's rows
// and values, and is good until b changes.
func (b *batch) outRow(n int) *batch {
	w := b.width
	v := *b
	v.outRows = b.outRows[n : n+1 : n+1]
	v.outVals = b.outVals[n*w : (n+1)*w : (n+1)*w]
	v.outStats = nil
	v.out = make([]arrayLit, len(b.out))
	for k := range v.out {
		v.out[k].reset()
	}
	v.out[0].add(b.pks[b.outRows[n]])
	for k, val := range v.outVals {
		if val == nil {
			v.out[k+1].addNull()
		} else {
			v.out[k+1].addBytes(val)
		}
	}
	return &v
}

// args returns the output arrays as the arguments of PostgreSQL's UPDATE.
func (b *batch) args() []any {
	args := make([]any, len(b.out))
	for k := range b.out {
		args[k] = b.out[k].String()
	}
	return args
}

// arrayLit builds the text form of a PostgreSQL array, such as
// {"1","2",NULL}, for a parameter cast with ::text::<type>[]. Passing
// arrays as text works with every database/sql driver.
type arrayLit struct {
	b []byte
	n int
}

func (a *arrayLit) reset() {
	a.b = append(a.b[:0], '{')
	a.n = 0
}

func (a *arrayLit) sep() {
	if a.n > 0 {
		a.b = append(a.b, ',')
	}
	a.n++
}

// add appends s as a quoted element: backslashes and double quotes are
// escaped with a backslash, and everything else is taken literally inside
// the quotes.
func (a *arrayLit) add(s string) {
	a.sep()
	a.b = append(a.b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			a.b = append(a.b, '\\')
		}
		a.b = append(a.b, s[i])
	}
	a.b = append(a.b, '"')
}

// addBytes is add for a byte slice.
func (a *arrayLit) addBytes(s []byte) {
	a.sep()
	a.b = append(a.b, '"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			a.b = append(a.b, '\\')
		}
		a.b = append(a.b, c)
	}
	a.b = append(a.b, '"')
}

// addNull appends NULL.
func (a *arrayLit) addNull() {
	a.sep()
	a.b = append(a.b, "NULL"...)
}

// String returns the literal.
func (a *arrayLit) String() string {
	return string(a.b) + "}"
}

// asBytes returns a value scanned into an any as bytes; nil for NULL.
func asBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}
