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
	capSrc = netip.MustParseAddr("192.0.2.1")
	vip100 = netip.MustParseAddr("192.0.2.100")
	vip101 = netip.MustParseAddr("192.0.2.101")
)

// Captured with tcpdump -xx in a namespace from keepalived 2.2.7 (vrid 51, priority 100,
// advert_int 1, virtual_ipaddress 192.0.2.100/24 and 192.0.2.101/24, source 192.0.2.1), IP header
// removed.
const (
	keepalivedV3 = "3133 6402 0064 4307 c000 0264 c000 0265"
	keepalivedV2 = "2133 6402 0101 b8b2 c000 0264 c000 0265 7365 6372 6574 0000" // auth_pass secret
)

func TestPacketKeepalivedCaptures(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Packet
	}{
		{"v3", keepalivedV3, Packet{Version: 3, Type: 1, VRID: 51, Priority: 100, AdvertInt: 100,
			Checksum: 0x4307, Addresses: []netip.Addr{vip100, vip101}}},
		{"v2 auth pass", keepalivedV2, Packet{Version: 2, Type: 1, VRID: 51, Priority: 100, AdvertInt: 1,
			AuthType: AuthSimple, AuthData: AuthPassData("secret"), Checksum: 0xb8b2,
			Addresses: []netip.Addr{vip100, vip101}}},
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
			if !VerifyChecksum(wire, capSrc, MulticastGroup) {
				t.Error("checksum of keepalived's packet does not verify")
			}
			b, err := p.Marshal(capSrc, MulticastGroup)
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
		{"IPv6 address", Packet{Version: 3, AdvertInt: 100, Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, capSrc},
		{"v3 without source", Packet{Version: 3, AdvertInt: 100}, netip.Addr{}},
		{"type over 4 bits", Packet{Version: 3, Type: 16}, capSrc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.Marshal(tt.src, MulticastGroup); err == nil {
				t.Fatal("Marshal succeeded")
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(mustHex(f, keepalivedV3))
	f.Add(mustHex(f, keepalivedV2))
	f.Add([]byte{0x31, 1, 255, 0, 0, 1, 0, 0})
	f.Add([]byte{0x21, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.Unmarshal(b); err != nil {
			return
		}
		out, err := p.Marshal(capSrc, MulticastGroup)
		if err != nil {
			t.Fatalf("Marshal of an unmarshalled packet: %v (%+v)", err, p)
		}
		if !VerifyChecksum(out, capSrc, MulticastGroup) {
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
