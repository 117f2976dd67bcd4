package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
	"github.com/colcrypt/colcrypt/gormcrypt"
)

// The MySQL/MariaDB tests. Run them with
//
//	COLCRYPT_TEST_MYSQL_URL='root@tcp(127.0.0.1:3306)/test?parseTime=true' \
//	COLCRYPT_REQUIRE_DB=1 go test -race -count=1 -run MySQL ./integration/

// TestMySQLDatabaseSQL runs the database/sql checks (testDialectSQL) with
// go-sql-driver/mysql, once with server-side prepared statements (binary
// protocol: Scan gets []byte) and once with client-side interpolation
// (text protocol, the arguments escaped into the query).
func TestMySQLDatabaseSQL(t *testing.T) {
	dsn := mysqlURL(t)
	for _, interpolate := range []bool{false, true} {
		name := "PreparedStatements"
		if interpolate {
			name = "InterpolateParams"
		}
		t.Run(name, func(t *testing.T) {
			d := mysqlDialect(mysqlDSNWith(t, dsn, interpolate))
			testDialectSQL(t, d, d.open(t))
		})
	}
}

// TestMySQLGORM runs the GORM checks (testDialectGORM) with
// gorm.io/driver/mysql: AutoMigrate with gormcrypt.BlindIndex's default
// column type under uniqueIndex and index, and every write and lookup.
func TestMySQLGORM(t *testing.T) {
	testDialectGORM(t, mysqlDialect(mysqlURL(t)))
}

