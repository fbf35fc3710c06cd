package vip

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// kernel is what the Manager needs from the system: the interface's addresses, a way to put frames on
// the wire, and notice of changes. netlinkKernel is the real one; tests may substitute a fake. The
// Manager serialises every call except watch, which runs on its own goroutine.
type kernel interface {
	// bind adds v to the interface, or updates it in place if present. lifetime is the valid and
	// preferred lifetime in seconds; 0 means permanent.
	bind(v netip.Prefix, lifetime uint32) error
	// unbind removes v from the interface and reports whether it was there; an absent address is
	// not an error. bind and unbind report an interface whose index is gone with an error
	// satisfying errors.Is(err, unix.ENODEV): the Manager then relinks and tries again.
	unbind(v netip.Prefix) (removed bool, err error)
	// addrs lists the addresses on the interface.
	addrs() ([]netip.Prefix, error)
	// linkUp reports whether the interface is up and running (IFF_UP and IFF_RUNNING).
	linkUp() (bool, error)
	// send puts one Ethernet frame on the wire.
	send(frame []byte, ipv6 bool) error
	// probe sends the conflict probes of req and returns the answers heard (see probeRequest).
	probe(ctx context.Context, req probeRequest) ([]answer, error)
	// relink looks the interface up by name again and from then on uses what it finds: the same
	// interface, or one created since under the same name (a new index, maybe a new hardware
	// address). changed says the index changed. An error (no such interface) changes nothing.
	relink() (index int, mac net.HardwareAddr, changed bool, err error)
	// watch sends address changes and link state changes of the interface on out until ctx is done
	// (it then returns nil) or the subscription fails. It follows the interface across relink.
	watch(ctx context.Context, out chan<- event) error
	close() error
}

type eventKind int

const (
	// addrRemoved: addr left the interface.
	addrRemoved eventKind = iota + 1
	// addrAdded: addr was added to the interface, or updated in place.
	addrAdded
	// linkChanged: the interface changed; up says whether it is up and running now.
	linkChanged
	// subscribed: watching has (re)started; anything before may have been missed.
	subscribed
	// linkAppeared: an interface of the configured name with another index appeared (the
	// interface was deleted and created again); relink picks it up.
	linkAppeared
)

type event struct {
	kind eventKind
	addr netip.Prefix
	up   bool
}

// netlinkKernel is kernel over rtnetlink and AF_PACKET sockets, all opened by openNetlink in the
// network namespace of the calling thread. Opening everything up front, the subscription socket too,
// means the Manager never switches namespaces (setns needs CAP_SYS_ADMIN, which the daemon does not
// otherwise need) and can be used from any goroutine afterwards.
//
// None of the sockets is tied to the interface's index: the netlink requests name the interface
// the last relink found, and the packet sockets name it in every send. So when the interface is
// deleted and created again under its name (a container's eth0 after `docker network disconnect`
// and `connect` has a new index), a relink is all it takes to bind and announce on the new one.
type netlinkKernel struct {
	nl    *netlink.Handle
	name  string
	label string
	// link is the interface as the last relink found it (the Manager serialises its use); index is
	// its index, for watch and probe, which run concurrently.
	link  netlink.Link
	index atomic.Int32
	// sub receives the kernel's address and link notifications; watch reads it.
	sub      *nl.NetlinkSocket
	closeSub sync.Once
	// arpSock and ndSock send the announcements and conflict probes and hear the answers; nil when
	// there is no VIP of that family, or nothing to send.
	arpSock, ndSock *linkSocket
}

// netlinkTimeout bounds every netlink request, so a wedged kernel cannot hold the Manager forever.
const netlinkTimeout = 5 * time.Second

// sendTimeout bounds one frame's send: announcing must never block binding and releasing.
const sendTimeout = 100 * time.Millisecond

