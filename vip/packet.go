package vip

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// The frames here are built whole (Ethernet header included) and sent on an AF_PACKET socket, so an
// announcement does not depend on the interface having an address of its own, and the IPv6 source
// address and hop limit are exactly what RFC 4861 asks for.

// allNodes is the IPv6 all-nodes link-local multicast group ff02::1 (RFC 4291 section 2.7.1), and
// allNodesMAC its Ethernet mapping 33:33:00:00:00:01 (RFC 2464 section 7).
var (
	allNodes    = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}
	zeroMAC     = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

const (
	ipv6HeaderLen = 40
	protoICMPv6   = 58
	// ndHopLimit is the hop limit every neighbour discovery message carries; receivers drop any other
	// (RFC 4861 section 7.1.2).
	ndHopLimit = 255
	// icmpNeighborAdvertisement is the ICMPv6 type of a neighbour advertisement (RFC 4861 section
	// 4.4).
	icmpNeighborAdvertisement = 136
)

// gratuitousARP returns the Ethernet frame of a gratuitous ARP for ip, announcing that it is at mac.
//
// Both forms are broadcast, with sender and target protocol address set to ip:
//   - OperationRequest, target hardware address 00:00:00:00:00:00 (RFC 5227 section 3, "ARP
//     Announcement"), which every Linux and most other hosts accept;
//   - OperationReply, target hardware address mac (RFC 5944 section 4.6), for the devices that only
//     update their caches from replies.
func gratuitousARP(op arp.Operation, mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("vip: gratuitous ARP for %v: not an IPv4 address", ip)
	}
	target := zeroMAC
	switch op {
	case arp.OperationRequest:
	case arp.OperationReply:
		target = mac
	default:
		return nil, fmt.Errorf("vip: gratuitous ARP for %v: operation %v", ip, op)
	}
	p, err := arp.NewPacket(op, mac, ip, target, ip)
	if err != nil {
		return nil, fmt.Errorf("vip: gratuitous ARP for %v from %v: %w", ip, mac, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("vip: gratuitous ARP for %v: %w", ip, err)
	}
	f := ethernet.Frame{
		Destination: ethernet.Broadcast,
		Source:      mac,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}
	return f.MarshalBinary()
}

// unsolicitedNA returns the Ethernet frame of an unsolicited neighbour advertisement for ip, announcing
// that it is at mac (RFC 4861 section 7.2.6): sent to all nodes (ff02::1) from ip itself, Solicited
// clear, Override set so that receivers replace the link-layer address they have cached, and a Target
// Link-Layer Address option carrying mac (RFC 4861 section 4.4).
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("vip: neighbour advertisement for %v: not an IPv6 address", ip)
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("vip: neighbour advertisement for %v: hardware address %v is not Ethernet", ip, mac)
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, ip, allNodes)
	if err != nil {
		return nil, fmt.Errorf("vip: neighbour advertisement for %v: %w", ip, err)
	}
	// IPv6 header, RFC 8200 section 3.
	b := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(icmp))
	b[0] = 6 << 4 // version 6, traffic class and flow label 0
	binary.BigEndian.PutUint16(b[4:6], uint16(len(icmp)))
	b[6] = protoICMPv6
	b[7] = ndHopLimit
	src, dst := ip.As16(), allNodes.As16()
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
	b = append(b, icmp...)
	f := ethernet.Frame{
		Destination: allNodesMAC,
		Source:      mac,
		EtherType:   ethernet.EtherTypeIPv6,
		Payload:     b,
	}
	return f.MarshalBinary()
}

// announcement is the frames of one round for one VIP.
type announcement struct {
	vip    netip.Prefix
	frames [][]byte
	ipv6   bool
}

// buildAnnouncement returns the frames announcing v at mac: two gratuitous ARPs (request and reply
// form) for IPv4, one unsolicited neighbour advertisement for IPv6.
func buildAnnouncement(mac net.HardwareAddr, v netip.Prefix) (announcement, error) {
	a := announcement{vip: v, ipv6: v.Addr().Is6()}
	if a.ipv6 {
		f, err := unsolicitedNA(mac, v.Addr())
		if err != nil {
			return announcement{}, err
		}
		a.frames = [][]byte{f}
		return a, nil
	}
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		f, err := gratuitousARP(op, mac, v.Addr())
		if err != nil {
			return announcement{}, err
		}
		a.frames = append(a.frames, f)
	}
	return a, nil
}

