package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/keyprovider"
)

// rotCLI is the colcrypt command, built for one test.
type rotCLI struct {
	bin string
	env []string
}

// rotBuildCLI builds cmd/colcrypt into a temporary directory.
func rotBuildCLI(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/colcrypt: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "colcrypt")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/colcrypt/colcrypt/cmd/colcrypt")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/colcrypt: %v\n%s", err, out)
	}
	return bin
}

// newRotCLI builds the command and gives it the fixture's keys (versions 1
// and 2, 2 active, for data and index keys) and database.
func newRotCLI(t testing.TB, f *rotFixture) *rotCLI {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COLCRYPT_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DATABASE_URL="+databaseURL(t),
		"COLCRYPT_KEYS="+keyprovider.EncodeKeys(f.keys.key(1), f.keys.key(2)),
		"COLCRYPT_ACTIVE_KEY=2",
		"COLCRYPT_INDEX_KEYS="+keyprovider.EncodeKeys(f.ikeys.keys[1], f.ikeys.keys[2]),
		"COLCRYPT_ACTIVE_INDEX_KEY=2",
	)
	return &rotCLI{bin: rotBuildCLI(t), env: env}
}

// tableArgs are the flags describing the fixture's table.
func (f *rotFixture) tableArgs() []string {
	return []string{"--table", f.name, "--column", "email", "--column", "blob", "--column", "phone",
		"--blind-index", "email_bidx=email,normalize=trimspace+nfkc+fold"} // name defaults to <table>.email
}

type rotCLIResult struct {
	code           int
	stdout, stderr string
}

