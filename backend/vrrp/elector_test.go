package vrrp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/election"
)

// fakeNet is an in-memory link: a Write to a multicast group (224.0.0.18, ff02::12) reaches every
// other conn, a unicast Write the conn with that address. Packets arrive with TTL 255.
type fakeNet struct {
	mu    sync.Mutex
	conns []*fakeConn
	cut   bool
}

type fakeConn struct {
	net    *fakeNet
	addr   netip.Addr
	in     chan Received
	closed chan struct{}
	once   sync.Once
}

func (n *fakeNet) conn(addr netip.Addr) *fakeConn {
	c := &fakeConn{net: n, addr: addr, in: make(chan Received, 64), closed: make(chan struct{})}
	n.mu.Lock()
	n.conns = append(n.conns, c)
	n.mu.Unlock()
	return c
}

func (n *fakeNet) setCut(cut bool) {
	n.mu.Lock()
	n.cut = cut
	n.mu.Unlock()
}

func (c *fakeConn) Addr() netip.Addr { return c.addr }

func (c *fakeConn) Read() (Received, error) {
	select {
	case r := <-c.in:
		return r, nil
	case <-c.closed:
		return Received{}, net.ErrClosed
	}
}

func (c *fakeConn) Write(b []byte, dst netip.Addr) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if c.net.cut {
		return nil
	}
	for _, o := range c.net.conns {
		if o == c || (!dst.IsMulticast() && dst != o.addr) {
			continue
		}
		select {
		case o.in <- Received{Src: c.addr, Dst: dst, TTL: TTL, Data: append([]byte(nil), b...)}:
		default: // a full queue loses the packet, like a real link
		}
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// node runs one Elector on a fakeNet and records the States it reports.
type node struct {
	e      *Elector
	cancel context.CancelFunc
	done   chan error
	ended  chan struct{} // the recorder has stopped
	// changed receives a token after each recorded State.
	changed chan struct{}
	once    sync.Once
	err     error
	mu      sync.Mutex
	states  []election.State
	stamps  []time.Time // when each State was recorded
}

func startNode(t testing.TB, n *fakeNet, addr netip.Addr, cfg Config) *node {
	t.Helper()
	return runNode(t, n.conn(addr), cfg, nil)
}

// startPair starts router A (addrA, prioA) and router B (addrB, prioB) on VRID 9 of eth0 and lets
// them settle for a second of (synctest) time. Both are stopped when the test ends (B first), unless
// the test stops them before.
func startPair(t testing.TB, n *fakeNet, prioA, prioB int) (a, b *node) {
	t.Helper()
	cfgA, cfgB := LocalConfig(), LocalConfig()
	cfgA.Interface, cfgA.VRID, cfgA.Priority = "eth0", 9, prioA
	cfgB.Interface, cfgB.VRID, cfgB.Priority = "eth0", 9, prioB
	a = startNode(t, n, addrA, cfgA)
	t.Cleanup(func() { a.stop(t) })
	b = startNode(t, n, addrB, cfgB)
	t.Cleanup(func() { b.stop(t) })
	time.Sleep(time.Second)
	synctest.Wait()
	return a, b
}

// runNode runs an Elector on conn. The caller stops it (node.stop).
func runNode(t testing.TB, conn Conn, cfg Config, log *zap.Logger) *node {
	t.Helper()
	e, err := New(cfg, log, WithConn(conn))
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return runWith(t, e)
}

// runWith runs e, already configured, recording its States. The caller stops it (node.stop).
func runWith(t testing.TB, e *Elector) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{e: e, cancel: cancel, done: make(chan error, 1), ended: make(chan struct{}), changed: make(chan struct{}, 1)}
	out := election.NewOutbox()
	stop := make(chan struct{})
	add := func(s election.State) {
		nd.mu.Lock()
		nd.states = append(nd.states, s)
		nd.stamps = append(nd.stamps, time.Now())
		nd.mu.Unlock()
		select {
		case nd.changed <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(nd.ended)
		for {
			select {
			case <-out.Ready():
				out.TakeAll(add)
			case <-stop:
				out.TakeAll(add)
				return
			}
		}
	}()
	go func() {
		nd.done <- e.Run(ctx, out)
		close(stop)
	}()
	return nd
}

// stop cancels the node's Run and waits for it and its recorder. Idempotent, so tests also defer it.
func (nd *node) stop(t testing.TB) {
	t.Helper()
	nd.once.Do(func() {
		nd.cancel()
		nd.err = <-nd.done
		<-nd.ended
		if nd.err != nil {
			t.Errorf("Run: %v", nd.err)
		}
	})
}

// firstSince returns when, from start on, a recorded State first satisfied cond: start itself if
// the State current at start did.
func (nd *node) firstSince(start time.Time, cond func(election.State) bool) (time.Time, bool) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	for i, s := range nd.states {
		current := i+1 == len(nd.states) || nd.stamps[i+1].After(start) // s holds at start or later
		if !current || !cond(s) {
			continue
		}
		if nd.stamps[i].After(start) {
			return nd.stamps[i], true
		}
		return start, true
	}
	return time.Time{}, false
}

