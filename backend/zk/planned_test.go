package zk_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// TestPlannedMoves runs the priority rules and the planned moves (resign, transfer, maintenance,
// preemption) against one real ZooKeeper (tick 100ms, 1s sessions).
func TestPlannedMoves(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	addr := srv.Addr()
	t.Run("ResignHandsOverAtOnce", func(t *testing.T) { testResign(t, addr) })
	t.Run("ResignedNodeDoesNotTakeItBack", func(t *testing.T) { testResignNoTakeBack(t, addr) })
	t.Run("TransferToNamedNode", func(t *testing.T) { testTransfer(t, addr) })
	t.Run("TransferToMissingNode", func(t *testing.T) { testTransferMissing(t, addr) })
	t.Run("TransferTargetNeverComes", func(t *testing.T) { testTransferTimeout(t, addr) })
	t.Run("HigherPriorityJoinPreempts", func(t *testing.T) { testPreempt(t, addr) })
	t.Run("PreemptDelay", func(t *testing.T) { testPreemptDelay(t, addr) })
	t.Run("NoPreemptKeepsMaster", func(t *testing.T) { testNoPreempt(t, addr) })
	t.Run("HeadDefersToHigherPriority", func(t *testing.T) { testHeadDefers(t, addr) })
	t.Run("SetPriorityRepublishes", func(t *testing.T) { testSetPriority(t, addr) })
	t.Run("GateWeightMovesPriority", func(t *testing.T) { testGateWeight(t, addr) })
	t.Run("HandoverOnlyAfterAPlannedGiveUp", func(t *testing.T) { testHandoverMarker(t, addr) })
	t.Run("NoHandoverAfterAnOlderMaster", func(t *testing.T) { testMarkerOlderMaster(t, addr) })
	t.Run("Maintenance", func(t *testing.T) { testMaintenance(t, addr) })
	t.Run("ListerQueueOrder", func(t *testing.T) { testLister(t, addr) })
	t.Run("OldBareNameCandidate", func(t *testing.T) { testBareName(t, addr) })
}

// prio is config with a priority and preemption settings.
func prio(addr, group, name string, p int, mods ...func(*zkb.Config)) zkb.Config {
	c := config(addr, group, name)
	c.Priority = p
	for _, m := range mods {
		m(&c)
	}
	return c
}

func noPreempt(c *zkb.Config) { c.NoPreempt = true }

// lister reads group's queue through an Observer's Lister.
func list(t testing.TB, addr, group string) ([]election.Candidate, *election.Transfer) {
	t.Helper()
	o, err := zkb.NewLister(config(addr, group, ""), testLogger(t).Named("lister"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cs, tr, err := o.Candidates(ctx)
	if err != nil {
		t.Fatalf("Candidates: %v", err)
	}
	return cs, tr
}

func names(cs []election.Candidate) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Node)
	}
	return n
}

// waitQueue waits, on children watches of the election znode, until the queue's node names, in
// order, satisfy ok; it returns the queue.
func waitQueue(t testing.TB, addr, group, what string, ok func([]election.Candidate) bool) []election.Candidate {
	t.Helper()
	c := raw(t, addr, "")
	p := "/hacoord/" + group + "/election"
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		_, _, w, err := c.ChildrenW(p)
		if err != nil {
			t.Fatalf("watch %s: %v", p, err)
		}
		cs, _ := list(t, addr, group)
		if ok(cs) {
			return cs
		}
		select {
		case <-w:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; queue %v", waitLimit, what, names(cs))
		}
	}
}

