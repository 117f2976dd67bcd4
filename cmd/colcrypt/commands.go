package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/colcrypt/colcrypt/keyprovider"
	"github.com/colcrypt/colcrypt/rotation"
)

// keygen prints a new key, or the environment's keyring with a new key
// added and made active.
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", nil)
	version := fs.Uint64("version", 0, "version of the new key (default: 1, or one more than the keyring's highest with --add)")
	add := fs.Bool("add", false, "print the keyring from the environment with the new key added and active")
	remove := fs.Uint64("remove", 0, "print the keyring from the environment without this (old, inactive) version")
	index := fs.Bool("index", false, "with --add or --remove, the blind index keyring (COLCRYPT_INDEX_KEYS)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *version > keyprovider.MaxVersion {
		return usagef("--version must be from 1 to %d", uint32(keyprovider.MaxVersion))
	}
	removing := false
	fs.Visit(func(f *flag.Flag) { removing = removing || f.Name == "remove" })
	if removing && *remove == 0 {
		return usagef("--remove must be from 1 to %d", uint32(keyprovider.MaxVersion))
	}
	if *remove != 0 && (*add || *version != 0) {
		return usagef("--remove goes alone (with --index for the blind index keyring)")
	}
	if *index && !*add && *remove == 0 {
		return usagef("--index goes with --add or --remove (without them, keygen prints a key that can be either)")
	}
	keysVar, activeVar := keyprovider.EnvKeys, keyprovider.EnvActiveKey
	if *index {
		keysVar, activeVar = envIndexKeys, envActiveIndexKey
	}
	if *remove != 0 {
		return removeKey(*remove, keysVar, activeVar, stdout, stderr)
	}
	var existing []keyprovider.Key
	if *add {
		if raw := os.Getenv(keysVar); strings.TrimSpace(raw) != "" {
			keys, err := keyprovider.ParseKeys(raw)
			if err != nil {
				return fmt.Errorf("environment variable %s: %w", keysVar, err)
			}
			existing = keys
		}
	}
	v := uint32(*version)
	if v == 0 {
		v = 1
		for _, k := range existing {
			if k.Version() >= v {
				if k.Version() == keyprovider.MaxVersion {
					return fmt.Errorf("%s already holds the largest version, %d; pass --version", keysVar, k.Version())
				}
				v = k.Version() + 1
			}
		}
	}
	for _, k := range existing {
		if k.Version() == v {
			return fmt.Errorf("%s already holds a key of version %d: a version names one key forever", keysVar, v)
		}
	}
	key, err := keyprovider.GenerateKey(v)
	if err != nil {
		return err
	}
	if !*add {
		fmt.Fprintln(stdout, keyprovider.EncodeKeys(key))
		return nil
	}
	fmt.Fprintf(stdout, "%s=%s\n%s=%d\n", keysVar, keyprovider.EncodeKeys(append(existing, key)...), activeVar, v)
	if len(existing) == 0 {
		use, again := "encrypts every value the application writes, and without it they cannot be read", "--add"
		if *index {
			use, again = "computes every blind index value the application writes, and without it lookups find nothing", "--add --index"
		}
		fmt.Fprintf(stderr, "colcrypt keygen: %s was not set: this starts it with key version %d, active (%s); this output is secret.\n"+
			"Give both variables to every application instance and keep a safe copy: this key %s. "+
			"There is nothing to rotate; to replace the key later, run `colcrypt keygen %s` with both variables set.\n",
			keysVar, v, activeVar, use, again)
		return nil
	}
	then := "run `colcrypt rotate` with the table flags; keep the old versions until `colcrypt status --check` with the same flags exits 0"
	if *index {
		then = "run `colcrypt rotate` with a --" + flagBlindIndexName + " for every blind index of the table (without it, index values are not rotated); " +
			"keep the old versions until `colcrypt status --check` with the same flags exits 0"
	}
	fmt.Fprintf(stderr, "colcrypt keygen: key version %d added to %s and made active (%s); this output is secret.\n"+
		"Deploy both variables to every application instance, then %s.\n", v, keysVar, activeVar, then)
	return nil
}

