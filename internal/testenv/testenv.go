// Package testenv decides whether a test that needs root or an outside program can run here: it
// skips with a visible reason on a developer's machine and fails under CI=true, where a missing
// dependency is a failure, never a silent skip.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// CI reports whether the tests run under CI (CI=true in the environment).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t with reason, or fails it under CI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("required under CI=true: %s", reason)
	}
	t.Skipf("skipped: %s", reason)
}

// RequireRoot skips (or, under CI, fails) t unless the process runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (network namespaces, netlink, raw sockets); run `sudo make test`")
	}
}

// RequireCommand returns the path of the named program, skipping (or, under CI, failing) t when it is
// not installed. hint says which package provides it.
func RequireCommand(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, name+" not found ("+hint+"); `make test` installs it")
	}
	return p
}

// NotApplicable skips t, also under CI, because the test is about a machine unlike this one (a
// kernel without IPVS, when this one has it). reason says what the test needs; such a skip is
// visible in the test output, and a CI machine of this project never reaches it.
func NotApplicable(t testing.TB, reason string) {
	t.Helper()
	t.Skipf("not applicable here: %s", reason)
}
