// Command colcrypt is the operator's tool for colcrypt's encrypted columns:
// it makes keys, shows which key versions a table's values are under,
// rotates them to the active key, verifies that every value decrypts and
// encrypts columns that still hold plaintext.
//
// Install it with
//
//	go install github.com/colcrypt/colcrypt/cmd/colcrypt@latest
//
// and run `colcrypt help` for its usage. Keys come from the environment
// (COLCRYPT_KEYS and COLCRYPT_ACTIVE_KEY; COLCRYPT_INDEX_KEYS and
// COLCRYPT_ACTIVE_INDEX_KEY for blind indexes), the database from
// --database-url or DATABASE_URL: PostgreSQL (postgres://…), MySQL or
// MariaDB (mysql://user:password@tcp(host:3306)/dbname, a
// go-sql-driver/mysql DSN after the scheme) or SQLite
// (sqlite:///path/to/file.db). --driver names the database instead of the
// scheme.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1   // the command failed: database, keys, table
	exitUsage       = 2   // bad command line
	exitFailures    = 3   // rows or values failed to decrypt; status --check found work left
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM
)

const usage = `colcrypt: manage colcrypt's encrypted columns in PostgreSQL, MySQL/MariaDB and SQLite.

Usage:
  colcrypt keygen [--version N] [--add] [--remove N] [--index]
  colcrypt status           TABLE-FLAGS [--check] [--decrypt]
  colcrypt rotate           TABLE-FLAGS [--batch-size N] [--workers N] [--pause D] [--dry-run] [--single-pass]
                                        [--max-failures N] [--progress MODE]
  colcrypt encrypt-existing TABLE-FLAGS [same flags as rotate]
  colcrypt verify           TABLE-FLAGS [--batch-size N] [--skip-indexes]
  colcrypt help                (or COMMAND -h: this text)

Commands:
  keygen            print a new random 256-bit key as VERSION:BASE64; with --add,
                    print the keyring from the environment with the new key added
                    and made active, as VAR=VALUE lines; with --remove N, the
                    keyring without the old version N
  status            count the table's values by key version: NULL, plaintext,
                    malformed, under a key the keyring lacks, and still to rotate;
                    check the --blind-index settings against a sample of the
                    stored index values, as rotate does before it starts
  rotate            re-encrypt every value not under the active key version, and
                    recompute every blind index value not under the active index
                    key, while the application runs; safe to interrupt and rerun
  encrypt-existing  rotate, and also encrypt the values of the --column columns
                    that are still plaintext (not in the wire format); then read
                    back and decrypt every value under the active key, so that
                    plaintext that starts like the wire format (v<N>:) is never
                    taken as encrypted: exit 0 means every value it saw
                    decrypts; one that does not is listed and left as it is
                    (exit 3). A value written after that check by an
                    application that still writes plaintext is not covered:
                    run verify once every writer encrypts
  verify            decrypt every value (and check every blind index value)
                    without writing; list the rows that fail

Table flags:
  --database-url URL   the database (default: $DATABASE_URL), one of
                         postgres://user:password@host:5432/dbname
                         mysql://user:password@tcp(host:3306)/dbname[?params]
                           (MySQL/MariaDB: a go-sql-driver/mysql DSN after mysql://)
                         sqlite:///path/to/file.db[?params]  (the file must exist)
  --driver NAME        postgres, mysql or sqlite: instead of the URL's scheme, for
                       a DSN without one ('user@tcp(host:3306)/db', file.db)
  --table NAME         the table (required)
  --schema NAME        its schema (default: the search_path; MySQL: the database,
                       default the DSN's; SQLite: an attached database)
  --pk NAME            its primary key column (default: id)
  --column NAME        an encrypted column; repeat for each (at least one)
  --all-blind-indexes  the --blind-index flags name every blind index of the
                       table: do not sample it for others (see Keys)
  --blind-index SPEC   a blind index column computed from an encrypted column;
                       repeat for each. SPEC is
                         INDEX_COLUMN=SOURCE_COLUMN[,name=N][,normalize=F+F…][,bits=B][,slow[=T:M:P]]
                       name is the index name (default TABLE.SOURCE_COLUMN); F is
                       trimspace, nfkc, fold or digits; bits is 1-256 (default 256);
                       slow selects Argon2id (time T, memory M KiB, threads P).
                       They must match the application's index exactly; status
                       and rotate check them against stored values (rotate before
                       writing). A blind index not given is neither counted,
                       rotated nor verified (during an index key rotation, status,
                       rotate and verify warn about one they find; see Keys).

Rotate flags:
  --batch-size N       rows per transaction (default 1000)
  --workers N          batches in flight at once (default 1)
  --pause D            pause after each batch, such as 50ms (default 0)
  --dry-run            read and re-encrypt in memory, write nothing
  --single-pass        one pass; do not wait for rows the application has locked
  --max-failures N     stops after N failed rows (default 1000; -1: no limit)
  --progress MODE      bar, lines or none (default: bar on a terminal, else lines)

Keys (from the environment):
  COLCRYPT_KEYS               data keys, "1:BASE64,2:BASE64"; every version stored
  COLCRYPT_ACTIVE_KEY         the version to write (optional with a single key)
  COLCRYPT_INDEX_KEYS         blind index root keys, for --blind-index
  COLCRYPT_ACTIVE_INDEX_KEY   the active index key version
  While COLCRYPT_INDEX_KEYS holds more than one version (an index key rotation),
  status, rotate, encrypt-existing and verify read a sample of the table (its
  first 16 rows, and up to 16 non-NULL values of each text column NULL in all of
  them: from the first 10,000 rows, then, in a larger table where there are
  none, from all) for columns that no --column or --blind-index names and whose
  sampled values are mostly blind index values (b<N>:... or a<N>:...). They warn about each such column, and
  status --check exits 3: it cannot vouch for index values it was not told
  about (nor when the sample cannot be read). A table without such columns (no
  blind indexes, or every one given) gets no warning. --all-blind-indexes
  vouches that the --blind-index flags name every blind index of the table and
  skips the sample (for a column that only looks like one, or a role that may
  not read every column).

Exit status: 0 done; 1 error (rotate: also --blind-index settings that do not
match the stored index values); 2 bad usage; 3 rows failed to decrypt (rotate,
encrypt-existing, verify, status --decrypt), --blind-index settings that do not
match the stored index values (status), or, for status --check, values not yet
under the active keys, or blind index columns no --blind-index names during an
index key rotation, or a table that could not be sampled for them (see Keys);
130 interrupted (SIGINT or SIGTERM).

Rotating a key (the table users, with a blind index email_bidx of email):
  colcrypt keygen --add       # data keys; --add --index for the blind index keys
  # deploy the printed variables to every application instance, export them here
  colcrypt status --table users --column email --column phone \
      --blind-index email_bidx=email,normalize=trimspace+nfkc+fold
  colcrypt rotate --table users --column email --column phone \
      --blind-index email_bidx=email,normalize=trimspace+nfkc+fold
  colcrypt status --check --table users --column email --column phone \
      --blind-index email_bidx=email,normalize=trimspace+nfkc+fold
  # exit 0: remove the old version from COLCRYPT_KEYS (or COLCRYPT_INDEX_KEYS):
  colcrypt keygen --remove 1  # prints both variables without version 1
Give every blind index of the table, as the application configures it (index
name, normalisers, bits, slow mode), whichever key is rotated.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one kills the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errHelp is returned by a command given -h or --help: run prints the
// usage to stdout and exits 0.
var errHelp = errors.New("help requested")

// codedError carries an exit code other than exitError.
type codedError struct {
	code int
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "keygen":
		err = keygen(rest, stdout, stderr)
	case "status":
		err = status(ctx, rest, stdout, stderr)
	case "rotate":
		err = rotate(ctx, "rotate", rest, stdout, stderr)
	case "encrypt-existing":
		err = rotate(ctx, "encrypt-existing", rest, stdout, stderr)
	case "verify":
		err = verify(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "colcrypt: unknown command %q (commands: keygen, status, rotate, encrypt-existing, verify, help)\n", cmd)
		return exitUsage
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "colcrypt %s: %v\nRun 'colcrypt help' for usage.\n", cmd, err)
		return exitUsage
	}
	var ce codedError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "colcrypt %s: %v\n", cmd, err)
		return ce.code
	}
	if ctx.Err() != nil {
		// Stopped by SIGINT or SIGTERM: whatever the error says (context
		// canceled, or the driver's own words for a cancelled query), the
		// command was interrupted.
		if cmd == "rotate" || cmd == "encrypt-existing" {
			err = errInterruptedRotation
		} else {
			err = errors.New("interrupted; nothing was written")
		}
		fmt.Fprintf(stderr, "colcrypt %s: %v\n", cmd, err)
		return exitInterrupted
	}
	fmt.Fprintf(stderr, "colcrypt %s: %v\n", cmd, err)
	return exitError
}
