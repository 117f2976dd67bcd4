package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// Environment of BenchmarkRotation.
const (
	rotEnvBench        = "COLCRYPT_BENCH_ROTATION" // "1" runs it
	rotEnvBenchRows    = "COLCRYPT_BENCH_ROWS"     // table sizes, default "100000,1000000"
	rotEnvBenchWorkers = "COLCRYPT_BENCH_WORKERS"  // default 2
	rotEnvBenchBatch   = "COLCRYPT_BENCH_BATCH"    // default 1000
)

// BenchmarkRotation rotates a table of three encrypted columns and one
// blind index (B-tree indexed) from key version 1 to 2, beside its floor:
// an identical table read and written back by the same code path (Rotate,
// same batches, same SQL) with the crypto replaced by copies. It reports
//
//   - rows/s and floor-rows/s: rows per second of the batches (the pass
//     over the table) of each, and ratio, the first over the second;
//   - job-ratio: the same over the whole of each Rotate call, where the
//     rotation also checks its index configuration and ends with the count
//     that finds nothing left (the floor makes one pass and stops);
//   - peak-heap-MiB and floor-peak-heap-MiB: the highest Go heap during
//     each run above the heap before it, at each table size, so that a heap
//     growing with the table shows.
//
// The two runs alternate in order from one invocation to the next (use
// -count 2), each after a CHECKPOINT, with autovacuum off on their tables.
//
// It takes about a minute per count on two cores, so it runs only with
// COLCRYPT_BENCH_ROTATION=1:
//
//	COLCRYPT_BENCH_ROTATION=1 COLCRYPT_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run '^$' -bench BenchmarkRotation -benchtime 1x -count 2 -timeout 60m ./integration/
func BenchmarkRotation(b *testing.B) {
	if os.Getenv(rotEnvBench) != "1" {
		b.Skipf("set %s=1 to run (it populates tables of up to a million rows)", rotEnvBench)
	}
	sizes := []int{100_000, 1_000_000}
	if s := os.Getenv(rotEnvBenchRows); s != "" {
		sizes = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("%s: %q is not a row count", rotEnvBenchRows, f)
			}
			sizes = append(sizes, n)
		}
	}
	workers := rotBenchEnvInt(b, rotEnvBenchWorkers, 2)
	batch := rotBenchEnvInt(b, rotEnvBenchBatch, rotation.DefaultBatchSize)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			rotBenchmark(b, n, workers, batch)
		})
	}
}

func rotBenchEnvInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s: %q is not a positive number", name, s)
	}
	return n
}

