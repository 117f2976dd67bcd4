//go:build race

package keyprovider

// raceEnabled is true under -race, which makes PBKDF2 about ten times
// slower: the slow tests then check a representative subset. CI runs the
// whole set without -race as well (go test ./keyprovider).
const raceEnabled = true