// arpProbe returns the Ethernet frame of an ARP probe for ip from mac (RFC 5227 section 2.1.1): a
// broadcast ARP request with sender hardware address mac, sender IP address 0.0.0.0 (so that no
// host updates its cache from it), target hardware address zero and target IP address ip. A host
// that has ip answers it with an ARP reply.
func arpProbe(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("vip: ARP probe for %v: not an IPv4 address", ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, mac, netip.IPv4Unspecified(), zeroMAC, ip)
	if err != nil {
		return nil, fmt.Errorf("vip: ARP probe for %v from %v: %w", ip, mac, err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("vip: ARP probe for %v: %w", ip, err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}

// solicitedNode returns the solicited-node multicast address of ip, ff02::1:ffXX:XXXX (RFC 4291
// section 2.7.1), and its Ethernet mapping 33:33:ff:XX:XX:XX (RFC 2464 section 7).
func solicitedNode(ip netip.Addr) (netip.Addr, net.HardwareAddr) {
	a := ip.As16()
	snm := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
	return snm, net.HardwareAddr{0x33, 0x33, 0xff, a[13], a[14], a[15]}
}

// dadSolicitation returns the Ethernet frame of a duplicate address detection probe for ip from
// mac (RFC 4862 section 5.4.2): a neighbour solicitation for target ip from the unspecified
// address ::, to ip's solicited-node multicast address, hop limit 255, with no Source Link-Layer
// Address option (RFC 4861 section 4.3 forbids it from ::). A host that has ip answers with a
// neighbour advertisement to all nodes (RFC 4861 section 7.2.4).
func dadSolicitation(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("vip: DAD solicitation for %v: not an IPv6 address", ip)
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("vip: DAD solicitation for %v: hardware address %v is not Ethernet", ip, mac)
	}
	snm, snmMAC := solicitedNode(ip)
	icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: ip}, netip.IPv6Unspecified(), snm)
	if err != nil {
		return nil, fmt.Errorf("vip: DAD solicitation for %v: %w", ip, err)
	}
	b := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(icmp))
	b[0] = 6 << 4
	binary.BigEndian.PutUint16(b[4:6], uint16(len(icmp)))
	b[6] = protoICMPv6
	b[7] = ndHopLimit
	dst := snm.As16()
	copy(b[24:40], dst[:]) // the source, ::, is all zeros
	b = append(b, icmp...)
	f := ethernet.Frame{Destination: snmMAC, Source: mac, EtherType: ethernet.EtherTypeIPv6, Payload: b}
	return f.MarshalBinary()
}

// probeFrame returns the conflict probe for ip from mac: an ARP probe for IPv4, a DAD
// solicitation for IPv6.
func probeFrame(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if ip.Is4() {
		return arpProbe(mac, ip)
	}
	return dadSolicitation(mac, ip)
}

// probeAnswer reports whether frame, an Ethernet frame received while probing, shows another host
// using one of the probed addresses, and which host: an ARP packet, request or reply, whose sender
// IP address is probed (RFC 5227 section 2.1.1: a reply to the probe, or that host's own
// announcement), or a neighbour advertisement whose target is probed (RFC 4862 section 5.4.4). The
// host is the ARP sender hardware address, or the advertisement's Target Link-Layer Address option
// (its Ethernet source without one). Frames from own, this interface's address, are no answer.
// Another host's probe for the same address (sender 0.0.0.0, or a solicitation from ::) is not
// taken for a conflict: only one node of a group promotes at a time.
func probeAnswer(frame []byte, own net.HardwareAddr, probed func(netip.Addr) bool) (netip.Addr, net.HardwareAddr, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || bytes.Equal(f.Source, own) {
		return netip.Addr{}, nil, false
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil || !p.SenderIP.Is4() || !probed(p.SenderIP) || bytes.Equal(p.SenderHardwareAddr, own) {
			return netip.Addr{}, nil, false
		}
		return p.SenderIP, append(net.HardwareAddr(nil), p.SenderHardwareAddr...), true
	case ethernet.EtherTypeIPv6:
		b := f.Payload
		if len(b) < ipv6HeaderLen || b[0]>>4 != 6 || b[6] != protoICMPv6 {
			return netip.Addr{}, nil, false
		}
		m, err := ndp.ParseMessage(b[ipv6HeaderLen:])
		if err != nil {
			return netip.Addr{}, nil, false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || !probed(na.TargetAddress) {
			return netip.Addr{}, nil, false
		}
		mac := f.Source
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				mac = l.Addr
			}
		}
		if bytes.Equal(mac, own) {
			return netip.Addr{}, nil, false
		}
		return na.TargetAddress, append(net.HardwareAddr(nil), mac...), true
	}
	return netip.Addr{}, nil, false
}
