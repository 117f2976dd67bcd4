package encryptedtype

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/colcrypt/colcrypt/keyprovider"
)

// Interoperability with the seed's Node.js code (shared/seeds/
// column-encryption-node.txt). testdata/interop/seed.mjs is that code;
// make_vectors.mjs wrote node_vectors.json with it, and
// decrypt_go_values.mjs decrypts values written here.

type vectors struct {
	Keys map[string]string `json:"keys"`
	Good []struct {
		Name      string `json:"name"`
		Version   uint32 `json:"version"`
		Plaintext string `json:"plaintext"`
		Value     string `json:"value"`
	} `json:"good"`
	Fail []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Error string `json:"error"`
	} `json:"fail"`
}

func (vs *vectors) provider(t testing.TB) *keyprovider.Static {
	t.Helper()
	var keys []keyprovider.Key
	var active uint32
	for vstr, kh := range vs.Keys {
		v, err := strconv.ParseUint(vstr, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := hex.DecodeString(kh)
		if err != nil {
			t.Fatal(err)
		}
		k, err := keyprovider.NewKey(uint32(v), secret)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		active = max(active, uint32(v))
	}
	return newStatic(t, active, keys...)
}

func loadVectors(t testing.TB, data []byte) *vectors {
	t.Helper()
	var vs vectors
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs.Good) == 0 || len(vs.Fail) == 0 {
		t.Fatal("no vectors")
	}
	return &vs
}

func checkVectors(t *testing.T, vs *vectors) {
	c := NewCodec(vs.provider(t))
	for _, g := range vs.Good {
		got, err := c.Open(context.Background(), []byte(g.Value))
		if err != nil {
			t.Errorf("%s: %v", g.Name, err)
			continue
		}
		if string(got) != g.Plaintext {
			t.Errorf("%s: decrypted to another plaintext", g.Name)
		}
		if v, _ := Version([]byte(g.Value)); v != g.Version {
			t.Errorf("%s: version %d, want %d", g.Name, v, g.Version)
		}
	}
	want := map[string][]error{
		"auth":              {ErrAuth},
		"auth_or_malformed": {ErrAuth, ErrMalformed},
		"malformed":         {ErrMalformed},
		"not_encrypted":     {ErrNotEncrypted},
		"unknown_version":   {ErrUnknownVersion},
	}
	for _, f := range vs.Fail {
		got, err := c.Open(context.Background(), []byte(f.Value))
		if got != nil {
			t.Errorf("%s: returned data", f.Name)
		}
		errs, ok := want[f.Error]
		if !ok {
			t.Fatalf("%s: unknown expected error %q", f.Name, f.Error)
		}
		if !slicesContainsErr(errs, err) {
			t.Errorf("%s: got %v, want %v", f.Name, err, errs)
		}
	}
}

func slicesContainsErr(errs []error, err error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// TestInteropNodeVectors checks the committed vectors made by the seed's
// Node.js code.
func TestInteropNodeVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/interop/node_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	checkVectors(t, loadVectors(t, data))
}

// nodeOrSkip returns the path of node, or skips the test. With
// COLCRYPT_REQUIRE_NODE=1 (set in CI) a missing node fails the test.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("COLCRYPT_REQUIRE_NODE") == "1" {
			t.Fatal("node not found and COLCRYPT_REQUIRE_NODE=1")
		}
		t.Skip("node not found: install Node.js to check interoperability live")
	}
	return node
}

// TestInteropNodeToGoLive runs the seed's code now, with fresh nonces.
func TestInteropNodeToGoLive(t *testing.T) {
	node := nodeOrSkip(t)
	cmd := exec.Command(node, "make_vectors.mjs")
	cmd.Dir = "testdata/interop"
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node make_vectors.mjs: %v", err)
	}
	checkVectors(t, loadVectors(t, out))
}

// TestInteropGoToNode encrypts here and decrypts with the seed's decrypt.
func TestInteropGoToNode(t *testing.T) {
	node := nodeOrSkip(t)
	data, err := os.ReadFile("testdata/interop/node_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	vs := loadVectors(t, data)
	p := vs.provider(t)
	type goValue struct {
		Value     string `json:"value"`
		Plaintext string `json:"plaintext"`
	}
	var values []goValue
	for _, v := range p.Versions() {
		k, _ := p.Key(v)
		c := NewCodec(newStatic(t, v, k))
		for _, g := range vs.Good {
			sealed, err := c.Seal(context.Background(), []byte(g.Plaintext))
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, goValue{string(sealed), g.Plaintext})
		}
	}
	in, _ := json.Marshal(map[string]any{"keys": vs.Keys, "values": values})
	cmd := exec.Command(node, "decrypt_go_values.mjs")
	cmd.Dir = "testdata/interop"
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the seed's decrypt refused a Go value: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))

	// A value the seed must refuse: tampered in Go, checked in Node.
	tampered := []byte(values[0].Value)
	tampered[len(tampered)-2] ^= 'A' ^ 'B'
	in, _ = json.Marshal(map[string]any{"keys": vs.Keys, "values": []goValue{{string(tampered), values[0].Plaintext}}})
	cmd = exec.Command(node, "decrypt_go_values.mjs")
	cmd.Dir = "testdata/interop"
	cmd.Stdin = bytes.NewReader(in)
	if err := cmd.Run(); err == nil {
		t.Fatal("the seed's decrypt accepted a tampered value: the check proves nothing")
	}
}
