package vip_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/vip"
)

// These tests need root: the peer namespace plays a host that still has the VIPs (the old master
// whose kernel kept them), and the node's probe before binding must find it.

// holdOnPeer binds vip4 and vip6 (without DAD, usable at once) on the peer's interface and returns
// the peer's MAC and a function that removes them again.
func (l *lab) holdOnPeer(t *testing.T) (net.HardwareAddr, func()) {
	t.Helper()
	link, err := l.peer.Netlink.LinkByName("peer0")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []*netlink.Addr
	for _, p := range []netip.Prefix{vip4, vip6} {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := l.peer.Netlink.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, a)
	}
	return link.Attrs().HardwareAddr, func() {
		for _, a := range addrs {
			if err := l.peer.Netlink.AddrDel(link, a); err != nil {
				t.Error(err)
			}
		}
	}
}

func (l *lab) observedManager(t *testing.T, cfg vip.Config) (*vip.Manager, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	var m *vip.Manager
	if err := l.node.Do(func() (err error) { m, err = vip.New(cfg, zap.New(core)); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, logs
}

// conflictsLogged returns the VIPs an error line names together with mac.
func conflictsLogged(logs *observer.ObservedLogs, mac net.HardwareAddr) []string {
	var out []string
	for _, e := range logs.FilterLevelExact(zap.ErrorLevel).All() {
		f := e.ContextMap()
		if f["mac"] == mac.String() {
			out = append(out, f["vip"].(string))
		}
	}
	slices.Sort(out)
	return out
}

func TestConflictProbe(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()

	t.Run("nobody answers: the probe costs its window", func(t *testing.T) {
		cfg := l.config()
		cfg.Conflict = vip.DefaultConfig().Conflict
		m, logs := l.observedManager(t, cfg)
		start := time.Now()
		if err := m.Acquire(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		defer m.Release(ctx)
		window := time.Duration(cfg.Conflict.Probes) * cfg.Conflict.Interval
		if took < window || took > window+100*time.Millisecond {
			t.Errorf("Acquire took %v with nobody answering, want the probe's window %v (+ at most 100ms)", took, window)
		}
		if n := logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 0 {
			t.Errorf("%d errors logged with nobody else on the VIPs", n)
		}
	})

	peerMAC, drop := l.holdOnPeer(t)
	want := []string{vip4.String(), vip6.String()}

	t.Run("bind: binds anyway and names the other host", func(t *testing.T) {
		cfg := l.config()
		cfg.Conflict = vip.DefaultConfig().Conflict
		cfg.Conflict.Policy = vip.ConflictBind
		m, logs := l.observedManager(t, cfg)
		start := time.Now()
		if err := m.Acquire(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		defer m.Release(ctx)
		if got := conflictsLogged(logs, peerMAC); !slices.Equal(got, want) {
			t.Errorf("errors naming the peer's MAC %s: %v, want %v", peerMAC, got, want)
		}
		if b, err := m.Bound(); err != nil || len(b) != 2 {
			t.Fatalf("Bound = %v, %v; want both VIPs (conflict: bind)", b, err)
		}
		// A probe that ran to its end would take every round (Probes x Interval); one that ends on
		// the answers takes a round trip. Two rounds leave room for a loaded machine.
		if limit := 2 * cfg.Conflict.Interval; took > limit {
			t.Errorf("Acquire took %v, want the probe to end once both VIPs were answered (under %v; the whole probe is %v)",
				took, limit, time.Duration(cfg.Conflict.Probes)*cfg.Conflict.Interval)
		}
	})

	t.Run("wait: binds once nobody answers", func(t *testing.T) {
		cfg := l.config()
		cfg.Conflict = vip.DefaultConfig().Conflict
		cfg.Conflict.Policy, cfg.Conflict.Retry = vip.ConflictWait, 200*time.Millisecond
		m, logs := l.observedManager(t, cfg)
		run(t, m)
		frames := l.capture(t)
		if err := m.Acquire(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
		defer m.Release(ctx)
		if b, err := m.Bound(); err != nil || len(b) != 0 {
			t.Fatalf("Bound = %v, %v while the peer answers for them; want none (conflict: wait)", b, err)
		}
		var held []string
		for _, c := range m.Conflicts() {
			if c.HardwareAddr.String() == peerMAC.String() {
				held = append(held, c.VIP.String())
			}
		}
		if !slices.Equal(held, want) {
			t.Fatalf("Conflicts = %v, want %v at %s", m.Conflicts(), want, peerMAC)
		}
		if got := conflictsLogged(logs, peerMAC); !slices.Equal(got, want) {
			t.Errorf("errors naming %s: %v, want %v", peerMAC, got, want)
		}
		// Retries go on, and nothing is announced: the peer keeps its traffic.
		for _, s := range collect(frames, 3*cfg.Conflict.Retry) {
			if (s.arp != nil && s.arp.SenderIP == vip4.Addr()) || s.na != nil {
				t.Fatalf("announced while another host answers: %v", s)
			}
		}
		drop() // the old master lets go
		eventually(t, 5*time.Second, "both VIPs bound a retry after the peer let go", func() bool {
			b, err := m.Bound()
			return err == nil && len(b) == 2
		})
		waitFor(t, frames, 2*time.Second, "a gratuitous ARP for the VIP once bound", func(s seen) bool {
			return s.arp != nil && s.arp.SenderIP == vip4.Addr()
		})
		if cs := m.Conflicts(); len(cs) != 0 {
			t.Errorf("Conflicts = %v after the peer let go", cs)
		}
	})
}

// recreate deletes the veth pair and creates it again under the same names: the node's vip0 gets a
// new index (and MAC), as a container's eth0 does after `docker network disconnect` and `connect`.
func (l *lab) recreate(t *testing.T) {
	t.Helper()
	old := l.nodeLink.Attrs().Index
	if err := l.node.Netlink.LinkDel(l.nodeLink); err != nil {
		t.Fatal(err)
	}
	_, pl, err := netnstest.Veth(l.node, "vip0", nodeAddr, l.peer, "peer0", peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	l.peerIndex = pl.Attrs().Index
	eventually(t, 5*time.Second, "the new vip0 up and running", func() bool {
		nl, err := l.node.Netlink.LinkByName("vip0")
		if err != nil {
			return false
		}
		l.nodeLink, l.nodeMAC = nl, nl.Attrs().HardwareAddr
		return nl.Attrs().RawFlags&unix.IFF_RUNNING != 0
	})
	if l.nodeLink.Attrs().Index == old {
		t.Fatalf("vip0 kept its index %d", old)
	}
}

// A Manager opened on an interface that was deleted and created since binds and announces on the
// new one, and one holding the VIPs when that happens binds them there again on its own.
func TestInterfaceCreatedAgain(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	m := l.manager(t, l.config())
	run(t, m)
	if err := m.Acquire(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}

	l.recreate(t)
	frames := l.capture(t)
	if err := m.Acquire(ctx, time.Time{}); err != nil {
		t.Fatalf("Acquire after vip0 was created again = %v", err)
	}
	for _, p := range []netip.Prefix{vip4, vip6} {
		if n, _ := l.count(t, p); n != 1 {
			t.Fatalf("%v not on the new vip0: %v", p, l.nodeAddrs(t))
		}
	}
	s := waitFor(t, frames, 2*time.Second, "a gratuitous ARP from the new vip0", func(s seen) bool { return s.arp != nil })
	checkFrame(t, l, s) // from the new interface's MAC

	// While held: the VIPs go with the old interface and come back on the new one.
	l.recreate(t)
	frames = l.capture(t)
	eventually(t, 5*time.Second, "the held VIPs bound on the interface created again", func() bool {
		n4, _ := l.count(t, vip4)
		n6, _ := l.count(t, vip6)
		return n4 == 1 && n6 == 1
	})
	s = waitFor(t, frames, 3*time.Second, "a gratuitous ARP after the interface came back", func(s seen) bool { return s.arp != nil })
	checkFrame(t, l, s)
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.count(t, vip4); n != 0 {
		t.Fatalf("%v left on the new vip0 after Release", vip4)
	}
}
