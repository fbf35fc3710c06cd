package vip

import (
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
