package vip

import (
	"fmt"
	"net/netip"
)

// validateAddressClasses reports the VIPs whose address cannot be a virtual IP for reasons of its
// prefix (called by Config.Validate, beside its own per-VIP rules): a /0 prefix (binding it would
// route every destination to the interface), and an IPv4 address that is its subnet's broadcast
// address (the host part all ones, in a prefix shorter than /31: hosts would treat it as
// broadcast, not as one address). Each error names the VIP.
func (c Config) validateAddressClasses() []error {
	var errs []error
	for _, p := range c.VIPs {
		if !p.IsValid() {
			continue // Validate says so
		}
		a := p.Addr()
		switch {
		case p.Bits() == 0:
			errs = append(errs, fmt.Errorf("vip: config: VIP %v has prefix length 0 (it would route everything to the interface)", p))
		case a.Is4() && p.Bits() < 31 && a == lastAddr(p):
			errs = append(errs, fmt.Errorf("vip: config: VIP %v is the broadcast address of its subnet %v", p, p.Masked()))
		}
	}
	return errs
}

// lastAddr returns the highest address in the IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