func (nd *node) last() election.State {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if len(nd.states) == 0 {
		return election.State{}
	}
	return nd.states[len(nd.states)-1]
}

func TestElectorFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfgA, cfgB := LocalConfig(), LocalConfig()
		cfgA.Interface, cfgA.VRID, cfgA.Priority, cfgA.VIPs, cfgA.Node = "eth0", 9, 200, testVI, "node-a"
		cfgB.Interface, cfgB.VRID, cfgB.Priority, cfgB.VIPs = "eth0", 9, 100, testVI
		a := startNode(t, n, addrA, cfgA)
		defer a.stop(t)
		b := startNode(t, n, addrB, cfgB)
		defer b.stop(t)

		// Both start as backups; A's shorter skew makes it master first (3*100ms + 55ms).
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		sa, sb := a.last(), b.last()
		if sa.Role != election.Master || sa.Term != 1 || sa.Leader.Node != "node-a" || sa.Leader.Address != addrA {
			t.Fatalf("A: %+v, want master, term 1", sa)
		}
		if sb.Role != election.Backup || sb.Leader.Address != addrA || sb.Leader.Node != addrA.String() {
			t.Fatalf("B: %+v, want backup following %s", sb, addrA)
		}
		if sa.Leader.Group != "vrid-9" || len(sa.Leader.VIPs) != 2 {
			t.Fatalf("A's record %+v", sa.Leader)
		}

		// Stable for a long time: adverts keep B a backup.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if b.last().Role != election.Backup || a.last().Role != election.Master {
			t.Fatalf("not stable: A %+v, B %+v", a.last(), b.last())
		}
		if st := b.e.Stats(); st.Accepted < 90 || st.DroppedTotal() != 0 {
			t.Fatalf("B stats %+v", st)
		}

		// A shuts down: its priority-0 advert lets B take over after Skew_Time (61ms), not 361ms.
		stopAt := time.Now()
		a.stop(t)
		if s := a.last(); s.Role != election.Backup || s.Reason != "shutdown" {
			t.Fatalf("A's final state %+v, want backup", s)
		}
		time.Sleep(62 * time.Millisecond)
		synctest.Wait()
		if s := b.last(); s.Role != election.Master || s.Term != 1 {
			t.Fatalf("B %+v, %s after A stopped: want master", s, time.Since(stopAt))
		}
		b.stop(t)
	})
}

func TestElectorMasterDownWithoutShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		a, b := startPair(t, n, 200, 100)
		// Cut the link: B declares A down after Master_Down_Interval; both are master (no quorum).
		n.setCut(true)
		cut := time.Now()
		time.Sleep(361 * time.Millisecond)
		synctest.Wait()
		if a.last().Role != election.Master || b.last().Role != election.Master {
			t.Fatalf("after %s: A %+v, B %+v, want split brain", time.Since(cut), a.last(), b.last())
		}
		// Heal: B hears the higher priority and steps down.
		n.setCut(false)
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if a.last().Role != election.Master || b.last().Role != election.Backup {
			t.Fatalf("after heal: A %+v, B %+v", a.last(), b.last())
		}
		a.stop(t)
		b.stop(t)
	})
}

