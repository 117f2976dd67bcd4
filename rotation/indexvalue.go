package rotation

import (
	"fmt"

	"github.com/colcrypt/colcrypt/blindindex"
)

// The index of NULL is NULL, and an index value beside a NULL source value
// (an "orphan", IndexCensus.Orphaned) is cleared by Rotate. What counts as
// one is decided twice, and both must agree: in Go (isIndexValue, which
// transform and Census use) and in SQL (sqlDialect.indexValue, which the
// batch SELECT, the count of rows left and the batch UPDATE use). A value
// that SQL takes for an orphan and Go does not would be selected by every
// pass and never written; one that Go takes and SQL does not would be
// counted as work left and never selected.

// isIndexValue reports whether v is a blind-index value, as Census counts
// them: blindindex.Version parses it ("b<version>:" or "a<version>:"
// followed by 1 to 32 bytes of strict base64url), whatever its version.
// Anything else beside a NULL source, such as the empty string of a NOT
// NULL column with an empty default, is not an orphan: Rotate leaves it
// alone.
func isIndexValue(v []byte) bool {
	_, err := blindindex.Version(string(v))
	return err == nil
}

// indexValuePattern is the regular expression of exactly the values that
// isIndexValue accepts, for PostgreSQL (ARE) and MySQL (ICU) or MariaDB
// (PCRE): a mode letter, a version from 1 to 4294967295 without leading
// zeros, a colon, and the unpadded base64url of 1 to 32 bytes, whose
// unused trailing bits are zero (blindindex decodes strictly). Its
// character classes are ASCII ranges, which every engine takes by code
// point; it is matched case-sensitively (see the dialects). Its groups
// capture, so that the SQL holds no '?', which a driver could take for a
// parameter. A test checks it against blindindex.Version.
const indexValuePattern = `^[ab]` + ivVersion + `:` + ivPayload + `$`

const (
	// ivVersion is a decimal from 1 to 4294967295, no leading zero.
	ivVersion = `([1-9][0-9]{0,8}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}` +
		`|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])`
	// ivChar is a base64url character.
	ivChar = `[A-Za-z0-9_-]`
	// ivPayload is 4k characters (k from 1 to 10: 3 to 30 bytes), or 4k
	// + 2 (one more byte: the last character's low 4 bits zero) or 4k +
	// 3 (two more: its low 2 bits zero), k from 0 to 10: at most 43
	// characters, 32 bytes.
	ivPayload = `((` + ivChar + `{4}){1,10}|(` + ivChar + `{4}){0,10}(` + ivChar + `[AQgw]|` + ivChar + `{2}[AEIMQUYcgkosw048]))`
)

// postgresIndexValue is the condition that the value of non-NULL column c
// is an index value on PostgreSQL. Text (citext too) is matched as text in
// the "C" collation, so that the match is case-sensitive and byte for
// byte; bytea through its escape encoding, in which every byte that is
// not printable ASCII becomes a backslash sequence, which the pattern does
// not match.
func postgresIndexValue(c colRef) string {
	if c.bytea {
		return fmt.Sprintf(`(encode(%s, 'escape') COLLATE "C" ~ '%s')`, c.q, indexValuePattern)
	}
	return fmt.Sprintf(`(%s::text COLLATE "C" ~ '%s')`, c.q, indexValuePattern)
}

// mysqlIndexValue is the condition that the value of non-NULL column c is
// an index value on MySQL or MariaDB. A text column is matched in the
// binary collation of its own character set (REGEXP is case-insensitive
// in a case-insensitive collation); a binary one as latin1, in which every
// byte is a character and those that are not ASCII are letters the
// pattern does not match (MySQL 8 refuses REGEXP on binary strings). The
// value is matched with a ':' appended, and the pattern with it before its
// end: in ICU and PCRE, '$' also matches before a final newline, which an
// index value never holds.
func mysqlIndexValue(c colRef) string {
	v, collation := c.q, c.charset+"_bin"
	if c.bytea {
		v, collation = fmt.Sprintf("CAST(%s AS CHAR CHARACTER SET latin1)", c.q), "latin1_bin"
	}
	pattern := indexValuePattern[:len(indexValuePattern)-1] + ":$"
	return fmt.Sprintf("(CONCAT(%s, ':') COLLATE %s REGEXP '%s')", v, collation, pattern)
}

// sqliteIndexValue is the condition that the value of non-NULL column c
// is an index value on SQLite, which has no regular expressions: the
// value (TEXT or BLOB, read as UTF-8 text) is taken apart at its first
// ':' and each part checked with GLOB, which is case-sensitive. Its
// length as text (in characters, up to a first NUL) must equal its length
// in bytes, so that it is ASCII without NUL, as every index value is. It
// holds for a database in UTF-8, the only encoding in which Rotate clears
// index values (see sqliteDialect.resolve).
func sqliteIndexValue(c colRef) string {
	t := fmt.Sprintf("CAST(%s AS TEXT)", c.q)
	colon := fmt.Sprintf("instr(%s, ':')", t)
	payload := fmt.Sprintf("(length(%s) - %s)", t, colon)
	last := fmt.Sprintf("substr(%s, -1)", t)
	return "(" + fmt.Sprintf("length(CAST(%s AS BLOB)) = length(%s)", c.q, t) +
		fmt.Sprintf(" AND %s GLOB '[ab][1-9]*'", t) +
		fmt.Sprintf(" AND %s BETWEEN 3 AND 12", colon) +
		fmt.Sprintf(" AND substr(%s, 2, %s - 2) NOT GLOB '*[^0-9]*'", t, colon) +
		fmt.Sprintf(" AND (%s < 12 OR substr(%s, 2, 10) <= '4294967295')", colon, t) +
		fmt.Sprintf(" AND %s BETWEEN 2 AND 43", payload) +
		fmt.Sprintf(" AND substr(%s, %s + 1) NOT GLOB '*[^A-Za-z0-9_-]*'", t, colon) +
		fmt.Sprintf(" AND (%s %% 4 = 0 OR (%s %% 4 = 2 AND %s GLOB '[AQgw]') OR (%s %% 4 = 3 AND %s GLOB '[AEIMQUYcgkosw048]'))",
			payload, payload, last, payload, last) +
		")"
}
