package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func TestRealServerBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"realserver"},
		{"realserver", "--vip", "10.0.0.0/24"},
		{"realserver", "--vip", "not-an-ip"},
		{"realserver", "--vip", "127.0.0.1"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), append(args, "--state-file", filepath.Join(t.TempDir(), "s.json")), &out, &errb)
		if code != exitConfig || !strings.Contains(errb.String(), "--vip") {
			t.Errorf("%q: exit %d, stderr %q; want %d naming --vip", args, code, errb.String(), exitConfig)
		}
	}
}

// realServerSnapshot is what realserver touches in a namespace: lo's addresses and the ARP sysctls.
type realServerSnapshot struct {
	lo      []string
	sysctls map[string]string
}

func snapshotRealServer(t *testing.T, ns *netnstest.NS, ifaces ...string) realServerSnapshot {
	t.Helper()
	var s realServerSnapshot
	err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(lo, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			s.lo = append(s.lo, a.IPNet.String())
		}
		slices.Sort(s.lo)
		s.sysctls = map[string]string{}
		for _, ifname := range append([]string{"all"}, ifaces...) {
			for _, name := range []string{"arp_ignore", "arp_announce"} {
				v, err := readSysctl(filepath.Join("/proc/sys/net/ipv4/conf", ifname, name))
				if err != nil {
					return err
				}
				s.sysctls[ifname+"."+name] = v
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", ns.Name, err)
	}
	return s
}

func runIn(t *testing.T, ns *netnstest.NS, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	var code int
	if err := ns.Do(func() error { code = run(context.Background(), args, &out, &errb); return nil }); err != nil {
		t.Fatal(err)
	}
	return code, errb.String()
}

func TestRealServerOnOffInNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	ns, peer := netnstest.New(t, "rs"), netnstest.New(t, "rspeer")
	if _, _, err := netnstest.Veth(ns, "eth0", netip.MustParsePrefix("192.0.2.2/24"), peer, "eth0", netip.MustParsePrefix("192.0.2.1/24")); err != nil {
		t.Fatal(err)
	}
	// A non-default previous value, to see it restored rather than reset.
	if err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/eth0/arp_announce", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "run", "realserver.json")
	before := snapshotRealServer(t, ns, "eth0")
	if before.sysctls["eth0.arp_announce"] != "1" || before.sysctls["all.arp_ignore"] != "0" {
		t.Fatalf("before: %v", before.sysctls)
	}
	on := []string{"realserver", "--vip", "198.51.100.10", "--vip", "2001:db8::10/128", "--state-file", state}
	for i := range 2 { // twice: idempotent, the first run's previous values kept
		if code, errb := runIn(t, ns, on...); code != exitOK {
			t.Fatalf("on #%d: exit %d: %s", i+1, code, errb)
		}
	}
	after := snapshotRealServer(t, ns, "eth0")
	for _, want := range []string{"198.51.100.10/32", "2001:db8::10/128"} {
		if !slices.Contains(after.lo, want) {
			t.Errorf("after on: lo has %v, want %s", after.lo, want)
		}
	}
	for k, v := range after.sysctls {
		if want := map[bool]string{true: "1", false: "2"}[strings.HasSuffix(k, "arp_ignore")]; v != want {
			t.Errorf("after on: %s = %s, want %s", k, v, want)
		}
	}
	if code, errb := runIn(t, ns, "realserver", "--remove", "--state-file", state); code != exitOK {
		t.Fatalf("remove: exit %d: %s", code, errb)
	}
	off := snapshotRealServer(t, ns, "eth0")
	if !slices.Equal(off.lo, before.lo) {
		t.Errorf("after remove: lo has %v, want %v as before", off.lo, before.lo)
	}
	for k, v := range before.sysctls {
		if off.sysctls[k] != v {
			t.Errorf("after remove: %s = %s, want %s as before", k, off.sysctls[k], v)
		}
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file after remove: %v, want it gone", err)
	}
}

func TestRealServerRemoveWithoutStateFile(t *testing.T) {
	testenv.RequireRoot(t)
	ns := netnstest.New(t, "rsnostate")
	state := filepath.Join(t.TempDir(), "realserver.json")
	if code, errb := runIn(t, ns, "realserver", "--vip", "198.51.100.11", "--interface", "lo", "--state-file", state); code != exitOK {
		t.Fatalf("on: exit %d: %s", code, errb)
	}
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	code, errb := runIn(t, ns, "realserver", "--remove", "--vip", "198.51.100.11", "--state-file", state)
	if code != exitOK || !strings.Contains(errb, "warning") {
		t.Fatalf("remove: exit %d, stderr %q; want 0 and a warning", code, errb)
	}
	if s := snapshotRealServer(t, ns); slices.Contains(s.lo, "198.51.100.11/32") {
		t.Errorf("after remove: lo still has %v", s.lo)
	}
}