// removeKey prints the keyring of keysVar without the given version, as
// keygen --add prints it: the version must be held and not be the active
// one.
func removeKey(version uint64, keysVar, activeVar string, stdout, stderr io.Writer) error {
	if version > keyprovider.MaxVersion {
		return usagef("--remove must be from 1 to %d", uint32(keyprovider.MaxVersion))
	}
	ring, err := keyprovider.FromEnvVars(keysVar, activeVar)
	if err != nil {
		return err
	}
	active, err := ring.Active()
	if err != nil {
		return err
	}
	v := uint32(version)
	if v == active.Version() {
		return fmt.Errorf("version %d is the active version of %s: add and activate a new key first (colcrypt keygen --add), rotate, then remove the old one", v, keysVar)
	}
	var kept []keyprovider.Key
	found := false
	for _, kv := range ring.Versions() {
		if kv == v {
			found = true
			continue
		}
		k, err := ring.Key(kv)
		if err != nil {
			return err
		}
		kept = append(kept, k)
	}
	if !found {
		return fmt.Errorf("%s holds no key of version %d", keysVar, v)
	}
	fmt.Fprintf(stdout, "%s=%s\n%s=%d\n", keysVar, keyprovider.EncodeKeys(kept...), activeVar, active.Version())
	lost := fmt.Sprintf("Values still under version %d can no longer be read once it is gone", v)
	if keysVar == envIndexKeys {
		lost = fmt.Sprintf("Rows whose blind index values are still under version %d are no longer found by lookups once it is gone", v)
	}
	fmt.Fprintf(stderr, "colcrypt keygen: key version %d removed from %s; this output is secret.\n"+
		"%s: deploy this only after `colcrypt status --check` with the table flags (every --%s of each table) "+
		"exits 0 for every table, and keep a safe copy of the old key.\n", v, keysVar, lost, flagBlindIndexName)
	return nil
}

// status prints the census of a table.
func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var tf tableFlags
	fs := newFlagSet("status", &tf)
	check := fs.Bool("check", false, "exit 3 unless every value is under the active versions")
	decrypt := fs.Bool("decrypt", false, "decrypt every value, to count those that fail authentication")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	st.warnUnindexed(stderr, "status", false)
	var c *rotation.Census
	if *decrypt {
		c, err = st.job.Verify(ctx, rotation.VerifyOptions{SkipIndexes: true})
		if err != nil && !errors.Is(err, rotation.ErrFailures) {
			return err
		}
	} else if c, err = st.job.Census(ctx); err != nil {
		return err
	}
	// The --blind-index settings, checked against a sample of the stored
	// index values as rotate checks them before it starts.
	var mismatch error
	if len(tf.indexes) > 0 {
		if err := st.job.CheckIndexes(ctx); errors.Is(err, rotation.ErrIndexMismatch) {
			mismatch = err
		} else if err != nil {
			return err
		}
	}
	printCensus(stdout, c, st, mismatch != nil)
	if mismatch != nil {
		return codedError{exitFailures, fmt.Errorf("%w; rotate refuses to run with these --%s settings, and would break lookups if it did not", mismatch, flagBlindIndexName)}
	}
	if c.FailureCount > 0 {
		return codedError{exitFailures, fmt.Errorf("%d values do not decrypt; `colcrypt verify` lists them", c.FailureCount)}
	}
	if *check && !c.Done() {
		return codedError{exitFailures, errors.New(notDone(c))}
	}
	if *check && len(st.unindexed) > 0 {
		return codedError{exitFailures, fmt.Errorf("not done in %s: %s; status --check cannot vouch for index values it was not told about",
			st.job.Table(), st.unindexedClause("checked"))}
	}
	if *check && st.searchErr != nil {
		return codedError{exitFailures, fmt.Errorf("not checked in %s: while %s holds versions %s, the table could not be sampled for blind index columns no --%s names; pass --%s if the --%s flags name every one",
			st.job.Table(), envIndexKeys, versionList(st.indexVersions), flagBlindIndexName, flagAllIndexes, flagBlindIndexName)}
	}
	return nil
}

// notDone says what keeps a census from being done: rows to rotate,
// plaintext values and malformed values.
func notDone(c *rotation.Census) string {
	var plaintext, malformed int64
	for _, col := range c.Columns {
		plaintext += col.Plaintext
		malformed += col.Malformed
	}
	var parts []string
	if c.Pending > 0 {
		parts = append(parts, fmt.Sprintf("%d rows are still to rotate (`colcrypt rotate`)", c.Pending))
	}
	if plaintext > 0 {
		parts = append(parts, fmt.Sprintf("%d values are plaintext (`colcrypt encrypt-existing` encrypts them)", plaintext))
	}
	if malformed > 0 {
		parts = append(parts, fmt.Sprintf("%d values are malformed (`colcrypt verify` lists them)", malformed))
	}
	if len(parts) == 0 {
		return "not every value is under the active key versions"
	}
	return "not done: " + strings.Join(parts, "; ")
}

