package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The daemon finds its fence guard through $HACOORD_GUARD_BIN, else next to itself, and says
// where it looked and what to do when there is none.
func TestGuardBinary(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "hacoord-guard")
	if err := os.WriteFile(good, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(guardBinaryEnv, good)
	if p, err := guardBinary(); err != nil || p != good {
		t.Fatalf("guardBinary with $%s=%s: %q, %v", guardBinaryEnv, good, p, err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), plain, dir} {
		t.Setenv(guardBinaryEnv, bad)
		_, err := guardBinary()
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), guardBinaryEnv) || !strings.Contains(err.Error(), "fence_guard") {
			t.Errorf("guardBinary with $%s=%s: %v; want an error naming the path, %s and fence_guard", guardBinaryEnv, bad, err, guardBinaryEnv)
		}
	}
	// Unset: next to the test binary, where there is none.
	t.Setenv(guardBinaryEnv, "")
	exe, _ := os.Executable()
	_, err := guardBinary()
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(exe)) || !strings.Contains(err.Error(), "next to the daemon") {
		t.Errorf("guardBinary next to %s: %v; want an error naming that directory", exe, err)
	}
}
