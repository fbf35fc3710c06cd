package vip_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
	"github.com/hacoord/hacoord/vip"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// These tests need root: they bind VIPs on a veth in a "node" namespace and watch what arrives in a
// "peer" namespace at the other end, the way a client on the same LAN would.

var (
	nodeAddr = netip.MustParsePrefix("192.0.2.1/24") // the interface's own address
	peerAddr = netip.MustParsePrefix("192.0.2.2/24")
	vip4     = netip.MustParsePrefix("192.0.2.100/24")
	vip6     = netip.MustParsePrefix("2001:db8::100/64")
	staleMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99} // where the peer believes the VIPs are at first
)

type lab struct {
	node, peer *netnstest.NS
	nodeLink   netlink.Link
	nodeMAC    net.HardwareAddr
	peerIndex  int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	l := &lab{node: netnstest.New(t, "vipn"), peer: netnstest.New(t, "vipp")}
	_, pl, err := netnstest.Veth(l.node, "vip0", nodeAddr, l.peer, "peer0", peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	l.peerIndex = pl.Attrs().Index
	eventually(t, 5*time.Second, "node link up and running", func() bool {
		nl, err := l.node.Netlink.LinkByName("vip0")
		if err != nil {
			return false
		}
		l.nodeLink, l.nodeMAC = nl, nl.Attrs().HardwareAddr
		return nl.Attrs().RawFlags&unix.IFF_RUNNING != 0
	})
	return l
}

func (l *lab) config() vip.Config {
	c := vip.DefaultConfig()
	c.Interface = "vip0"
	c.VIPs = []netip.Prefix{vip4, vip6}
	// The conflict probe delays Acquire by its window; the tests of binding and announcing
	// measure from Acquire, and TestConflictProbe turns it on.
	c.Conflict.Policy = vip.ConflictOff
	return c
}

// manager creates a Manager inside the node namespace; it is closed when the test ends.
func (l *lab) manager(t *testing.T, cfg vip.Config) *vip.Manager {
	t.Helper()
	var m *vip.Manager
	err := l.node.Do(func() (err error) {
		m, err = vip.New(cfg, zaptest.NewLogger(t))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// run runs m until the test ends.
func run(t *testing.T, m *vip.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// nodeAddrs lists the addresses on the node's interface, as the kernel has them.
func (l *lab) nodeAddrs(t *testing.T) []netlink.Addr {
	t.Helper()
	as, err := l.node.Netlink.AddrList(l.nodeLink, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func (l *lab) count(t *testing.T, p netip.Prefix) (n int, found netlink.Addr) {
	for _, a := range l.nodeAddrs(t) {
		if a.IPNet.IP.Equal(p.Addr().AsSlice()) {
			n++
			found = a
		}
	}
	return n, found
}

// seen is one announcement frame captured in the peer namespace.
type seen struct {
	at  time.Time
	eth ethernet.Frame
	arp *arp.Packet
	na  *ndp.NeighborAdvertisement
	src netip.Addr // IPv6 source
	hop int        // IPv6 hop limit
}

func (s seen) String() string {
	if s.arp != nil {
		return fmt.Sprintf("%s ARP %v %v/%v -> %v/%v", s.at.Format("05.000"), s.arp.Operation,
			s.arp.SenderHardwareAddr, s.arp.SenderIP, s.arp.TargetHardwareAddr, s.arp.TargetIP)
	}
	return fmt.Sprintf("%s NA target %v override=%v", s.at.Format("05.000"), s.na.TargetAddress, s.na.Override)
}

// capture reads, in the peer namespace, the ARP packets and neighbour advertisements sent from the
// node's MAC, until the test ends.
func (l *lab) capture(t *testing.T) <-chan seen {
	t.Helper()
	out := make(chan seen, 256)
	ifi := &net.Interface{Index: l.peerIndex, Name: "peer0"}
	var conns []*packet.Conn
	err := l.peer.Do(func() error {
		for _, proto := range []int{unix.ETH_P_ARP, unix.ETH_P_IPV6} {
			c, err := packet.Listen(ifi, packet.Raw, proto, nil)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	for _, c := range conns {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return // closed
				}
				s, ok := parse(buf[:n])
				if !ok || !bytes.Equal(s.eth.Source, l.nodeMAC) {
					continue
				}
				select {
				case out <- s:
				default: // the test stopped reading
				}
			}
		})
	}
	return out
}

func parse(b []byte) (seen, bool) {
	s := seen{at: time.Now()}
	if err := s.eth.UnmarshalBinary(b); err != nil {
		return s, false
	}
	switch s.eth.EtherType {
	case ethernet.EtherTypeARP:
		s.arp = new(arp.Packet)
		return s, s.arp.UnmarshalBinary(s.eth.Payload) == nil
	case ethernet.EtherTypeIPv6:
		h, err := ipv6.ParseHeader(s.eth.Payload)
		if err != nil || h.NextHeader != 58 || len(s.eth.Payload) < 40+h.PayloadLen {
			return s, false
		}
		m, err := ndp.ParseMessage(s.eth.Payload[40 : 40+h.PayloadLen])
		if err != nil {
			return s, false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		s.na, s.src, s.hop = na, netip.MustParseAddr(h.Src.String()), h.HopLimit
		return s, ok
	}
	return s, false
}

// collect returns the frames that arrive on c within d.
func collect(c <-chan seen, d time.Duration) []seen {
	var out []seen
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case s := <-c:
			out = append(out, s)
		case <-timer.C:
			return out
		}
	}
}

// waitFrames returns once n frames have arrived on c, failing t if that takes longer than d.
func waitFrames(t *testing.T, c <-chan seen, n int, d time.Duration) []seen {
	t.Helper()
	var out []seen
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(out) < n {
		select {
		case s := <-c:
			out = append(out, s)
		case <-timer.C:
			t.Fatalf("got %d announcement frames within %v, want %d: %v", len(out), d, n, out)
		}
	}
	return out
}

// waitFor returns the first frame on c that satisfies ok, failing t if none comes within d.
func waitFor(t *testing.T, c <-chan seen, d time.Duration, what string, ok func(seen) bool) seen {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case s := <-c:
			if ok(s) {
				return s
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// eventually polls kernel state until cond holds, failing t after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling kernel state, not synchronising goroutines
	}
}

// peerNeigh returns the MAC the peer's neighbour table holds for ip.
func (l *lab) peerNeigh(t *testing.T, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := l.peer.Netlink.NeighList(l.peerIndex, fam)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.Equal(ip.AsSlice()) {
			return n.HardwareAddr
		}
	}
	return nil
}

func checkFrame(t *testing.T, l *lab, s seen) {
	t.Helper()
	switch {
	case s.arp != nil:
		p := s.arp
		wantTHA := net.HardwareAddr{0, 0, 0, 0, 0, 0}
		if p.Operation == arp.OperationReply {
			wantTHA = l.nodeMAC
		}
		if !bytes.Equal(s.eth.Destination, ethernet.Broadcast) || !bytes.Equal(p.SenderHardwareAddr, l.nodeMAC) ||
			p.SenderIP != vip4.Addr() || p.TargetIP != vip4.Addr() || !bytes.Equal(p.TargetHardwareAddr, wantTHA) {
			t.Errorf("bad gratuitous ARP to %v: %v", s.eth.Destination, s)
		}
	case s.na != nil:
		lla, _ := s.na.Options[0].(*ndp.LinkLayerAddress)
		if s.na.TargetAddress != vip6.Addr() || !s.na.Override || s.na.Solicited || s.hop != 255 ||
			lla == nil || !bytes.Equal(lla.Addr, l.nodeMAC) || s.src != vip6.Addr() {
			t.Errorf("bad unsolicited NA: %v (hop limit %d, source %v, options %v)", s, s.hop, s.src, s.na.Options)
		}
	}
}

// TestAnnounce checks what a client on the LAN sees: both gratuitous ARP forms and an unsolicited
// NA from the node's MAC, a burst and then repeats more than 1s apart, and its neighbour table moved
// from a stale MAC to the node's.
func TestAnnounce(t *testing.T) {
	l := newLab(t)
	for _, ip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		err := l.peer.Netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.peerIndex, Family: fam, State: netlink.NUD_STALE, IP: ip.AsSlice(), HardwareAddr: staleMAC})
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg := l.config()
	cfg.Announce = vip.AnnounceConfig{Count: 1, Repeat: 2, RepeatInterval: 1100 * time.Millisecond}
	m := l.manager(t, cfg)
	run(t, m)
	frames := l.capture(t)

	start := time.Now()
	if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := waitFrames(t, frames, 9, 5*time.Second) // 3 rounds of ARP request + ARP reply + NA
	var roundStarts []time.Time
	for i, s := range got {
		checkFrame(t, l, s)
		if i%3 == 0 {
			roundStarts = append(roundStarts, s.at)
			continue
		}
		if d := s.at.Sub(got[i-i%3].at); d > 200*time.Millisecond {
			t.Errorf("frame %d came %v after its round started: %v", i, d, got)
		}
	}
	var ops []arp.Operation
	nas := 0
	for _, s := range got[:3] {
		if s.arp != nil {
			ops = append(ops, s.arp.Operation)
		} else {
			nas++
		}
	}
	slices.Sort(ops)
	if !slices.Equal(ops, []arp.Operation{arp.OperationRequest, arp.OperationReply}) || nas != 1 {
		t.Errorf("first round = %v, want an ARP request, an ARP reply and an NA", got[:3])
	}
	if d := roundStarts[0].Sub(start); d > 500*time.Millisecond {
		t.Errorf("first round %v after Acquire, want at once", d)
	}
	for i := 1; i < len(roundStarts); i++ {
		if d := roundStarts[i].Sub(roundStarts[i-1]); d <= time.Second {
			t.Errorf("round %d came %v after the previous one, want more than 1s (Linux locktime)", i, d)
		}
	}
	if extra := collect(frames, 1500*time.Millisecond); len(extra) != 0 {
		t.Errorf("frames after Repeat was exhausted (Refresh off): %v", extra)
	}
	for _, ip := range []netip.Addr{vip4.Addr(), vip6.Addr()} {
		if mac := l.peerNeigh(t, ip); !bytes.Equal(mac, l.nodeMAC) {
			t.Errorf("peer's neighbour entry for %v = %v, want the node's %v", ip, mac, l.nodeMAC)
		}
	}
	if err := m.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBindIdempotentRelease: binding twice leaves one address each, with the label and IPv6 NODAD;
// Release removes the VIPs and nothing else, and releasing again is fine.
func TestBindIdempotentRelease(t *testing.T) {
	l := newLab(t)
	cfg := l.config()
	cfg.Label = "vip0:ha"
	m := l.manager(t, cfg)
	ctx := context.Background()
	for range 2 {
		if err := m.Acquire(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	n4, a4 := l.count(t, vip4)
	n6, a6 := l.count(t, vip6)
	if n4 != 1 || n6 != 1 {
		t.Fatalf("after two Acquires: %d × %v, %d × %v; want one each: %v", n4, vip4, n6, vip6, l.nodeAddrs(t))
	}
	if a4.Label != "vip0:ha" {
		t.Errorf("label of %v = %q, want %q", vip4, a4.Label, "vip0:ha")
	}
	if ones, _ := a4.Mask.Size(); ones != 24 || a4.Scope != unix.RT_SCOPE_UNIVERSE {
		t.Errorf("%v bound as /%d scope %d, want /24 scope global", vip4, ones, a4.Scope)
	}
	if a6.Flags&unix.IFA_F_TENTATIVE != 0 || a6.Flags&unix.IFA_F_NODAD == 0 {
		t.Errorf("%v flags %#x: want NODAD and not tentative (usable at once)", vip6, a6.Flags)
	}
	if a4.ValidLft != 0 && a4.ValidLft != int(^uint32(0)) { // zero deadline: permanent
		t.Errorf("%v valid_lft = %d, want forever", vip4, a4.ValidLft)
	}
	bound, err := m.Bound()
	if err != nil || !slices.Equal(bound, []netip.Prefix{vip4, vip6}) {
		t.Fatalf("Bound = %v, %v", bound, err)
	}

	for range 2 {
		if err := m.Release(ctx); err != nil {
			t.Fatalf("Release = %v", err)
		}
	}
	if n, _ := l.count(t, vip4); n != 0 {
		t.Errorf("%v still bound after Release", vip4)
	}
	if n, _ := l.count(t, vip6); n != 0 {
		t.Errorf("%v still bound after Release", vip6)
	}
	if n, _ := l.count(t, nodeAddr); n != 1 {
		t.Errorf("Release removed the interface's own address %v: %v", nodeAddr, l.nodeAddrs(t))
	}
	if bound, err := m.Bound(); err != nil || len(bound) != 0 {
		t.Fatalf("Bound after Release = %v, %v", bound, err)
	}
}

// TestReaddAfterExternalDelete: `ip addr del` of a held VIP is undone and announced.
func TestReaddAfterExternalDelete(t *testing.T) {
	l := newLab(t)
	cfg := l.config()
	cfg.Announce = vip.AnnounceConfig{Count: 1, RepeatInterval: 1100 * time.Millisecond}
	m := l.manager(t, cfg)
	run(t, m)
	frames := l.capture(t)
	if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, frames, 3, 2*time.Second)

	for _, p := range []netip.Prefix{vip4, vip6} {
		_, a := l.count(t, p)
		if err := l.node.Netlink.AddrDel(l.nodeLink, &a); err != nil {
			t.Fatal(err)
		}
		eventually(t, 3*time.Second, p.String()+" bound again", func() bool { n, _ := l.count(t, p); return n == 1 })
		// Re-adding announces the VIP: an ARP for the IPv4 one, an NA for the IPv6 one (other frames,
		// such as a second announcement from a resync that raced with the notification, may come too).
		s := waitFor(t, frames, 2*time.Second, "an announcement of "+p.String(), func(s seen) bool {
			return (s.arp != nil && p.Addr().Is4()) || (s.na != nil && p.Addr().Is6())
		})
		checkFrame(t, l, s)
	}
	if err := m.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAnnounceAfterLinkUp: after the interface went down and came back, the VIPs are bound (IPv6
// addresses are flushed on down) and announced again.
func TestAnnounceAfterLinkUp(t *testing.T) {
	l := newLab(t)
	cfg := l.config()
	cfg.Announce = vip.AnnounceConfig{Count: 1, RepeatInterval: 1100 * time.Millisecond}
	m := l.manager(t, cfg)
	run(t, m)
	frames := l.capture(t)
	if err := m.Acquire(context.Background(), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFrames(t, frames, 3, 2*time.Second)

	if err := l.node.Netlink.LinkSetDown(l.nodeLink); err != nil {
		t.Fatal(err)
	}
	if got := collect(frames, 500*time.Millisecond); len(got) != 0 {
		t.Errorf("frames while the interface was down: %v", got)
	}
	up := time.Now()
	if err := l.node.Netlink.LinkSetUp(l.nodeLink); err != nil {
		t.Fatal(err)
	}
	got := waitFrames(t, frames, 3, 5*time.Second)
	for _, s := range got {
		checkFrame(t, l, s)
	}
	t.Logf("announced %v after link up", got[0].at.Sub(up))
	eventually(t, 3*time.Second, "both VIPs bound after link up", func() bool {
		b, err := m.Bound()
		return err == nil && len(b) == 2
	})
	if err := m.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDeadline: a deadline in the past is refused; a deadline that passes stops the repeats.
func TestDeadline(t *testing.T) {
	l := newLab(t)
	cfg := l.config()
	cfg.Lifetime = false // the Manager's own fencing, not the kernel's
	cfg.Announce = vip.AnnounceConfig{Count: 1, Repeat: 3, RepeatInterval: 1100 * time.Millisecond, Refresh: 1500 * time.Millisecond}
	m := l.manager(t, cfg)
	run(t, m)
	frames := l.capture(t)
	ctx := context.Background()

	if err := m.Acquire(ctx, time.Now().Add(-time.Second)); !errors.Is(err, vip.ErrDeadlinePassed) {
		t.Fatalf("Acquire(past deadline) = %v, want ErrDeadlinePassed", err)
	}
	if b, err := m.Bound(); err != nil || len(b) != 0 {
		t.Fatalf("Bound after a refused Acquire = %v, %v", b, err)
	}

	until := time.Now().Add(1500 * time.Millisecond)
	if err := m.Acquire(ctx, until); err != nil {
		t.Fatal(err)
	}
	got := collect(frames, 4*time.Second) // rounds due at 0, 1.1s; 1.5s (refresh), 2.2s, 3.3s are past the deadline
	if len(got) != 6 {
		t.Errorf("got %d frames, want 6 (two rounds before the deadline): %v", len(got), got)
	}
	for _, s := range got {
		if s.at.After(until.Add(100 * time.Millisecond)) {
			t.Errorf("frame received %v after the deadline: %v", s.at.Sub(until), s)
		}
	}
	if err := m.Extend(ctx, until); !errors.Is(err, vip.ErrDeadlinePassed) {
		t.Errorf("Extend(passed deadline) = %v, want ErrDeadlinePassed", err)
	}
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// addrWatch records when the kernel announces each address's removal from the node's interface.
type addrWatch struct {
	mu   sync.Mutex
	gone map[string]time.Time // IP -> instant the RTM_DELADDR was read
	news int                  // RTM_NEWADDR notifications
	dels int
}

func (l *lab) watchAddrs(t *testing.T) *addrWatch {
	t.Helper()
	w := &addrWatch{gone: map[string]time.Time{}}
	updates := make(chan netlink.AddrUpdate, 256)
	done := make(chan struct{})
	if err := netlink.AddrSubscribeAt(l.node.Handle, updates, done); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for u := range updates {
			at := time.Now()
			w.mu.Lock()
			if u.NewAddr {
				w.news++
			} else {
				w.dels++
				if _, seen := w.gone[u.LinkAddress.IP.String()]; !seen {
					w.gone[u.LinkAddress.IP.String()] = at
				}
			}
			w.mu.Unlock()
		}
	})
	t.Cleanup(func() { close(done); wg.Wait() })
	return w
}

// goneAt returns when p was removed, if it was.
func (w *addrWatch) goneAt(p netip.Prefix) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.gone[p.Addr().String()]
	return at, ok
}

// TestLifetimeEndsBeforeTheDeadline: a VIP that is not extended is removed by the kernel by itself,
// with no help from the process (here, without Run, as if it were stopped), and before the deadline:
// the lifetime written (1 s for a deadline 2.4 s away) leaves room for the kernel's lateness, also
// in its worst case, where some other change of the namespace's addresses makes the kernel check
// them shortly before the VIPs' lifetime ends (the next check then comes only 1 s later). A
// lifetime rounded up (3 s) ends after the deadline and fails here.
func TestLifetimeEndsBeforeTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other bool // another address is added 100 ms before the VIPs' lifetime ends
	}{{"alone", false}, {"after another address change", true}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			// The node's own IPv6 address shares the IPv6 VIP's prefix: its on-link route must survive the
			// VIP's expiry (as the IPv4 one, 192.0.2.0/24, must).
			own6 := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
			if err := l.node.Netlink.AddrAdd(l.nodeLink, own6); err != nil {
				t.Fatal(err)
			}
			w := l.watchAddrs(t)
			m := l.manager(t, l.config())
			bound := time.Now()
			until := bound.Add(2400 * time.Millisecond)
			if err := m.Acquire(context.Background(), until); err != nil {
				t.Fatal(err)
			}
			for _, p := range []netip.Prefix{vip4, vip6} {
				n, a := l.count(t, p)
				if n != 1 || a.ValidLft != 1 || a.PreferedLft != 1 {
					t.Errorf("%v: %d bound, valid_lft %d preferred_lft %d; want 1 with 1s lifetimes (2.4s to the deadline, less the kernel's lateness)", p, n, a.ValidLft, a.PreferedLft)
				}
			}
			if tc.other {
				// Not synchronisation: the scenario's timing. The addition makes the kernel check the
				// lifetimes 100 ms before the VIPs' end (more than its 20 ms early margin), find them
				// alive, and schedule the next check no sooner than 1 s later.
				tm := time.NewTimer(time.Until(bound.Add(900 * time.Millisecond)))
				<-tm.C
				for _, p := range []netip.Prefix{netip.MustParsePrefix("192.0.2.200/32"), netip.MustParsePrefix("2001:db8::200/128")} {
					a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
						ValidLft: 100, PreferedLft: 100, Flags: unix.IFA_F_NODAD}
					if err := l.node.Netlink.AddrAdd(l.nodeLink, a); err != nil {
						t.Fatal(err)
					}
				}
			}
			eventually(t, 5*time.Second, "the kernel removes the unextended VIPs", func() bool {
				_, g4 := w.goneAt(vip4)
				_, g6 := w.goneAt(vip6)
				return g4 && g6
			})
			for _, p := range []netip.Prefix{vip4, vip6} {
				gone, _ := w.goneAt(p)
				t.Logf("%v removed %v after its 1s lifetime ended, %v before the deadline", p, gone.Sub(bound.Add(time.Second)).Round(time.Millisecond), until.Sub(gone).Round(time.Millisecond))
				if !gone.Before(until) {
					t.Errorf("%v removed %v after the deadline", p, gone.Sub(until))
				}
			}
			if n, _ := l.count(t, nodeAddr); n != 1 {
				t.Errorf("the interface's own address went too")
			}
			routes, err := l.node.Netlink.RouteList(l.nodeLink, netlink.FAMILY_ALL)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"192.0.2.0/24", "2001:db8::/64"} {
				found := false
				for _, r := range routes {
					found = found || (r.Dst != nil && r.Dst.String() == want)
				}
				if !found {
					t.Errorf("on-link route %s gone after the VIPs expired: %v", want, routes)
				}
			}
		})
	}
}

