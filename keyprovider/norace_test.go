//go:build !race

package keyprovider

const raceEnabled = false
