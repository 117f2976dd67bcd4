package encryptedtype

import (
	"strings"
	"testing"
)

// TestJSONRefusalMessage checks the wording of the refusal of a redacting
// type inside a JSON column: it names the types, with no "a encryptedtype…".
func TestJSONRefusalMessage(t *testing.T) {
	withDefault(t, newStatic(t, 1, newKey(t, 1)))
	type Bad struct{ Email String }
	for _, tc := range []struct {
		err  error
		want string
	}{
		{valueErr(NewJSON(Bad{Email: NewString("x")})), "encryptedtype.Bad holds a value of type encryptedtype.String, which encodes as \"[REDACTED]\""},
		{valueErr(NewJSON(map[string]*Bytes{})), "map[string]*encryptedtype.Bytes holds a value of type encryptedtype.Bytes"},
		{valueErr(NewJSON(NewString("x"))), "JSON column: encryptedtype.String encodes as \"[REDACTED]\""},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), "a encryptedtype") {
			t.Errorf("got %v, want %q", tc.err, tc.want)
		}
	}
}

func valueErr[T any](j JSON[T]) error {
	_, err := j.Value()
	return err
}
