package rotation

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/colcrypt/colcrypt/blindindex"
	"github.com/colcrypt/colcrypt/encryptedtype"
)

// TestNewRejectsTypedNil checks that New refuses a nil *encryptedtype.Codec
// (encryptedtype.Default() before SetDefault) and a nil *blindindex.Index,
// which pass a nil-interface check and would panic later.
func TestNewRejectsTypedNil(t *testing.T) {
	db := sql.OpenDB(otherConnector{})
	defer db.Close()
	tbl := Table{Name: "t", PrimaryKey: "id", Columns: []Column{{Name: "a"}}}

	encryptedtype.SetDefault(nil)
	if encryptedtype.Default() != nil {
		t.Fatal("encryptedtype.Default() is set")
	}
	j, err := New(db, tbl, encryptedtype.Default())
	if !errors.Is(err, ErrInvalidTable) || j != nil || !strings.Contains(err.Error(), "nil *encryptedtype.Codec") {
		t.Errorf("nil *Codec: %v, %v", j, err)
	}
	var nilCipher Cipher
	if _, err := New(db, tbl, nilCipher); !errors.Is(err, ErrInvalidTable) {
		t.Errorf("nil Cipher: %v", err)
	}

	codec := testCodec(t, 1)
	var nilIndex *blindindex.Index
	withNilIndex := Table{Name: "t", PrimaryKey: "id", Columns: []Column{
		{Name: "a", Indexes: []Index{{Column: "a_bidx", Indexer: fakeIndexer{version: 1}}}},
		{Name: "b", Indexes: []Index{{Column: "b_bidx", Indexer: nilIndex}}},
	}}
	j, err = New(db, withNilIndex, codec)
	if !errors.Is(err, ErrInvalidTable) || j != nil || !strings.Contains(err.Error(), `"b_bidx"`) {
		t.Errorf("nil *blindindex.Index: %v, %v", j, err)
	}
	// The same table with real indexers is accepted.
	withNilIndex.Columns[1].Indexes[0].Indexer = fakeIndexer{version: 1}
	if _, err := New(db, withNilIndex, codec); err != nil {
		t.Errorf("valid table: %v", err)
	}
}
