package integration

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/rotation"
)

// TestRotationConcurrentWriters rotates a table while 8 writers keep
// updating random rows, some in transactions that hold the row locked for
// a while (so that the job has to skip them and come back). Afterwards
// every row holds the last value its writer committed, and every value is
// under the new key version.
func TestRotationConcurrentWriters(t *testing.T) {
	const (
		n       = 3000
		writers = 8
	)
	f := newRotFixture(t, n)
	ctx := testContext(t)
	codec := f.activate() // the application writes under version 2 from now on
	job := f.job(codec)

	// Writer w owns the rows with id%writers == w, so each row's last
	// committed value is known exactly: gen[id] and phoneNull[id], written
	// only by the row's writer, after its commit.
	gen := make([]int, n+1)
	phoneNull := make([]bool, n+1)
	for id := 1; id <= n; id++ {
		phoneNull[id] = rotPhoneNull0(int64(id))
	}
	var writes, lockedWrites atomic.Int64
	// Writers stop between writes: cancelling a statement in flight would
	// leave unknown whether it committed.
	var stop atomic.Bool
	wctx := ctx
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for !stop.Load() {
				id := int64(rng.IntN(n/writers)*writers + w)
				if id == 0 {
					id = writers
				}
				g := gen[id] + 1
				null := rng.IntN(4) == 0
				var phone *encryptedtype.String
				if !null {
					phone = ptr(encryptedtype.NewString(rotPhone(id, g)))
				}
				bidx, err := f.index.Compute(rotEmail(id, g))
				if err != nil {
					errs <- err
					return
				}
				args := []any{encryptedtype.NewString(rotEmail(id, g)), bidx, encryptedtype.NewBytes(rotBlob(id, g)), phone, id}
				update := f.q("UPDATE %s SET email = $1, email_bidx = $2, blob = $3, phone = $4 WHERE id = $5")
				if rng.IntN(2) == 0 {
					_, err = f.db.ExecContext(wctx, update, args...)
				} else {
					// Read-modify-write holding the row lock for a while.
					err = rotWithTx(wctx, f.db, func(tx *sql.Tx) error {
						var cur encryptedtype.String
						if err := tx.QueryRowContext(wctx, f.q("SELECT email FROM %s WHERE id = $1 FOR UPDATE"), id).Scan(&cur); err != nil {
							return err
						}
						if cur.Plaintext() != rotEmail(id, g-1) {
							t.Errorf("row %d reads %q inside the writer's transaction, want generation %d", id, cur.Plaintext(), g-1)
						}
						time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
						_, err := tx.ExecContext(wctx, update, args...)
						return err
					})
					if err == nil {
						lockedWrites.Add(1)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				gen[id], phoneNull[id] = g, null
				writes.Add(1)
			}
		})
	}

	// A ninth client locks random rows for a while without changing them,
	// so that the job skips rows it then has to come back for.
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(99, 42))
		for !stop.Load() {
			err := rotWithTx(ctx, f.db, func(tx *sql.Tx) error {
				ids := make([]int64, 20)
				for i := range ids {
					ids[i] = int64(rng.IntN(n) + 1)
				}
				if _, err := tx.ExecContext(ctx, f.q("SELECT 1 FROM %s WHERE id = ANY($1) FOR UPDATE"), ids); err != nil {
					return err
				}
				time.Sleep(30 * time.Millisecond)
				return nil
			})
			if err != nil {
				errs <- err
				return
			}
		}
	})

	var reports atomic.Int64
	res, err := job.Rotate(ctx, rotation.Options{
		BatchSize: 100,
		Workers:   2,
		Pause:     2 * time.Millisecond,
		Progress:  func(rotation.Progress) { reports.Add(1) },
	})
	writesDuring := writes.Load()
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("writer: %v", err)
	}
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	t.Logf("rotation: %d rows, %d passes, %d batches retried, %v; writers: %d writes during it (%d holding the lock)",
		res.Rows, res.Passes, res.Retried, res.Elapsed.Round(time.Millisecond), writesDuring, lockedWrites.Load())
	if writesDuring < 100 {
		t.Errorf("only %d writes happened during the rotation; the test did not exercise concurrency", writesDuring)
	}

	f.checkAll(ctx, n, func(id int64) int { return gen[id] }, func(id int64) bool { return phoneNull[id] }, 2, 2)
	c, err := job.Census(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Done() || c.Columns[0].Versions[2] != n {
		t.Errorf("census after: %+v", c)
	}
}

// rotWithTx runs fn in a transaction and commits it.
func rotWithTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