// holders checks that at no instant two of nodes reported Master, from their recorded histories (a
// node acts on each State as it records it), and returns the masters in the order they came.
func holders(t testing.TB, nodes ...*node) []string {
	t.Helper()
	type ev struct {
		at     time.Time
		node   string
		master bool
	}
	var evs []ev
	for _, n := range nodes {
		for _, s := range n.rec.all() {
			evs = append(evs, ev{s.At, n.name, s.Role == election.Master})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	cur := map[string]bool{}
	var order []string
	for _, e := range evs {
		if e.master && !cur[e.node] {
			order = append(order, e.node)
		}
		cur[e.node] = e.master
		var now []string
		for n, m := range cur {
			if m {
				now = append(now, n)
			}
		}
		if len(now) > 1 {
			t.Errorf("two holders at %v: %v", e.at.Format("15:04:05.000000"), now)
		}
	}
	return order
}

// handover is the time from old's last non-Master State (its VIPs are gone) to new's Master State,
// the client outage of a planned move less bind and announce.
func handover(t testing.TB, old *node, nw stamped) time.Duration {
	t.Helper()
	var gone time.Time
	for _, s := range old.rec.all() {
		if s.Role != election.Master && !s.At.After(nw.At) {
			gone = s.At
		}
	}
	return nw.At.Sub(gone)
}

// waitPlannedMaster waits until n is master, checks that it is in a term after prev's and that its
// State says it follows a planned move, and returns that State.
func (n *node) waitPlannedMaster(t testing.TB, prev stamped) stamped {
	t.Helper()
	m := n.waitMaster(t)
	if m.Term <= prev.Term {
		t.Errorf("term %d after %d", m.Term, prev.Term)
	}
	if !m.Handover {
		t.Errorf("%s's State does not say it follows a planned move: %+v", n.name, m.State)
	}
	return m
}

func leads(name string) func(election.State) bool {
	return func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == name }
}

// The master resigns: the next candidate is master at once, terms rise, and a backup cannot resign.
func testResign(t *testing.T, addr string) {
	const group = "resign"
	a, b, c, ma := startABC(t, addr, group)

	if err := b.e.Resign(context.Background()); !errors.Is(err, election.ErrNotMaster) {
		t.Errorf("Resign on a backup: %v, want ErrNotMaster", err)
	}
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	mb := b.waitPlannedMaster(t, ma)
	a.rec.waitFor(t, "a follows b", leads("b"))
	t.Logf("resign: b master %v after a's VIPs were gone", handover(t, a, mb))
	if d := handover(t, a, mb); d > 250*time.Millisecond {
		t.Errorf("b master %v after a's demote: not a planned move", d)
	}
	if got := holders(t, a, b, c); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("masters in order %v, want [a b]", got)
	}
	cs := waitQueue(t, addr, group, "a back in the queue without preemption", func(cs []election.Candidate) bool {
		return len(cs) == 3 && cs[2].Node == "a"
	})
	if cs[2].Preempt {
		t.Errorf("a rejoined with preemption after resigning: %+v", cs[2])
	}
	// The transfer record is gone once b is master (b deletes it).
	waitGone(t, addr, "/hacoord/"+group+"/transfer")
}

// waitGone waits on a watch until znode p does not exist.
func waitGone(t testing.TB, addr, p string) {
	t.Helper()
	waitZnode(t, addr, p, false)
}

// waitExists waits on a watch until znode p exists.
func waitExists(t testing.TB, addr, p string) {
	t.Helper()
	waitZnode(t, addr, p, true)
}

// waitZnode waits on a watch until znode p exists (exists true) or does not (false).
func waitZnode(t testing.TB, addr, p string, exists bool) {
	t.Helper()
	c := raw(t, addr, "")
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		ok, _, w, err := c.ExistsW(p)
		if err != nil {
			t.Fatalf("watch %s: %v", p, err)
		}
		if ok == exists {
			return
		}
		select {
		case <-w:
		case <-deadline.C:
			if exists {
				t.Fatalf("%s not there after %v", p, waitLimit)
			}
			t.Fatalf("%s still there after %v", p, waitLimit)
		}
	}
}

// startABC starts a (master), then b and c (following a, queued in that order) in group, all at
// the default priority, and returns them with a's Master State.
func startABC(t *testing.T, addr, group string) (a, b, c *node, ma stamped) {
	t.Helper()
	a = startNode(t, config(addr, group, "a"), nil)
	ma = a.waitMaster(t)
	b = startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", leads("a")) // queued before c
	c = startNode(t, config(addr, group, "c"), nil)
	c.rec.waitFor(t, "c follows a", leads("a"))
	return a, b, c, ma
}

