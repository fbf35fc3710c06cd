package main

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// The single-path warning counts what an operator would: a plain link is one path, a bond as many
// as its slaves that are up (this kernel cannot create bonds, so those are table cases).
func TestCountPaths(t *testing.T) {
	bond := &netlink.Bond{LinkAttrs: netlink.LinkAttrs{Index: 7, Name: "bond0"}}
	slave := func(up bool) netlink.Link {
		st := netlink.LinkOperState(netlink.OperDown)
		if up {
			st = netlink.OperUp
		}
		return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{MasterIndex: 7, OperState: st}}
	}
	other := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: 3, Name: "eth0", OperState: netlink.OperUp}}
	for _, tc := range []struct {
		name  string
		l     netlink.Link
		links []netlink.Link
		want  int
	}{
		{"plain link", other, []netlink.Link{other}, 1},
		{"bond with two up", bond, []netlink.Link{bond, slave(true), slave(true), other}, 2},
		{"bond with one of two up", bond, []netlink.Link{bond, slave(true), slave(false)}, 1},
		{"bond with none", bond, []netlink.Link{bond}, 0},
	} {
		if got := countPaths(tc.l, tc.links); got != tc.want {
			t.Errorf("%s: %d paths, want %d", tc.name, got, tc.want)
		}
	}
}

// linkPaths reads the kernel: a veth is one path, so the daemon warns for it.
func TestLinkPathsOfVeth(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := netnstest.New(t, "pa"), netnstest.New(t, "pb")
	if _, _, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	var n, missing int
	if err := a.Do(func() error { n, missing = linkPaths("eth0"), linkPaths("nope0"); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 || missing != 1 {
		t.Fatalf("linkPaths: veth %d, missing link %d; want 1 and 1", n, missing)
	}
}
