package vip_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/hacoord/hacoord/vip"
)

// sendFromPeer puts one Ethernet frame on the peer's interface (a raw packet socket opened in the
// peer namespace).
func (l *lab) sendFromPeer(t *testing.T, proto ethernet.EtherType, dst net.HardwareAddr, payload []byte) {
	t.Helper()
	err := l.peer.Do(func() error {
		ifi, err := net.InterfaceByName("peer0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifi, packet.Raw, int(proto), nil)
		if err != nil {
			return err
		}
		defer c.Close()
		f := ethernet.Frame{Destination: dst, Source: ifi.HardwareAddr, EtherType: proto, Payload: payload}
		b, err := f.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = c.WriteTo(b, &packet.Addr{HardwareAddr: dst})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// peerGARP is a gratuitous ARP request for a with the peer's MAC.
func peerGARP(t *testing.T, mac net.HardwareAddr, a netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, mac, a, ethernet.Broadcast, a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// peerNA is an unsolicited neighbour advertisement for target with the peer's MAC, to all nodes,
// in an IPv6 packet from src.
func peerNA(t *testing.T, mac net.HardwareAddr, src, target netip.Addr) []byte {
	t.Helper()
	dst := netip.MustParseAddr("ff02::1")
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}}
	body, err := ndp.MarshalMessageChecksum(na, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	h := make([]byte, 40)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	h[6], h[7] = 58, 255 // ICMPv6, hop limit 255
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, body...)
}

// TestForeignWatch: while the node holds the VIPs, another host that claims one of them (its
// kernel answering the node's gratuitous ARP for an IPv4 VIP it has too; an unsolicited NA for the
// IPv6 VIP) is reported with its MAC; after Release nothing is.
func TestForeignWatch(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := l.config()
	cfg.Conflict = vip.DefaultConfig().Conflict // the check sends the probe's frames
	m := l.manager(t, cfg)
	heard := make(chan vip.Conflict, 64)
	m.OnForeign(func(c vip.Conflict) {
		select {
		case heard <- c:
		default:
		}
	})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := m.Acquire(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	defer m.Release(context.Background())
	sentBefore := m.Announced()
	if sentBefore == 0 {
		t.Errorf("Announced() = 0 after Acquire's burst")
	}

	peerLink, err := l.peer.Netlink.LinkByName("peer0")
	if err != nil {
		t.Fatal(err)
	}
	peerMAC := peerLink.Attrs().HardwareAddr
	want := func(t *testing.T, what string, v netip.Prefix) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case c := <-heard:
				if c.VIP == v && c.HardwareAddr.String() == peerMAC.String() {
					return
				}
				t.Logf("heard %s (waiting for %s at %s)", c, v, peerMAC)
			case <-deadline:
				t.Fatalf("%s: no split-brain report for %s at %s within 5s", what, v, peerMAC)
			}
		}
	}

	t.Run("the other host's kernel answers the check sent with the announcements", func(t *testing.T) {
		_, drop := l.holdOnPeer(t)
		defer drop()
		m.Reannounce("test")
		want(t, "ARP reply", vip4)
	})
	t.Run("unsolicited NA", func(t *testing.T) {
		l.sendFromPeer(t, ethernet.EtherTypeIPv6, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1},
			peerNA(t, peerMAC, netip.MustParseAddr("fe80::99"), vip6.Addr()))
		want(t, "NA", vip6)
	})
	t.Run("gratuitous ARP", func(t *testing.T) {
		l.sendFromPeer(t, ethernet.EtherTypeARP, ethernet.Broadcast, peerGARP(t, peerMAC, vip4.Addr()))
		want(t, "GARP", vip4)
	})
}
