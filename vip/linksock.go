package vip

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// linkSocket is an AF_PACKET socket (packet(7)) bound to one EtherType on every interface of the
// network namespace it was opened in, not to one interface: each send names the interface by its
// index, and each frame received says which interface it came in on. So the socket keeps working
// when the interface is deleted and created again under the same name with a new index (a
// container's eth0 after `docker network disconnect` and `connect`), which a socket bound to the
// old index does not: its sends fail for ever.
//
// It receives nothing unless listening: its BPF filter drops every frame until listen(filter) is
// called, so the kernel queues none of the namespace's traffic on it. Safe for concurrent use.
type linkSocket struct {
	f     *os.File // non-blocking, so deadlines work through the runtime poller
	rc    syscall.RawConn
	proto uint16 // the EtherType, host byte order
}

// Socket filters: dropAll while not listening; the listen filters for the conflict probe.
var (
	dropAll = mustAssemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	// acceptARP takes every ARP frame (the socket only gets ARP).
	acceptARP = mustAssemble([]bpf.Instruction{bpf.RetConstant{Val: 0xffff}})
	// acceptNA takes the IPv6 frames that carry a neighbour advertisement right after the IPv6
	// header (Ethernet 14 + next header at 6 = 20; ICMPv6 type at 14 + 40 = 54).
	acceptNA = mustAssemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 20, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 14 + ipv6HeaderLen, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpNeighborAdvertisement, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
)

func mustAssemble(prog []bpf.Instruction) []unix.SockFilter {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openLinkSocket opens a linkSocket for EtherType proto in the calling thread's network namespace
// (CAP_NET_RAW). The filter is in place before the socket is bound, so it never queues a frame
// before listen.
func openLinkSocket(proto uint16) (*linkSocket, error) {
	// Protocol 0: no frames at all until bind names the EtherType.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := setFilter(fd, dropAll); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	// Interface index 0: every interface of the namespace.
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto)}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("packet socket: bind to EtherType %#04x: %w", proto, err)
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	return &linkSocket{f: f, rc: rc, proto: proto}, nil
}

func setFilter(fd int, prog []unix.SockFilter) error {
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("packet socket: attach filter: %w", err)
	}
	return nil
}

// send puts frame (a whole Ethernet frame) on the interface with index ifindex, addressed to dst,
// giving up at deadline.
func (s *linkSocket) send(frame []byte, ifindex int, dst net.HardwareAddr, deadline time.Time) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(s.proto), Ifindex: ifindex, Halen: uint8(len(dst))}
	copy(sa.Addr[:], dst)
	if err := s.f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), frame, 0, sa)
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err // the deadline passed, or the socket is closed
	}
	return serr
}

// listen swaps the socket's filter: prog lets frames through (the conflict probe listens), nil
// drops them all again. Either way it discards what is queued, so a probe never sees a frame from
// before it started.
func (s *linkSocket) listen(prog []unix.SockFilter) error {
	if prog == nil {
		prog = dropAll
	}
	var ferr error
	err := s.rc.Control(func(fd uintptr) {
		if ferr = setFilter(int(fd), prog); ferr != nil {
			return
		}
		buf := make([]byte, 1)
		for {
			if _, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
				return // EAGAIN: empty
			}
		}
	})
	return errors.Join(err, ferr)
}

// received is one frame a linkSocket read.
type received struct {
	n       int
	ifindex int
	// pkttype is the packet type (unix.PACKET_HOST, _BROADCAST, _MULTICAST, _OTHERHOST,
	// _OUTGOING).
	pkttype uint8
}

// setReadDeadline sets when a blocked or later recv gives up (with an error satisfying
// os.IsTimeout); a time in the past wakes a recv that is waiting.
func (s *linkSocket) setReadDeadline(t time.Time) error { return s.f.SetReadDeadline(t) }

// recv reads the next frame into buf, waiting until the read deadline.
func (s *linkSocket) recv(buf []byte) (received, error) {
	var (
		r    received
		rerr error
	)
	err := s.rc.Read(func(fd uintptr) bool {
		var sa unix.Sockaddr
		r.n, sa, rerr = unix.Recvfrom(int(fd), buf, 0)
		if errors.Is(rerr, unix.EAGAIN) {
			return false
		}
		if ll, ok := sa.(*unix.SockaddrLinklayer); ok {
			r.ifindex, r.pkttype = ll.Ifindex, ll.Pkttype
		}
		return true
	})
	if err != nil {
		return received{}, err
	}
	return r, rerr
}

func (s *linkSocket) close() error { return s.f.Close() }
