package vrrp

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	capSrc  = netip.MustParseAddr("192.0.2.1")
	vip100  = netip.MustParseAddr("192.0.2.100")
	vip101  = netip.MustParseAddr("192.0.2.101")
	capSrc6 = netip.MustParseAddr("fe80::1")
	vip6100 = netip.MustParseAddr("fd00::100")
	vip6101 = netip.MustParseAddr("fd00::101")
)

// Captured with tcpdump -xx in a namespace from keepalived 2.2.7 (vrid 51, priority 100,
// advert_int 1, virtual_ipaddress 192.0.2.100/24 and 192.0.2.101/24, source 192.0.2.1), IP header
// removed.
const (
	keepalivedV3 = "3133 6402 0064 4307 c000 0264 c000 0265"
	keepalivedV2 = "2133 6402 0101 b8b2 c000 0264 c000 0265 7365 6372 6574 0000" // auth_pass secret
)

// Captured the same way from keepalived 2.2.7 with native_ipv6 and virtual_ipaddress fd00::100/64 and
// fd00::101/64, version 3, from fe80::1 to ff02::12 (hop limit 255, traffic class 0xc0), IPv6
// header removed. keepalived lets the kernel fill in the checksum (IPV6_CHECKSUM).
const keepalivedV3IPv6 = "3133 6402 0064 7034" +
	"fd00 0000 0000 0000 0000 0000 0000 0100" +
	"fd00 0000 0000 0000 0000 0000 0000 0101"

func TestPacketKeepalivedCaptures(t *testing.T) {
	tests := []struct {
		name     string
		wire     string
		src, dst netip.Addr
		want     Packet
	}{
		{"v3", keepalivedV3, capSrc, MulticastGroup, Packet{Version: 3, Type: 1, VRID: 51, Priority: 100, AdvertInt: 100,
			Checksum: 0x4307, Addresses: []netip.Addr{vip100, vip101}}},
		{"v2 auth pass", keepalivedV2, capSrc, MulticastGroup, Packet{Version: 2, Type: 1, VRID: 51, Priority: 100, AdvertInt: 1,
			AuthType: AuthSimple, AuthData: AuthPassData("secret"), Checksum: 0xb8b2,
			Addresses: []netip.Addr{vip100, vip101}}},
		{"v3 IPv6", keepalivedV3IPv6, capSrc6, MulticastGroup6, Packet{Version: 3, Type: 1, VRID: 51, Priority: 100, AdvertInt: 100,
			Checksum: 0x7034, Addresses: []netip.Addr{vip6100, vip6101}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := mustHex(t, tt.wire)
			var p Packet
			if err := p.Unmarshal(wire); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tt.want) {
				t.Fatalf("Unmarshal:\n got %+v\nwant %+v", p, tt.want)
			}
			if !VerifyChecksum(wire, tt.src, tt.dst) {
				t.Error("checksum of keepalived's packet does not verify")
			}
			b, err := p.Marshal(tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(b) != hex.EncodeToString(wire) {
				t.Fatalf("Marshal:\n got %x\nwant %x", b, wire)
			}
		})
	}
}