// A preferred node (priority 200) that resigns to b (100) does not preempt it straight back; a
// preempting node that joins later (150) is the one b hands over to.
func testResignNoTakeBack(t *testing.T, addr string) {
	const group = "notakeback"
	a := startNode(t, prio(addr, group, "a", 200), nil)
	a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 100), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	b.waitMaster(t)
	waitQueue(t, addr, group, "a queued behind b", func(cs []election.Candidate) bool {
		return slices.Equal(names(cs), []string{"b", "a"})
	})
	c := startNode(t, prio(addr, group, "c", 150), nil)
	mc := c.waitMaster(t)
	t.Logf("b handed over to c (150) %v after b's demote, a (200) kept back", handover(t, b, mc))
	if got := holders(t, a, b, c); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("masters in order %v, want [a b c]", got)
	}
	// Once it is master again (c stops), a preempts as configured again.
	if err := c.stop(t); err != nil {
		t.Fatal(err)
	}
	a.waitMaster(t)
	waitQueue(t, addr, group, "a publishes preemption again", func(cs []election.Candidate) bool {
		return len(cs) == 2 && cs[0].Node == "a" && cs[0].Preempt
	})
}

// A transfer to the last node in the queue: the node in between defers, the target is master.
func testTransfer(t *testing.T, addr string) {
	const group = "transfer"
	a, b, c, ma := startABC(t, addr, group)

	if err := a.e.Transfer(context.Background(), "c", 5*time.Second); err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	mc := c.waitPlannedMaster(t, ma)
	t.Logf("transfer: c master %v after a's VIPs were gone (b deferred)", handover(t, a, mc))
	if got := holders(t, a, b, c); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("masters in order %v, want [a c]", got)
	}
	waitGone(t, addr, "/hacoord/"+group+"/transfer")
	cs, tr := list(t, addr, group)
	if tr != nil || len(cs) != 3 || cs[0].Node != "c" {
		t.Errorf("after the transfer: queue %v, transfer %+v", names(cs), tr)
	}
}

// A transfer to a node that is not queued is refused, and the master stays master.
func testTransferMissing(t *testing.T, addr string) {
	const group = "transfermissing"
	a := startNode(t, config(addr, group, "a"), nil)
	ma := a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	err := a.e.Transfer(context.Background(), "nosuch", time.Second)
	if !errors.Is(err, election.ErrNoSuchCandidate) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Fatalf("Transfer to a missing node: %v, want ErrNoSuchCandidate naming it", err)
	}
	if err := a.e.Transfer(context.Background(), "a", time.Second); err == nil {
		t.Error("Transfer to the master itself: no error")
	}
	for _, s := range a.rec.all() {
		if s.At.After(ma.At) && s.Role != election.Master {
			t.Errorf("a stepped down for a refused transfer: %+v", s)
		}
	}
	if _, tr := list(t, addr, group); tr != nil {
		t.Errorf("transfer record %+v left by a refused transfer", tr)
	}
}

// The target of a transfer is cut off and its session expires: the others hold back until the
// transfer runs out, then a normal election runs.
func testTransferTimeout(t *testing.T, addr string) {
	const group = "transfertimeout"
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)
	px := faultnet.Start(t, addr)
	t.Cleanup(px.Unblock)
	b := startNode(t, config(px.Addr(), group, "b"), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	c := startNode(t, config(addr, group, "c"), nil)
	c.rec.waitFor(t, "c follows a", leads("a"))

	px.Block() // b hears nothing more; its session expires after 1s
	const timeout = 2500 * time.Millisecond
	start := time.Now()
	if err := a.e.Transfer(context.Background(), "b", timeout); err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	until := start.Add(timeout)
	m := c.rec.waitFor(t, "c master", isRole(election.Master))
	if !m.Handover { // a demoted and gave up; nobody was master between
		t.Errorf("c's State does not say it follows a's planned give-up: %+v", m.State)
	}
	if m.At.Before(until.Add(-50 * time.Millisecond)) {
		t.Errorf("c master %v before the transfer to b ran out", until.Sub(m.At))
	}
	t.Logf("c master %v after the transfer to b ran out", m.At.Sub(until))
	for _, s := range b.rec.all() {
		if s.Role == election.Master && s.At.After(start) {
			t.Errorf("cut-off b reported Master: %+v", s)
		}
	}
	if got := holders(t, a, c); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("masters in order %v, want [a c]", got)
	}
}

