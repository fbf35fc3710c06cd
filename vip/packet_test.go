package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}

func TestGratuitousARPRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       arp.Operation
		ip       string
		targetHW net.HardwareAddr
	}{
		{"request", arp.OperationRequest, "192.0.2.100", zeroMAC},
		{"reply", arp.OperationReply, "192.0.2.100", testMAC},
		{"request other", arp.OperationRequest, "10.255.0.1", zeroMAC},
		{"reply other", arp.OperationReply, "10.255.0.1", testMAC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			b, err := gratuitousARP(tc.op, testMAC, ip)
			if err != nil {
				t.Fatal(err)
			}
			var f ethernet.Frame
			if err := f.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, testMAC) || f.EtherType != ethernet.EtherTypeARP {
				t.Errorf("frame %v -> %v type %v, want %v -> broadcast type ARP", f.Source, f.Destination, f.EtherType, testMAC)
			}
			var p arp.Packet
			if err := p.UnmarshalBinary(f.Payload); err != nil {
				t.Fatal(err)
			}
			if p.Operation != tc.op || !bytes.Equal(p.SenderHardwareAddr, testMAC) || p.SenderIP != ip ||
				p.TargetIP != ip || !bytes.Equal(p.TargetHardwareAddr, tc.targetHW) {
				t.Errorf("ARP = %v %v/%v -> %v/%v, want %v %v/%v -> %v/%v", p.Operation,
					p.SenderHardwareAddr, p.SenderIP, p.TargetHardwareAddr, p.TargetIP,
					tc.op, testMAC, ip, tc.targetHW, ip)
			}
		})
	}
}

func TestGratuitousARPErrors(t *testing.T) {
	if _, err := gratuitousARP(arp.OperationRequest, testMAC, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("IPv6 address accepted")
	}
	if _, err := gratuitousARP(arp.OperationRequest, net.HardwareAddr{1, 2, 3}, netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("3-byte hardware address accepted")
	}
	if _, err := gratuitousARP(arp.Operation(3), testMAC, netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("operation 3 accepted")
	}
}

func TestUnsolicitedNARoundTrip(t *testing.T) {
	for _, s := range []string{"2001:db8::100", "fd00:1:2:3::42", "fe80::1"} {
		t.Run(s, func(t *testing.T) {
			ip := netip.MustParseAddr(s)
			b, err := unsolicitedNA(testMAC, ip)
			if err != nil {
				t.Fatal(err)
			}
			var f ethernet.Frame
			if err := f.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.Destination, allNodesMAC) || !bytes.Equal(f.Source, testMAC) || f.EtherType != ethernet.EtherTypeIPv6 {
				t.Errorf("frame %v -> %v type %v, want %v -> 33:33:00:00:00:01 type IPv6", f.Source, f.Destination, f.EtherType, testMAC)
			}
			h, err := ipv6.ParseHeader(f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			// RFC 4861 section 7.1.2: receivers drop an NA unless the hop limit is 255.
			if h.Version != 6 || h.NextHeader != 58 || h.HopLimit != 255 || h.Src.String() != s || h.Dst.String() != "ff02::1" {
				t.Errorf("IPv6 header = %+v", h)
			}
			icmp := f.Payload[ipv6HeaderLen : ipv6HeaderLen+h.PayloadLen]
			if !checksumOK(ip, allNodes, icmp) {
				t.Error("ICMPv6 checksum does not verify")
			}
			m, err := ndp.ParseMessage(icmp)
			if err != nil {
				t.Fatal(err)
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok {
				t.Fatalf("message = %T, want *ndp.NeighborAdvertisement", m)
			}
			if !na.Override || na.Solicited || na.Router || na.TargetAddress != ip {
				t.Errorf("NA = %+v, want Override, not Solicited, not Router, target %v", na, ip)
			}
			if len(na.Options) != 1 {
				t.Fatalf("options = %v, want one target link-layer address", na.Options)
			}
			lla, ok := na.Options[0].(*ndp.LinkLayerAddress)
			if !ok || lla.Direction != ndp.Target || !bytes.Equal(lla.Addr, testMAC) {
				t.Errorf("option = %+v, want target link-layer address %v", na.Options[0], testMAC)
			}
		})
	}
}

func TestUnsolicitedNAErrors(t *testing.T) {
	if _, err := unsolicitedNA(testMAC, netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("IPv4 address accepted")
	}
	if _, err := unsolicitedNA(net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("8-byte hardware address accepted")
	}
}

func TestBuildAnnouncement(t *testing.T) {
	a, err := buildAnnouncement(testMAC, netip.MustParsePrefix("192.0.2.100/24"))
	if err != nil || a.ipv6 || len(a.frames) != 2 {
		t.Fatalf("IPv4: %d frames, ipv6=%v, err %v; want 2 frames (request and reply form)", len(a.frames), a.ipv6, err)
	}
	a, err = buildAnnouncement(testMAC, netip.MustParsePrefix("2001:db8::100/64"))
	if err != nil || !a.ipv6 || len(a.frames) != 1 {
		t.Fatalf("IPv6: %d frames, ipv6=%v, err %v; want 1 frame", len(a.frames), a.ipv6, err)
	}
}

// checksumOK verifies an ICMPv6 checksum over the pseudo-header (RFC 8200 section 8.1), computed
// independently of the ndp package that wrote it.
func checksumOK(src, dst netip.Addr, icmp []byte) bool {
	var ph []byte
	s, d := src.As16(), dst.As16()
	ph = append(ph, s[:]...)
	ph = append(ph, d[:]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(len(icmp)))
	ph = append(ph, 0, 0, 0, 58)
	ph = append(ph, icmp...)
	if len(ph)%2 == 1 {
		ph = append(ph, 0)
	}
	var sum uint32
	for i := 0; i < len(ph); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ph[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum) == 0xffff
}
