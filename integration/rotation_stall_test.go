package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// The rotation test of a Rotate that cannot finish, after a review: when
// rows keep needing work whatever Rotate writes, it stops with
// ErrIncomplete instead of looping until its context ends. Each test runs
// on PostgreSQL, MySQL/MariaDB and SQLite (rotEdgeAll).

// revStaleSealer is a Cipher that says it writes under version 2 (its Seal
// of an empty plaintext, from which Rotate takes the active version) but
// writes every other value under version 1: a row it rewrites still needs
// work, pass after pass.
type revStaleSealer struct {
	v1, v2 *encryptedtype.Codec
}

func (s revStaleSealer) Seal(ctx context.Context, pt []byte) ([]byte, error) {
	if len(pt) == 0 {
		return s.v2.Seal(ctx, pt)
	}
	return s.v1.Seal(ctx, pt)
}

func (s revStaleSealer) Open(ctx context.Context, v []byte) ([]byte, error) {
	return s.v2.Open(ctx, v)
}

// TestRotationStalled: rows under version 1 that Rotate rewrites,
// each pass, under version 1 again (every write changes them: a new
// nonce). Rotate stops after three passes that took the same rows with
// ErrIncomplete, naming the table and the count of rows left, never a
// value; the rows already done stay done. (Before the fix, it looped until
// its context ended.)
func TestRotationStalled(t *testing.T) {
	for _, db := range rotEdgeAll {
		t.Run(db.name, func(t *testing.T) {
			d := db.open(t)
			v1, v2 := rotEdgeCodecs(t)
			name, qt := d.create(t, "email "+d.text)
			for id := 1; id <= 6; id++ {
				c := v1
				if id > 4 {
					c = v2 // already done
				}
				d.insert(t, qt, []string{"id", "email"}, []any{id, rotEdgeSeal(t, c, fmt.Sprintf("secret%d@example.com", id))})
			}
			job, err := rotation.New(d.db, rotation.Table{Name: name, PrimaryKey: "id", Dialect: d.dialect, Columns: []rotation.Column{{Name: "email"}}},
				revStaleSealer{v1: v1, v2: v2})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(testContext(t), 60*time.Second)
			defer cancel()
			start := time.Now()
			res, err := job.Rotate(ctx, rotation.Options{BatchSize: 3})
			took := time.Since(start)
			if !errors.Is(err, rotation.ErrIncomplete) || ctx.Err() != nil {
				t.Fatalf("Rotate: %v after %v; want ErrIncomplete", err, took.Round(time.Millisecond))
			}
			// It gives a writer that puts rows back time to stop (ten
			// seconds) before it gives up on them.
			if took < 10*time.Second {
				t.Errorf("Rotate gave up after %v; want at least 10s of passes over the same rows", took.Round(time.Millisecond))
			}
			if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "4 rows") || strings.Contains(msg, "secret") {
				t.Errorf("error %q: want the table and the count, no value", msg)
			}
			if res.Passes < 3 || len(res.Failures) != 0 {
				t.Errorf("Rotate: %d passes, failures %v; want at least 3 passes and no failure", res.Passes, res.Failures)
			}
			for id, v := range d.values(t, qt, "email") {
				if want := map[bool]string{true: "v2:", false: "v1:"}[id > 4]; !strings.HasPrefix(v, want) {
					t.Errorf("row %d: not under %s", id, want)
				}
			}
		})
	}
}