// openNetlink opens everything the Manager needs, in the network namespace of the calling OS thread,
// and returns it with the interface's hardware address.
func openNetlink(cfg Config) (_ *netlinkKernel, mac net.HardwareAddr, err error) {
	k := &netlinkKernel{name: cfg.Interface, label: cfg.Label}
	defer func() {
		if err != nil {
			_ = k.close()
		}
	}()
	// NETLINK_ROUTE only: the default also opens XFRM and NETFILTER sockets, which fail on kernels
	// where those are modules not loaded (EPROTONOSUPPORT).
	if k.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, nil, fmt.Errorf("vip: netlink: %w", err)
	}
	if err := k.nl.SetSocketTimeout(netlinkTimeout); err != nil {
		return nil, nil, fmt.Errorf("vip: netlink timeout: %w", err)
	}
	if k.link, err = k.nl.LinkByName(cfg.Interface); err != nil {
		return nil, nil, fmt.Errorf("vip: interface %q: %w", cfg.Interface, err)
	}
	k.index.Store(int32(k.link.Attrs().Index))
	if k.sub, err = nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR); err != nil {
		return nil, nil, fmt.Errorf("vip: netlink subscription: %w", err)
	}
	// A larger buffer makes overflow (ENOBUFS, lost notifications) unlikely; watch recovers from it.
	_ = k.sub.SetReceiveBufferSize(1<<20, false)
	mac = k.link.Attrs().HardwareAddr
	switch {
	case !cfg.announces() && !cfg.probes():
		return k, mac, nil
	case len(mac) != 6 && cfg.announces():
		return nil, nil, fmt.Errorf("vip: interface %q has no Ethernet address (%q) to announce from; set the announce counts to 0", cfg.Interface, mac)
	case len(mac) != 6:
		return k, mac, nil // nothing to probe from: the Manager says so and binds without probing
	}
	var v4, v6 bool
	for _, v := range cfg.VIPs {
		v4 = v4 || v.Addr().Is4()
		v6 = v6 || v.Addr().Is6()
	}
	if v4 {
		if k.arpSock, err = openLinkSocket(uint16(ethernet.EtherTypeARP)); err != nil {
			return nil, nil, fmt.Errorf("vip: ARP socket for %s: %w", cfg.Interface, err)
		}
	}
	if v6 {
		if k.ndSock, err = openLinkSocket(uint16(ethernet.EtherTypeIPv6)); err != nil {
			return nil, nil, fmt.Errorf("vip: IPv6 socket for %s: %w", cfg.Interface, err)
		}
	}
	return k, mac, nil
}

func (k *netlinkKernel) relink() (int, net.HardwareAddr, bool, error) {
	l, err := k.nl.LinkByName(k.name)
	if err != nil {
		return 0, nil, false, fmt.Errorf("interface %q: %w", k.name, err)
	}
	a := l.Attrs()
	changed := a.Index != k.link.Attrs().Index
	k.link = l
	k.index.Store(int32(a.Index))
	return a.Index, a.HardwareAddr, changed, nil
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func fromIPNet(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}

func (k *netlinkKernel) bind(v netip.Prefix, lifetime uint32) error {
	a := &netlink.Addr{IPNet: toIPNet(v)} // scope global
	if v.Addr().Is4() {
		a.Label = k.label
	} else {
		a.Flags = unix.IFA_F_NODAD // usable at once: no duplicate address detection delay
	}
	if lifetime > 0 {
		a.ValidLft, a.PreferedLft = int(lifetime), int(lifetime)
	}
	// RTM_NEWADDR with NLM_F_REPLACE: adds the address, or updates the flags and lifetime of the
	// present one in place (no delete, no route flap).
	return k.nl.AddrReplace(k.link, a)
}

func (k *netlinkKernel) unbind(v netip.Prefix) (bool, error) {
	err := k.nl.AddrDel(k.link, &netlink.Addr{IPNet: toIPNet(v)})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT):
		return false, nil // not there
	}
	return false, err
}

