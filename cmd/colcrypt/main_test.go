package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// runCLI runs a command line in process and returns its exit status and
// output. The tests that need a database run the built binary, in
// package integration.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"status"}, "--table is required"},
		{[]string{"status", "--table", "t"}, "at least one --column"},
		{[]string{"status", "--table", "t", "--column", "c"}, "no database: pass --database-url or set DATABASE_URL"},
		{[]string{"status", "--table", "t", "--column", "c", "extra"}, `unexpected argument "extra"`},
		{[]string{"rotate", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--batch-size", "0"}, "--batch-size must be from 1"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--workers", "0"}, "--workers must be from 1"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--pause", "-1s"}, "--pause must not be negative"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--progress", "fancy"}, "--progress must be"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--max-failures", "0"}, "--max-failures must be"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--column", "c"}, `--column "c" given twice`},
		{[]string{"rotate", "--table", "t", "--column", "c", "--blind-index", "x"}, "want INDEX_COLUMN=SOURCE_COLUMN"},
		{[]string{"rotate", "--table", "t", "--column", "c", "--blind-index", "x=d"}, `"d" is not one of the --column columns`},
		{[]string{"verify", "--table", "t", "--column", "c", "--batch-size", "-3"}, "--batch-size must be from 1"},
		{[]string{"keygen", "--version", "99999999999"}, "--version must be from 1"},
		{[]string{"keygen", "--index"}, "--index goes with --add"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.msg) {
			t.Errorf("colcrypt %q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.msg)
		}
	}
	if code, stdout, _ := runCLI(t, "help"); code != 0 || !strings.Contains(stdout, "colcrypt rotate") {
		t.Errorf("help: %d %q", code, stdout)
	}
}

func TestKeyErrors(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/none")
	key, _ := keyprovider.GenerateKey(1)
	secret := strings.TrimPrefix(keyprovider.EncodeKeys(key), "1:")
	for _, tc := range []struct {
		keys, active, indexKeys string
		extra                   []string
		msg                     string
	}{
		{"", "", "", nil, "COLCRYPT_KEYS is not set"},
		{"1:" + secret[:20], "", "", nil, "environment variable COLCRYPT_KEYS: entry 1: colcrypt: invalid key"},
		{"1:" + secret, "2", "", nil, "active version 2 is not among the keys"},
		{"1:" + secret, "", "", []string{"--blind-index", "c_bidx=c"}, "blind index keys (needed for --blind-index)"},
		{"1:" + secret, "", "1:" + secret, []string{"--blind-index", "c_bidx=c,bits=0"}, "bits must be 1 to 256"},
	} {
		t.Setenv("COLCRYPT_KEYS", tc.keys)
		t.Setenv("COLCRYPT_ACTIVE_KEY", tc.active)
		t.Setenv("COLCRYPT_INDEX_KEYS", tc.indexKeys)
		code, stdout, stderr := runCLI(t, append([]string{"status", "--table", "t", "--column", "c"}, tc.extra...)...)
		if code == 0 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("keys %q: exit %d, stderr %q; want %q", tc.keys, code, stderr, tc.msg)
		}
		if strings.Contains(stdout+stderr, secret[:20]) {
			t.Errorf("output holds key material: %q", stderr)
		}
	}
}

func TestConnectionError(t *testing.T) {
	key, _ := keyprovider.GenerateKey(1)
	t.Setenv("COLCRYPT_KEYS", keyprovider.EncodeKeys(key))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "")
	code, _, stderr := runCLI(t, "status", "--database-url", "postgres://nobody:hunter2@127.0.0.1:1/none?connect_timeout=2", "--table", "t", "--column", "c")
	if code != exitError || !strings.Contains(stderr, "connecting to the database") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, "hunter2") {
		t.Errorf("the password is in the error: %q", stderr)
	}
}

