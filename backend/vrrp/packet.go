package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Protocol is the IP protocol number of VRRP (RFC 5798 §5.1.1.4).
const Protocol = 112

// TTL is the only IPv4 TTL or IPv6 Hop Limit a VRRP router sends and accepts (RFC 5798 §5.1.1.3,
// §5.1.2.3; RFC 3768 §5.2.3).
const TTL = 255

// TypeAdvertisement is the only VRRP packet type (RFC 5798 §5.2.2).
const TypeAdvertisement = 1

// PriorityOwner is the priority of the router that owns the virtual addresses, and PriorityStop the
// priority a master sends when it stops being master (RFC 5798 §5.2.4).
const (
	PriorityOwner = 255
	PriorityStop  = 0
)

// Auth types of VRRPv2 (RFC 3768 §5.3.6). RFC 5798 removed authentication; keepalived still
// supports the simple text password for version 2.
const (
	AuthNone   = 0
	AuthSimple = 1
	AuthAH     = 2
)

// AuthDataLen is the size of the VRRPv2 Authentication Data field (RFC 3768 §5.3.10).
const AuthDataLen = 8

// MulticastGroup is the IPv4 multicast address adverts are sent to (RFC 5798 §5.1.1.2), and
// MulticastGroup6 the IPv6 one (RFC 5798 §5.1.2.2).
var (
	MulticastGroup  = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	MulticastGroup6 = netip.MustParseAddr("ff02::12")
)

// ChecksumOffset is where the checksum sits in a VRRP message: the offset a raw IPv6 socket is given
// (IPV6_CHECKSUM) so that the kernel fills it in and verifies it (RFC 3542 §3.1).
const ChecksumOffset = 6

const headerLen = 8

// Errors returned by Unmarshal, so that a receiver can count drops by reason.
var (
	ErrTooShort = errors.New("vrrp: packet too short")
	ErrVersion  = errors.New("vrrp: unsupported version")
	ErrLength   = errors.New("vrrp: length does not match address count")
)

// Packet is one VRRP advertisement (RFC 5798 §5.1, RFC 3768 §5.1): version 3 over IPv4 or IPv6,
// version 2 over IPv4.
type Packet struct {
	// Version is 2 (RFC 3768) or 3 (RFC 5798).
	Version uint8
	// Type is TypeAdvertisement in every valid packet.
	Type     uint8
	VRID     uint8
	Priority uint8
	// AdvertInt is the raw interval field: centiseconds in the 12-bit Max Adver Int of version 3
	// (RFC 5798 §5.2.7), seconds in the 8-bit Adver Int of version 2 (RFC 3768 §5.3.7).
	AdvertInt uint16
	// AuthType and AuthData are the version 2 authentication fields (RFC 3768 §5.3.6, §5.3.10);
	// both are zero in version 3.
	AuthType uint8
	AuthData [AuthDataLen]byte
	// Checksum is the checksum read by Unmarshal; Marshal computes its own and ignores it.
	Checksum uint16
	// Addresses are the addresses of the virtual router (RFC 5798 §5.2.9): all IPv4, or (version 3)
	// all IPv6, the family of the IP packet that carries them. The header does not say which:
	// Unmarshal tells them apart by the length.
	Addresses []netip.Addr
}

// Len is the length of the marshalled packet.
func (p *Packet) Len() int {
	n := headerLen + addrLen(p.Addresses)*len(p.Addresses)
	if p.Version == 2 {
		n += AuthDataLen
	}
	return n
}

// addrLen is the size of one address of the list on the wire: 16 bytes if the first is IPv6, else 4.
func addrLen(addrs []netip.Addr) int {
	if len(addrs) > 0 && addrs[0].Is6() {
		return 16
	}
	return 4
}

// Marshal encodes p and fills in the checksum. src and dst are the IP source and destination the
// packet will be sent with: version 3 checksums an IPv4 or IPv6 pseudo-header (RFC 5798 §5.2.8),
// so they must be of the addresses' family; version 2 checksums only the VRRP message (RFC 3768
// §5.3.8), so they are ignored there.
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	if p.Version != 2 && p.Version != 3 {
		return nil, fmt.Errorf("%w: %d", ErrVersion, p.Version)
	}
	if len(p.Addresses) > 255 {
		return nil, fmt.Errorf("vrrp: %d addresses, at most 255", len(p.Addresses))
	}
	if p.Type > 15 {
		return nil, fmt.Errorf("vrrp: type %d does not fit 4 bits", p.Type)
	}
	b := make([]byte, p.Len())
	b[0] = p.Version<<4 | p.Type
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = uint8(len(p.Addresses))
	switch p.Version {
	case 3:
		if p.AdvertInt > 0x0fff {
			return nil, fmt.Errorf("vrrp: advert interval %d cs does not fit 12 bits", p.AdvertInt)
		}
		binary.BigEndian.PutUint16(b[4:], p.AdvertInt) // 4 reserved bits stay zero
	case 2:
		if p.AdvertInt > 0xff {
			return nil, fmt.Errorf("vrrp: advert interval %d s does not fit 8 bits", p.AdvertInt)
		}
		b[4] = p.AuthType
		b[5] = uint8(p.AdvertInt)
	}
	v6 := addrLen(p.Addresses) == 16
	if v6 && p.Version == 2 {
		return nil, errors.New("vrrp: version 2 is IPv4 only (RFC 3768); IPv6 needs version 3")
	}
	off := headerLen
	for _, a := range p.Addresses {
		switch {
		case v6 && a.Is6() && !a.Is4In6():
			a16 := a.As16()
			copy(b[off:], a16[:])
			off += 16
		case !v6 && a.Is4():
			a4 := a.As4()
			copy(b[off:], a4[:])
			off += 4
		default:
			return nil, fmt.Errorf("vrrp: address %s: the list mixes IPv4 and IPv6 (RFC 5798 §5.2.9: one family)", a)
		}
	}
	if p.Version == 2 {
		copy(b[off:], p.AuthData[:])
	}
	var sum uint32
	if p.Version == 3 {
		if !sameFamily(src, dst) || (len(p.Addresses) > 0 && src.Is6() != v6) {
			return nil, fmt.Errorf("vrrp: version 3 checksum needs a source and destination of the addresses' family, got %s -> %s", src, dst)
		}
		sum = pseudoHeaderSum(src, dst, len(b))
	}
	binary.BigEndian.PutUint16(b[ChecksumOffset:], ^fold(sum+onesSum(b)))
	return b, nil
}

