package vrrp

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// The IPv6 advert source is a link-local address that has passed duplicate address detection and
// is not a VIP (RFC 5798 §5.1.2.1; a master may hold a link-local VIP).
func TestPickLinkLocal(t *testing.T) {
	global := ifAddr{ip: netip.MustParseAddr("fd00::1")}
	ll := func(s string, flags int) ifAddr { return ifAddr{ip: netip.MustParseAddr(s), flags: flags} }
	vip := netip.MustParseAddr("fe80::100")
	tests := []struct {
		name  string
		addrs []ifAddr
		want  netip.Addr
		err   error
	}{
		{"first link-local", []ifAddr{global, ll("fe80::1", unix.IFA_F_PERMANENT), ll("fe80::2", 0)}, ll1, nil},
		{"VIP skipped", []ifAddr{ll("fe80::100", unix.IFA_F_NODAD), ll("fe80::2", 0)}, ll2, nil},
		{"tentative skipped", []ifAddr{ll("fe80::1", unix.IFA_F_TENTATIVE), ll("fe80::2", 0)}, ll2, nil},
		{"only tentative", []ifAddr{global, ll("fe80::1", unix.IFA_F_TENTATIVE)}, netip.Addr{}, ErrTentative},
		{"DAD failed", []ifAddr{ll("fe80::1", unix.IFA_F_DADFAILED|unix.IFA_F_TENTATIVE)}, netip.Addr{}, errNoLinkLocal},
		{"none", []ifAddr{global, {ip: addrA}}, netip.Addr{}, errNoLinkLocal},
	}
	for _, tt := range tests {
		got, err := pickLinkLocal(tt.addrs, []netip.Addr{vip})
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("%s: %s, %v; want %s, %v", tt.name, got, err, tt.want, tt.err)
		}
	}
}