// mysqlBidxDefault has a unique blind index in the column type
// gormcrypt.BlindIndex asks AutoMigrate for.
type mysqlBidxDefault struct {
	ID        uint
	Email     encryptedtype.String `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex `gorm:"uniqueIndex" colcrypt:"blindindex:mysql.email;source:Email"`
}

// mysqlBidxTyped asks for the recommended column type with a type tag.
type mysqlBidxTyped struct {
	ID        uint
	Email     encryptedtype.String `gorm:"not null"`
	EmailBidx gormcrypt.BlindIndex `gorm:"type:varchar(64) CHARACTER SET ascii COLLATE ascii_bin;uniqueIndex" colcrypt:"blindindex:mysql.email;source:Email"`
}

// TestMySQLBlindIndexColumn checks a unique gormcrypt.BlindIndex column made
// by AutoMigrate on 3000 rows, in the default column type and with a type
// tag asking for the recommended VARCHAR(64) CHARACTER SET ascii COLLATE
// ascii_bin:
//
//   - AutoMigrate succeeds (MySQL refuses a UNIQUE index on a TEXT column
//     without a prefix length, error 1170; MariaDB turns it into a hash
//     constraint that lookups cannot use);
//   - uniqueness is enforced and gormcrypt.Where finds the right rows,
//     through the unique B-tree index (EXPLAIN), never by a table scan;
//   - with the recommended type, index values compare byte for byte: a
//     value differing from a stored one only in the case of its letters is
//     another value.
//
// What the server and gormcrypt did is logged: the column type and
// collation AutoMigrate created, whether the type tag was honoured, and
// whether the default column compares case-insensitively (the default
// collations of MySQL and MariaDB do). Where the type tag was not honoured,
// the column is altered to the recommended type so that the rest of the
// checks still run on it.
func TestMySQLBlindIndexColumn(t *testing.T) {
	dsn := mysqlURL(t)
	d := mysqlDialect(dsn)
	newKeyring(t).use(1)
	ix := newEmailIndex(t, "mysql.email", newIndexKeyring(t, 1), 0)
	const rows = 3000

	for _, model := range []any{&mysqlBidxDefault{}, &mysqlBidxTyped{}} {
		name := strings.TrimPrefix(fmt.Sprintf("%T", model), "*integration.mysqlBidx")
		t.Run(name, func(t *testing.T) {
			gdb, sqlDB := openDialectGORM(t, d, nil, []*blindindex.Index{ix}, model)
			table := dialectTableOf(t, gdb, model)
			q := tableQuery(d.quote(table))
			ctx := testContext(t)
			if err := gdb.AutoMigrate(model); err != nil {
				t.Fatalf("AutoMigrate of a uniqueIndex on a gormcrypt.BlindIndex column: %v", err)
			}
			col := d.columns(t, sqlDB, table)["email_bidx"]
			t.Logf("AutoMigrate made email_bidx %s, %s", col.Type, col.Extra)
			if name == "Typed" && col.Extra != "collation ascii_bin" {
				t.Logf("KNOWN GAP (reported): the type tag %q was not honoured: gormcrypt.BlindIndex.GormDBDataType overrides it", mysqlBidxType)
				if _, err := sqlDB.ExecContext(ctx, q("ALTER TABLE %s MODIFY email_bidx "+mysqlBidxType+" NULL")); err != nil {
					t.Fatal(err)
				}
				col = d.columns(t, sqlDB, table)["email_bidx"]
				t.Logf("altered email_bidx to %s, %s", col.Type, col.Extra)
			}
			var unique indexInfo
			for _, i := range d.indexes(t, sqlDB, table) {
				if len(i.Columns) == 1 && i.Columns[0] == "email_bidx" {
					unique = i
				}
			}
			if !unique.Unique {
				t.Fatalf("no UNIQUE index on email_bidx")
			}
			t.Logf("its unique index %s is %s", unique.Name, unique.Extra)

			emails := make([]string, rows)
			for i := range emails {
				emails[i] = fmt.Sprintf("Member%05d@Example.org", i)
			}
			var err error
			switch model.(type) {
			case *mysqlBidxDefault:
				batch := make([]mysqlBidxDefault, rows)
				for i := range batch {
					batch[i].Email = encryptedtype.NewString(emails[i])
				}
				err = gdb.CreateInBatches(&batch, 500).Error
			case *mysqlBidxTyped:
				batch := make([]mysqlBidxTyped, rows)
				for i := range batch {
					batch[i].Email = encryptedtype.NewString(emails[i])
				}
				err = gdb.CreateInBatches(&batch, 500).Error
			}
			if err != nil {
				t.Fatalf("CreateInBatches: %v", err)
			}
			if _, err := sqlDB.ExecContext(ctx, q("ANALYZE TABLE %s")); err != nil {
				t.Fatal(err)
			}

			// Lookups find exactly the right row, through the index.
			count := func(plaintext string) int64 {
				t.Helper()
				var n int64
				if err := gdb.Model(model).Scopes(gormcrypt.Where("Email", plaintext)).Count(&n).Error; err != nil {
					t.Fatal(err)
				}
				return n
			}
			for _, i := range []int{0, 1234, rows - 1} {
				if n := count(strings.ToUpper(emails[i])); n != 1 {
					t.Errorf("Where(Email, row %d) counted %d rows, want 1", i, n)
				}
			}
			if n := count("absent@example.org"); n != 0 {
				t.Errorf("Where(Email, absent) counted %d rows", n)
			}
			whereSQL := gdb.ToSQL(func(tx *gorm.DB) *gorm.DB {
				return tx.Model(model).Scopes(gormcrypt.Where("Email", emails[7])).Find(&[]map[string]any{})
			})
			accessType, key, plan := mysqlExplain(t, sqlDB, whereSQL)
			t.Logf("plan of %s: %s", whereSQL, plan)
			if key != unique.Name || accessType == "ALL" || accessType == "index" {
				t.Errorf("gormcrypt.Where does not use the unique index %s: %s", unique.Name, plan)
			}

			// Uniqueness.
			dup := strings.ToLower(emails[42])
			bidx, err := ix.Compute(dup)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sqlDB.ExecContext(ctx, q("INSERT INTO %s (email, email_bidx) VALUES (?, ?)"), encryptedtype.NewString(dup), bidx)
			if !isMySQLError(err, mysqlDupEntry) {
				t.Errorf("INSERT of a duplicate e-mail: %v, want error %d", err, mysqlDupEntry)
			}

			// An index value that differs from row 0's only in the case of
			// its letters is another value.
			v0, _ := ix.Compute(emails[0])
			_, err = sqlDB.ExecContext(ctx, q("INSERT INTO %s (email, email_bidx) VALUES (?, ?)"), encryptedtype.NewString("case-variant@example.org"), swapCase(v0))
			caseSensitive := err == nil
			if err != nil && !isMySQLError(err, mysqlDupEntry) {
				t.Fatalf("INSERT of a case variant of an index value: %v", err)
			}
			if caseSensitive {
				if n := count(emails[0]); n != 1 {
					t.Errorf("after inserting a case variant, Where(Email, row 0) counted %d rows, want 1", n)
				}
			}
			switch {
			case col.Extra == "collation ascii_bin" && !caseSensitive:
				t.Errorf("an ascii_bin column compares index values without regard to case")
			case !caseSensitive:
				t.Logf("KNOWN GAP (reported): email_bidx (%s, %s) compares index values case-insensitively: a value differing from a stored one in case only is a duplicate (error %d)", col.Type, col.Extra, mysqlDupEntry)
			}
		})
	}
}

// swapCase returns s with the case of its ASCII letters after the first
// ':' swapped.
func swapCase(s string) string {
	prefix, payload, _ := strings.Cut(s, ":")
	b := []byte(payload)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return prefix + ":" + string(b)
}

// TestMySQLVarcharTooShort writes an encrypted value into a VARCHAR column
// too short for its wire format. In strict mode (the default of MySQL 5.7+
// and MariaDB 10.2.4+) the write fails with "Data too long"; with strict
// mode off the server truncates the value silently, and reading it back is
// an error (ErrMalformed or ErrAuth), never wrong plaintext. The wire format
// of n bytes of plaintext under key version v takes
// len("v<v>:") + ceil(4*(n+28)/3) characters.
func TestMySQLVarcharTooShort(t *testing.T) {
	dsn := mysqlURL(t)
	d := mysqlDialect(dsn)
	db := d.open(t)
	keys := newKeyring(t)
	keys.use(1)
	ctx := testContext(t)
	table := createDialectTable(t, d, db, "email VARCHAR(40) NULL")
	q := tableQuery(table)
	const email = "someone.quite.long@example.com"
	secrets := append([]string{email}, keys.secrets()...)

	conn, err := db.Conn(ctx) // SET SESSION holds for this connection only
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = 'STRICT_ALL_TABLES'"); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, q("INSERT INTO %s (email) VALUES (?)"), encryptedtype.NewString(email))
	if !isMySQLError(err, mysqlDataTooLong) {
		t.Errorf("strict mode: INSERT of a value too long for VARCHAR(40): %v, want error %d", err, mysqlDataTooLong)
	}
	assertNoSecrets(t, err, secrets)

	if _, err := conn.ExecContext(ctx, "SET SESSION sql_mode = ''"); err != nil {
		t.Fatal(err)
	}
	res, err := conn.ExecContext(ctx, q("INSERT INTO %s (email) VALUES (?)"), encryptedtype.NewString(email))
	if err != nil {
		t.Fatalf("non-strict mode: INSERT: %v", err)
	}
	id, _ := res.LastInsertId()
	stored := rawText(t, db, q("SELECT email FROM %s WHERE id = ?"), id)
	if len(stored) != 40 || !strings.HasPrefix(stored, "v1:") {
		t.Errorf("non-strict mode stored %d characters, want the value cut to 40", len(stored))
	}
	var s *encryptedtype.String
	err = db.QueryRowContext(ctx, q("SELECT email FROM %s WHERE id = ?"), id).Scan(&s)
	assertDecryptError(t, err, secrets, encryptedtype.ErrMalformed, encryptedtype.ErrAuth)
	if s != nil && s.Plaintext() != "" {
		t.Errorf("a truncated value produced plaintext")
	}
	if errors.Is(err, encryptedtype.ErrNotEncrypted) {
		t.Errorf("a truncated value reads as plaintext awaiting migration")
	}
}