func (r rotCLIResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs the command to completion, with extra environment variables.
func (c *rotCLI) run(t testing.TB, extraEnv []string, args ...string) rotCLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(append([]string(nil), c.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := rotCLIResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("running colcrypt %q: %v", args, err)
	}
	return res
}

// runInterrupted runs the command and sends it SIGINT when it prints its
// first line on stdout.
func (c *rotCLI) runInterrupted(t testing.TB, extraEnv []string, args ...string) rotCLIResult {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append([]string(nil), c.env...), extraEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	sc := bufio.NewScanner(out)
	signalled := false
	for sc.Scan() {
		stdout.WriteString(sc.Text() + "\n")
		if !signalled {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	res := rotCLIResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("running colcrypt %q: %v", args, err)
	}
	if !signalled {
		t.Errorf("colcrypt %q printed nothing to interrupt it at", args)
	}
	return res
}

// TestRotationCLI is the operator's session: status, rotate, status, on a
// table with a damaged row; then verify, the error cases and their exit
// codes, and encrypt-existing.
func TestRotationCLI(t *testing.T) {
	const n = 400
	f := newRotFixture(t, n)
	ctx := testContext(t)
	f.activate()
	cli := newRotCLI(t, f)
	table := f.tableArgs()
	secrets := f.keys.secrets()
	noSecrets := func(what string, r rotCLIResult) {
		t.Helper()
		out := r.stdout + r.stderr
		if !rotNoSecrets(out) {
			t.Errorf("%s: output holds plaintext:\n%s", what, r)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s: output holds key material:\n%s", what, r)
			}
		}
	}
	if _, err := f.db.ExecContext(ctx, f.q("UPDATE %s SET email = "+flipMiddleSQL("email")+" WHERE id = 5")); err != nil {
		t.Fatal(err)
	}

	// verify stopped by SIGINT exits 130: with a keyring that lacks
	// version 1, every row fails and is printed as found; the signal goes
	// at the first one.
	r := cli.runInterrupted(t, []string{"COLCRYPT_KEYS=" + keyprovider.EncodeKeys(f.keys.key(2))},
		append([]string{"verify", "--batch-size", "1", "--skip-indexes"}, table...)...)
	if r.code != 130 || !strings.Contains(r.stderr, "interrupted") {
		t.Errorf("verify, SIGINT: %s", r)
	}
	noSecrets("verify, SIGINT", r)

	r = cli.run(t, nil, append([]string{"status"}, table...)...)
	noSecrets("status", r)
	for _, want := range []string{fmt.Sprintf("%d rows", n), "Data key: version 2 active; keyring holds 1, 2", "v1", "v2 (active)", "TO ROTATE",
		fmt.Sprintf("%d rows still to rotate", n), "email_bidx"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("status before: want %q in\n%s", want, r)
		}
	}
	if r := cli.run(t, nil, append([]string{"status", "--check"}, table...)...); r.code != 3 {
		t.Errorf("status --check before: %s", r)
	}
	if r := cli.run(t, nil, append([]string{"rotate", "--dry-run"}, table...)...); r.code != 3 || !strings.Contains(r.stdout, fmt.Sprintf("dry run: would rewrite %d rows", n-1)) {
		t.Errorf("rotate --dry-run: %s", r)
	}
	f.checkAllExcept(ctx, n, 1, 1, 5)

	r = cli.run(t, nil, append([]string{"rotate", "--batch-size", "64", "--workers", "2"}, table...)...)
	noSecrets("rotate", r)
	if r.code != 3 || !strings.Contains(r.stdout, fmt.Sprintf("rotated %d rows", n-1)) ||
		!strings.Contains(r.stdout, "1 rows could not be rewritten and were left as they are") ||
		!strings.Contains(r.stdout, `row 5: column "email": colcrypt: message authentication failed`) ||
		!strings.Contains(r.stderr, "failed: row 5") || !strings.Contains(r.stderr, "progress:") {
		t.Fatalf("rotate: %s", r)
	}
	f.checkAllExcept(ctx, n, 2, 2, 5)

	r = cli.run(t, nil, append([]string{"status"}, table...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "1 rows still to rotate") {
		t.Errorf("status after: %s", r)
	}
	r = cli.run(t, nil, append([]string{"verify"}, table...)...)
	noSecrets("verify", r)
	if r.code != 3 || !strings.Contains(r.stdout, `row 5: column "email"`) || !strings.Contains(r.stderr, "1 values") {
		t.Errorf("verify: %s", r)
	}

	// Repair row 5 as the application would, and everything is done.
	if _, err := f.db.ExecContext(ctx, f.q("DELETE FROM %s WHERE id = 5")); err != nil {
		t.Fatal(err)
	}
	if r := cli.run(t, nil, append([]string{"rotate"}, table...)...); r.code != 0 || !strings.Contains(r.stdout, "rotated 0 rows") ||
		!strings.Contains(r.stdout, "every value of") {
		t.Errorf("rotate after the repair: %s", r)
	}
	r = cli.run(t, nil, append([]string{"status", "--check"}, table...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "Every value is under the active key versions.") || strings.Contains(r.stderr, "WARNING") {
		t.Errorf("status --check after: %s", r)
	}
	if r := cli.run(t, nil, append([]string{"verify"}, table...)...); r.code != 0 || !strings.Contains(r.stdout, "every value decrypts and every blind index value matches") {
		t.Errorf("verify after: %s", r)
	}
	if r := cli.run(t, nil, append([]string{"status", "--decrypt"}, table...)...); r.code != 0 || !strings.Contains(r.stdout, "UNDECRYPTABLE") {
		t.Errorf("status --decrypt: %s", r)
	}

	// Errors: clear messages, non-zero exits.
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		msg  string
	}{
		{[]string{"DATABASE_URL="}, append([]string{"status"}, table...), 2, "no database"},
		{[]string{"COLCRYPT_KEYS="}, append([]string{"status"}, table...), 1, "COLCRYPT_KEYS is not set"},
		{[]string{"COLCRYPT_KEYS=" + keyprovider.EncodeKeys(f.keys.key(2))}, append([]string{"rotate"}, table...), 0, ""}, // nothing to do
		{nil, []string{"status", "--table", f.name + "_nope", "--column", "email"}, 1, "does not exist"},
		{nil, []string{"status", "--table", f.name, "--column", "emial"}, 1, `has no column "emial"`},
		{nil, []string{"status", "--table", f.name, "--pk", "email", "--column", "blob"}, 1, "no unique index"},
		{nil, []string{"rotate", "--table", f.name, "--column", "email", "--blind-index", "email_bidx=email"}, 1, "blind index values do not match"},
		// status checks the --blind-index settings as rotate does.
		{nil, []string{"status", "--table", f.name, "--column", "email", "--blind-index", "email_bidx=email,normalize=trimspace"}, 3, "blind index values do not match"},
		{nil, []string{"status", "--check", "--table", f.name, "--column", "email", "--blind-index", "email_bidx=email,name=other.email,normalize=trimspace+nfkc+fold"}, 3, "blind index values do not match"},
		// Two index key versions and no --blind-index: warned, and status
		// --check cannot say the rotation is done.
		{nil, []string{"status", "--check", "--table", f.name, "--column", "email", "--column", "blob", "--column", "phone"}, 3,
			"WARNING: COLCRYPT_INDEX_KEYS holds index key versions 1, 2"},
		{nil, []string{"status", "--check", "--table", f.name, "--column", "email", "--column", "blob", "--column", "phone"}, 3,
			"status --check cannot vouch for index values it was not told about"},
		{nil, []string{"verify", "--table", f.name, "--column", "email"}, 0, "no --blind-index was given"},
		{nil, []string{"rotate", "--database-url", "postgres://127.0.0.1:1/x?connect_timeout=2", "--table", f.name, "--column", "email"}, 1, "connecting to the database"},
		{nil, []string{"rotate", "--table", f.name}, 2, "--column"},
		// A PostgreSQL URL with --driver sqlite: refused, without the URL.
		{[]string{"DATABASE_URL=postgres://app:S3cretPW@127.0.0.1:1/prod"}, append([]string{"status", "--driver", "sqlite"}, table...), 2, "--driver sqlite with a postgres:// URL"},
		{nil, append([]string{"verify", "--driver", "sqlite", "--database-url", "mysql://app:S3cretPW@tcp(127.0.0.1:1)/prod"}, table...), 2, "--driver sqlite with a mysql:// URL"},
		{nil, append([]string{"rotate", "--driver", "sqlite", "--database-url", "app:S3cretPW@tcp(127.0.0.1:1)/prod"}, table...), 2, "looks like a MySQL DSN"},
		{nil, append([]string{"status", "--database-url", "app:S3cretPW@tcp(127.0.0.1:1)/prod"}, table...), 2, "looks like a MySQL DSN"},
		{nil, append([]string{"status", "--driver", "sqlite", "--database-url", "/nonexistent/S3cretPW.db"}, table...), 1, "no SQLite database file"},
		// -h prints the usage and exits 0, for every command.
		{nil, []string{"keygen", "-h"}, 0, ""},
		{nil, []string{"status", "-h"}, 0, ""},
		{nil, append([]string{"rotate", "-h"}, table...), 0, ""},
		{nil, []string{"encrypt-existing", "--help"}, 0, ""},
		{nil, []string{"verify", "-h"}, 0, ""},
	} {
		r := cli.run(t, tc.env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("colcrypt %q with %q: want exit %d and %q; got %s", tc.args, tc.env, tc.code, tc.msg, r)
		}
		noSecrets(strings.Join(tc.args, " "), r)
		if strings.Contains(r.stdout+r.stderr, "S3cretPW") {
			t.Errorf("colcrypt %q with %q: the password is in the output:\n%s", tc.args, tc.env, r)
		}
		if tc.args[0] == "rotate" && strings.Contains(tc.msg, "do not match") && strings.Contains(r.stdout, "rotated") {
			t.Errorf("colcrypt %q refused to run but printed a summary:\n%s", tc.args, r)
		}
		if tc.args[0] == "status" && r.code != 0 && strings.Contains(r.stdout, "Every value is under the active key versions") {
			t.Errorf("colcrypt %q failed but says every value is done:\n%s", tc.args, r)
		}
		if tc.code == 0 && slices.ContainsFunc(tc.args, func(a string) bool { return a == "-h" || a == "--help" }) &&
			(!strings.Contains(r.stdout, "Usage:") || r.stderr != "") {
			t.Errorf("colcrypt %q: want the usage on stdout; got %s", tc.args, r)
		}
	}

	// keygen through the binary.
	if r := cli.run(t, nil, "keygen", "--add"); r.code != 0 || !strings.Contains(r.stdout, "COLCRYPT_ACTIVE_KEY=3") {
		t.Errorf("keygen --add: %s", r)
	}

	// encrypt-existing: plaintext is a failure for rotate, and encrypted by
	// encrypt-existing.
	if _, err := f.db.ExecContext(ctx, f.q("UPDATE %s SET phone = 'plain +44 20' WHERE id IN (10, 11, 12)")); err != nil {
		t.Fatal(err)
	}
	if r := cli.run(t, nil, append([]string{"rotate"}, table...)...); r.code != 3 || !strings.Contains(r.stdout, "3 rows could not be rewritten") ||
		!strings.Contains(r.stdout, "value is not encrypted") {
		t.Errorf("rotate over plaintext: %s", r)
	}
	// Every encrypted value is under the active key; what is left is
	// plaintext, and status --check says so.
	if r := cli.run(t, nil, append([]string{"status", "--check"}, table...)...); r.code != 3 || !strings.Contains(r.stderr, "3 values are plaintext") ||
		strings.Contains(r.stderr, "0 rows are still to rotate") || strings.Contains(r.stdout+r.stderr, "plain +44") {
		t.Errorf("status --check over plaintext: %s", r)
	}
	r = cli.run(t, nil, append([]string{"encrypt-existing", "--progress", "none"}, table...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "3 plaintext values encrypted") || r.stderr != "" {
		t.Errorf("encrypt-existing: %s", r)
	}
	if r := cli.run(t, nil, append([]string{"status", "--check"}, table...)...); r.code != 0 {
		t.Errorf("status after encrypt-existing: %s", r)
	}
}

// checkAllExcept checks every row but those of skip, as checkAll does for
// rows as inserted.
func (f *rotFixture) checkAllExcept(ctx context.Context, n int, wantData, wantIndex uint32, skip ...int64) {
	f.t.Helper()
	versions := f.rawVersions(ctx)
	for id := int64(1); id <= int64(n); id++ {
		if slices.Contains(skip, id) {
			continue
		}
		v := versions[id]
		wantPhone := wantData
		if rotPhoneNull0(id) {
			wantPhone = 0
		}
		if v != [4]uint32{wantData, wantData, wantPhone, wantIndex} {
			f.t.Errorf("row %d: versions %v, want data %d, index %d", id, v, wantData, wantIndex)
			return
		}
	}
}

// TestRotationCLIKilledAndRestarted kills `colcrypt rotate` with SIGKILL at
// several points, by rows rotated and by time, and checks after each kill
// that every row is readable and atomically either untouched or rewritten
// (all its values and its index on one version); then a last run finishes
// the job. A SIGINT stops it cleanly with exit status 130.
func TestRotationCLIKilledAndRestarted(t *testing.T) {
	const n = 3000
	f := newRotFixture(t, n)
	ctx := testContext(t)
	f.activate()
	cli := newRotCLI(t, f)
	// Slowed down by the pause, so that there is time to kill it: about
	// 2 × 25 rows every 10 ms.
	args := append([]string{"rotate", "--batch-size", "25", "--workers", "2", "--pause", "10ms", "--progress", "lines"}, f.tableArgs()...)

	rotated := func() int {
		var k int
		if err := f.db.QueryRowContext(ctx, f.q("SELECT count(*) FROM %s WHERE email LIKE 'v2:%%'")).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	consistent := func(when string) {
		t.Helper()
		rows := f.read(ctx) // fails the test on any unreadable row
		if len(rows) != n {
			t.Fatalf("%s: %d rows, want %d", when, len(rows), n)
		}
		for id, r := range rows {
			if r.email != rotEmail(id, 0) || string(r.blob) != string(rotBlob(id, 0)) || (r.phone == nil) != rotPhoneNull0(id) {
				t.Fatalf("%s: row %d does not hold its values", when, id)
			}
		}
		for id, v := range f.rawVersions(ctx) {
			phone := v[0]
			if rotPhoneNull0(id) {
				phone = 0
			}
			if v != [4]uint32{v[0], v[0], phone, v[0]} {
				t.Fatalf("%s: row %d is half rotated: versions %v", when, id, v)
			}
		}
	}

	// kill starts the rotation and SIGKILLs it once ready() holds. It
	// reports false if the rotation finished first.
	kill := func(ready func(start time.Time) bool) bool {
		t.Helper()
		cmd := exec.Command(cli.bin, args...)
		cmd.Env = cli.env
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		start := time.Now()
		for !ready(start) {
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("the rotation failed: %v", err)
				}
				return false
			case <-time.After(3 * time.Millisecond):
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		return true
	}

	kills := 0
	for _, at := range []int{150, 700, 1300, 1900} {
		if !kill(func(time.Time) bool { return rotated() >= at }) {
			break
		}
		kills++
		consistent(fmt.Sprintf("after SIGKILL at %d rows", at))
	}
	for _, after := range []time.Duration{60 * time.Millisecond, 150 * time.Millisecond} {
		before := rotated()
		if before > n-500 || !kill(func(start time.Time) bool { return time.Since(start) >= after }) {
			break
		}
		kills++
		consistent(fmt.Sprintf("after SIGKILL %v after a start at %d rows", after, before))
	}
	t.Logf("%d kills; %d of %d rows rotated before the last run", kills, rotated(), n)
	if kills < 3 {
		t.Errorf("only %d kills landed before the rotation finished", kills)
	}

	// SIGINT: a clean stop, exit 130, rows intact.
	if left := n - rotated(); left > 200 {
		cmd := exec.Command(cli.bin, args...)
		cmd.Env = cli.env
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		var errOut strings.Builder
		signalled := false
		for sc.Scan() {
			errOut.WriteString(sc.Text() + "\n")
			if !signalled && strings.HasPrefix(sc.Text(), "progress:") {
				_ = cmd.Process.Signal(os.Interrupt)
				signalled = true
			}
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(errOut.String(), "interrupted; every row is intact") {
			t.Errorf("SIGINT: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), errOut.String())
		}
		consistent("after SIGINT")
	}

	r := cli.run(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("the final run: %s", r)
	}
	f.checkAll(ctx, n, rotGen0, rotPhoneNull0, 2, 2)
	if r := cli.run(t, nil, append([]string{"status", "--check"}, f.tableArgs()...)...); r.code != 0 {
		t.Errorf("status after: %s", r)
	}
}

// TestRotationCLIIndexKeyRotationPartial is an index-key rotation on
// PostgreSQL with a --blind-index for only some of a table's blind index
// columns: phone_bidx, forgotten, is named in a warning by status and
// rotate, and status --check exits 3 after rotate (phone_bidx is still
// under index key version 1); with every --blind-index it exits 0. A
// table with an encrypted column and no blind index exits 0 from status
// --check after rotate, without a warning.
func TestRotationCLIIndexKeyRotationPartial(t *testing.T) {
	ctx := testContext(t)
	db := openSQL(t, databaseURL(t))
	k1, _ := keyprovider.GenerateKey(1)
	i1, _ := keyprovider.GenerateKey(1)
	i2, _ := keyprovider.GenerateKey(2)
	keys, _ := keyprovider.NewStatic(1, k1)
	codec := encryptedtype.NewCodec(keys)
	ikeys, _ := keyprovider.NewStatic(1, i1)

	quoted := createTable(t, db, `email TEXT NOT NULL, email_bidx TEXT, phone TEXT, phone_bidx TEXT, note TEXT`)
	name := strings.Trim(quoted, `"`)
	ie, err := blindindex.New(name+".email", ikeys, blindindex.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := blindindex.New(name+".phone", ikeys, blindindex.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := 1; i <= n; i++ {
		email, phone := fmt.Sprintf("user%d@Example.com", i), fmt.Sprintf("+44 20 %07d", i)
		ev, err := codec.Seal(ctx, []byte(email))
		if err != nil {
			t.Fatal(err)
		}
		pv, err := codec.Seal(ctx, []byte(phone))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+quoted+" (email, email_bidx, phone, phone_bidx, note) VALUES ($1, $2, $3, $4, $5)",
			string(ev), indexOf(t, ie, email), string(pv), indexOf(t, ip, phone), fmt.Sprint("note ", i)); err != nil {
			t.Fatal(err)
		}
	}
	plain := createTable(t, db, `body TEXT NOT NULL, title TEXT`)
	plainName := strings.Trim(plain, `"`)
	for i := 1; i <= 5; i++ {
		v, err := codec.Seal(ctx, []byte(fmt.Sprint("body ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO "+plain+" (body, title) VALUES ($1, $2)", string(v), fmt.Sprint("title ", i)); err != nil {
			t.Fatal(err)
		}
	}

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COLCRYPT_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DATABASE_URL="+databaseURL(t),
		"COLCRYPT_KEYS="+keyprovider.EncodeKeys(k1),
		"COLCRYPT_ACTIVE_KEY=1",
		"COLCRYPT_INDEX_KEYS="+keyprovider.EncodeKeys(i1, i2),
		"COLCRYPT_ACTIVE_INDEX_KEY=2",
	)
	cli := &rotCLI{bin: rotBuildCLI(t), env: env}
	partial := []string{"--table", name, "--column", "email", "--column", "phone", "--blind-index", "email_bidx=email"}
	full := append(append([]string(nil), partial...), "--blind-index", "phone_bidx=phone")
	const named = `Column "phone_bidx" holds blind index values but no --blind-index names it`
	clean := func(what string, r rotCLIResult) {
		t.Helper()
		for _, s := range []string{"@Example.com", "+44 20", keyprovider.EncodeKeys(k1)[2:], keyprovider.EncodeKeys(i1)[2:], keyprovider.EncodeKeys(i2)[2:]} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("%s: the output holds a plaintext or a key:\n%s", what, r)
			}
		}
		for _, col := range []string{"email_bidx", "note", "email", "phone", "id"} {
			if strings.Contains(r.stdout+r.stderr, `"`+col+`" holds`) {
				t.Errorf("%s: %s is named as a blind index no --blind-index names:\n%s", what, col, r)
			}
		}
	}

	r := cli.run(t, nil, append([]string{"status"}, partial...)...)
	clean("status", r)
	if r.code != 0 || !strings.Contains(r.stderr, named) {
		t.Errorf("status: %s", r)
	}
	r = cli.run(t, nil, append([]string{"rotate", "--progress", "none"}, partial...)...)
	clean("rotate", r)
	if r.code != 0 || !strings.Contains(r.stderr, named) || !strings.Contains(r.stdout, fmt.Sprintf("%d index values recomputed", n)) ||
		!strings.Contains(r.stdout, `column "phone_bidx" holds blind index values but was not rotated`) {
		t.Errorf("rotate: %s", r)
	}
	r = cli.run(t, nil, append([]string{"status", "--check"}, partial...)...)
	clean("status --check", r)
	if r.code != 3 || !strings.Contains(r.stderr, named) || !strings.Contains(r.stderr, `column "phone_bidx" holds blind index values but was not checked`) ||
		strings.Contains(r.stdout, "Every value is under the active key versions.") {
		t.Errorf("status --check with email_bidx only: %s", r)
	}
	// phone_bidx is indeed still under version 1.
	var old int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+quoted+" WHERE phone_bidx LIKE 'b1:%'").Scan(&old); err != nil || old != n {
		t.Errorf("phone_bidx under version 1: %d rows (%v), want %d", old, err, n)
	}
	r = cli.run(t, nil, append([]string{"rotate", "--progress", "none"}, full...)...)
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, fmt.Sprintf("%d index values recomputed", n)) {
		t.Errorf("rotate, every --blind-index: %s", r)
	}
	r = cli.run(t, nil, append([]string{"status", "--check"}, full...)...)
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Every value is under the active key versions.") {
		t.Errorf("status --check, every --blind-index: %s", r)
	}

	// A role that may read only some columns (not note) cannot sample the
	// table: the commands go on and say so, status --check cannot vouch
	// for the table, and --all-blind-indexes vouches instead.
	role := strings.ToLower(name) + "_r"
	if _, err := db.ExecContext(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN PASSWORD 'colcrypt-it'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP OWNED BY " + pgx.Identifier{role}.Sanitize())
		_, _ = db.Exec("DROP ROLE " + pgx.Identifier{role}.Sanitize())
	})
	if _, err := db.ExecContext(ctx, "GRANT SELECT (id, email, email_bidx, phone, phone_bidx), UPDATE (email, email_bidx, phone, phone_bidx) ON "+quoted+" TO "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(databaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "colcrypt-it")
	asRole := []string{"DATABASE_URL=" + u.String()}
	r = cli.run(t, asRole, append([]string{"rotate", "--progress", "none"}, full...)...)
	if r.code != 0 || strings.Count(r.stderr, "the table could not be sampled for blind index columns no --blind-index names") != 1 ||
		!strings.Contains(r.stderr, "--all-blind-indexes") || strings.Contains(r.stderr, "colcrypt-it") ||
		strings.Contains(r.stdout, "every blind index value") || !strings.Contains(r.stdout, "so any such column was not rotated") {
		t.Errorf("rotate as a role without SELECT on every column: %s", r)
	}
	r = cli.run(t, asRole, append([]string{"status", "--check"}, full...)...)
	if r.code != 3 || !strings.Contains(r.stderr, "could not be sampled") || strings.Contains(r.stdout, "Every value is under the active key versions.") {
		t.Errorf("status --check as that role: %s", r)
	}
	r = cli.run(t, asRole, append([]string{"verify"}, full...)...)
	if r.code != 0 || strings.Contains(r.stdout, "every blind index value matches") || !strings.Contains(r.stdout, "so any such column was not checked") {
		t.Errorf("verify as that role: %s", r)
	}
	r = cli.run(t, asRole, append([]string{"status", "--check", "--all-blind-indexes"}, full...)...)
	if r.code != 0 || r.stderr != "" {
		t.Errorf("status --check --all-blind-indexes as that role: %s", r)
	}

	// A table without blind indexes: rotate, then status --check exits 0,
	// with the table named with and without its schema.
	for _, table := range [][]string{{"--table", plainName, "--column", "body"}, {"--schema", "public", "--table", plainName, "--column", "body"}} {
		r = cli.run(t, nil, append([]string{"rotate", "--progress", "none"}, table...)...)
		if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "not rotated") {
			t.Errorf("rotate %q: %s", table, r)
		}
		r = cli.run(t, nil, append([]string{"status", "--check"}, table...)...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Every value is under the active key versions.") {
			t.Errorf("status --check %q: %s", table, r)
		}
	}
}
