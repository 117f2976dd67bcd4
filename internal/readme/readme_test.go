// Package readme checks that the Go programs shown in README.md compile,
// so that the quick start a new user copies keeps working.
package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// TestReadmeProgramsCompile builds every ```go block of README.md that is
// a whole program (starts with "package main") inside this module.
func TestReadmeProgramsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building the README's programs")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	programs := 0
	for i, m := range goBlock.FindAllSubmatch(readme, -1) {
		src := string(m[1])
		if !strings.HasPrefix(src, "package main") {
			continue
		}
		programs++
		// Inside the module, so that its imports resolve to this tree.
		dir, err := os.MkdirTemp("..", "readme-program-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("go", "vet", "./"+filepath.ToSlash(dir)).CombinedOutput()
		if err != nil {
			t.Errorf("README.md go block %d does not compile:\n%s", i+1, out)
		}
	}
	if programs == 0 {
		t.Fatal("README.md has no whole Go program to check")
	}
}
