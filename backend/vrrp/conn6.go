package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// listen6 opens the IPv6 RawConn on ifi (RFC 5798 §5.1.2).
func listen6(ifi *net.Interface, cfg ListenConfig) (*RawConn, error) {
	addr, err := linkLocalAddr(ifi, cfg.Exclude)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
			if serr == nil {
				// Only the groups joined on this socket, not every group of the host.
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
			}
		})
		return errors.Join(err, serr)
	}}
	c, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip6:%d", Protocol), "::")
	if err != nil {
		return nil, fmt.Errorf("vrrp: listen on %s: %w", ifi.Name, err)
	}
	rc := &RawConn{pc6: ipv6.NewPacketConn(c), ifi: ifi, addr: addr}
	if ic, ok := c.(*net.IPConn); ok {
		rc.raw, _ = ic.SyscallConn()
	}
	if err := rc.setup6(cfg.Unicast); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrp: listen on %s: %w", ifi.Name, err)
	}
	return rc, nil
}

func (c *RawConn) setup6(unicast bool) error {
	p := c.pc6
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		return fmt.Errorf("control messages: %w", err)
	}
	// RFC 3542 §3.1: the kernel computes the checksum over the IPv6 pseudo-header on send and
	// drops packets whose checksum is wrong on receive.
	if err := p.SetChecksum(true, ChecksumOffset); err != nil {
		return fmt.Errorf("checksum offload: %w", err)
	}
	if err := p.SetHopLimit(TTL); err != nil {
		return fmt.Errorf("hop limit: %w", err)
	}
	if err := p.SetMulticastHopLimit(TTL); err != nil {
		return fmt.Errorf("multicast hop limit: %w", err)
	}
	if err := p.SetTrafficClass(0xc0); err != nil { // internet control, as keepalived
		return fmt.Errorf("traffic class: %w", err)
	}
	if err := p.SetMulticastInterface(c.ifi); err != nil {
		return fmt.Errorf("multicast interface: %w", err)
	}
	if err := p.SetMulticastLoopback(false); err != nil {
		return fmt.Errorf("multicast loop: %w", err)
	}
	if !unicast {
		if err := p.JoinGroup(c.ifi, &net.IPAddr{IP: MulticastGroup6.AsSlice()}); err != nil {
			return fmt.Errorf("join %s: %w", MulticastGroup6, err)
		}
		c.group = true
	}
	return nil
}

// linkLocalAddr is the first IPv6 link-local address of ifi that is not excluded and has passed
// duplicate address detection: the source of IPv6 adverts (RFC 5798 §5.1.2.1). It returns an error
// wrapping ErrTentative when the only candidates are still tentative.
func linkLocalAddr(ifi *net.Interface, exclude []netip.Addr) (netip.Addr, error) {
	link, err := netlink.LinkByIndex(ifi.Index)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp: link %s: %w", ifi.Name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp: IPv6 addresses of %s: %w", ifi.Name, err)
	}
	cands := make([]ifAddr, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok {
			cands = append(cands, ifAddr{ip, a.Flags})
		}
	}
	ip, err := pickLinkLocal(cands, exclude)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w on %s", err, ifi.Name)
	}
	return ip, nil
}

// ifAddr is an interface address with its IFA_F_* flags.
type ifAddr struct {
	ip    netip.Addr
	flags int
}

// errNoLinkLocal: the interface has no IPv6 link-local address (IPv6 disabled, addr_gen_mode none).
var errNoLinkLocal = errors.New("vrrp: no IPv6 link-local address to send adverts from (RFC 5798 §5.1.2.1)")

// pickLinkLocal chooses the advert source among an interface's addresses: the first link-local
// unicast one that is not excluded, not tentative and did not fail duplicate address detection.
func pickLinkLocal(addrs []ifAddr, exclude []netip.Addr) (netip.Addr, error) {
	tentative := false
	for _, a := range addrs {
		if !a.ip.Is6() || !a.ip.IsLinkLocalUnicast() || slices.Contains(exclude, a.ip) {
			continue
		}
		switch {
		case a.flags&unix.IFA_F_DADFAILED != 0:
			continue
		case a.flags&unix.IFA_F_TENTATIVE != 0:
			tentative = true
			continue
		}
		return a.ip, nil
	}
	if tentative {
		return netip.Addr{}, ErrTentative
	}
	return netip.Addr{}, errNoLinkLocal
}

func (c *RawConn) read6() (Received, error) {
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := c.pc6.ReadFrom(buf)
		if err != nil {
			return Received{}, fmt.Errorf("vrrp: read on %s: %w", c.ifi.Name, err)
		}
		if cm != nil && cm.IfIndex != 0 && cm.IfIndex != c.ifi.Index {
			continue
		}
		r := Received{Data: buf[:n:n]}
		if a, ok := src.(*net.IPAddr); ok {
			r.Src, _ = netip.AddrFromSlice(a.IP) // without the zone: one interface
		}
		if cm != nil {
			r.TTL = cm.HopLimit
			r.Dst, _ = netip.AddrFromSlice(cm.Dst)
		}
		return r, nil
	}
}

func (c *RawConn) write6(b []byte, dst netip.Addr) error {
	// The interface comes from the packet info (and SO_BINDTODEVICE), not from a zone: Go resolves
	// a zone name in the calling thread's network namespace, which need not be the socket's.
	cm := &ipv6.ControlMessage{Src: c.addr.AsSlice(), IfIndex: c.ifi.Index}
	if _, err := c.pc6.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("vrrp: send to %s on %s: %w", dst, c.ifi.Name, err)
	}
	return nil
}
