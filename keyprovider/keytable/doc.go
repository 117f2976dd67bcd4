// Package keytable keeps colcrypt's data keys in a PostgreSQL table,
// wrapped by a key-encryption key (KEK), and serves them to every
// application instance as a keyprovider.Provider that picks up a newly
// activated key without a restart.
//
// # The table
//
// The table is the one the seed describes, plus a partial unique index that
// allows at most one active key ([DDL] returns it for migration tools;
// [Table.Create] runs it):
//
//	CREATE TABLE IF NOT EXISTS "encryption_keys" (
//	    id         INTEGER PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
//	    version    INTEGER NOT NULL UNIQUE CHECK (version > 0),
//	    key        BYTEA NOT NULL, -- wrapped by a key-encryption key (KEK)
//	    active     BOOLEAN NOT NULL DEFAULT false,
//	    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
//	);
//	CREATE UNIQUE INDEX IF NOT EXISTS "encryption_keys_one_active"
//	    ON "encryption_keys" (active) WHERE active;
//
// The key column holds each data key wrapped by a keyprovider.KEK: a
// keyprovider.LocalKEK (a master key from the environment or a file) or a
// KMS through package keyprovider/cloudkek. The KEK binds the version into
// the wrapping, so a wrapped key copied to another row does not unwrap.
// Unwrapped keys are never stored: they live only in the process's
// memory, in the [Provider] and in what its callers keep (an
// encryptedtype.Codec, for example, caches a cipher per version).
//
// A version names one key forever. [Table.Retire] does not delete a
// version's row: it keeps it as a tombstone (the key column emptied, never
// active), so that [Table.AddNew] never hands the number out again and
// [Table.Add] and [Table.Import] refuse it ([ErrRetired]). Do not delete
// rows by hand.
//
// # Serving keys
//
//	kek, err := keyprovider.LocalKEKFromEnv(keyprovider.EnvKEK)
//	table, err := keytable.NewTable(db, kek, keytable.Config{})
//	err = table.Create(ctx)                       // or run DDL in a migration
//	keys, err := table.NewProvider(ctx, keytable.Options{})
//	defer keys.Close()
//	encryptedtype.SetDefault(keys)
//
// Active and Key never do I/O: the provider loads and unwraps every key up
// front, and reloads in the background every Options.RefreshInterval (a
// minute by default), when Changed is called, when Reload is called (by
// encryptedtype.Codec.Open on a version it does not know, at most once a
// second), and shortly after Key is asked for an unknown version. A
// version's key is unwrapped once: reloads that find the same wrapped key
// make no KEK (KMS) call. A failed reload keeps the keys held before and is
// reported through Options.OnError (slog by default); it never switches to
// another key. A reload that is applied but leaves a version out (for
// example one wrapped under a KEK this instance lacks) is reported the
// same way and kept in [Provider.Status], but is not an error of
// [Provider.Reload], which fails only when the load failed.
//
// On PostgreSQL every change to the table sends a notification in its own
// transaction; package keyprovider/keytable/pgnotify listens for it and
// calls Changed, so every instance sees a new key within a second:
//
//	l, err := pgnotify.Listen(ctx, dsn, table.Channel(), keys.Changed, pgnotify.Options{})
//	defer l.Close()
//
// # Rotating keys
//
//  1. [Table.AddNew] adds an inactive version. Instances load it (so they
//     can read values written under it) but do not write under it yet.
//  2. [Table.Activate] makes it the version new values are written under,
//     in one transaction that leaves exactly one active key.
//  3. The rotation job (package rotation) re-saves old values under it.
//  4. [Table.Retire] retires the old version: it empties the version's
//     key, keeping the row as a tombstone, refusing unless a [UsageCheck]
//     says no value is left under it, or Force is set. At their next
//     load the providers drop the key: Key answers ErrUnknownVersion for
//     it, and the provider keeps no reference to it. What callers took
//     before is theirs (an encryptedtype.Codec keeps the cipher it built
//     for the version until it finds that the provider no longer knows
//     the version), and Go does not wipe memory it frees.
//
// A UsageCheck can be built from rotation.Job.Census. A Job covers one
// table: with encrypted columns in several tables, ask every job.
//
//	inUse := func(ctx context.Context, v uint32) (bool, error) {
//		c, err := job.Census(ctx)
//		if err != nil {
//			return true, err
//		}
//		for _, col := range c.Columns {
//			if col.Versions[v] > 0 {
//				return true, nil
//			}
//		}
//		return false, nil
//	}
//	err = table.Retire(ctx, 1, keytable.RetireOptions{InUse: inUse})
//
// Rotating the KEK re-wraps the stored keys and touches no data:
// [Table.Rewrap] does it in one transaction. Moving from keys in the
// environment to the table is [Table.Import], which stores the existing
// keys under the same versions: nothing is re-encrypted.
//
// Table uses PostgreSQL SQL through database/sql (with pgx's stdlib driver
// or lib/pq). Another store can serve keys through a [Provider] by
// implementing [Source].
package keytable