// TestExtendKeepsAddress: Extend renews the kernel lifetime in place — the VIP outlives several
// lifetimes and is never deleted and re-added (no RTM_DELADDR) — and expires, before the last
// deadline, once Extend stops.
func TestExtendKeepsAddress(t *testing.T) {
	l := newLab(t)
	m := l.manager(t, l.config())
	w := l.watchAddrs(t)
	ctx := context.Background()
	const validity = 2500 * time.Millisecond // a 1s lifetime
	until := time.Now().Add(validity)
	if err := m.Acquire(ctx, until); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(400 * time.Millisecond) // the lease keepalive cadence
	for range 7 {                                  // 2.8s: well past the first 1s lifetime
		<-tick.C
		until = time.Now().Add(validity)
		if err := m.Extend(ctx, until); err != nil {
			t.Fatal(err)
		}
	}
	tick.Stop()
	if b, err := m.Bound(); err != nil || len(b) != 2 {
		t.Fatalf("Bound after extending = %v, %v; want both VIPs", b, err)
	}
	w.mu.Lock()
	dels := w.dels
	w.mu.Unlock()
	if dels != 0 {
		t.Errorf("%d addresses deleted while extending", dels)
	}
	// Wait for the kernel's RTM_DELADDR as the watcher read it, not only for Bound: the address can be
	// gone from a dump a moment before the watcher's goroutine has read the notification.
	eventually(t, 5*time.Second, "VIPs expire once Extend stops", func() bool {
		b, err := m.Bound()
		_, g4 := w.goneAt(vip4)
		_, g6 := w.goneAt(vip6)
		return err == nil && len(b) == 0 && g4 && g6
	})
	for _, p := range []netip.Prefix{vip4, vip6} {
		if gone, ok := w.goneAt(p); !ok || !gone.Before(until) {
			t.Errorf("%v removed at %v, want before the last deadline (%v)", p, gone.Sub(until), until.Format(time.StampMilli))
		}
	}
}