// A node of higher priority joins: the master hands over by a planned move.
func testPreempt(t *testing.T, addr string) {
	const group = "preempt"
	a := startNode(t, prio(addr, group, "a", 100), nil)
	ma := a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 200), nil)
	mb := b.waitPlannedMaster(t, ma)
	a.rec.waitFor(t, "a follows b", leads("b"))
	d := handover(t, a, mb)
	t.Logf("preemption: b master %v after a's VIPs were gone", d)
	if d > 250*time.Millisecond {
		t.Errorf("b master %v after a's demote: not a planned move", d)
	}
	if got := holders(t, a, b); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("masters in order %v, want [a b]", got)
	}
}

// preempt_delay: the master hands over only once the preferred node has been queued that long.
func testPreemptDelay(t *testing.T, addr string) {
	const group = "preemptdelay"
	const delay = 700 * time.Millisecond
	a := startNode(t, prio(addr, group, "a", 100), nil)
	a.waitMaster(t)
	joined := time.Now()
	b := startNode(t, prio(addr, group, "b", 200, func(c *zkb.Config) { c.PreemptDelay = delay }), nil)
	mb := b.waitMaster(t)
	if d := mb.At.Sub(joined); d < delay {
		t.Errorf("b master %v after joining, before its preempt_delay %v", d, delay)
	}
	t.Logf("b master %v after joining (preempt_delay %v), %v after a's demote", mb.At.Sub(joined), delay, handover(t, a, mb))
	holders(t, a, b)
}

// nopreempt: a node of higher priority joins and the master keeps mastership; when the master
// resigns, it is the one that takes over.
func testNoPreempt(t *testing.T, addr string) {
	const group = "nopreempt"
	obs, logs := observer.New(zapcore.InfoLevel)
	core := signalCore{Core: obs, c: make(chan struct{}, 1)}
	la := zap.New(zapcore.NewTee(testLogger(t).Core(), core))
	a := startNode(t, prio(addr, group, "a", 100), la)
	ma := a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 200, noPreempt), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	waitLog(t, core, logs, "without preemption; keeping mastership")
	for _, s := range a.rec.all() {
		if s.At.After(ma.At) && s.Role != election.Master {
			t.Fatalf("a stepped down for a nopreempt node: %+v", s)
		}
	}
	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.waitMaster(t)
	holders(t, a, b)
}

// signalCore is a zapcore.Core that signals c after every entry it writes (the observer offers no
// notification of its own).
type signalCore struct {
	zapcore.Core
	c chan struct{} // cap 1
}

func (s signalCore) With(f []zapcore.Field) zapcore.Core { return signalCore{s.Core.With(f), s.c} }

func (s signalCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if s.Enabled(e.Level) {
		return ce.AddCore(e, s)
	}
	return ce
}

func (s signalCore) Write(e zapcore.Entry, f []zapcore.Field) error {
	err := s.Core.Write(e, f)
	select {
	case s.c <- struct{}{}:
	default:
	}
	return err
}

// waitLog waits, woken by core, until a log line containing msg was written.
func waitLog(t testing.TB, core signalCore, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for logs.FilterMessageSnippet(msg).Len() == 0 {
		select {
		case <-core.c:
		case <-deadline.C:
			t.Fatalf("no log line %q within %v", msg, waitLimit)
		}
	}
}