func TestElectorPriorityEligibilityYield(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		a, b := startPair(t, n, 150, 100)
		if a.last().Role != election.Master {
			t.Fatalf("A %+v", a.last())
		}
		// A's check weight drops it below B: B (preempt) takes over after Master_Down_Interval.
		a.e.SetPriority(50)
		time.Sleep(time.Second)
		synctest.Wait()
		if a.last().Role != election.Backup || b.last().Role != election.Master {
			t.Fatalf("after priority 50: A %+v, B %+v", a.last(), b.last())
		}
		a.e.SetPriority(150)
		time.Sleep(time.Second)
		synctest.Wait()
		if a.last().Role != election.Master || a.last().Term != 2 {
			t.Fatalf("after priority 150: A %+v, want master with term 2", a.last())
		}
		// Ineligible: A reports Fault and B takes over.
		a.e.SetEligible(false)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if a.last().Role != election.Fault || b.last().Role != election.Master {
			t.Fatalf("ineligible: A %+v, B %+v", a.last(), b.last())
		}
		a.e.SetEligible(true)
		time.Sleep(time.Second)
		synctest.Wait()
		if a.last().Role != election.Master {
			t.Fatalf("eligible again: A %+v", a.last())
		}
		// Yield: B becomes master within its skew; A preempts it back later (it has the higher priority).
		a.e.Yield()
		time.Sleep(70 * time.Millisecond)
		synctest.Wait()
		if b.last().Role != election.Master {
			t.Fatalf("after yield: B %+v", b.last())
		}
		a.stop(t)
		b.stop(t)
	})
}

func TestElectorCountsMismatchedPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfgA, cfgB := testConfig(2), testConfig(2)
		cfgA.AuthPass, cfgB.AuthPass = "one", "two"
		a := startNode(t, n, addrA, cfgA)
		defer a.stop(t)
		b := startNode(t, n, addrB, cfgB)
		defer b.stop(t)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if a.last().Role != election.Master || b.last().Role != election.Master {
			t.Fatalf("mismatched auth: A %+v, B %+v, want both master", a.last(), b.last())
		}
		if a.e.Stats().Dropped[DropAuth] == 0 || b.e.Stats().Dropped[DropAuth] == 0 {
			t.Fatalf("drops not counted: A %+v, B %+v", a.e.Stats(), b.e.Stats())
		}
		a.stop(t)
		b.stop(t)
	})
}

func TestElectorRunTwice(t *testing.T) {
	e, err := New(testConfig(3), nil, WithConn((&fakeNet{}).conn(addrA)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := election.NewOutbox()
	if err := e.Run(ctx, out); err != nil {
		t.Fatal(err)
	}
	if err := e.Run(ctx, out); err == nil {
		t.Fatal("second Run succeeded")
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("New accepted an empty config")
	}
}

// eventLog is the order in which the parties of a test saw things happen.
type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (l *eventLog) add(ev string) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.evs...)
}

// sniff logs every priority-0 advert c receives, until c is closed.
func sniff(c *fakeConn, log *eventLog) {
	for {
		r, err := c.Read()
		if err != nil {
			return
		}
		var p Packet
		if p.Unmarshal(r.Data) == nil && p.Priority == PriorityStop {
			log.add("priority-0 advert")
		}
	}
}