// printCensus writes a census as tables, and a line that sums it up:
// mismatch reports that the --blind-index settings do not reproduce the
// stored index values.
func printCensus(w io.Writer, c *rotation.Census, st *setup, mismatch bool) {
	t := c.Table
	fmt.Fprintf(w, "Table %s (primary key %s): %d rows\n", t, strconv.Quote(t.PrimaryKey), c.Rows)
	fmt.Fprintf(w, "Data key: version %d active; keyring holds %s\n", c.ActiveVersion, versionList(st.keys.Versions()))
	if st.ikeys != nil {
		fmt.Fprintf(w, "Index key: version %d active; keyring holds %s\n", activeVersion(st.ikeys), versionList(st.ikeys.Versions()))
	}
	fmt.Fprintln(w)

	// One column per key version found, and the active one.
	seen := map[uint32]bool{c.ActiveVersion: true}
	for _, col := range c.Columns {
		for v := range col.Versions {
			seen[v] = true
		}
	}
	versions := sortedKeys(seen)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"COLUMN"}
	for _, v := range versions {
		header = append(header, versionLabel(v, c.ActiveVersion))
	}
	header = append(header, "NULL", "PLAINTEXT", "MALFORMED", "UNKNOWN KEY")
	if c.Verified {
		header = append(header, "UNDECRYPTABLE")
	}
	header = append(header, "TO ROTATE")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, col := range c.Columns {
		row := []string{col.Column}
		for _, v := range versions {
			row = append(row, strconv.FormatInt(col.Versions[v], 10))
		}
		row = append(row, itoa(col.Null), itoa(col.Plaintext), itoa(col.Malformed), itoa(col.UnknownKey))
		if c.Verified {
			row = append(row, itoa(col.Undecryptable))
		}
		row = append(row, itoa(col.Pending))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()

	if len(c.Indexes) > 0 {
		fmt.Fprintln(w)
		active := activeVersion(st.ikeys) // 0 without index keys
		seen := map[uint32]bool{active: true}
		for _, ix := range c.Indexes {
			for v := range ix.Versions {
				seen[v] = true
			}
		}
		versions := sortedKeys(seen)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		header := []string{"INDEX", "SOURCE"}
		for _, v := range versions {
			header = append(header, versionLabel(v, active))
		}
		header = append(header, "NULL", "MISSING", "BESIDE NULL", "MALFORMED", "TO ROTATE")
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, ix := range c.Indexes {
			row := []string{ix.Column, ix.Source}
			for _, v := range versions {
				row = append(row, itoa(ix.Versions[v]))
			}
			row = append(row, itoa(ix.Null), itoa(ix.Missing), itoa(ix.Orphaned), itoa(ix.Malformed), itoa(ix.Pending))
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		_ = tw.Flush()
	}
	fmt.Fprintln(w)
	switch {
	case mismatch:
		fmt.Fprintf(w, "The --%s settings do not reproduce the stored index values (see the error below): fix them to match the application's before `colcrypt rotate`.\n", flagBlindIndexName)
	case c.Done() && st.incomplete() && st.ikeys == nil:
		fmt.Fprintf(w, "Every value of the --column columns is under the active data key version; %s.\n", st.unindexedClause("looked at"))
	case c.Done() && st.incomplete():
		fmt.Fprintf(w, "Every value of the --column and --%s columns is under the active key versions; %s.\n", flagBlindIndexName, st.unindexedClause("looked at"))
	case c.Done():
		fmt.Fprintln(w, "Every value is under the active key versions.")
	case c.Pending > 0:
		fmt.Fprintf(w, "%d rows still to rotate: run `colcrypt rotate` with the same table flags.\n", c.Pending)
	default:
		fmt.Fprintln(w, "Some values are plaintext or malformed: see the table above.")
	}
}

// versionLabel names a version column, marking the active one.
func versionLabel(v, active uint32) string {
	if v == active {
		return "v" + strconv.FormatUint(uint64(v), 10) + " (active)"
	}
	return "v" + strconv.FormatUint(uint64(v), 10)
}

func versionList(vs []uint32) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[uint32]bool) []uint32 {
	vs := make([]uint32, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// rotate runs rotate and encrypt-existing.
//
// encrypt-existing is Rotate with every --column in
// Options.EncryptPlaintext, and nothing more: it does not Verify the
// table afterwards. Its passes decrypt every value not under the active
// key version (an old version's, or a look-alike such as "v1:…" with
// version 2 active) before rewriting it; plaintext is encrypted; and once
// the passes are over Rotate reads back every value that starts like one
// of the active version, the ones it wrote included, and decrypts it,
// reporting as failures those that do not decrypt (plaintext that starts
// with "v2:…", damage). So when it exits 0, every value it found, as read
// back from the database, decrypts under the keyring: a Verify would
// decrypt each of them a second time. What neither can vouch for is a
// value written after the check by an application that still writes
// plaintext: the help says to run verify once every writer encrypts.
func rotate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	var tf tableFlags
	fs := newFlagSet(name, &tf)
	batch := fs.Int("batch-size", rotation.DefaultBatchSize, "rows per transaction")
	workers := fs.Int("workers", 1, "batches in flight at once")
	pause := fs.Duration("pause", 0, "pause after each batch")
	dry := fs.Bool("dry-run", false, "write nothing")
	single := fs.Bool("single-pass", false, "one pass only")
	maxFailures := fs.Int("max-failures", rotation.DefaultMaxFailures, "stops after N failed rows (-1: no limit)")
	mode := fs.String("progress", "auto", "bar, lines or none")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch < 1 || *batch > rotation.MaxBatchSize {
		return usagef("--batch-size must be from 1 to %d", rotation.MaxBatchSize)
	}
	if *workers < 1 || *workers > 256 {
		return usagef("--workers must be from 1 to 256")
	}
	if *pause < 0 {
		return usagef("--pause must not be negative")
	}
	if *maxFailures == 0 || *maxFailures < -1 {
		return usagef("--max-failures must be positive, or -1 for no limit")
	}
	switch *mode {
	case "auto":
		*mode = "lines"
		if isTerminal(stderr) {
			*mode = "bar"
		}
	case "bar", "lines", "none":
	default:
		return usagef("--progress must be bar, lines or none")
	}
	st, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	st.warnUnindexed(stderr, name, false)

	verb := "rotating"
	if name == "encrypt-existing" {
		verb = "encrypting"
	}
	pr := newProgress(stderr, *mode, fmt.Sprintf("%s %s", verb, st.job.Table()))
	opts := rotation.Options{
		BatchSize:   *batch,
		Workers:     *workers,
		Pause:       *pause,
		DryRun:      *dry,
		SinglePass:  *single,
		MaxFailures: *maxFailures,
		Progress:    pr.update,
		OnFailure:   func(f rotation.Failure) { pr.println("failed: " + f.String()) },
	}
	if name == "encrypt-existing" {
		opts.EncryptPlaintext = tf.columns
	}
	res, err := st.job.Rotate(ctx, opts)
	pr.finish()

	what := "rotated"
	switch {
	case *dry:
		what = "dry run: would rewrite"
	case name == "encrypt-existing":
		what = "rewrote"
	}
	// The summary, once the job has started: not when it refused to (a
	// --blind-index that does not match, a batch too large), which would
	// read like "nothing left to do".
	if err == nil || res.Passes > 0 {
		passes := "1 pass"
		if res.Passes != 1 {
			passes = fmt.Sprintf("%d passes", res.Passes)
		}
		cleared := ""
		if res.ClearedIndexValues > 0 {
			// Rare, and worth saying: index values that stood beside a NULL.
			cleared = fmt.Sprintf(", %d index values beside a NULL source cleared", res.ClearedIndexValues)
		}
		fmt.Fprintf(stdout, "%s %d rows of %s (%d values re-encrypted, %d plaintext values encrypted, %d index values recomputed%s) in %s, %s\n",
			what, res.Rows, st.job.Table(), res.Values, res.Plaintext, res.IndexValues, cleared, res.Elapsed.Round(time.Millisecond), passes)
	}
	switch {
	case err == nil:
		if *dry || *single {
			return nil
		}
		// encrypt-existing makes no Verify pass of its own before saying
		// that every value is encrypted: Rotate has decrypted every value
		// of the --column columns already (see the rotate doc comment).
		fmt.Fprintf(stdout, "every value of %s is now under key version %d", st.job.Table(), activeVersion(st.keys))
		switch {
		case st.ikeys != nil && st.incomplete():
			fmt.Fprintf(stdout, ", and every value of the --%s columns under index key version %d; %s",
				flagBlindIndexName, activeVersion(st.ikeys), st.unindexedClause("rotated"))
		case st.ikeys != nil:
			fmt.Fprintf(stdout, ", and every blind index value under index key version %d", activeVersion(st.ikeys))
		case st.incomplete():
			fmt.Fprintf(stdout, "; %s", st.unindexedClause("rotated"))
		}
		fmt.Fprintln(stdout)
		st.warnUnindexed(stderr, name, true) // again, after the progress lines
		return nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return codedError{exitInterrupted, errInterruptedRotation}
	case errors.Is(err, rotation.ErrFailures) && name == "encrypt-existing":
		// Two kinds of failure: a row that failed in a pass (a value that
		// does not decrypt, a duplicate blind index value, a value too
		// long) is left whole, its other columns too, which may still hold
		// plaintext; a value that fails the check after the passes (it
		// starts like the active version but does not decrypt) is left as
		// it is, while the rest of its row was encrypted.
		fmt.Fprintf(stdout, "%d rows could not be fully encrypted. A row that failed while being rewritten was left whole, "+
			"its other columns too (they may still hold plaintext); a value that failed the check after the passes "+
			"(plaintext that starts like the wire format, v<N>:, or a damaged value) was left as it is. ", len(res.Failures))
		if duplicates(res.Failures) > 0 {
			fmt.Fprint(stdout, "Where another row already holds the same blind index value (the same normalised plaintext) "+
				"in a unique index, resolve each duplicate: change or delete one of the two rows. ")
		}
		fmt.Fprint(stdout, "Fix them by hand, then run encrypt-existing again; `colcrypt verify` lists every value still not encrypted:\n")
		for _, f := range res.Failures {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
		return codedError{exitFailures, err}
	case errors.Is(err, rotation.ErrFailures):
		fmt.Fprintf(stdout, "%d rows could not be rewritten and were left as they are:\n", len(res.Failures))
		for _, f := range res.Failures {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
		return codedError{exitFailures, err}
	case errors.Is(err, rotation.ErrTooManyFailures):
		return codedError{exitFailures, err}
	case errors.Is(err, rotation.ErrIncomplete):
		// Work left that is no row's failure: something keeps writing
		// those rows. Exit as status --check does for work left.
		return codedError{exitFailures, fmt.Errorf("%w; what was written is written: run the same command again once whatever keeps writing those rows has stopped", err)}
	case ctx.Err() != nil: // a driver's own error for a cancelled query
		return codedError{exitInterrupted, errInterruptedRotation}
	case errors.Is(err, rotation.ErrIndexMismatch):
		return fmt.Errorf("%w; nothing was written (`colcrypt status` with the same flags checks them too)", err)
	}
	return err
}

// duplicates counts the failures of rows whose new blind index value
// another row already holds (rotation.ErrDuplicate).
func duplicates(fs []rotation.Failure) int {
	n := 0
	for _, f := range fs {
		if errors.Is(f.Err, rotation.ErrDuplicate) {
			n++
		}
	}
	return n
}

// errInterruptedRotation is the error of an interrupted rotate or
// encrypt-existing.
var errInterruptedRotation = errors.New("interrupted; every row is intact, either untouched or rewritten: run the same command again to finish")

func activeVersion(s *keyprovider.Static) uint32 { // 0 for a nil keyring
	k, _ := s.Active()
	return k.Version()
}

// verify decrypts every value and lists the failures.
func verify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var tf tableFlags
	fs := newFlagSet("verify", &tf)
	batch := fs.Int("batch-size", rotation.DefaultBatchSize, "rows per query")
	skip := fs.Bool("skip-indexes", false, "do not check blind index values")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *batch < 1 || *batch > rotation.MaxBatchSize {
		return usagef("--batch-size must be from 1 to %d", rotation.MaxBatchSize)
	}
	st, err := tf.open(ctx)
	if err != nil {
		return err
	}
	defer st.close()
	st.warnUnindexed(stderr, "verify", false)
	c, err := st.job.Verify(ctx, rotation.VerifyOptions{
		BatchSize:   *batch,
		SkipIndexes: *skip,
		MaxFailures: 1,
		OnFailure:   func(f rotation.Failure) { fmt.Fprintln(stdout, f) },
	})
	if err != nil && !errors.Is(err, rotation.ErrFailures) {
		return err
	}
	if c.FailureCount > 0 {
		return codedError{exitFailures, fmt.Errorf("%d values of %s failed (listed above) in %d rows checked", c.FailureCount, st.job.Table(), c.Rows)}
	}
	fmt.Fprintf(stdout, "verified %d rows of %s: every value decrypts", c.Rows, st.job.Table())
	switch {
	case len(c.Indexes) > 0 && !*skip && st.incomplete():
		fmt.Fprintf(stdout, " and every value of the --%s columns matches; %s", flagBlindIndexName, st.unindexedClause("checked"))
	case len(c.Indexes) > 0 && !*skip:
		fmt.Fprint(stdout, " and every blind index value matches")
	case st.incomplete():
		fmt.Fprintf(stdout, "; %s", st.unindexedClause("checked"))
	}
	fmt.Fprintln(stdout)
	return nil
}