func rotBenchmark(b *testing.B, n, workers, batch int) {
	dsn := databaseURL(b)
	db := openSQL(b, dsn)
	ctx := context.Background()

	k1, _ := keyprovider.GenerateKey(1)
	k2, _ := keyprovider.GenerateKey(2)
	i1, _ := keyprovider.GenerateKey(1)
	i2, _ := keyprovider.GenerateKey(2)
	oldKeys, _ := keyprovider.NewStatic(1, k1)
	newKeys, _ := keyprovider.NewStatic(2, k1, k2)
	oldIndexKeys, _ := keyprovider.NewStatic(1, i1)
	newIndexKeys, _ := keyprovider.NewStatic(2, i1, i2)

	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// Two identical tables: one for the floor, one for the rotation.
		floorTable := createTable(b, db, rotColumns)
		rotTable := createTable(b, db, rotColumns)
		for _, tbl := range []string{floorTable, rotTable} {
			start := time.Now()
			rotBenchPopulate(b, dsn, strings.Trim(tbl, `"`), n, encryptedtype.NewCodec(oldKeys), oldIndexKeys)
			if _, err := db.ExecContext(ctx, "CREATE INDEX ON "+tbl+" (email_bidx)"); err != nil {
				b.Fatal(err)
			}
			// Autovacuum would run at times of its choosing, during one
			// run or the other.
			if _, err := db.ExecContext(ctx, "ALTER TABLE "+tbl+" SET (autovacuum_enabled = false)"); err != nil {
				b.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "VACUUM ANALYZE "+tbl); err != nil {
				b.Fatal(err)
			}
			b.Logf("populated %s with %d rows in %v", tbl, n, time.Since(start).Round(time.Millisecond))
		}
		describe := func(tbl string, ix rotation.Indexer) rotation.Table {
			return rotation.Table{Name: strings.Trim(tbl, `"`), PrimaryKey: "id", Columns: []rotation.Column{
				{Name: "email", Indexes: []rotation.Index{{Column: "email_bidx", Indexer: ix}}},
				{Name: "blob"},
				{Name: "phone"},
			}}
		}

		// Each run starts from a checkpoint, so that neither pays for
		// writing out the other's (or the population's) dirty pages.
		checkpoint := func() {
			if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
				b.Logf("CHECKPOINT (needs a superuser; the figures are noisier without): %v", err)
			}
		}

		// The floor: Rotate with copies for crypto, one pass.
		var floorRes *rotation.Result
		var floorPeak uint64
		var floorBatches rotBatchClock
		runFloor := func() {
			checkpoint()
			job, err := rotation.New(db, describe(floorTable, rotCopyIndexer{}), rotCopyCipher{})
			if err != nil {
				b.Fatal(err)
			}
			floorPeak = rotPeakHeap(func() {
				floorRes, err = job.Rotate(ctx, rotation.Options{BatchSize: batch, Workers: workers, SinglePass: true, Progress: floorBatches.record})
			})
			if err != nil || floorRes.Rows != int64(n) {
				b.Fatalf("floor: %+v, %v", floorRes, err)
			}
			dropTable(b, db, floorTable) // no autovacuum of it during the other run
		}

		// The rotation, as an operator runs it.
		var res *rotation.Result
		var peak uint64
		var batches rotBatchClock
		runRotation := func() {
			ix, err := blindindex.New(strings.Trim(rotTable, `"`)+".email", newIndexKeys, blindindex.Config{Normalize: rotNormalize})
			if err != nil {
				b.Fatal(err)
			}
			job, err := rotation.New(db, describe(rotTable, ix), encryptedtype.NewCodec(newKeys))
			if err != nil {
				b.Fatal(err)
			}
			checkpoint()
			b.StartTimer()
			peak = rotPeakHeap(func() {
				res, err = job.Rotate(ctx, rotation.Options{BatchSize: batch, Workers: workers, Progress: batches.record})
			})
			b.StopTimer()
			if err != nil || res.Rows != int64(n) || res.IndexValues != int64(n) {
				b.Fatalf("rotation: %+v, %v", res, err)
			}
			dropTable(b, db, rotTable)
		}
		// Alternate which runs first, from one invocation to the next.
		rotBenchRuns++
		if rotBenchRuns%2 == 1 {
			runFloor()
			runRotation()
		} else {
			runRotation()
			runFloor()
		}

		// The batches: the same work in both runs. The whole job adds, for
		// the rotation, the index check and the final count that ends it.
		rate, floorRate := float64(n)/batches.span().Seconds(), float64(n)/floorBatches.span().Seconds()
		jobRate, floorJobRate := float64(n)/res.Elapsed.Seconds(), float64(n)/floorRes.Elapsed.Seconds()
		b.ReportMetric(rate, "rows/s")
		b.ReportMetric(floorRate, "floor-rows/s")
		b.ReportMetric(rate/floorRate, "ratio")
		b.ReportMetric(jobRate/floorJobRate, "job-ratio")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(floorPeak)/(1<<20), "floor-peak-heap-MiB")
		first := "floor"
		if rotBenchRuns%2 == 0 {
			first = "rotation"
		}
		b.Logf("%d rows, %d workers, batches of %d, %s first: batches: rotation %.0f rows/s, floor %.0f rows/s, ratio %.3f; "+
			"whole job: rotation %v (%d passes), floor %v, ratio %.3f; peak heap %.1f MiB, floor %.1f MiB",
			n, workers, batch, first, rate, floorRate, rate/floorRate,
			res.Elapsed.Round(time.Millisecond), res.Passes, floorRes.Elapsed.Round(time.Millisecond), jobRate/floorJobRate,
			float64(peak)/(1<<20), float64(floorPeak)/(1<<20))
	}
}

