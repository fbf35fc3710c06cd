package vip

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

func TestARPProbe(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.100")
	b, err := arpProbe(testMAC, ip)
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	var p arp.Packet
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	// RFC 5227 section 2.1.1.
	if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, testMAC) || p.Operation != arp.OperationRequest ||
		!bytes.Equal(p.SenderHardwareAddr, testMAC) || p.SenderIP != netip.IPv4Unspecified() ||
		!bytes.Equal(p.TargetHardwareAddr, zeroMAC) || p.TargetIP != ip {
		t.Fatalf("ARP probe %v -> %v: %+v", f.Source, f.Destination, p)
	}
	if _, err := arpProbe(testMAC, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Fatal("an ARP probe for an IPv6 address")
	}
}

func TestDADSolicitation(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8::12:3456")
	b, err := dadSolicitation(testMAC, ip)
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	h, err := ipv6.ParseHeader(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 4862 section 5.4.2: from ::, to the solicited-node group, hop limit 255, no options.
	snm := netip.MustParseAddr("ff02::1:ff12:3456")
	if f.Destination.String() != "33:33:ff:12:34:56" || !h.Src.Equal(net.IPv6unspecified) || !h.Dst.Equal(snm.AsSlice()) || h.HopLimit != 255 {
		t.Fatalf("DAD solicitation %v -> %v, IPv6 %v -> %v hop %d", f.Source, f.Destination, h.Src, h.Dst, h.HopLimit)
	}
	m, err := ndp.ParseMessage(f.Payload[ipv6HeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress != ip || len(ns.Options) != 0 {
		t.Fatalf("message %#v, want a solicitation for %v without options", m, ip)
	}
	// The checksum is over the pseudo-header from ::.
	if _, err := ndp.MarshalMessageChecksum(ns, netip.IPv6Unspecified(), snm); err != nil {
		t.Fatal(err)
	}
	want, _ := ndp.MarshalMessageChecksum(ns, netip.IPv6Unspecified(), snm)
	if !bytes.Equal(f.Payload[ipv6HeaderLen:], want) {
		t.Fatal("checksum not over the pseudo-header from :: to the solicited-node group")
	}
}

func TestProbeAnswer(t *testing.T) {
	vip4, vip6 := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	probed := func(a netip.Addr) bool { return a == vip4 || a == vip6 }
	arpFrame := func(op arp.Operation, srcMAC net.HardwareAddr, src netip.Addr, dstMAC net.HardwareAddr, dst netip.Addr) []byte {
		p, err := arp.NewPacket(op, srcMAC, src, dstMAC, dst)
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := p.MarshalBinary()
		b, _ := (&ethernet.Frame{Destination: dstMAC, Source: srcMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		return b
	}
	naFrame := func(srcMAC net.HardwareAddr, target netip.Addr, lla net.HardwareAddr) []byte {
		na := &ndp.NeighborAdvertisement{TargetAddress: target, Override: true}
		if lla != nil {
			na.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: lla}}
		}
		b, err := unsolicitedNA(srcMAC, target) // an NA to all nodes, as an answer to DAD is
		if err != nil {
			t.Fatal(err)
		}
		icmp, _ := ndp.MarshalMessageChecksum(na, target, allNodes)
		var f ethernet.Frame
		_ = f.UnmarshalBinary(b)
		f.Payload = append(f.Payload[:ipv6HeaderLen:ipv6HeaderLen], icmp...)
		f.Payload[4], f.Payload[5] = byte(len(icmp)>>8), byte(len(icmp))
		out, _ := f.MarshalBinary()
		return out
	}
	zero4 := netip.IPv4Unspecified()
	for _, tc := range []struct {
		name  string
		frame []byte
		addr  netip.Addr
		mac   net.HardwareAddr
	}{
		{"ARP reply to the probe", arpFrame(arp.OperationReply, other, vip4, testMAC, zero4), vip4, other},
		{"the other host's own gratuitous ARP", arpFrame(arp.OperationRequest, other, vip4, ethernet.Broadcast, vip4), vip4, other},
		{"ARP for another address", arpFrame(arp.OperationReply, other, netip.MustParseAddr("192.0.2.7"), testMAC, zero4), netip.Addr{}, nil},
		{"another host's probe for the VIP", arpFrame(arp.OperationRequest, other, zero4, ethernet.Broadcast, vip4), netip.Addr{}, nil},
		{"our own frame", arpFrame(arp.OperationRequest, testMAC, vip4, ethernet.Broadcast, vip4), netip.Addr{}, nil},
		{"NA with the target's link-layer address", naFrame(other, vip6, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}), vip6, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}},
		{"NA without options: the Ethernet source", naFrame(other, vip6, nil), vip6, other},
		{"NA for another address", naFrame(other, netip.MustParseAddr("2001:db8::7"), other), netip.Addr{}, nil},
		{"our own NA", naFrame(testMAC, vip6, testMAC), netip.Addr{}, nil},
		{"garbage", []byte{1, 2, 3}, netip.Addr{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, mac, ok := probeAnswer(tc.frame, testMAC, probed)
			if ok != tc.addr.IsValid() || addr != tc.addr || mac.String() != tc.mac.String() {
				t.Fatalf("probeAnswer = %v, %v, %v; want %v, %v", addr, mac, ok, tc.addr, tc.mac)
			}
		})
	}
}