// Without a master, a head defers to a queued node of higher priority, whatever its nopreempt: the
// highest-priority candidate wins an election.
func testHeadDefers(t *testing.T, addr string) {
	const group = "headdefers"
	// An outside session holds the head of the queue (an older candidate, as a stuck node would),
	// so that a and b queue behind it; then it goes, and a reaches the head first.
	c := raw(t, addr, "")
	base := "/hacoord/" + group
	for _, p := range []string{"/hacoord", base, base + "/election"} {
		if _, err := c.Create(p, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	head, err := c.Create(base+"/election/_c_00000000000000000000000000000000-n_", []byte("stuck"),
		gozk.FlagEphemeral|gozk.FlagSequence, gozk.WorldACL(gozk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	a := startNode(t, prio(addr, group, "a", 100), nil)
	waitQueue(t, addr, group, "stuck, a queued", func(cs []election.Candidate) bool {
		return slices.Equal(names(cs), []string{"stuck", "a"})
	})
	b := startNode(t, prio(addr, group, "b", 200, noPreempt), nil)
	waitQueue(t, addr, group, "stuck, a, b queued", func(cs []election.Candidate) bool {
		return slices.Equal(names(cs), []string{"stuck", "a", "b"})
	})
	if err := c.Delete(head, -1); err != nil {
		t.Fatal(err)
	}
	b.waitMaster(t)
	a.rec.waitFor(t, "a follows b", leads("b"))
	if got := holders(t, a, b); !slices.Equal(got, []string{"b"}) {
		t.Errorf("masters in order %v, want [b]", got)
	}
}

// SetPriority re-publishes the value in place (same znode), and a master whose priority falls
// below a preempting backup's hands over.
func testSetPriority(t *testing.T, addr string) {
	const group = "setpriority"
	a := startNode(t, prio(addr, group, "a", 150), nil)
	a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 120), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	before := waitQueue(t, addr, group, "a, b", func(cs []election.Candidate) bool { return len(cs) == 2 })
	a.e.SetPriority(90) // a failing check of weight -60
	mb := b.waitMaster(t)
	t.Logf("a's priority fell to 90: b master %v after a's demote", handover(t, a, mb))
	b.e.SetPriority(130)
	cs := waitQueue(t, addr, group, "b at 130", func(cs []election.Candidate) bool {
		return len(cs) == 2 && cs[0].Node == "b" && cs[0].Priority == 130
	})
	if !cs[0].Since.Equal(before[1].Since) {
		t.Errorf("b's candidate was re-created (since %v, was %v), not re-published in place", cs[0].Since, before[1].Since)
	}
	holders(t, a, b)
}

// Maintenance on a master hands over and withdraws, publishing the maintenance znode; off rejoins.
// A node started in maintenance never campaigns.
func testMaintenance(t *testing.T, addr string) {
	const group = "maint"
	mp := "/hacoord/" + group + "/maintenance/"
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))

	a.e.SetMaintenance(true)
	mb := b.waitMaster(t)
	t.Logf("maintenance: b master %v after a's demote", handover(t, a, mb))
	a.rec.waitFor(t, "a out for maintenance", func(s election.State) bool {
		return s.Role == election.Backup && s.Reason == "maintenance" && s.Leader.Node == "b"
	})
	c := raw(t, addr, "")
	ok, st, err := c.Exists(mp + "a")
	if err != nil || !ok || st.EphemeralOwner == 0 {
		t.Fatalf("maintenance znode of a: exists %v, stat %+v, %v", ok, st, err)
	}
	cs, _ := list(t, addr, group)
	if !slices.Equal(names(cs), []string{"b", "a"}) || cs[0].Maintenance || !cs[1].Maintenance {
		t.Errorf("queue with a in maintenance: %+v", cs)
	}

	// Started in maintenance: no candidate ever, the znode at once.
	e, err := zkb.New(config(addr, group, "m"), testLogger(t).Named("m"))
	if err != nil {
		t.Fatal(err)
	}
	e.SetMaintenance(true)
	m := runNode(t, "m", e)
	m.rec.waitFor(t, "m in maintenance", func(s election.State) bool { return s.Reason == "maintenance" })
	if ok, _, _ := c.Exists(mp + "m"); !ok {
		t.Error("no maintenance znode for m")
	}

	a.e.SetMaintenance(false)
	waitGone(t, addr, mp+"a")
	waitQueue(t, addr, group, "a queued again", func(cs []election.Candidate) bool {
		return len(cs) == 3 && cs[1].Node == "a" && !cs[1].Maintenance
	})
	if err := m.stop(t); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := c.Exists(mp + "m"); ok {
		t.Error("m's maintenance znode outlived its session")
	}
	for _, s := range m.rec.all() {
		if s.Role == election.Master {
			t.Errorf("m in maintenance was master: %+v", s)
		}
	}
	holders(t, a, b, m)
}

// The Lister returns the queue in its order with each value, from a session of its own.
func testLister(t *testing.T, addr string) {
	const group = "lister"
	if cs, tr := list(t, addr, group); len(cs) != 0 || tr != nil {
		t.Errorf("empty group: %v %v", cs, tr)
	}
	a := startNode(t, prio(addr, group, "a", 110, noPreempt), nil)
	a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 150, noPreempt, func(c *zkb.Config) { c.Record.Address = addrOf("192.0.2.11") }), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))
	c := startNode(t, prio(addr, group, "c", 120, noPreempt), nil)
	c.rec.waitFor(t, "c follows a", leads("a"))
	cs, tr := list(t, addr, group)
	if !slices.Equal(names(cs), []string{"a", "b", "c"}) || tr != nil {
		t.Fatalf("queue %v, transfer %+v", names(cs), tr)
	}
	for i, want := range []int{110, 150, 120} {
		if cs[i].Priority != want || cs[i].Preempt || cs[i].Since.IsZero() || cs[i].Maintenance {
			t.Errorf("candidate %d: %+v", i, cs[i])
		}
	}
	if cs[1].Address != addrOf("192.0.2.11") {
		t.Errorf("b's address %v", cs[1].Address)
	}
}

