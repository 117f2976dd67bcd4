package blindindex

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// vectors is testdata/vectors.json, written by testdata/make_vectors.mjs with
// Node.js's crypto, independently of this package.
type vectors struct {
	Keys map[string]string `json:"keys"`
	Good []struct {
		Name       string    `json:"name"`
		Version    uint32    `json:"version"`
		Index      string    `json:"index"`
		Normalize  []string  `json:"normalize"`
		Bits       int       `json:"bits"`
		Slow       *slowJSON `json:"slow"`
		Input      string    `json:"input"`
		Normalized string    `json:"normalized"`
		Info       string    `json:"info"`
		Value      string    `json:"value"`
	} `json:"good"`
	FailValues []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"fail_values"`
	FailConfigs []struct {
		Name  string    `json:"name"`
		Index string    `json:"index"`
		Bits  int       `json:"bits"`
		Slow  *slowJSON `json:"slow"`
	} `json:"fail_configs"`
}

type slowJSON struct {
	T uint32 `json:"t"`
	M uint32 `json:"m"`
	P uint8  `json:"p"`
}

func (s *slowJSON) params() *Argon2id {
	if s == nil {
		return nil
	}
	return &Argon2id{Time: s.T, MemoryKiB: s.M, Threads: s.P}
}

var normalizersByName = map[string]Normalizer{
	"trim":   TrimSpace,
	"nfkc":   NFKC,
	"fold":   Fold,
	"digits": DigitsOnly,
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Good) == 0 || len(v.FailValues) == 0 || len(v.FailConfigs) == 0 {
		t.Fatal("testdata/vectors.json has no vectors")
	}
	return v
}

// vectorKeyring returns the vectors' keys with active as the active version.
func vectorKeyring(t *testing.T, v vectors, active uint32) *keyprovider.Static {
	t.Helper()
	var keys []keyprovider.Key
	for vs, h := range v.Keys {
		ver, err := strconv.ParseUint(vs, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		k, err := keyprovider.NewKey(uint32(ver), secret)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	ks, err := keyprovider.NewStatic(active, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestVectors(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Good {
		t.Run(c.Name, func(t *testing.T) {
			var ns []Normalizer
			for _, n := range c.Normalize {
				f, ok := normalizersByName[n]
				if !ok {
					t.Fatalf("unknown normaliser %q", n)
				}
				ns = append(ns, f)
			}
			ix, err := New(c.Index, vectorKeyring(t, v, c.Version), Config{Normalize: Chain(ns...), Bits: c.Bits, Slow: c.Slow.params()})
			if err != nil {
				t.Fatal(err)
			}
			if ix.info != c.Info {
				t.Errorf("HKDF info = %q, want %q", ix.info, c.Info)
			}
			if got := ix.Normalize(c.Input); got != c.Normalized {
				t.Errorf("Normalize(%q) = %q, want %q", c.Input, got, c.Normalized)
			}
			got, err := ix.Compute(c.Input)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.Value {
				t.Errorf("Compute = %s, want %s", got, c.Value)
			}
			if got, err := ix.ComputeVersion(c.Version, c.Input); err != nil || got != c.Value {
				t.Errorf("ComputeVersion = %s, %v, want %s", got, err, c.Value)
			}
			if ver, err := Version(c.Value); err != nil || ver != c.Version {
				t.Errorf("Version = %d, %v, want %d", ver, err, c.Version)
			}
			if cur, err := ix.IsCurrent(c.Value); err != nil || !cur {
				t.Errorf("IsCurrent = %v, %v, want true", cur, err)
			}
			vals, err := ix.Lookup(c.Input)
			if err != nil {
				t.Fatal(err)
			}
			if !contains(vals, c.Value) || len(vals) != len(v.Keys) {
				t.Errorf("Lookup = %v, want %d values including %s", vals, len(v.Keys), c.Value)
			}
		})
	}
	for _, c := range v.FailValues {
		t.Run(c.Name, func(t *testing.T) {
			if ver, err := Version(c.Value); !errors.Is(err, ErrMalformed) {
				t.Errorf("Version(%q) = %d, %v, want ErrMalformed", c.Value, ver, err)
			}
			ix, err := New("users.email", vectorKeyring(t, v, 1), Config{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ix.IsCurrent(c.Value); !errors.Is(err, ErrMalformed) {
				t.Errorf("IsCurrent(%q) error = %v, want ErrMalformed", c.Value, err)
			}
		})
	}
	for _, c := range v.FailConfigs {
		t.Run(c.Name, func(t *testing.T) {
			if _, err := New(c.Index, vectorKeyring(t, v, 1), Config{Bits: c.Bits, Slow: c.Slow.params()}); !errors.Is(err, ErrConfig) {
				t.Errorf("New error = %v, want ErrConfig", err)
			}
		})
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
