package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Conn carries VRRP messages for one interface. The Elector reads from one goroutine and writes from
// another; Close unblocks a pending Read, which then returns an error wrapping net.ErrClosed.
type Conn interface {
	// Read returns the next VRRP message with its IP source, destination and TTL (IPv6: Hop Limit).
	Read() (Received, error)
	// Write sends one VRRP message to dst with TTL (Hop Limit) 255 and the primary address as
	// source.
	Write(b []byte, dst netip.Addr) error
	// Addr is the primary address, the IP source of every advert: the interface's primary IPv4
	// address, or its IPv6 link-local address (RFC 5798 §5.1.1.1, §5.1.2.1).
	Addr() netip.Addr
	Close() error
}

// ListenConfig is how Listen opens a RawConn.
type ListenConfig struct {
	// Interface is the link to bind to.
	Interface string
	// IPv6 opens an IPv6 socket (RFC 5798 §5.1.2) instead of an IPv4 one.
	IPv6 bool
	// Unicast skips joining the multicast group (unicast peers mode).
	Unicast bool
	// Exclude lists addresses that are not the primary address even if they come first on the
	// interface: the VIPs, which a master (or a crashed predecessor) may have bound.
	Exclude []netip.Addr
}

// ErrTentative is returned by Listen for IPv6 when the interface's only link-local address is still
// tentative (duplicate address detection, RFC 4862 §5.4): it cannot be the source of an advert
// yet. Listening again a little later succeeds; the Elector does so.
var ErrTentative = errors.New("vrrp: the link-local address is tentative (duplicate address detection)")

// RawConn is a raw IP protocol 112 socket bound to one interface (SO_BINDTODEVICE).
//
// IPv4 (RFC 5798 §5.1.1): joined to 224.0.0.18 there, sending with TTL 255, TOS internet-control,
// multicast loop off and the interface's primary IPv4 address as source, and receiving the TTL and
// destination of each packet as control messages.
//
// IPv6 (RFC 5798 §5.1.2): joined to ff02::12 there, sending with Hop Limit 255, traffic class
// internet-control (as keepalived), multicast loop off and the interface's link-local address as
// source, and receiving the Hop Limit and destination as control messages. The kernel fills in and
// verifies the checksum over the IPv6 pseudo-header (IPV6_CHECKSUM at ChecksumOffset, RFC 3542
// §3.1), so a packet with a bad one never reaches Read.
type RawConn struct {
	close sync.Once
	pc    *ipv4.PacketConn // IPv4, else nil
	pc6   *ipv6.PacketConn // IPv6, else nil
	ifi   *net.Interface
	addr  netip.Addr
	group bool
	// raw is the socket, for Pending and (IPv4) relink (relink.go); index is the interface's
	// index, which relink moves when the interface was created again.
	raw      syscall.RawConn
	index    atomic.Int32
	relinkMu sync.Mutex
}

// Listen opens a RawConn in the calling thread's network namespace.
func Listen(cfg ListenConfig) (*RawConn, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vrrp: listen on %s: %w", cfg.Interface, err)
	}
	if cfg.IPv6 {
		return listen6(ifi, cfg)
	}
	addr, err := primaryAddr(ifi, cfg.Exclude)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name)
			if serr == nil {
				// Only the groups joined on this socket, not every group of the host.
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
			}
		})
		return errors.Join(err, serr)
	}}
	c, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip4:%d", Protocol), "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("vrrp: listen on %s: %w", ifi.Name, err)
	}
	rc := &RawConn{pc: ipv4.NewPacketConn(c), ifi: ifi, addr: addr}
	rc.index.Store(int32(ifi.Index))
	if ic, ok := c.(*net.IPConn); ok {
		rc.raw, _ = ic.SyscallConn()
	}
	if err := rc.setup(cfg.Unicast); err != nil {
		c.Close()
		return nil, fmt.Errorf("vrrp: listen on %s: %w", ifi.Name, err)
	}
	return rc, nil
}

