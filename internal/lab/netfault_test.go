package lab

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// The nftables faults do what they say inside one namespace, and clear undoes them: a cut drops
// traffic to the named address only, 99% loss drops (almost) everything but loopback.
func TestNetFaults(t *testing.T) {
	skipShort(t)
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft", "Debian package nftables")
	a, b := netnstest.New(t, "nfa"), netnstest.New(t, "nfb")
	aAddr, bAddr := netip.MustParseAddr("10.77.9.1"), netip.MustParseAddr("10.77.9.2")
	if _, _, err := netnstest.Veth(a, "eth0", netip.PrefixFrom(aAddr, 24), b, "eth0", netip.PrefixFrom(bAddr, 24)); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(bAddr, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	reach := func(to netip.Addr) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := dialIn(ctx, a, "tcp", netip.AddrPortFrom(to, 9).String())
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	ctx := context.Background()
	f := &netFaults{ns: a, who: "a"}
	// The link's carrier comes up asynchronously (linkwatch): try until b answers.
	for deadline := time.Now().Add(5 * time.Second); !reach(bAddr); {
		if time.Now().After(deadline) {
			t.Fatal("no connection before any fault")
		}
	}
	if err := f.add(ctx, faultCut, cutRules([]netip.Addr{netip.MustParseAddr("10.77.9.3")})); err != nil {
		t.Fatal(err)
	}
	if !reach(bAddr) {
		t.Error("a cut from another address dropped b")
	}
	if err := f.add(ctx, faultCut, cutRules([]netip.Addr{bAddr})); err == nil {
		t.Error("a second cut fault was accepted")
	}
	if err := f.clear(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.add(ctx, faultCut, cutRules([]netip.Addr{bAddr})); err != nil {
		t.Fatal(err)
	}
	if reach(bAddr) {
		t.Error("cut from b, still reached it")
	}
	if err := f.add(ctx, faultLoss, lossRules(99)); err != nil {
		t.Fatal(err)
	}
	if !f.has(faultCut) || !f.has(faultLoss) {
		t.Errorf("faults in force: %v", f.on)
	}
	if err := f.clear(ctx); err != nil {
		t.Fatal(err)
	}
	if !reach(bAddr) {
		t.Error("no connection after clear")
	}
	if err := f.add(ctx, faultLoss, lossRules(99)); err != nil {
		t.Fatal(err)
	}
	if reach(bAddr) {
		t.Error("99% loss, still reached b")
	}
	if err := f.clear(ctx); err != nil {
		t.Fatal(err)
	}
}