// rotBenchRuns counts the invocations of rotBenchmark, to alternate the
// order of its two runs.
var rotBenchRuns int

// rotBatchClock records when the batches of a Rotate began and ended, from
// its progress reports.
type rotBatchClock struct {
	start, end time.Time
}

func (c *rotBatchClock) record(p rotation.Progress) {
	now := time.Now()
	if p.Pass == 1 && p.Done == 0 && c.start.IsZero() {
		c.start = now // the first report, before the first batch
	}
	if p.Pass == 1 {
		c.end = now
	}
}

// span is the time the first pass's batches took.
func (c *rotBatchClock) span() time.Duration { return c.end.Sub(c.start) }

// rotBenchPopulate fills table with n rows under the old keys, with COPY.
func rotBenchPopulate(b *testing.B, dsn, table string, n int, codec *encryptedtype.Codec, indexKeys blindindex.Keyring) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	ix, err := blindindex.New(table+".email", indexKeys, blindindex.Config{Normalize: rotNormalize})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		id := int64(i)
		email, err := codec.Seal(ctx, []byte(rotEmail(id, 0)))
		if err != nil {
			return nil, err
		}
		blob, err := codec.Seal(ctx, rotBlob(id, 0))
		if err != nil {
			return nil, err
		}
		var phone any
		if id%3 != 0 {
			p, err := codec.Seal(ctx, []byte(rotPhone(id, 0)))
			if err != nil {
				return nil, err
			}
			phone = string(p)
		}
		bidx, err := ix.Compute(rotEmail(id, 0))
		if err != nil {
			return nil, err
		}
		return []any{string(email), bidx, blob, phone}, nil
	})
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{table}, []string{"email", "email_bidx", "blob", "phone"}, src); err != nil {
		b.Fatal(err)
	}
}

// rotCopyCipher is the floor's Cipher: Open and Seal copy their input. Values
// are "written under" version 3, which no stored value is under, so every
// row is selected.
type rotCopyCipher struct{}

func (rotCopyCipher) Seal(_ context.Context, pt []byte) ([]byte, error) {
	if pt == nil {
		return []byte("v3:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), nil // the active version, for the job
	}
	return append([]byte(nil), pt...), nil
}

func (rotCopyCipher) Open(_ context.Context, v []byte) ([]byte, error) {
	return append([]byte(nil), v...), nil
}

// rotCopyIndexer is the floor's Indexer: a value as long as a real one
// ("b3:" and 43 characters), copied from the end of its input, so that the
// indexed column changes as a rotation changes it.
type rotCopyIndexer struct{}

func (rotCopyIndexer) Compute(pt string) (string, error) {
	const n = 43
	if len(pt) < n {
		return "b3:" + strings.Repeat("A", n), nil
	}
	return "b3:" + pt[len(pt)-n:], nil
}

// rotHeapObjects is the metric rotPeakHeap samples: bytes of heap objects, live
// or not yet swept.
const rotHeapObjects = "/memory/classes/heap/objects:bytes"

// rotPeakHeap runs f and returns the highest heap-objects size seen while it
// ran, above the size before it, sampled every 5 ms.
func rotPeakHeap(f func()) uint64 {
	sample := []metrics.Sample{{Name: rotHeapObjects}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var peak uint64
		for {
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	f()
	close(stop)
	peak := max(<-done, read())
	if peak < base {
		return 0
	}
	return peak - base
}