func (c *RawConn) setup(unicast bool) error {
	p := c.pc
	if err := p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return fmt.Errorf("control messages: %w", err)
	}
	if err := p.SetTTL(TTL); err != nil {
		return fmt.Errorf("ttl: %w", err)
	}
	if err := p.SetTOS(0xc0); err != nil { // IPTOS_PREC_INTERNETCONTROL, as keepalived
		return fmt.Errorf("tos: %w", err)
	}
	if err := p.SetMulticastTTL(TTL); err != nil {
		return fmt.Errorf("multicast ttl: %w", err)
	}
	if err := p.SetMulticastInterface(c.ifi); err != nil {
		return fmt.Errorf("multicast interface: %w", err)
	}
	if err := p.SetMulticastLoopback(false); err != nil {
		return fmt.Errorf("multicast loop: %w", err)
	}
	if !unicast {
		if err := p.JoinGroup(c.ifi, &net.IPAddr{IP: MulticastGroup.AsSlice()}); err != nil {
			return fmt.Errorf("join %s: %w", MulticastGroup, err)
		}
		c.group = true
	}
	return nil
}

// primaryAddr is the first IPv4 address of ifi that is not excluded.
func primaryAddr(ifi *net.Interface, exclude []netip.Addr) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("vrrp: addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() && !slices.Contains(exclude, ip) {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("vrrp: %s has no IPv4 address to send adverts from", ifi.Name)
}

// Addr returns the primary address.
func (c *RawConn) Addr() netip.Addr { return c.addr }

// Pending reports whether a packet waits in the socket's receive queue, not yet read (SIOCINQ:
// the length of the next one). It does not read it nor disturb a Read in progress.
func (c *RawConn) Pending() bool {
	if c.raw == nil {
		return false
	}
	n := 0
	err := c.raw.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return err == nil && n > 0
}

// Read implements Conn.
func (c *RawConn) Read() (Received, error) {
	if c.pc6 != nil {
		return c.read6()
	}
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := c.pc.ReadFrom(buf)
		if err != nil {
			return Received{}, fmt.Errorf("vrrp: read on %s: %w", c.ifi.Name, err)
		}
		if cm != nil && cm.IfIndex != 0 && cm.IfIndex != int(c.index.Load()) {
			continue
		}
		r := Received{Data: buf[:n:n]}
		if a, ok := src.(*net.IPAddr); ok {
			r.Src, _ = netip.AddrFromSlice(a.IP)
			r.Src = r.Src.Unmap()
		}
		if cm != nil {
			r.TTL = cm.TTL
			r.Dst, _ = netip.AddrFromSlice(cm.Dst)
			r.Dst = r.Dst.Unmap()
		}
		return r, nil
	}
}

// Write implements Conn.
func (c *RawConn) Write(b []byte, dst netip.Addr) error {
	if c.pc6 != nil {
		return c.write6(b, dst)
	}
	cm := &ipv4.ControlMessage{Src: c.addr.AsSlice(), IfIndex: int(c.index.Load())}
	_, err := c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()})
	if isNoDevice(err) {
		// The interface may have been deleted and created again: send on the new one.
		if moved, rerr := c.relink(); moved && rerr == nil {
			cm.IfIndex = int(c.index.Load())
			_, err = c.pc.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()})
		}
	}
	if err != nil {
		return fmt.Errorf("vrrp: send to %s on %s: %w", dst, c.ifi.Name, err)
	}
	return nil
}

// Close leaves the group and closes the socket. Idempotent.
func (c *RawConn) Close() error {
	var err error
	c.close.Do(func() {
		if c.pc6 != nil {
			if c.group {
				_ = c.pc6.LeaveGroup(c.ifi, &net.IPAddr{IP: MulticastGroup6.AsSlice()})
			}
			err = c.pc6.Close()
			return
		}
		if c.group {
			_ = c.pc.LeaveGroup(c.ifi, &net.IPAddr{IP: MulticastGroup.AsSlice()})
		}
		err = c.pc.Close()
	})
	return err
}