// A master that gives up on purpose (a failing weight-0 check or maintenance makes it FAULT; a
// Yield, a Resign) sends its priority-0 advert only after its consumer has acted on the non-Master
// State: the VIPs are gone before a backup takes over after its Skew_Time. The consumer here takes 150ms to demote (within
// the master's 200ms validity); the advert must not go out before it is done.
func TestElectorPriorityZeroAfterDemote(t *testing.T) {
	for _, tc := range []struct {
		name string
		role election.Role
		give func(e *Elector, g *election.Gate)
	}{
		{"failing check", election.Fault, func(_ *Elector, g *election.Gate) { g.Set("service", false) }},
		{"yield", election.Backup, func(e *Elector, _ *election.Gate) { e.Yield() }},
		{"resign", election.Backup, func(e *Elector, _ *election.Gate) {
			go func() { _ = e.Resign(context.Background()) }() // returns once the advert is out
		}},
		{"maintenance", election.Fault, func(e *Elector, _ *election.Gate) { e.SetMaintenance(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := &fakeNet{}
				log := &eventLog{}
				wire := n.conn(addrC)
				sniffed := make(chan struct{})
				go func() { defer close(sniffed); sniff(wire, log) }()
				cfg := LocalConfig()
				cfg.Interface, cfg.VRID, cfg.VIPs = "eth0", 9, testVI
				e, err := New(cfg, nil, WithConn(n.conn(addrA)))
				if err != nil {
					t.Fatal(err)
				}
				gate, err := election.NewGate(e, cfg.Priority, []election.Check{{Name: "service", Up: true}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				out := election.NewOutbox()
				done := make(chan error, 1)
				go func() { done <- e.Run(ctx, out) }()
				// The consumer: it acknowledges at once, except the demote, which takes until release.
				demoting := make(chan election.State, 1)
				release := make(chan struct{})
				var releaseOnce sync.Once
				consumed := make(chan struct{})
				// Every goroutine of the bubble ends, also when the test fails.
				defer func() {
					cancel()
					releaseOnce.Do(func() { close(release) })
					if err := <-done; err != nil {
						t.Error(err)
					}
					<-consumed
					wire.Close()
					<-sniffed
				}()
				go func() {
					defer close(consumed)
					master := false
					for {
						s, seq, err := out.Next(ctx)
						if err != nil {
							return
						}
						switch {
						case s.Role == election.Master:
							master = true
						case master:
							master = false
							demoting <- s
							<-release
							log.add("demoted")
						}
						out.Acted(seq)
					}
				}()

				time.Sleep(time.Second)
				synctest.Wait()
				if s := e.State(); s.Role != election.Master {
					t.Fatalf("alone for 1s: %+v, want master", s)
				}
				tc.give(e, gate)
				synctest.Wait()
				var s election.State
				select {
				case s = <-demoting:
				default:
					t.Fatal("no demote asked for")
				}
				if s.Role != tc.role {
					t.Fatalf("demote for %+v, want role %s", s, tc.role)
				}
				time.Sleep(150 * time.Millisecond) // the consumer's Demote at work
				synctest.Wait()
				if evs := log.get(); len(evs) != 0 {
					t.Fatalf("while the consumer demotes: %v on the wire, want nothing", evs)
				}
				releaseOnce.Do(func() { close(release) })
				synctest.Wait()
				if evs := log.get(); !slices.Equal(evs, []string{"demoted", "priority-0 advert"}) {
					t.Fatalf("events %v, want the demote acted on, then the priority-0 advert", evs)
				}
			})
		})
	}
}

// A hacoord router (version 3) next to one left at keepalived's default (version 2): they never
// form one group, so both become master. The user hears of it at once, at warn level, naming the
// source, what it sent and what we expect; again on becoming master; then once a minute. Status
// (Mismatches) and the metrics (Stats) show it.
func TestElectorWarnsAboutMismatchedRouter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfgA, cfgB := testConfig(3), testConfig(2)
		cfgA.Priority = 150
		coreA, logsA := observer.New(zap.WarnLevel)
		coreB, logsB := observer.New(zap.WarnLevel)
		a := runNode(t, n.conn(addrA), cfgA, zap.New(coreA))
		defer a.stop(t)
		b := runNode(t, n.conn(addrB), cfgB, zap.New(coreB))
		defer b.stop(t)

		time.Sleep(150 * time.Second)
		synctest.Wait()
		if a.last().Role != election.Master || b.last().Role != election.Master {
			t.Fatalf("A %+v, B %+v: want both master (split brain)", a.last(), b.last())
		}
		// A (priority 150, Master_Down_Interval 3.41s) is master first and advertises; B (3.61s)
		// hears it, warns, and warns again on becoming master beside it. A hears B's first advert at
		// 3.61s and warns then, at 63.61s and at 123.61s.
		mismatch := func(logs *observer.ObservedLogs) []observer.LoggedEntry {
			return logs.FilterMessageSnippet("adverts for this VRID do not match").All()
		}
		const beside = "becoming master while routers that send mismatched adverts for this VRID are on the link"
		if w := mismatch(logsA); len(w) != 3 {
			t.Fatalf("A: %d mismatch warnings in 150s, want 3 (one a minute): %+v", len(w), w)
		}
		f := mismatch(logsA)[0].ContextMap()
		if f["reason"] != "version" || f["src"] != addrB.String() || !strings.Contains(f["detail"].(string), "VRRP version 2, we speak version 3") {
			t.Fatalf("A's warning fields %v", f)
		}
		if w := logsA.FilterMessageSnippet(beside).All(); len(w) != 0 {
			t.Errorf("A was master before it heard B, yet warned %+v", w)
		}
		if w := logsB.FilterMessageSnippet(beside).All(); len(w) != 1 || fmt.Sprint(w[0].ContextMap()["mismatched"]) != "[192.0.2.1 (version)]" {
			t.Fatalf("B became master after hearing A: warnings %+v, want one naming 192.0.2.1", w)
		}
		mms := a.e.Mismatches()
		if len(mms) != 1 || mms[0].Reason != MismatchVersion || mms[0].Source != addrB || mms[0].Count < 140 || !mms[0].Dropped {
			t.Fatalf("Mismatches %+v", mms)
		}
		st := a.e.Stats()
		if st.Mismatched[MismatchVersion] != mms[0].Count || st.Received != st.Mismatched[MismatchVersion] || st.Sent < 140 || st.SendErrors != 0 {
			t.Fatalf("stats %+v", st)
		}
		// B (version 2) reports A's version 3 adverts the same way.
		if mm := b.e.Mismatches(); len(mm) != 1 || mm[0].Source != addrA || !strings.Contains(mm[0].Detail, "VRRP version 3, we speak version 2") {
			t.Fatalf("B's Mismatches %+v", mm)
		}
		a.stop(t)
		b.stop(t)
	})
}

