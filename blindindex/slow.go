package blindindex

import (
	"errors"

	"golang.org/x/crypto/argon2"
)

// Defaults of the slow mode, the parameters RFC 9106 and OWASP suggest for
// password hashing on a server (about 19 MiB of memory, two passes).
const (
	DefaultArgon2Time      = 2
	DefaultArgon2MemoryKiB = 19 * 1024
	DefaultArgon2Threads   = 1
)

// Argon2id configures the slow mode of an index ([Config.Slow]), for
// low-entropy values such as birth dates, phone numbers, national ID
// numbers or PINs.
//
// In the slow mode the index value is
//
//	Argon2id(password = normalise(plaintext), salt = K_col,
//	         time = Time, memory = MemoryKiB, threads = Threads, length = 32),
//
// truncated like the fast mode's HMAC and stored with the prefix "a" instead
// of "b". K_col is derived as in the fast mode but with the info
//
//	"colcrypt/blindindex/v1|argon2id|t=<Time>|m=<MemoryKiB>|p=<Threads>|bits=<bits>|name=<name>"
//
// so it is keyed by the secret root key exactly like the HMAC, and its
// values can never equal a fast-mode value.
//
// What it buys: without the root key the two modes are equally opaque. With
// the root key and a copy of the database, an attacker can test guesses of
// a plaintext against the index: about a million HMAC guesses per second per
// core in the fast mode, so every date of birth or 9-digit number falls in
// minutes; in the slow mode each guess costs one Argon2id computation.
//
// What it costs: the same Argon2id computation on every write of the column
// and, per live root-key version, on every lookup — with the defaults about
// 20-40 ms of CPU and MemoryKiB of memory for each, held while it runs (so
// 100 concurrent writes need about 2 GiB). BenchmarkIndexComputeSlow
// measures it. Use it only for columns that are written and looked up at a
// modest rate.
type Argon2id struct {
	// Time is the number of passes over the memory; 0 means
	// DefaultArgon2Time.
	Time uint32
	// MemoryKiB is the memory used, in KiB; 0 means
	// DefaultArgon2MemoryKiB. At least 8 KiB per thread.
	MemoryKiB uint32
	// Threads is the degree of parallelism; 0 means
	// DefaultArgon2Threads. It changes the output, not just the speed.
	Threads uint8
}

func (p Argon2id) withDefaults() (Argon2id, error) {
	if p.Time == 0 {
		p.Time = DefaultArgon2Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = DefaultArgon2MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = DefaultArgon2Threads
	}
	if p.MemoryKiB < 8*uint32(p.Threads) {
		return p, errors.New("Argon2id MemoryKiB must be at least 8 per thread")
	}
	if p.MemoryKiB > 4<<20 {
		return p, errors.New("Argon2id MemoryKiB must be at most 4194304 (4 GiB)")
	}
	if p.Time > 1000 {
		return p, errors.New("Argon2id Time must be at most 1000")
	}
	return p, nil
}

func (ix *Index) computeSlow(d *derived, version uint32, s string) string {
	pw := []byte(s)
	sum := argon2.IDKey(pw, d.secret, ix.slow.Time, ix.slow.MemoryKiB, ix.slow.Threads, 32)
	clear(pw)
	var out [maxValueLen]byte
	n := ix.encode(out[:], version, sum)
	clear(sum)
	return string(out[:n])
}
