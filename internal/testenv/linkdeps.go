package testenv

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// LinkDeps links the package in the test's directory as `make build` does (CGO_ENABLED=0,
// -trimpath, the grpcnotrace tag) with the linker's -dumpdep, and returns the sorted, distinct
// matches of re in its output, each the concatenation of re's submatches. It skips under -short
// and needs the go command (a failure under CI). The build carries an extra tag that no file uses:
// it keeps this build's cache entries apart from `make build`'s, which would otherwise replay the
// 90,000 lines of -dumpdep output the next time the go command finds the binary up to date.
func LinkDeps(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("links the binary (-short)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		Unavailable(t, "no go command to link the binary with")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-tags", "grpcnotrace,hacoord_dumpdep", "-ldflags=-dumpdep", "-o", "/dev/null", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out[max(0, len(out)-4096):])
	}
	var found []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		found = append(found, strings.Join(m[1:], ""))
	}
	slices.Sort(found)
	return slices.Compact(found)
}