// IPv6 (RFC 5798 over IPv6) between two Electors: adverts to ff02::12 from link-local addresses; a
// graceful stop hands over after the backup's Skew_Time (61ms at 100ms adverts, priority 100), not
// its Master_Down_Interval (361ms).
func TestElectorFailoverIPv6(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &fakeNet{}
		cfgA, cfgB := LocalConfig(), LocalConfig()
		cfgA.Interface, cfgA.VRID, cfgA.Priority, cfgA.VIPs = "eth0", 9, 200, testVI6
		cfgB.Interface, cfgB.VRID, cfgB.Priority, cfgB.VIPs = "eth0", 9, 100, testVI6
		a := startNode(t, n, ll1, cfgA)
		defer a.stop(t)
		b := startNode(t, n, ll2, cfgB)
		defer b.stop(t)
		time.Sleep(time.Second)
		synctest.Wait()
		if s := a.last(); s.Role != election.Master || s.Leader.Address != ll1 || !slices.Equal(s.Leader.VIPs, testVI6) {
			t.Fatalf("A %+v, want master at %s with the IPv6 VIPs", s, ll1)
		}
		if s := b.last(); s.Role != election.Backup || s.Leader.Address != ll1 {
			t.Fatalf("B %+v, want backup following %s", s, ll1)
		}
		if st := b.e.Stats(); st.Accepted < 5 || st.DroppedTotal() != 0 {
			t.Fatalf("B stats %+v", st)
		}
		a.stop(t)
		time.Sleep(62 * time.Millisecond)
		synctest.Wait()
		if s := b.last(); s.Role != election.Master {
			t.Fatalf("B %+v 62ms after A stopped: want master", s)
		}
		b.stop(t)
	})
}