var keyLine = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9+/]{43}=$`)

// keygen --remove prints the keyring without an old version, and refuses
// the active version, a version not held, and other flags.
func TestKeygenRemove(t *testing.T) {
	for _, tc := range []struct{ keysVar, activeVar string }{
		{"COLCRYPT_KEYS", "COLCRYPT_ACTIVE_KEY"},
		{"COLCRYPT_INDEX_KEYS", "COLCRYPT_ACTIVE_INDEX_KEY"},
	} {
		var keys []keyprovider.Key
		for v := uint32(1); v <= 3; v++ {
			k, err := keyprovider.GenerateKey(v)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
		t.Setenv(tc.keysVar, keyprovider.EncodeKeys(keys...))
		t.Setenv(tc.activeVar, "3")
		args := []string{"keygen", "--remove", "1"}
		if tc.keysVar == "COLCRYPT_INDEX_KEYS" {
			args = append(args, "--index")
		}
		code, out, stderr := runCLI(t, args...)
		want := tc.keysVar + "=" + keyprovider.EncodeKeys(keys[1:]...) + "\n" + tc.activeVar + "=3\n"
		if code != 0 || out != want {
			t.Fatalf("%q: %d %q, want %q", args, code, out, want)
		}
		if !strings.Contains(stderr, "version 1 removed") || !strings.Contains(stderr, "status --check") || strings.Contains(stderr, keyprovider.EncodeKeys(keys[0])[2:12]) {
			t.Errorf("%q stderr: %q", args, stderr)
		}
		for bad, wantCode := range map[string]int{"3": exitError, "9": exitError} {
			args[2] = bad
			if code, _, stderr := runCLI(t, args...); code != wantCode || strings.Contains(stderr, keyprovider.EncodeKeys(keys[2])[2:12]) {
				t.Errorf("%q: %d %q", args, code, stderr)
			}
		}
	}
	if code, _, _ := runCLI(t, "keygen", "--remove", "1", "--add"); code != exitUsage {
		t.Errorf("--remove with --add: exit %d, want %d", code, exitUsage)
	}
	if code, out, _ := runCLI(t, "keygen", "--remove", "0"); code != exitUsage || out != "" {
		t.Errorf("--remove 0: exit %d %q, want a usage error and no key", code, out)
	}
}

func TestKeygen(t *testing.T) {
	code, stdout, _ := runCLI(t, "keygen")
	if code != 0 || !keyLine.MatchString(strings.TrimSpace(stdout)) || !strings.HasPrefix(stdout, "1:") {
		t.Fatalf("keygen: %d %q", code, stdout)
	}
	keys, err := keyprovider.ParseKeys(stdout)
	if err != nil || len(keys) != 1 || keys[0].Version() != 1 {
		t.Fatalf("keygen output does not parse: %v", err)
	}
	if _, out2, _ := runCLI(t, "keygen"); out2 == stdout {
		t.Error("two keygens printed the same key")
	}
	if _, out, _ := runCLI(t, "keygen", "--version", "7"); !strings.HasPrefix(out, "7:") {
		t.Errorf("keygen --version 7: %q", out)
	}

	// --add appends to the environment's keyring and makes the new key
	// active.
	t.Setenv("COLCRYPT_KEYS", strings.TrimSpace(stdout))
	code, out, stderr := runCLI(t, "keygen", "--add")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "COLCRYPT_KEYS="+strings.TrimSpace(stdout)+",2:") || lines[1] != "COLCRYPT_ACTIVE_KEY=2" {
		t.Fatalf("keygen --add: %d %q", code, out)
	}
	if !strings.Contains(stderr, "secret") || strings.Contains(stderr, strings.TrimSpace(stdout)[2:12]) {
		t.Errorf("keygen --add stderr: %q", stderr)
	}
	t.Setenv("COLCRYPT_KEYS", strings.TrimPrefix(lines[0], "COLCRYPT_KEYS="))
	t.Setenv("COLCRYPT_ACTIVE_KEY", "2")
	s, err := keyprovider.FromEnv()
	if err != nil || len(s.Versions()) != 2 {
		t.Fatalf("the printed keyring does not load: %v", err)
	}
	if code, _, stderr := runCLI(t, "keygen", "--add", "--version", "2"); code != exitError || !strings.Contains(stderr, "already holds a key of version 2") {
		t.Errorf("keygen --add of an existing version: %d %q", code, stderr)
	}

	if !strings.Contains(stderr, "then run `colcrypt rotate`") || !strings.Contains(stderr, "keep the old versions") {
		t.Errorf("keygen --add of a second key: %q", stderr)
	}

	// The first key of a keyring: nothing to rotate, and no old version
	// to keep.
	t.Setenv("COLCRYPT_INDEX_KEYS", "")
	code, out, stderr = runCLI(t, "keygen", "--add", "--index")
	if code != 0 || !strings.HasPrefix(out, "COLCRYPT_INDEX_KEYS=1:") || !strings.Contains(out, "COLCRYPT_ACTIVE_INDEX_KEY=1") {
		t.Errorf("keygen --add --index: %d %q", code, out)
	}
	for _, env := range []string{"COLCRYPT_KEYS", "COLCRYPT_INDEX_KEYS"} {
		t.Setenv(env, "")
		args := []string{"keygen", "--add"}
		if env == "COLCRYPT_INDEX_KEYS" {
			args = append(args, "--index")
		}
		code, out, stderr = runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, env+"=1:") ||
			!strings.Contains(stderr, env+" was not set: this starts it with key version 1, active") ||
			!strings.Contains(stderr, "There is nothing to rotate") || !strings.Contains(stderr, "secret") ||
			strings.Contains(stderr, "colcrypt rotate") || strings.Contains(stderr, "old versions") {
			t.Errorf("%q with %s unset: %d %q %q", args, env, code, out, stderr)
		}
	}
	t.Setenv("COLCRYPT_INDEX_KEYS", strings.TrimSpace(stdout))
	if _, _, stderr := runCLI(t, "keygen", "--add", "--index"); !strings.Contains(stderr, "with a --blind-index for every blind index") {
		t.Errorf("keygen --add --index of a second key: %q", stderr)
	}
}

func TestParseIndexSpec(t *testing.T) {
	s, err := parseIndexSpec("email_bidx=email", "users")
	if err != nil || s.column != "email_bidx" || s.source != "email" || s.name != "users.email" || s.cfg.Normalize != nil || s.cfg.Bits != 0 || s.cfg.Slow != nil {
		t.Errorf("minimal spec: %+v %v", s, err)
	}
	s, err = parseIndexSpec("e=email,name=crm.mail,normalize=trimspace+nfkc+fold,bits=32,slow=1:64:1", "users")
	if err != nil || s.name != "crm.mail" || s.cfg.Bits != 32 || s.cfg.Slow == nil || s.cfg.Slow.MemoryKiB != 64 || s.cfg.Normalize == nil {
		t.Fatalf("full spec: %+v %v", s, err)
	}
	if got := s.cfg.Normalize("  ÄDA@Example.COM "); got != "äda@example.com" {
		t.Errorf("normaliser gives %q", got)
	}
	for _, bad := range []string{"", "=", "a=", "=b", "a=b,name=", "a=b,bits=x", "a=b,bits=257", "a=b,normalize=upper", "a=b,slow=1:2", "a=b,slow=x:y:z", "a=b,colour=red"} {
		if _, err := parseIndexSpec(bad, "t"); err == nil {
			t.Errorf("spec %q: no error", bad)
		}
	}
}

func FuzzParseIndexSpec(f *testing.F) {
	for _, s := range []string{"a=b", "a=b,name=x,normalize=fold+digits,bits=8,slow", "a=b,slow=1:8:1", ",,,", "=,="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := parseIndexSpec(spec, "t")
		if err == nil && (s.column == "" || s.source == "") {
			t.Fatalf("spec %q parsed without columns", spec)
		}
	})
}

func TestProgressDisplay(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "bar", "rotating t")
	p.update(rotation.Progress{Pass: 1, Done: 50, Total: 200, Rate: 100, ETA: 1500 * time.Millisecond})
	p.println("failed: row 1")
	p.finish()
	out := buf.String()
	for _, want := range []string{"\rrotating t [=======>", " 25% 50/200 rows, 100 rows/s, ETA 2s", "failed: row 1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output %q lacks %q", out, want)
		}
	}
	// The line printed above the bar first wipes the bar it replaces.
	if !regexp.MustCompile(`\r +\rfailed: row 1\n`).MatchString(out) {
		t.Errorf("bar output %q does not clear the bar before a line", out)
	}
	buf.Reset()
	p = newProgress(&buf, "lines", "x")
	p.update(rotation.Progress{Pass: 2, Done: 10, Total: 10, Failed: 1, ETA: -1})
	p.finish()
	if out := buf.String(); !strings.HasPrefix(out, "progress: 100% 10/10 rows, 0 rows/s, ETA -, pass 2") || !strings.Contains(out, "1 failed") ||
		strings.Count(out, "progress: ") != 2 {
		t.Errorf("lines output %q, want the update and the final line", out)
	}
	buf.Reset()
	p = newProgress(&buf, "none", "x")
	p.update(rotation.Progress{Done: 1})
	p.finish()
	if buf.Len() != 0 {
		t.Errorf("none printed %q", buf.String())
	}
}

// TestHelpFlag: -h and --help after any command print the usage to stdout
// and exit 0.
func TestHelpFlag(t *testing.T) {
	for _, cmd := range []string{"keygen", "status", "rotate", "encrypt-existing", "verify"} {
		for _, h := range []string{"-h", "--help", "-help"} {
			args := []string{cmd, h}
			if cmd != "keygen" {
				args = []string{cmd, "--table", "t", h, "--column", "c"}
			}
			code, stdout, stderr := runCLI(t, args...)
			if code != exitOK || !strings.Contains(stdout, "Usage:") || !strings.Contains(stdout, "colcrypt "+cmd) || stderr != "" {
				t.Errorf("colcrypt %s %s: exit %d, stdout %.40q, stderr %q", cmd, h, code, stdout, stderr)
			}
		}
	}
}

// TestUsageText checks what the usage says about exit statuses and
// --max-failures.
func TestUsageText(t *testing.T) {
	for _, want := range []string{
		"--max-failures N     stops after N failed rows",
		"3 rows failed to decrypt (rotate,\nencrypt-existing, verify, status --decrypt)",
		"130 interrupted (SIGINT or SIGTERM)",
		// The rotation example names the blind index; status --check's
		// exit 3 without one, during an index key rotation, is documented.
		"colcrypt rotate --table users --column email --column phone \\\n      --blind-index email_bidx=email,normalize=trimspace+nfkc+fold",
		"colcrypt status --check --table users --column email --column phone \\\n      --blind-index email_bidx=email,normalize=trimspace+nfkc+fold",
		"status --check exits 3: it cannot vouch for index values it was not told\n  about",
		"blind index columns no --blind-index names during an\nindex key rotation",
		// Only columns that hold blind index values count: a table without
		// any gets no warning.
		"for columns that no --column or --blind-index names and whose\n  sampled values are mostly blind index values",
		"A table without such columns (no\n  blind indexes, or every one given) gets no warning. --all-blind-indexes",
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("the usage lacks %q", want)
		}
	}
}
