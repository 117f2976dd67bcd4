package blindindex

import "math"

// SuggestBits returns the number of bits an index needs so that a lookup
// returns, on average, at most falsePositives wrong values, when the column
// holds about distinct distinct (normalised) values:
//
//	bits = ceil(log2(distinct / falsePositives)), between 1 and MaxBits.
//
// What it trades. With b bits, the 2^b possible index values are shared
// among the distinct plaintexts, about distinct/2^b to each. That number is
// both the leak and the cost:
//
//   - Leakage: rows with equal index values are equal only with probability
//     about 1/(1 + distinct/2^b). When distinct/2^b is well below 1 (the
//     full 256 bits, or anything above log2(distinct) + 10), the index shows
//     exactly which rows are equal and how often each value occurs; when it
//     is 1 or more, every index value stands for several plaintexts and
//     frequency analysis gets much harder.
//   - Cost: a lookup also returns the rows of the other distinct/2^b values
//     that share the index value. They must be fetched, decrypted and
//     dropped (Filter), and with a large falsePositives the B-tree lookup
//     degrades towards a scan.
//   - Uniqueness: a UNIQUE constraint on a truncated index rejects two
//     different values that collide. Over n rows the chance of any
//     collision is about n²/2^(b+1); keep b at 128 or more (or the full
//     length) for a unique index, which SuggestBits does not do.
//
// For example SuggestBits(1_000_000, 0.01) is 27 (one lookup in a hundred
// returns a wrong value), and SuggestBits(1_000_000, 2) is 19 (each index
// value stands for about three plaintexts, and a lookup returns about two
// wrong ones).
//
// A falsePositives of zero, less or NaN returns MaxBits; a distinct of zero
// counts as one.
func SuggestBits(distinct uint64, falsePositives float64) int {
	if !(falsePositives > 0) {
		return MaxBits
	}
	n := float64(max(distinct, 1))
	b := math.Ceil(math.Log2(n / falsePositives))
	switch {
	case math.IsNaN(b) || b > MaxBits:
		return MaxBits
	case b < 1:
		return 1
	}
	return int(b)
}

// FalsePositives returns the expected number of wrong distinct values that
// a lookup in an index of bits bits returns when the column holds distinct
// distinct values: (distinct - 1) / 2^bits. It is close to the inverse of
// SuggestBits, which counts distinct rather than distinct - 1 and rounds
// up, so it may suggest one bit more. Bits outside 1 … MaxBits count as
// MaxBits.
func FalsePositives(distinct uint64, bits int) float64 {
	if bits < 1 || bits > MaxBits {
		bits = MaxBits
	}
	if distinct <= 1 {
		return 0
	}
	return float64(distinct-1) / math.Exp2(float64(bits))
}

// Filter returns the rows whose value, as given by plaintext(row) after
// decryption, is equal to want under ix's normaliser: the rows a lookup in a
// truncated index returned, without its false positives. The result is a
// new slice; rows is not modified. Filter never drops a true match.
func Filter[T any](ix *Index, rows []T, want string, plaintext func(T) string) []T {
	want = ix.Normalize(want)
	out := make([]T, 0, len(rows))
	for _, r := range rows {
		if ix.Normalize(plaintext(r)) == want {
			out = append(out, r)
		}
	}
	return out
}