func (k *netlinkKernel) addrs() ([]netip.Prefix, error) {
	var (
		list []netlink.Addr
		err  error
	)
	for range 3 { // a dump interrupted by a concurrent change may be incomplete: ask again
		list, err = k.nl.AddrList(k.link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		if a.IPNet == nil {
			continue
		}
		if p, ok := fromIPNet(*a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (k *netlinkKernel) linkUp() (bool, error) {
	l, err := k.nl.LinkByIndex(k.link.Attrs().Index)
	if err != nil {
		return false, err
	}
	return isUp(l.Attrs().RawFlags), nil
}

func isUp(rawFlags uint32) bool {
	return rawFlags&unix.IFF_UP != 0 && rawFlags&unix.IFF_RUNNING != 0
}

func (k *netlinkKernel) send(frame []byte, ipv6 bool) error {
	s := k.arpSock
	if ipv6 {
		s = k.ndSock
	}
	if s == nil {
		return errors.New("no socket for this address family")
	}
	if len(frame) < 14 {
		return errors.New("frame shorter than an Ethernet header")
	}
	dst := net.HardwareAddr(frame[:6]) // the frame's own destination
	index := int(k.index.Load())
	err := s.send(frame, index, dst, time.Now().Add(sendTimeout))
	if errors.Is(err, unix.ENETDOWN) {
		// A packet socket bound to an interface gets a pending ENETDOWN when it goes down, which the
		// next send reports even once it is up again. These sockets are bound to none, but a second
		// try costs nothing and tells a stale error from a down interface.
		err = s.send(frame, index, dst, time.Now().Add(sendTimeout))
	}
	return err
}

func (k *netlinkKernel) watch(ctx context.Context, out chan<- event) error {
	// Closing the socket is what ends a blocked Receive; watch is called once (Run may be called once).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			k.closeSubscription()
		case <-stop:
		}
	})
	defer wg.Wait()
	defer close(stop)
	emit := func(ev event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Changes before now were not seen: the receiver checks the state afresh.
	if !emit(event{kind: subscribed}) {
		return nil
	}
	for {
		msgs, from, err := k.sub.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// The socket overflowed and notifications were lost; it is still usable.
			if !emit(event{kind: subscribed}) {
				return nil
			}
			continue
		case err != nil:
			return fmt.Errorf("netlink notifications: %w", err)
		case from.Pid != nl.PidKernel:
			continue
		}
		for _, m := range msgs {
			if ev, ok := parseNotification(m, int(k.index.Load()), k.name); ok && !emit(ev) {
				return nil
			}
		}
	}
}

// parseNotification turns an rtnetlink notification about interface index into an event: an address
// removed (RTM_DELADDR) or added or updated (RTM_NEWADDR), or the link's state (RTM_NEWLINK,
// RTM_DELLINK); and an RTM_NEWLINK of another index that carries the interface's name into
// linkAppeared.
func parseNotification(m syscall.NetlinkMessage, index int, name string) (event, bool) {
	switch m.Header.Type {
	case unix.RTM_DELADDR, unix.RTM_NEWADDR:
		if len(m.Data) < unix.SizeofIfAddrmsg {
			return event{}, false
		}
		msg := nl.DeserializeIfAddrmsg(m.Data)
		if int(msg.Index) != index {
			return event{}, false
		}
		attrs, err := nl.ParseRouteAttr(m.Data[unix.SizeofIfAddrmsg:])
		if err != nil {
			return event{}, false
		}
		var local, address []byte
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFA_LOCAL:
				local = a.Value
			case unix.IFA_ADDRESS:
				address = a.Value
			}
		}
		if local == nil { // IPv6 carries IFA_ADDRESS only; IPv4 IFA_LOCAL, and IFA_ADDRESS is the peer
			local = address
		}
		ip, ok := netip.AddrFromSlice(local)
		if !ok {
			return event{}, false
		}
		kind := addrRemoved
		if m.Header.Type == unix.RTM_NEWADDR {
			kind = addrAdded
		}
		return event{kind: kind, addr: netip.PrefixFrom(ip.Unmap(), int(msg.Prefixlen))}, true
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(m.Data) < unix.SizeofIfInfomsg {
			return event{}, false
		}
		msg := nl.DeserializeIfInfomsg(m.Data)
		if int(msg.Index) != index {
			if m.Header.Type == unix.RTM_NEWLINK && linkName(m.Data[unix.SizeofIfInfomsg:]) == name {
				return event{kind: linkAppeared}, true
			}
			return event{}, false
		}
		return event{kind: linkChanged, up: m.Header.Type == unix.RTM_NEWLINK && isUp(msg.Flags)}, true
	}
	return event{}, false
}

