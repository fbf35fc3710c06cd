package vrrp

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// A link just brought up has a tentative link-local address (duplicate address detection, RFC 4862
// §5.4), which cannot be an advert's source: Listen says so with ErrTentative, and the Elector's
// listen waits until DAD has passed and then opens the socket from that address, well within the
// kernel's DAD time (a random delay up to rtr_solicit_delay, 1s, then dad_transmits x retrans_time,
// 1 x 1s).
func TestListenWaitsForDAD(t *testing.T) {
	testenv.RequireRoot(t)
	ns := netnstest.New(t, "dad")
	// Kernel defaults inside the namespace: DAD on, a generated link-local address.
	setSysctls(t, ns, map[string]string{
		"net/ipv6/conf/default/accept_dad":    "1",
		"net/ipv6/conf/default/addr_gen_mode": "0",
	})
	up := time.Now()
	if _, _, err := netnstest.Veth(ns, "eth0", netip.Prefix{}, ns, "peer0", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	// tentative returns eth0's link-local address and whether it is tentative; invalid if none.
	tentative := func() (netip.Addr, bool) {
		link, err := ns.Netlink.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := ns.Netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if ip, _ := netip.AddrFromSlice(a.IP); ip.IsLinkLocalUnicast() {
				return ip, a.Flags&unix.IFA_F_TENTATIVE != 0
			}
		}
		return netip.Addr{}, false
	}
	ll, tent := tentative()
	if !ll.IsValid() {
		t.Fatal("eth0 has no link-local address")
	}
	if !tent {
		t.Fatalf("%s is not tentative %s after the link came up", ll, time.Since(up))
	}
	err := ns.Do(func() error {
		c, err := Listen(ListenConfig{Interface: "eth0", IPv6: true})
		if err == nil {
			c.Close()
		}
		return err
	})
	// DAD may just have finished: only a still-tentative address makes the check meaningful.
	if _, still := tentative(); still && !errors.Is(err, ErrTentative) {
		t.Fatalf("Listen on a tentative link-local address: %v, want ErrTentative", err)
	}

	cfg := testConfig6()
	cfg.Interface = "eth0"
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// DAD's longest (2s), plus the 100ms retry and scheduling.
	ctx, cancel := context.WithDeadline(context.Background(), up.Add(2*time.Second+500*time.Millisecond))
	defer cancel()
	var c *RawConn
	if err := ns.Do(func() (err error) { c, err = e.listen(ctx); return err }); err != nil {
		t.Fatalf("listen %s after the link came up: %v", time.Since(up), err)
	}
	defer c.Close()
	if _, still := tentative(); still || c.Addr() != ll {
		t.Fatalf("listening from %s (tentative %v), want %s once DAD passed", c.Addr(), still, ll)
	}
	t.Logf("listening from %s %s after the link came up", c.Addr(), time.Since(up))

	// Without a link-local address (IPv6 off on eth0), listen fails at once instead of waiting.
	setSysctls(t, ns, map[string]string{"net/ipv6/conf/eth0/disable_ipv6": "1"})
	if err := ns.Do(func() error { _, err := e.listen(context.Background()); return err }); err == nil || errors.Is(err, ErrTentative) {
		t.Fatalf("listen without a link-local address: %v, want an error", err)
	}
	// IPv6 on again: a new tentative link-local address; cancelled while waiting, listen returns.
	setSysctls(t, ns, map[string]string{"net/ipv6/conf/eth0/disable_ipv6": "0"})
	if _, still := tentative(); still {
		cctx, ccancel := context.WithCancel(context.Background())
		ccancel()
		if err := ns.Do(func() error { _, err := e.listen(cctx); return err }); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled listen: %v, want context.Canceled", err)
		}
	}
}
