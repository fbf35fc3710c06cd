package main

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// The fence guard process removes the VIPs when its daemon is gone, even when the daemon died
// while the guard was starting: its "ready" then goes to a closed pipe (SIGPIPE must not kill it)
// and its stdin is at EOF.
func TestFenceGuardReleasesWhenDaemonDiedDuringStart(t *testing.T) {
	testenv.RequireRoot(t)
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		testenv.Unavailable(t, "HACOORD_BIN not set (make test builds bin/hacoord and sets it)")
	}
	a, b := netnstest.New(t, "ga"), netnstest.New(t, "gb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	a.Run(t, "ip", "addr", "add", "192.0.2.100/24", "dev", "eth0")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := a.Command(ctx, bin, "fence-guard", "--interface", "eth0", "--vip", "192.0.2.100/24")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// The "daemon" is dead before the guard gets going: both ends of its pipes are closed.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fence guard: %v\n%s", err, stderr.String())
	}
	if out := a.Run(t, "ip", "-o", "addr", "show", "dev", "eth0"); strings.Contains(out, "192.0.2.100") {
		t.Fatalf("VIP still bound after the guard's daemon died:\n%s\nguard log:\n%s", out, stderr.String())
	}
	if !strings.Contains(stderr.String(), "fence guard removed the VIPs") {
		t.Errorf("guard did not say it removed the VIPs:\n%s", stderr.String())
	}
}
