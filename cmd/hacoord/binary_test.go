package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// hacoordBin is the real daemon's binary ($HACOORD_BIN); without it the test is unavailable.
func hacoordBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		testenv.Unavailable(t, "HACOORD_BIN not set (make test builds bin/hacoord and sets it)")
	}
	return bin
}

// startBinaryConf runs the real daemon bin in ns on the configuration conf(dir) returns, dir being
// the node's own directory (its status files go there), as the lab does: VRRP opens its raw socket
// in Run, on whatever thread, so only a process of its own is in the namespace throughout. It
// stops it (SIGTERM, no VIP left) in t.Cleanup.
func startBinaryConf(t *testing.T, bin string, ns *netnstest.NS, name string, conf func(dir string) string) *node {
	t.Helper()
	n := &node{name: name, ns: ns, dir: t.TempDir(), log: &syncBuffer{}, done: make(chan int, 1)}
	p := filepath.Join(n.dir, "hacoord.yaml")
	if err := os.WriteFile(p, []byte(conf(n.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), bin, "--config", p)
	cmd.Stderr = n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		code := 0
		if err := cmd.Wait(); err != nil {
			code = -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
		}
		n.done <- code
	}()
	n.stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM) }
	t.Cleanup(func() { n.exit(t) })
	return n
}
