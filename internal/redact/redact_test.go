package redact

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestUnmarshalRefusesMarkerHoweverEscaped(t *testing.T) {
	for _, in := range []string{`"[REDACTED]"`, ` "\u005bREDACTED]" `, `"[REDACTED\u005d"`} {
		var s *string
		if err := Unmarshal([]byte(in), &s); !errors.Is(err, ErrMarker) {
			t.Errorf("Unmarshal(%s) = %v, want ErrMarker", in, err)
		}
	}
	var s *string
	if err := Unmarshal([]byte(`"[redacted]"`), &s); err != nil || *s != "[redacted]" {
		t.Errorf("a value that only resembles the marker: %v, %v", s, err)
	}
}

func TestUnmarshalErrorsDoNotQuoteInput(t *testing.T) {
	const secret = "4111111111111111"
	cases := []struct {
		in string
		v  any
	}{
		{`"` + secret + `"x`, new(string)},               // syntax error
		{secret, new(int8)},                              // type error (number)
		{`{"n":"` + secret + `"}`, new(struct{ N int })}, // type error in a field
		{`{"n":"x` + secret + `"}`, new(struct {
			N int `json:"n,string"`
		})}, // ",string" error
	}
	for _, c := range cases {
		err := Unmarshal([]byte(c.in), c.v)
		if err == nil {
			t.Fatalf("Unmarshal(%s, %T) succeeded", c.in, c.v)
		}
		if strings.Contains(err.Error(), "4111") {
			t.Errorf("Unmarshal(%T): error quotes the input: %v", c.v, err)
		}
	}
}

func TestHidden(t *testing.T) {
	var zero Hidden
	if zero.IsSet() || zero.Get() != "" {
		t.Fatal("the zero Hidden is set or not empty")
	}
	if h := HideSet(""); !h.IsSet() || h.Get() != "" {
		t.Fatal(`HideSet("") is not set, or not empty`)
	}
	const secret = "s3cret-value"
	h := Hide(secret)
	if h.Get() != secret {
		t.Fatal("Get does not return the hidden string")
	}
	type holder struct{ h Hidden }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		if out := fmt.Sprintf(verb, holder{h}); strings.Contains(out, secret) || strings.Contains(out, "73336372") {
			t.Errorf("fmt %s prints the hidden string: %s", verb, out)
		}
	}
}