func TestPacketChecksum(t *testing.T) {
	v3 := mustHex(t, keepalivedV3)
	// Version 3 checksums the pseudo-header: another source or destination breaks it.
	if VerifyChecksum(v3, netip.MustParseAddr("192.0.2.2"), MulticastGroup) {
		t.Error("v3 checksum verified with the wrong source")
	}
	if VerifyChecksum(v3, capSrc, netip.MustParseAddr("192.0.2.2")) {
		t.Error("v3 checksum verified with the wrong destination")
	}
	// Version 2 checksums the VRRP message only.
	v2 := mustHex(t, keepalivedV2)
	if !VerifyChecksum(v2, netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.2")) {
		t.Error("v2 checksum depends on the addresses")
	}
	for i := range v2 {
		c := append([]byte(nil), v2...)
		c[i] ^= 0x10
		if VerifyChecksum(c, capSrc, MulticastGroup) {
			t.Errorf("v2 checksum verified with byte %d flipped", i)
		}
	}
	// Unicast: the pseudo-header carries the peer's address.
	p := Packet{Version: 3, Type: 1, VRID: 7, Priority: 200, AdvertInt: 50, Addresses: []netip.Addr{vip100}}
	peer := netip.MustParseAddr("192.0.2.2")
	b, err := p.Marshal(capSrc, peer)
	if err != nil {
		t.Fatal(err)
	}
	if !VerifyChecksum(b, capSrc, peer) || VerifyChecksum(b, capSrc, MulticastGroup) {
		t.Error("unicast v3 checksum does not follow the destination")
	}
	// IPv6: the pseudo-header of RFC 8200 §8.1 with both 128-bit addresses.
	v6 := mustHex(t, keepalivedV3IPv6)
	for _, tt := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"another link-local source", netip.MustParseAddr("fe80::2"), MulticastGroup6},
		{"another destination", capSrc6, netip.MustParseAddr("ff02::1")},
		// An IPv4 pseudo-header does not do for an IPv6 packet.
		{"IPv4 addresses", capSrc, MulticastGroup},
		{"mixed families", capSrc6, MulticastGroup},
		{"IPv4-mapped", netip.MustParseAddr("::ffff:192.0.2.1"), netip.MustParseAddr("::ffff:224.0.0.18")},
	} {
		if VerifyChecksum(v6, tt.src, tt.dst) {
			t.Errorf("v3 IPv6 checksum verified with %s: %s -> %s", tt.name, tt.src, tt.dst)
		}
	}
	for i := range v6 {
		c := append([]byte(nil), v6...)
		c[i] ^= 0x01
		if VerifyChecksum(c, capSrc6, MulticastGroup6) {
			t.Errorf("v3 IPv6 checksum verified with byte %d flipped", i)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want error
	}{
		{"empty", "", ErrTooShort},
		{"7 bytes", "3133 6402 0064 43", ErrTooShort},
		{"version 1", "1133 6402 0064 4307 c000 0264 c000 0265", ErrVersion},
		{"version 4", "4133 6402 0064 4307 c000 0264 c000 0265", ErrVersion},
		{"count too high", "3133 6403 0064 4307 c000 0264 c000 0265", ErrLength},
		{"trailing byte", "3133 6402 0064 4307 c000 0264 c000 0265 00", ErrLength},
		{"v2 without auth data", "2133 6402 0101 b8b2 c000 0264 c000 0265", ErrLength},
		// IPv6 (16 bytes an address) only in version 3; a length that fits neither family is refused.
		{"v6 count too high", "3133 6403 0064 7034" + "fd00 0000 0000 0000 0000 0000 0000 0100" + "fd00 0000 0000 0000 0000 0000 0000 0101", ErrLength},
		{"v6 truncated", "3133 6402 0064 7034" + "fd00 0000 0000 0000 0000 0000 0000 0100" + "fd00 0000 0000 0000 0000 0000 0000", ErrLength},
		{"v2 with 16-byte addresses", "2133 6401 0101 0000" + "fd00 0000 0000 0000 0000 0000 0000 0100" + "0000 0000 0000 0000", ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			if err := p.Unmarshal(mustHex(t, tt.wire)); !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		src  netip.Addr
	}{
		{"version 1", Packet{Version: 1}, capSrc},
		{"v3 interval over 12 bits", Packet{Version: 3, AdvertInt: 4096}, capSrc},
		{"v2 interval over 8 bits", Packet{Version: 2, AdvertInt: 256}, capSrc},
		{"IPv6 address from an IPv4 source", Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{vip6100}}, capSrc},
		{"v3 without source", Packet{Version: 3, AdvertInt: 100}, netip.Addr{}},
		{"type over 4 bits", Packet{Version: 3, Type: 16}, capSrc},
		{"mixed families", Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{vip100, vip6100}}, capSrc},
		{"mixed families, IPv6 first", Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{vip6100, vip100}}, capSrc6},
		{"IPv4-mapped address", Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.100")}}, capSrc6},
		{"v2 over IPv6", Packet{Version: 2, AdvertInt: 1, Addresses: []netip.Addr{vip6100}}, capSrc6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := MulticastGroup
			if tt.src.Is6() {
				dst = MulticastGroup6
			}
			if _, err := tt.p.Marshal(tt.src, dst); err == nil {
				t.Fatal("Marshal succeeded")
			}
		})
	}
	// Nor with a destination of the other family.
	p := Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{vip6100}}
	if _, err := p.Marshal(capSrc6, MulticastGroup); err == nil {
		t.Fatal("Marshal succeeded from an IPv6 source to an IPv4 group")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(mustHex(f, keepalivedV3))
	f.Add(mustHex(f, keepalivedV2))
	f.Add(mustHex(f, keepalivedV3IPv6))
	f.Add([]byte{0x31, 1, 255, 0, 0, 1, 0, 0})
	f.Add([]byte{0x21, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(append([]byte{0x31, 1, 100, 1, 0, 100, 0, 0}, vip6100.AsSlice()...))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.Unmarshal(b); err != nil {
			return
		}
		// The addresses are all of one family, which the length decided; send them in a packet of
		// that family.
		src, dst := capSrc, MulticastGroup
		if len(p.Addresses) > 0 && p.Addresses[0].Is6() {
			if p.Version != 3 || len(b) != headerLen+16*len(p.Addresses) {
				t.Fatalf("IPv6 addresses from %d bytes of version %d", len(b), p.Version)
			}
			src, dst = capSrc6, MulticastGroup6
		}
		for _, a := range p.Addresses {
			if a.Is6() != src.Is6() {
				t.Fatalf("mixed families: %v", p.Addresses)
			}
		}
		out, err := p.Marshal(src, dst)
		if err != nil {
			t.Fatalf("Marshal of an unmarshalled packet: %v (%+v)", err, p)
		}
		if !VerifyChecksum(out, src, dst) {
			t.Fatalf("Marshal wrote a bad checksum: %x", out)
		}
		var q Packet
		if err := q.Unmarshal(out); err != nil {
			t.Fatalf("Unmarshal(Marshal(p)): %v", err)
		}
		p.Checksum, q.Checksum = 0, 0
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", q, p)
		}
		// Only the reserved bits of version 3 and the checksum may differ from the input.
		if len(out) != len(b) {
			t.Fatalf("length %d, input %d", len(out), len(b))
		}
	})
}
