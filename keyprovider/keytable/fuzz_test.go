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
// garbage instead of a wrapping) and a byte that is ignored unless garbage
// is chosen, then used as the garbage.
func FuzzLoad(f *testing.F) {
	fx := newFixture(f)
	for v := uint32(0); v < 8; v++ {
		fx.key(v + 1)
	}
	f.Add([]byte{0, 0, 0, 1, 1, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 0, 0, 2, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0})
	f.Add([]byte{0, 0, 0, 3, 3, 0, 0, 0, 0, 2, 4, 7})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		src := &memSource{}
		src.set(fx.row(1, true))
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
			r := fx.row(v, flags&1 != 0)
			if flags&2 != 0 {
				r.Wrapped = fx.row(v%8+1, false).Wrapped
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
		time.Sleep(time.Microsecond)
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
