package health

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// The probers open their sockets when they are built, in the calling thread's network namespace,
// and never switch namespaces afterwards (as vip does), so the Monitor may run them from any
// goroutine. No socket is tied to an interface index: the interface is looked up at every probe,
// so one deleted and created again (a new index) is probed all the same.

// arpProber asks for the reference's hardware address (RFC 826): a broadcast ARP request from the
// interface's address on the interface the route to the reference uses, answered by an ARP reply
// whose sender is the reference. The AF_PACKET socket is bound to every interface of the namespace
// and its BPF filter passes only ARP replies from the reference, so it queues nothing else.
type arpProber struct {
	ref Reference
	nl  *netlink.Handle
	f   *os.File // non-blocking: deadlines through the runtime poller
	rc  syscall.RawConn
	mu  sync.Mutex // one probe at a time
}

func newARPProber(r Reference, nl *netlink.Handle) (*arpProber, error) {
	ip := r.Address.As4()
	// Ethernet 14 bytes, then the ARP operation at 6 and the sender protocol address at 14.
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 14 + 6, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(arp.OperationReply), SkipTrue: 3},
		bpf.LoadAbsolute{Off: 14 + 14, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(ip[:]), SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("arp %v: filter: %w", r.Address, err)
	}
	filter := make([]unix.SockFilter, len(prog))
	for i, p := range prog {
		filter[i] = unix.SockFilter{Code: p.Op, Jt: p.Jt, Jf: p.Jf, K: p.K}
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("arp %v: packet socket: %w", r.Address, err)
	}
	fp := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("arp %v: attach filter: %w", r.Address, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP)}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("arp %v: bind: %w", r.Address, err)
	}
	f := os.NewFile(uintptr(fd), "arp")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("arp %v: %w", r.Address, err)
	}
	return &arpProber{ref: r, nl: nl, f: f, rc: rc}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Probe sends one ARP request and waits for the reference's reply until the reference's timeout.
func (p *arpProber) Probe(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	const weight = -1 // check.NoWeight
	rt, err := lookupRoute(p.nl, p.ref)
	if err != nil {
		return weight, fmt.Errorf("arp %v: %w", p.ref.Address, err)
	}
	if rt.gw.IsValid() {
		return weight, fmt.Errorf("arp %v: not on-link (the route goes via %v): use method icmp", p.ref.Address, rt.gw)
	}
	link, err := p.nl.LinkByIndex(rt.index)
	if err != nil {
		return weight, fmt.Errorf("arp %v: interface %d: %w", p.ref.Address, rt.index, err)
	}
	mac, name := link.Attrs().HardwareAddr, link.Attrs().Name
	src := rt.src
	if !src.Is4() {
		src = netip.IPv4Unspecified() // no address of our own there: ask as RFC 5227's probe does
	}
	frame, err := arpRequest(mac, src, p.ref.Address)
	if err != nil {
		return weight, fmt.Errorf("arp %v on %s: %w", p.ref.Address, name, err)
	}
	deadline := deadlineOf(ctx, p.ref.Timeout)
	p.drain()
	if err := p.send(frame, rt.index, deadline); err != nil {
		return weight, fmt.Errorf("arp %v on %s: send: %w", p.ref.Address, name, err)
	}
	if err := p.f.SetReadDeadline(deadline); err != nil {
		return weight, err
	}
	buf := make([]byte, 128)
	for {
		n, ifindex, err := p.recv(buf)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) {
				err = errNoAnswer
			}
			return weight, fmt.Errorf("arp %v on %s: %w within %v", p.ref.Address, name, err, p.ref.Timeout)
		}
		if ifindex != rt.index {
			continue
		}
		var fr ethernet.Frame
		var pk arp.Packet
		if fr.UnmarshalBinary(buf[:n]) != nil || pk.UnmarshalBinary(fr.Payload) != nil {
			continue
		}
		if pk.Operation == arp.OperationReply && pk.SenderIP == p.ref.Address {
			return weight, nil
		}
	}
}

// arpRequest returns the Ethernet frame of a broadcast ARP request for target from mac and src.
func arpRequest(mac net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	pk, err := arp.NewPacket(arp.OperationRequest, mac, src, ethernet.Broadcast, target)
	if err != nil {
		return nil, err
	}
	pk.TargetHardwareAddr = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	pb, err := pk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
}

// drain discards replies queued since the last probe (late ones).
func (p *arpProber) drain() {
	_ = p.rc.Control(func(fd uintptr) {
		buf := make([]byte, 1)
		for {
			if _, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
				return
			}
		}
	})
}