// TestCleanup: leftovers of a previous run are removed; other addresses stay.
func TestCleanup(t *testing.T) {
	l := newLab(t)
	other := netip.MustParsePrefix("192.0.2.50/24")
	for _, p := range []netip.Prefix{vip4, other} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := l.node.Netlink.AddrAdd(l.nodeLink, a); err != nil {
			t.Fatal(err)
		}
	}
	m := l.manager(t, l.config())
	if b, err := m.Bound(); err != nil || !slices.Equal(b, []netip.Prefix{vip4}) {
		t.Fatalf("Bound = %v, %v; want the leftover %v", b, err, vip4)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.count(t, vip4); n != 0 {
		t.Errorf("leftover %v still bound", vip4)
	}
	for _, p := range []netip.Prefix{other, nodeAddr} {
		if n, _ := l.count(t, p); n != 1 {
			t.Errorf("Cleanup removed %v, which is not a VIP", p)
		}
	}
	if err := m.Acquire(context.Background(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Cleanup(context.Background()); err == nil {
		t.Error("Cleanup while the VIPs are held succeeded")
	}
	if err := m.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNewInNamespace(t *testing.T) {
	l := newLab(t)
	cfg := l.config()
	cfg.Interface = "eth9"
	err := l.node.Do(func() error {
		m, err := vip.New(cfg, nil)
		if err == nil {
			m.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("New with an interface that is not in the namespace succeeded")
	}
	t.Log(err)
}