// An older hacoord's candidate (its bare node name) is read at the default priority with
// preemption: by the Lister, and by a master, which hands over to it once its own priority falls
// below 100.
func testBareName(t *testing.T, addr string) {
	const group = "barename"
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)
	c := raw(t, addr, "")
	if _, err := c.Create("/hacoord/"+group+"/election/_c_11111111111111111111111111111111-n_", []byte("old1"),
		gozk.FlagEphemeral|gozk.FlagSequence, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	cs := waitQueue(t, addr, group, "a, old1", func(cs []election.Candidate) bool { return len(cs) == 2 })
	if cs[1].Node != "old1" || cs[1].Priority != election.DefaultPriority || !cs[1].Preempt {
		t.Errorf("old candidate read as %+v", cs[1])
	}
	a.e.SetPriority(50)
	a.rec.waitFor(t, "a hands over to old1", func(s election.State) bool {
		return s.Role == election.Backup && s.Reason == "preempted by old1"
	})
	waitExists(t, addr, "/hacoord/"+group+"/transfer") // written with a's release, after the demote
	_, tr := list(t, addr, group)
	if tr == nil || tr.To != "old1" || tr.From != "a" {
		t.Errorf("transfer record %+v, want a to old1", tr)
	}
}

func addrOf(s string) netip.Addr { return netip.MustParseAddr(s) }

// A track check's weight moves the priority over ZooKeeper as it does over VRRP (election.Gate
// calls SetPriority): the master's weighted check fails, its priority falls below a preempting
// backup's, and it hands over; a weight-0 check that fails withdraws the candidacy altogether.
func testGateWeight(t *testing.T, addr string) {
	const group = "gateweight"
	e, err := zkb.New(prio(addr, group, "a", 150), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	gate, err := election.NewGate(e, 150, []election.Check{
		{Name: "service", Weight: -60, Up: true},
		{Name: "disk", Up: true},
	}, testLogger(t).Named("gate"))
	if err != nil {
		t.Fatal(err)
	}
	a := runNode(t, "a", e)
	a.waitMaster(t)
	b := startNode(t, prio(addr, group, "b", 120), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))

	gate.Set("service", false) // 150 - 60 = 90 < 120
	mb := b.waitMaster(t)
	if !mb.Handover {
		t.Errorf("b's State does not say it follows a planned move: %+v", mb.State)
	}
	cs := waitQueue(t, addr, group, "a queued at 90", func(cs []election.Candidate) bool {
		return len(cs) == 2 && cs[1].Node == "a" && cs[1].Priority == 90
	})
	t.Logf("weighted check failed: b master %v after a's demote; queue %v", handover(t, a, mb), names(cs))

	gate.Set("service", true) // back to 150: a preempts b
	a.waitMaster(t)
	gate.Set("disk", false) // weight 0: out of the election
	b.waitMaster(t)
	waitQueue(t, addr, group, "a withdrawn", func(cs []election.Candidate) bool {
		return slices.Equal(names(cs), []string{"b"})
	})
	holders(t, a, b)
}