func (p *arpProber) send(frame []byte, ifindex int, deadline time.Time) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(sa.Addr[:], ethernet.Broadcast)
	if err := p.f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	var serr error
	err := p.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), frame, 0, sa)
		return !errors.Is(serr, unix.EAGAIN)
	})
	return errors.Join(err, serr)
}

func (p *arpProber) recv(buf []byte) (n, ifindex int, err error) {
	var rerr error
	err = p.rc.Read(func(fd uintptr) bool {
		var sa unix.Sockaddr
		n, sa, rerr = unix.Recvfrom(int(fd), buf, 0)
		if errors.Is(rerr, unix.EAGAIN) {
			return false
		}
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok {
			if ll.Pkttype == unix.PACKET_OUTGOING {
				ifindex = -1
			} else {
				ifindex = ll.Ifindex
			}
		}
		return true
	})
	if err != nil {
		return 0, 0, err
	}
	return n, ifindex, rerr
}

func (p *arpProber) close() { _ = p.f.Close() }

// icmpProber sends an ICMP echo request (RFC 792; ICMPv6, RFC 4443 section 4.1) and waits for the
// reply from the reference with its identifier and sequence number. The raw socket's ICMP filter
// passes echo replies only.
type icmpProber struct {
	ref  Reference
	nl   *netlink.Handle
	c    *icmp.PacketConn
	v6   bool
	id   int
	mu   sync.Mutex // one probe at a time; guards seq
	seq  int
	data []byte
}

func newICMPProber(r Reference, nl *netlink.Handle) (*icmpProber, error) {
	p := &icmpProber{ref: r, nl: nl, v6: r.Address.Is6(), data: []byte("hacoord track_reference")}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p.id = int(binary.BigEndian.Uint16(b[:]))
	network, laddr := "ip4:icmp", "0.0.0.0"
	if p.v6 {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	c, err := icmp.ListenPacket(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("icmp %v: %w", r.Address, err)
	}
	if p.v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		err = c.IPv6PacketConn().SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		err = c.IPv4PacketConn().SetICMPFilter(&f)
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("icmp %v: filter: %w", r.Address, err)
	}
	p.c = c
	return p, nil
}

// Probe sends one echo request and waits for its reply until the reference's timeout.
func (p *icmpProber) Probe(ctx context.Context) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	const weight = -1 // check.NoWeight
	p.seq = (p.seq + 1) & 0xffff
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if p.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: p.id, Seq: p.seq, Data: p.data}}
	b, err := msg.Marshal(nil) // ICMPv6: the kernel computes the checksum of a raw ICMPv6 socket
	if err != nil {
		return weight, fmt.Errorf("icmp %v: %w", p.ref.Address, err)
	}
	dst := &net.IPAddr{IP: p.ref.Address.WithZone("").AsSlice()}
	deadline := deadlineOf(ctx, p.ref.Timeout)
	if err := p.c.SetDeadline(deadline); err != nil {
		return weight, err
	}
	iface := p.ref.Interface
	if iface == "" {
		iface = p.ref.Address.Zone()
	}
	switch {
	case iface == "":
		_, err = p.c.WriteTo(b, dst) // the kernel routes it
	default:
		// Out of the named interface, looked up now (its index may have changed).
		var l netlink.Link
		if l, err = p.nl.LinkByName(iface); err != nil {
			return weight, fmt.Errorf("icmp %v: interface %s: %w", p.ref.Address, iface, err)
		}
		idx := l.Attrs().Index
		if p.v6 {
			if p.ref.Address.IsLinkLocalUnicast() {
				dst.Zone = strconv.Itoa(idx)
			}
			_, err = p.c.IPv6PacketConn().WriteTo(b, &ipv6.ControlMessage{IfIndex: idx}, dst)
		} else {
			_, err = p.c.IPv4PacketConn().WriteTo(b, &ipv4.ControlMessage{IfIndex: idx}, dst)
		}
	}
	if err != nil {
		return weight, fmt.Errorf("icmp %v: send: %w", p.ref.Address, err)
	}
	proto := 1
	if p.v6 {
		proto = 58
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := p.c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) {
				err = errNoAnswer
			}
			return weight, fmt.Errorf("icmp %v: %w within %v", p.ref.Address, err, p.ref.Timeout)
		}
		ipa, ok := peer.(*net.IPAddr)
		if !ok {
			continue
		}
		from, ok := netip.AddrFromSlice(ipa.IP)
		if !ok || from.Unmap() != p.ref.Address.WithZone("") {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == p.id && e.Seq == p.seq {
			return weight, nil
		}
	}
}

func (p *icmpProber) close() { _ = p.c.Close() }
