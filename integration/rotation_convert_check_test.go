package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation tests of the check after the passes under
// Options.EncryptPlaintext, after a review: a value that the check finds
// not under the active version (plaintext written by the application
// after the last pass's count) is work left. Rotate makes more passes and
// checks again, and returns nil only when a check finds every value under
// the active version; when such values keep appearing, it stops with
// ErrIncomplete after three checks. Each test runs on PostgreSQL,
// MySQL/MariaDB and SQLite (rotEdgeAll).

// revLateWriter is a Cipher whose Open, called on a value of the active
// version (which only the check after the passes decrypts, in a table
// without blind indexes), makes the application write a plaintext row:
// once, or each time it opens the first such value it saw (once per
// check, since the check reads in primary-key order).
type revLateWriter struct {
	rotation.Cipher
	every bool
	write func(n int) // writes the n-th plaintext row, from 1

	mu    sync.Mutex
	first []byte
	n     int
}

func (w *revLateWriter) Open(ctx context.Context, v []byte) ([]byte, error) {
	if bytes.HasPrefix(v, []byte("v2:")) {
		w.mu.Lock()
		fire := false
		switch {
		case w.first == nil:
			w.first = append([]byte{}, v...)
			fire = true
		case w.every && bytes.Equal(v, w.first):
			fire = true
		}
		if fire {
			w.n++
			w.write(w.n)
		}
		w.mu.Unlock()
	}
	return w.Cipher.Open(ctx, v)
}

// revPlainTable creates a table of id and email (plaintext being
// encrypted) holding rows 1 to 5, and returns it with a function that
// inserts the plaintext row 100 + n.
func revPlainTable(t *testing.T, d *rotEdgeDB) (name, qt string, write func(n int)) {
	t.Helper()
	name, qt = d.create(t, "email "+d.text)
	for id := 1; id <= 5; id++ {
		d.insert(t, qt, []string{"id", "email"}, []any{id, fmt.Sprintf("user%d@example.com", id)})
	}
	write = func(n int) {
		q := fmt.Sprintf("INSERT INTO %s (id, email) VALUES (%s, %s)", qt, d.ph(1), d.ph(2))
		if _, err := d.db.ExecContext(context.Background(), q, 100+n, fmt.Sprintf("late%d@example.com", n)); err != nil {
			t.Errorf("the application's write: %v", err)
		}
	}
	return name, qt, write
}

// TestRotationLatePlaintext: the application inserts a plaintext row
// while the check after the passes runs. Rotate encrypts it too (in more
// passes) and returns nil only once every value is encrypted under the
// active version. (Before the fix, the check skipped the plaintext and
// Rotate returned nil, the row left plaintext.)
func TestRotationLatePlaintext(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			_, v2 := rotEdgeCodecs(t)
			name, qt, write := revPlainTable(t, d)
			w := &revLateWriter{Cipher: v2, write: write}
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{{Name: "email"}}}, w)
			if err != nil {
				t.Fatal(err)
			}
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 2, EncryptPlaintext: []string{"email"}})
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if w.n != 1 {
				t.Fatalf("the application wrote %d rows during the check, want 1", w.n)
			}
			if res.Plaintext != 6 || len(res.Failures) != 0 || res.Passes < 2 {
				t.Errorf("Rotate: %d plaintext values encrypted, %d passes, failures %v; want 6 in more than one pass", res.Plaintext, res.Passes, res.Failures)
			}
			for id, v := range d.values(t, qt, "email") {
				if !strings.HasPrefix(v, "v2:") {
					t.Errorf("row %d is not encrypted under version 2", id)
					continue
				}
				if pt, err := v2.Open(ctx, []byte(v)); err != nil || (id == 101 && string(pt) != "late1@example.com") {
					t.Errorf("row %d: %v", id, err)
				}
			}
			if c, err := job.Census(ctx); err != nil || !c.Done() || c.Rows != 6 {
				t.Errorf("census after: %+v, %v; want 6 rows, done", c, err)
			}
		})
	}
}

// TestRotationPlaintextKeepsComing: the application inserts a
// plaintext row during every check after the passes. Rotate does not loop
// without end, nor return nil: after three checks it stops with
// ErrIncomplete, which names the table and the count, never a value.
// (Before the fix, Rotate returned nil after the first check.)
func TestRotationPlaintextKeepsComing(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			ctx := testContext(t)
			d := db.open(t)
			_, v2 := rotEdgeCodecs(t)
			name, qt, write := revPlainTable(t, d)
			w := &revLateWriter{Cipher: v2, write: write, every: true}
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{{Name: "email"}}}, w)
			if err != nil {
				t.Fatal(err)
			}
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 2, EncryptPlaintext: []string{"email"}})
			if !errors.Is(err, rotation.ErrIncomplete) {
				t.Fatalf("Rotate: %v; want ErrIncomplete", err)
			}
			if w.n != 3 || len(res.Failures) != 0 {
				t.Errorf("%d checks, failures %v; want 3 checks and no failure", w.n, res.Failures)
			}
			if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "1 values") || strings.Contains(msg, "example.com") {
				t.Errorf("error %q: want the table and the count, no value", msg)
			}
			// The rows written during the first two checks were encrypted;
			// the last one is left to the next Rotate.
			emails := d.values(t, qt, "email")
			for id, v := range emails {
				if encrypted := strings.HasPrefix(v, "v2:"); encrypted != (id != 103) {
					t.Errorf("row %d: encrypted %v", id, encrypted)
				}
			}
			if len(emails) != 8 {
				t.Errorf("%d rows, want 8", len(emails))
			}
		})
	}
}
