package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The fence guard is a small program of its own (cmd/hacoord-guard), so that it does not carry
// the daemon's memory: the daemon starts it from $HACOORD_GUARD_BIN or, by default, from its own
// directory.
const (
	guardBinaryName = "hacoord-guard"
	guardBinaryEnv  = "HACOORD_GUARD_BIN"
)

// guardBinary returns the fence guard program: $HACOORD_GUARD_BIN if set, else hacoord-guard next
// to this executable. It must be an executable file; the error says where it looked and what to do.
func guardBinary() (string, error) {
	p := os.Getenv(guardBinaryEnv)
	from := "$" + guardBinaryEnv
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("fence guard: finding %s next to the daemon: %w", guardBinaryName, err)
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		p, from = filepath.Join(filepath.Dir(exe), guardBinaryName), "next to the daemon"
	}
	fi, err := os.Stat(p)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0:
		return p, nil
	case err == nil:
		err = errors.New("not an executable file")
	}
	return "", fmt.Errorf("fence guard: %s (%s): %w: install %s beside hacoord (make build puts both in bin/), set %s to its path, or turn the guard off (--fence-guard=false, fence_guard: false)",
		p, from, err, guardBinaryName, guardBinaryEnv)
}
