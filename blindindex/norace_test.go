//go:build !race

package blindindex_test

const raceEnabled = false