// sameFamily reports whether a and b are both IPv4 or both IPv6 (not IPv4-mapped).
func sameFamily(a, b netip.Addr) bool {
	return (a.Is4() && b.Is4()) || (a.Is6() && !a.Is4In6() && b.Is6() && !b.Is4In6())
}

// Unmarshal decodes b into p. It checks the version (2 or 3) and that the length matches the
// address count: 4 bytes an address, or, for version 3, 16 (IPv6; with one address or more the two
// lengths differ, so the length says the family). It does not verify the checksum (see
// VerifyChecksum) nor any other field.
func (p *Packet) Unmarshal(b []byte) error {
	if len(b) < headerLen {
		return fmt.Errorf("%w: %d bytes", ErrTooShort, len(b))
	}
	v := b[0] >> 4
	if v != 2 && v != 3 {
		return fmt.Errorf("%w: %d", ErrVersion, v)
	}
	n := int(b[3])
	size, want := 4, headerLen+4*n
	if v == 2 {
		want += AuthDataLen
	} else if n > 0 && len(b) == headerLen+16*n {
		size, want = 16, headerLen+16*n
	}
	if len(b) != want {
		return fmt.Errorf("%w: %d bytes for %d addresses (version %d), want %d", ErrLength, len(b), n, v, want)
	}
	*p = Packet{
		Version:  v,
		Type:     b[0] & 0x0f,
		VRID:     b[1],
		Priority: b[2],
		Checksum: binary.BigEndian.Uint16(b[6:]),
	}
	if v == 3 {
		p.AdvertInt = binary.BigEndian.Uint16(b[4:]) & 0x0fff
	} else {
		p.AuthType = b[4]
		p.AdvertInt = uint16(b[5])
	}
	if n > 0 {
		p.Addresses = make([]netip.Addr, n)
	}
	for i := range n {
		if size == 16 {
			p.Addresses[i] = netip.AddrFrom16([16]byte(b[headerLen+16*i:]))
		} else {
			p.Addresses[i] = netip.AddrFrom4([4]byte(b[headerLen+4*i:]))
		}
	}
	if v == 2 {
		copy(p.AuthData[:], b[headerLen+4*n:])
	}
	return nil
}

// VerifyChecksum reports whether the marshalled packet b carries a correct checksum, given the IP
// source and destination it was received with (version 3 only, both IPv4 or both IPv6; RFC 5798
// §5.2.8, RFC 3768 §5.3.8).
func VerifyChecksum(b []byte, src, dst netip.Addr) bool {
	if len(b) < headerLen {
		return false
	}
	var sum uint32
	if b[0]>>4 == 3 {
		if !sameFamily(src, dst) {
			return false
		}
		sum = pseudoHeaderSum(src, dst, len(b))
	}
	return fold(sum+onesSum(b)) == 0xffff
}

// pseudoHeaderSum is the one's-complement sum of the pseudo-header of RFC 5798 §5.2.8: for IPv6
// RFC 8200 §8.1's (source, destination, 32-bit upper-layer length, zeros, next header 112), for
// IPv4 the same layout adapted (source, destination, zero, protocol, 16-bit length). Both fold to
// the sum of the addresses' 16-bit words, the length and the protocol. src and dst are of one family.
func pseudoHeaderSum(src, dst netip.Addr, length int) uint32 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum = onesSum(s[:]) + onesSum(d[:])
	} else {
		s, d := src.As16(), dst.As16()
		sum = onesSum(s[:]) + onesSum(d[:])
	}
	return sum + Protocol + uint32(length)
}

// onesSum adds b as big-endian 16-bit words (RFC 1071), a trailing odd byte padded with zero.
func onesSum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// AuthPassData returns the 8-byte Authentication Data keepalived sends for auth_type PASS: the
// password truncated to 8 bytes and padded with zeros.
func AuthPassData(pass string) [AuthDataLen]byte {
	var d [AuthDataLen]byte
	copy(d[:], pass)
	return d
}