// State.Handover says the previous master gave up after its demote with no master between: after a
// withdrawal (SetEligible(false)) it is set; after a master's session ended without a give-up (a
// crash: the session closed from outside) it is not, and the released marker is gone with the
// session that claimed it.
func testHandoverMarker(t *testing.T, addr string) {
	const group = "marker"
	px := faultnet.Start(t, addr)
	e, err := zkb.New(config(px.Addr(), group, "a"), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	a := runNode(t, "a", e)
	a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", leads("a"))

	b.e.SetEligible(false) // a backup's withdrawal leaves no marker
	b.rec.waitFor(t, "b out", func(s election.State) bool { return s.Reason == "ineligible" })
	b.e.SetEligible(true)
	b.rec.waitFor(t, "b follows a again", func(s election.State) bool { return s.Reason == "following" })
	a.e.SetEligible(false)
	mb := b.waitMaster(t)
	if !mb.Handover {
		t.Errorf("b master after a withdrew: %+v, want Handover", mb.State)
	}
	c := raw(t, addr, "")
	if ok, _, _ := c.Exists("/hacoord/" + group + "/released"); ok {
		t.Error("the released marker outlived b's claim")
	}
	a.e.SetEligible(true)
	a.rec.waitFor(t, "a follows b", func(s election.State) bool { return s.Reason == "following" })
	if err := b.e.Transfer(context.Background(), "a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ma := a.waitMaster(t)
	if !ma.Handover {
		t.Errorf("a master after the transfer: %+v, want Handover", ma.State)
	}
	b.rec.waitFor(t, "b follows a", leads("a"))

	// a crashes: its session ends without a give-up.
	sid, pw := f.session()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	px.Block()
	if err := zktest.CloseSession(ctx, addr, sid, pw); err != nil {
		t.Fatal(err)
	}
	mb = b.rec.waitFor(t, "b master after a's session ended", func(s election.State) bool {
		return s.Role == election.Master && s.Term > ma.Term
	})
	if mb.Handover {
		t.Errorf("b master after a crash: %+v, want no Handover", mb.State)
	}
	px.Unblock()
}

// An older hacoord's master does not delete the released marker when it claims. A marker left by
// a master before it must not make the next master skip the conflict probe after that older
// master crashed.
func testMarkerOlderMaster(t *testing.T, addr string) {
	const group = "markerold"
	base := "/hacoord/" + group
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)
	old := raw(t, addr, "")
	cand, err := old.Create(base+"/election/_c_22222222222222222222222222222222-n_", []byte("old"),
		gozk.FlagEphemeral|gozk.FlagSequence, gozk.WorldACL(gozk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	a.e.SetEligible(false) // a gives up after its demote: the marker
	a.rec.waitFor(t, "a out", func(s election.State) bool { return s.Reason == "ineligible" })
	waitExists(t, addr, base+"/released")
	// The older hacoord, now first, claims as it did: its master record, the marker left alone.
	_, st, err := old.Exists(cand)
	if err != nil {
		t.Fatal(err)
	}
	rec := election.Record{Group: group, Node: "old", Term: uint64(st.Czxid), Since: time.Now().UTC()}
	if _, err := old.Create(base+"/leader", rec.Marshal(), gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows old", leads("old"))
	old.Close() // the older master crashes
	mb := b.waitMaster(t)
	if mb.Handover {
		t.Errorf("b master after an older hacoord's master crashed: %+v, want no Handover", mb.State)
	}
}
