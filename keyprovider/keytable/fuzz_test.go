package keytable_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/keyprovider/keytable"
)

// FuzzLoad feeds hostile key tables to a running provider: no input makes
// it panic, the active version is either the one it had or one a row marks
// active, and no version ever holds key material other than its own.
//
// The input is read in records of 6 bytes: a version (4 bytes, big-endian,
// taken modulo 8 so that versions repeat), a flags byte (bit 0: active;
// bit 1: the row holds the wrapping of another version's key; bit 2:
// garbage instead of a wrapping; bit 3: a second wrapping of the version's
// own key, as after a KEK rotation) and a byte that is ignored unless
// garbage is chosen, then used as the garbage. Inputs of more than
// maxRecords records are skipped.
func FuzzLoad(f *testing.F) {
	const maxRecords = 10
	fx := newFixture(f)
	// Wrap every version once, up front. LocalKEK.WrapKey draws a random
	// nonce, and AES-GCM's overlap checks depend on where buffers land in
	// the heap, so wrapping inside the fuzz function makes the coverage of
	// an input vary from run to run: the fuzzer then keeps reporting "new"
	// coverage that does not reproduce and spends its minimization timeout
	// on such inputs, reporting no execs meanwhile. The same bytes each
	// time also let the provider reuse keys whose wrapping is unchanged.
	var wrapped, rewrapped [9][]byte // by version, 1 to 8
	for v := uint32(1); v <= 8; v++ {
		wrapped[v] = fx.row(v, false).Wrapped
		rewrapped[v] = fx.row(v, false).Wrapped
	}
	row := func(v uint32, active bool) keytable.WrappedKey {
		return keytable.WrappedKey{Version: v, Wrapped: wrapped[v], Active: active}
	}
	f.Add([]byte{0, 0, 0, 1, 1, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 0, 0, 2, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0})
	f.Add([]byte{0, 0, 0, 3, 3, 0, 0, 0, 0, 2, 4, 7})
	f.Add([]byte{0, 0, 0, 1, 9, 0, 0, 0, 0, 2, 8, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		// Only 8 versions exist, so a table of more rows holds one twice
		// and fails alike however long it is. Longer inputs only add loop
		// iterations, which the fuzzer counts as new coverage: it would
		// keep growing inputs to hundreds of bytes and spend up to its
		// minimization timeout (O(n²) runs) on each, reporting no execs.
		if len(in) > maxRecords*6 {
			return
		}
		src := &memSource{}
		src.set(row(1, true))
		p, err := keytable.NewProvider(context.Background(), src, fx.kek, keytable.Options{
			RefreshInterval: -1, MinReloadInterval: time.Nanosecond, OnError: func(error) {},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()

		var rows []keytable.WrappedKey
		activeRows := map[uint32]bool{}
		for len(in) >= 6 {
			v := binary.BigEndian.Uint32(in)%8 + 1
			flags, g := in[4], in[5]
			in = in[6:]
			r := row(v, flags&1 != 0)
			if flags&8 != 0 {
				r.Wrapped = rewrapped[v]
			}
			if flags&2 != 0 {
				r.Wrapped = wrapped[v%8+1]
			}
			if flags&4 != 0 {
				r.Wrapped = bytes.Repeat([]byte{g}, int(g))
			}
			rows = append(rows, r)
			if r.Active {
				activeRows[v] = true
			}
		}
		src.set(rows...)
		before := p.Status()
		_ = p.Reload(context.Background()) // an error may be a partial load
		after := p.Status()
		active, _ := p.Active()
		if after.Active != before.Active && !activeRows[after.Active] {
			t.Fatalf("active version %d, which no row marks active", after.Active)
		}
		if !activeRows[after.Active] && after.Active != 1 {
			t.Fatalf("active version %d", after.Active)
		}
		for _, v := range after.Versions {
			k, err := p.Key(v)
			if err != nil || !bytes.Equal(k.Bytes(), fx.key(v).Bytes()) {
				t.Fatalf("version %d holds other material (%v)", v, err)
			}
		}
		if !bytes.Equal(active.Bytes(), fx.key(active.Version()).Bytes()) {
			t.Fatal("active key has other material")
		}
	})
}