// linkName returns the IFLA_IFNAME attribute among a link message's attributes, or "".
func linkName(b []byte) string {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_IFNAME {
			return strings.TrimRight(string(a.Value), "\x00")
		}
	}
	return ""
}

func (k *netlinkKernel) closeSubscription() {
	k.closeSub.Do(func() {
		if k.sub != nil {
			k.sub.Close()
		}
	})
}

func (k *netlinkKernel) close() error {
	var errs []error
	for _, s := range []*linkSocket{k.arpSock, k.ndSock} {
		if s != nil {
			errs = append(errs, s.close())
		}
	}
	k.arpSock, k.ndSock = nil, nil
	k.closeSubscription()
	if k.nl != nil {
		k.nl.Close()
		k.nl = nil
	}
	return errors.Join(errs...)
}

// kernelLatenessBase is the part of kernelExpiryLateness that does not grow with the lifetime: the
// address check's minimum re-check interval (ADDRCONF_TIMER_FUZZ_MAX, 1 s) plus its whole-second
// rounding allowance (ADDRCONF_TIMER_FUZZ, 250 ms). The derivation is in the package documentation,
// "Lifetime backstop".
const kernelLatenessBase = 1250 * time.Millisecond

// kernelExpiryLateness returns how long after its lifetime of lft seconds has run out the kernel
// may still hold an address, at worst: kernelLatenessBase plus a seventh of the lifetime (the timer
// wheel fires a timer set d ahead up to 8/63 d late). It does not cover a CPU that stays idle past
// the check (the check is deferrable work), nor the check waiting more than about 0.19 s for the RTNL lock.
func kernelExpiryLateness(lft uint32) time.Duration {
	return kernelLatenessBase + time.Duration(lft)*time.Second/7
}

// lifetimeSeconds returns the valid_lft to write at now for an address that must be gone by until:
// the largest whole number of seconds L with now + L + kernelExpiryLateness(L) <= until, which is
// floor((until - now - 1.25 s) * 7/8 / 1 s). ok is false when there is no such L of at least 1 s
// (until is less than about 2.39 s away): no kernel lifetime is then sure to end by until, and lft
// is 0 (the caller binds without one; a lifetime of 1 s could outlive until). A zero until means
// no deadline: permanent (0, true).
func lifetimeSeconds(until, now time.Time) (lft uint32, ok bool) {
	if until.IsZero() {
		return 0, true
	}
	left := until.Sub(now)
	r := left - kernelLatenessBase
	if r <= 0 {
		return 0, false
	}
	// floor(7r / 8s), without overflowing r*7; then settled against kernelExpiryLateness itself,
	// which the integer division of a second by 7 can put one second off.
	const eight = 8 * time.Second
	s := int64(r/eight)*7 + int64(r%eight*7/eight)
	if s >= math.MaxUint32-1 { // 0xFFFFFFFF is the kernel's "forever"; stay below it
		return math.MaxUint32 - 1, true
	}
	fits := func(s int64) bool {
		return time.Duration(s)*time.Second+kernelExpiryLateness(uint32(s)) <= left
	}
	for fits(s + 1) {
		s++
	}
	for s > 0 && !fits(s) {
		s--
	}
	if s < 1 {
		return 0, false
	}
	return uint32(s), true
}

// minBackstopValidity is the least time left until a deadline for which lifetimeSeconds finds a
// kernel lifetime (1 s) that is sure to end by it: 1 s + kernelExpiryLateness(1), about 2.39 s.
const minBackstopValidity = time.Second + kernelLatenessBase + time.Second/7 // = 1 s + kernelExpiryLateness(1)
