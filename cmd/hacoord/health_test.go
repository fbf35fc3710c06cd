package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// linkUp, the track_interface probe, tells an up link from one that is down and from one whose
// carrier is gone (the peer, or the switch port, went down), against the kernel in a namespace.
func TestTrackInterfaceProbe(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := netnstest.New(t, "ta"), netnstest.New(t, "tb")
	la, lb, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	probe := func() error {
		var perr error
		if err := a.Do(func() error { perr = linkUp("eth0"); return nil }); err != nil {
			t.Fatal(err)
		}
		return perr
	}
	if err := probe(); err != nil {
		t.Fatalf("up link: %v", err)
	}
	if err := b.Netlink.LinkSetDown(lb); err != nil {
		t.Fatal(err)
	}
	if err := probe(); err == nil || !strings.Contains(err.Error(), "no carrier") {
		t.Fatalf("peer down: %v, want no carrier", err)
	}
	if err := a.Netlink.LinkSetDown(la); err != nil {
		t.Fatal(err)
	}
	if err := probe(); err == nil || !strings.Contains(err.Error(), "is down") {
		t.Fatalf("link down: %v, want is down", err)
	}
	var missing error
	_ = a.Do(func() error { missing = linkUp("nosuch0"); return nil })
	if missing == nil || !strings.Contains(missing.Error(), "nosuch0") {
		t.Fatalf("missing link: %v", missing)
	}
}
