package redact_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/colcrypt/colcrypt/internal/redact"
)

// A type holding a secret keeps it in a Hidden, which reflection-based
// printers show only as an address, and refuses the marker when a redacted
// document comes back.
func Example() {
	type token struct{ v redact.Hidden }
	t := token{redact.Hide("tok_live_123")}
	fmt.Println(strings.Contains(fmt.Sprintf("%+v", t), "tok_live"))
	fmt.Println(t.v.Get())

	var s *string
	err := redact.Unmarshal(redact.JSON(), &s)
	fmt.Println(errors.Is(err, redact.ErrMarker))
	// Output:
	// false
	// tok_live_123
	// true
}
