package ipvs

import (
	"fmt"
	"net/netip"
	"strings"
)

// Format prints t the way `ipvsadm -Ln` does: a version line, two header lines, then each service
// ("TCP  10.0.0.100:80 rr") followed by its destinations
// ("  -> 10.0.0.11:80                 Route   1      0          0"), in ipvsadm's order.
func Format(t Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "IP Virtual Server version %d.%d.%d (size=%d)\n", t.Version[0], t.Version[1], t.Version[2], t.ConnSize)
	b.WriteString("Prot LocalAddress:Port Scheduler Flags\n")
	b.WriteString("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	for _, s := range sorted(t.Services) {
		switch {
		case s.FWMark != 0 && s.Family == INET6:
			fmt.Fprintf(&b, "FWM  %d IPv6", s.FWMark)
		case s.FWMark != 0:
			fmt.Fprintf(&b, "FWM  %d", s.FWMark)
		default:
			fmt.Fprintf(&b, "%s  %s", protoName(s.Protocol), netip.AddrPortFrom(s.Address, s.Port))
		}
		fmt.Fprintf(&b, " %s", s.Scheduler)
		if s.Flags&FlagPersistent != 0 {
			fmt.Fprintf(&b, " persistent %d", s.Timeout)
		}
		if s.Flags&FlagOnePacket != 0 {
			b.WriteString(" ops")
		}
		b.WriteByte('\n')
		for _, d := range s.Destinations {
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %-10d\n", d.AddrPort(), fwdName(d.FwdMethod), d.Weight, d.ActiveConns, d.InactiveConns)
		}
	}
	return b.String()
}

// fwdName is ipvsadm's name of a forwarding method.
func fwdName(f ForwardType) string {
	switch f {
	case Masquerade:
		return "Masq"
	case Local:
		return "Local"
	case Tunnel:
		return "Tunnel"
	case DirectRoute:
		return "Route"
	}
	return "Unknown"
}
