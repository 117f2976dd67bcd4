package integration

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/rotation"
)

// retryIndexer is an index whose value is "b<version>:" and the
// base64url of the plaintext; when it computes the value of plaintext on,
// it runs fn, once.
type retryIndexer struct {
	version int
	on      string
	once    *sync.Once
	fn      func()
}

func (x retryIndexer) Compute(pt string) (string, error) {
	if pt == x.on {
		x.once.Do(x.fn)
	}
	return retryIndex(x.version, pt), nil
}

func retryIndex(version int, pt string) string {
	return fmt.Sprintf("b%d:%s", version, base64.RawURLEncoding.EncodeToString([]byte(pt)))
}

// TestRotateDuplicateRetryRereads: a batch that breaks a unique index is
// rolled back and made again row by row from what it reads again under
// lock, not from what the failed batch read. The application updates row
// 3 of the batch while the batch holds it: its UPDATE waits for the
// batch's rollback, then commits at once (the retry reads the
// application's value, or skips the row while the application holds it,
// for a later pass) or holds the row for a while (the retry skips it).
// Either way row 3 ends with the application's value, re-encrypted, and
// row 5 (a true duplicate of row 100) alone fails. A retry that wrote the
// failed batch's stale values would overwrite the application's write.
func TestRotateDuplicateRetryRereads(t *testing.T) {
	for _, db := range []struct {
		name string
		open func(t *testing.T) (*sql.DB, rotation.Dialect, func(int) string, string)
	}{
		{"Postgres", func(t *testing.T) (*sql.DB, rotation.Dialect, func(int) string, string) {
			return openSQL(t, databaseURL(t)), rotation.Postgres, func(n int) string { return fmt.Sprintf("$%d", n) }, "bigint"
		}},
		{"MySQL", func(t *testing.T) (*sql.DB, rotation.Dialect, func(int) string, string) {
			return openMySQL(t, mysqlURL(t)), rotation.MySQL, func(int) string { return "?" }, "bigint"
		}},
	} {
		for _, hold := range []time.Duration{0, 700 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/hold=%v", db.name, hold), func(t *testing.T) {
				sqlDB, dialect, ph, idType := db.open(t)
				retryRereads(t, sqlDB, dialect, ph, idType, hold)
			})
		}
	}
}

func retryRereads(t *testing.T, db *sql.DB, dialect rotation.Dialect, ph func(int) string, idType string, hold time.Duration) {
	ctx := testContext(t)
	tbl := uniqueName(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE `+tbl+` (id `+idType+` PRIMARY KEY, a varchar(200), a_bidx varchar(100) UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropTable(t, db, tbl) })
	c1, c2 := rotEdgeCodecs(t)
	insert := `INSERT INTO ` + tbl + ` VALUES (` + ph(1) + `, ` + ph(2) + `, ` + ph(3) + `)`
	plain := map[int]string{}
	for id := 1; id <= 12; id++ {
		p := strings.Repeat("x", id+10)
		if id == 5 {
			p = "duplicate"
		}
		plain[id] = p
		if _, err := db.ExecContext(ctx, insert, id, rotEdgeSeal(t, c1, p), retryIndex(1, p)); err != nil {
			t.Fatal(err)
		}
	}
	// The application's row, current, with row 5's new index value.
	if _, err := db.ExecContext(ctx, insert, 100, rotEdgeSeal(t, c2, "duplicate"), retryIndex(2, "duplicate")); err != nil {
		t.Fatal(err)
	}

	const appVal = "the application's value"
	appCT := rotEdgeSeal(t, c1, appVal) // on the old version: still work
	committed := make(chan error, 1)
	fn := func() {
		// Called while the batch holds rows 1..8 locked: the UPDATE waits
		// for the batch's rollback.
		go func() {
			tx, err := db.BeginTx(context.Background(), nil)
			if err != nil {
				committed <- err
				return
			}
			_, err = tx.Exec(`UPDATE `+tbl+` SET a = `+ph(1)+`, a_bidx = `+ph(2)+` WHERE id = 3`, appCT, retryIndex(1, appVal))
			if err != nil {
				_ = tx.Rollback()
				committed <- err
				return
			}
			time.Sleep(hold)
			committed <- tx.Commit()
		}()
		time.Sleep(200 * time.Millisecond) // let the UPDATE queue on the row's lock
	}
	ix := retryIndexer{version: 2, on: plain[3], once: &sync.Once{}, fn: fn}
	j, err := rotation.New(db, rotation.Table{Name: tbl, PrimaryKey: "id", Dialect: dialect, Columns: []rotation.Column{
		{Name: "a", Indexes: []rotation.Index{{Column: "a_bidx", Indexer: ix}}},
	}}, c2)
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Rotate(ctx, rotation.Options{BatchSize: 8})
	select {
	case cerr := <-committed:
		if cerr != nil {
			t.Fatalf("the application's update: %v", cerr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the application's update never ended (the hook did not run?)")
	}
	if !errors.Is(err, rotation.ErrFailures) || len(res.Failures) != 1 || res.Failures[0].PK != "5" || !errors.Is(res.Failures[0].Err, rotation.ErrDuplicate) {
		t.Fatalf("Rotate: failures %v, %v; want row 5 alone, a duplicate", res.Failures, err)
	}
	var a, bidx string
	if err := db.QueryRowContext(ctx, `SELECT a, a_bidx FROM `+tbl+` WHERE id = 3`).Scan(&a, &bidx); err != nil {
		t.Fatal(err)
	}
	pt, err := c2.Open(ctx, []byte(a))
	if err != nil || string(pt) != appVal || !strings.HasPrefix(a, "v2:") || bidx != retryIndex(2, appVal) {
		t.Errorf("row 3 holds %q (%v) under %.3s, index %q; want the application's value under v2 (the retry wrote the failed batch's stale value?)", pt, err, a, bidx)
	}
	for id := 1; id <= 12; id++ {
		if id == 3 || id == 5 {
			continue
		}
		if err := db.QueryRowContext(ctx, `SELECT a, a_bidx FROM `+tbl+` WHERE id = `+ph(1), id).Scan(&a, &bidx); err != nil {
			t.Fatal(err)
		}
		if pt, err := c2.Open(ctx, []byte(a)); err != nil || string(pt) != plain[id] || !strings.HasPrefix(a, "v2:") || bidx != retryIndex(2, plain[id]) {
			t.Errorf("row %d not rotated: %.3s %v %q", id, a, err, bidx)
		}
	}
}
