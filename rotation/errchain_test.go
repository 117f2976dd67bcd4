package rotation

import (
	"errors"
	"fmt"
	"testing"
)

// MySQLError has the name and field of go-sql-driver's error type, which
// mysqlErrorNumber finds by reflection.
type MySQLError struct{ Number uint16 }

func (e *MySQLError) Error() string { return fmt.Sprintf("Error %d", e.Number) }

type codeError int

func (e codeError) Error() string { return "sqlite error" }
func (e codeError) Code() int     { return int(e) }

func TestDriverErrorCodesInChains(t *testing.T) {
	deadlock := &MySQLError{Number: 1213}
	for _, err := range []error{
		deadlock,
		fmt.Errorf("batch: %w", deadlock),
		errors.Join(errors.New("other"), fmt.Errorf("wrapped: %w", deadlock)),
	} {
		if n, ok := mysqlErrorNumber(err); !ok || n != 1213 {
			t.Errorf("mysqlErrorNumber(%v) = %d, %v", err, n, ok)
		}
	}
	busy := codeError(5)
	for _, err := range []error{busy, fmt.Errorf("x: %w", busy), errors.Join(errors.New("a"), busy)} {
		if c, ok := sqliteErrorCode(err); !ok || c != 5 {
			t.Errorf("sqliteErrorCode(%v) = %d, %v", err, c, ok)
		}
	}
	for _, err := range []error{nil, errors.New("plain"), fmt.Errorf("w: %w", errors.New("plain"))} {
		if _, ok := mysqlErrorNumber(err); ok {
			t.Errorf("mysqlErrorNumber found a number in %v", err)
		}
		if _, ok := sqliteErrorCode(err); ok {
			t.Errorf("sqliteErrorCode found a code in %v", err)
		}
	}
}
