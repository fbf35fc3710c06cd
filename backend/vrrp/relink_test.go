package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// A router whose eth0 is deleted and created again (a new index, as after `docker network
// disconnect` and `connect`) sends its adverts on the new interface, and hears the group there,
// instead of failing every send with "no such device".
func TestRawConnFollowsARecreatedInterface(t *testing.T) {
	testenv.RequireRoot(t)
	sw := netnstest.New(t, "rlsw")
	br, err := netnstest.Bridge(sw, "br0")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netnstest.New(t, "rla"), netnstest.New(t, "rlb")
	attach := func(ns *netnstest.NS, port string, addr netip.Addr) {
		t.Helper()
		if _, _, err := netnstest.Veth(ns, "eth0", netip.PrefixFrom(addr, 24), sw, port, netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
		if err := netnstest.Attach(sw, port, br); err != nil {
			t.Fatal(err)
		}
	}
	addrA, addrB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	attach(a, "p-a", addrA)
	attach(b, "p-b", addrB)
	listen := func(ns *netnstest.NS) (*RawConn, <-chan Received) {
		t.Helper()
		var c *RawConn
		if err := ns.Do(func() (err error) { c, err = Listen(ListenConfig{Interface: "eth0"}); return err }); err != nil {
			t.Fatal(err)
		}
		got := make(chan Received, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				r, err := c.Read()
				if err != nil {
					return // closed
				}
				select {
				case got <- r:
				default:
				}
			}
		}()
		t.Cleanup(func() { c.Close(); <-done })
		return c, got
	}
	ca, heardByA := listen(a)
	cb, heardByB := listen(b)
	hears := func(heard <-chan Received, from netip.Addr, what string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case r := <-heard:
				if r.Src == from && r.Dst == MulticastGroup {
					return
				}
			case <-timeout:
				t.Fatalf("%s: nothing from %s to %s within 5s", what, from, MulticastGroup)
			}
		}
	}
	advert := []byte{0x31, 1, 100, 1, 0, 100, 0, 0, 192, 0, 2, 100} // the bytes do not matter here
	if err := ca.Write(advert, MulticastGroup); err != nil {
		t.Fatal(err)
	}
	hears(heardByB, addrA, "before")

	old := ca.index.Load()
	a.Run(t, "ip", "link", "del", "eth0")
	attach(a, "p-a", addrA)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := a.Netlink.LinkByName("eth0")
		if err == nil && l.Attrs().RawFlags&unix.IFF_RUNNING != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new eth0 is not running within 5s")
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel's link state
	}
	if err := ca.Write(advert, MulticastGroup); err != nil {
		t.Fatalf("Write after eth0 was created again = %v", err)
	}
	if ca.index.Load() == old {
		t.Fatalf("still on the old index %d", old)
	}
	hears(heardByB, addrA, "after: a's advert")
	if err := cb.Write(advert, MulticastGroup); err != nil {
		t.Fatal(err)
	}
	hears(heardByA, addrB, "after: b's advert heard by a")
}
