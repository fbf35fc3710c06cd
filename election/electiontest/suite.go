// Package electiontest is the conformance suite every election backend passes: exactly one master,
// takeover when the master's session is lost, immediate handover on resign, strictly rising terms, a
// master record an observer can read, and self-fencing of a master cut off from the store.
//
// A backend supplies a Harness (see backend/etcd's conformance test) and calls Run. Each subtest
// uses its own group, so one store serves all of them. Timeouts scale with Harness.TTL; with a 1s TTL
// the whole suite takes about 10s. The safety checks rest on the worst-case timeline documented on
// fencing.Deadline: a master's validity (State.ValidUntil) must end before any other node can be
// elected.
package electiontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// Harness creates candidates and observers of one backend.
type Harness interface {
	// NewCandidate returns a new candidate called name in group, connected to the store through its
	// own fault point. Whatever it creates is released in t.Cleanup.
	NewCandidate(t *testing.T, group, name string) Candidate
	// NewObserver returns an Observer of group.
	NewObserver(t *testing.T, group string) election.Observer
	// TTL is the session TTL the candidates use: how long after its last contact the store drops a
	// candidate. The suite's waits scale with it.
	TTL() time.Duration
}

// Candidate is one node's Elector and the faults a test can inject into it. A nil Kill or Partition
// skips the subtests that need it.
type Candidate struct {
	Elector election.Elector
	// Kill loses the session abruptly, like a crash, without resigning (etcd: revoke the lease from
	// outside; ZooKeeper: expire the session). The Elector keeps running and campaigns again.
	Kill func()
	// Partition cuts the candidate off from the store silently (cut true) or reconnects it.
	Partition func(cut bool)
}

// A Limited Harness names the guarantees its backend does not give, each with the reason; the
// subtests that test them are skipped, saying why (native VRRP has no store, no session and no
// global term). Keys are subtest names ("TakeoverOnKill", ...) and GlobalTerms.
type Limited interface {
	Lacks() map[string]string
}

// A StoreHarness runs its candidates against a store of three members (a 3-member embedded etcd, a
// 3-server ZooKeeper ensemble) and can hit the store rather than a node. Run then adds the
// store-fault subtests: a store leader change is not a failover, and a broken watch deposes no one.
type StoreHarness interface {
	Harness
	// KillStoreLeader stops the store's current leader member abruptly (a crash), waits until the
	// remaining members have elected a new leader, and returns a function that restarts the killed
	// member. Every candidate has all three members as endpoints.
	KillStoreLeader(t *testing.T) (restart func())
	// BreakWatches breaks the candidates' watches the way maintenance does (etcd: compact the
	// history and cut the watch streams so they resume from a compacted revision; ZooKeeper: move
	// every session to another server) without ending any lease or session.
	BreakWatches(t *testing.T)
}

// A Handoverer Harness says how soon after a master resigns another candidate must be master, from
// the protocol's own timers (VRRP: the next router's Skew_Time plus a few milliseconds, far below
// its Master_Down_Interval). Without it the bound is TTL/4: a store hands over in a round trip or
// two, and a master that never resigned would be replaced only after its session's TTL.
type Handoverer interface {
	Handover() time.Duration
}

// GlobalTerms, as a key of Limited.Lacks, says terms are counted by each node on its own, so the
// checks that terms rise from one master to the next are skipped.
const GlobalTerms = "GlobalTerms"

// Run runs the conformance subtests against h.
func Run(t *testing.T, h Harness) {
	s := suite{h: h, ttl: h.TTL()}
	if l, ok := h.(Limited); ok {
		s.lacks = l.Lacks()
	}
	for _, st := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"OneMaster", s.oneMaster},
		{"TakeoverOnKill", s.takeoverOnKill},
		{"ResignHandsOverImmediately", s.resign},
		{"ResignWaitsForDemote", s.resignWaitsForDemote},
		{"TermRises", s.termRises},
		{"ObserverSeesMaster", s.observe},
		{"SelfFenceOnPartition", s.partition},
		{"Yield", s.yield},
		{"Eligibility", s.eligibility},
		{"StoreLeaderLossNoFailover", s.storeLeaderLoss},
		{"BrokenWatchNoFailover", s.brokenWatch},
	} {
		f := st.f
		if reason, ok := s.lacks[st.name]; ok {
			f = func(t *testing.T) { t.Skip("backend does not give this guarantee: " + reason) }
		} else if _, ok := h.(StoreHarness); !ok && storeFault[st.name] {
			continue // run by the backend's StoreHarness, against a store of three members
		}
		t.Run(st.name, f)
	}
}

// storeFault names the subtests that need a StoreHarness.
var storeFault = map[string]bool{"StoreLeaderLossNoFailover": true, "BrokenWatchNoFailover": true}

type suite struct {
	h     Harness
	ttl   time.Duration
	lacks map[string]string
}

func newGroup() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "ct-" + hex.EncodeToString(b[:])
}

// settle is how long the suite waits for anything that should happen within a few TTLs.
func (s suite) settle() time.Duration { return 5*s.ttl + 10*time.Second }

// start starts one candidate per name in a fresh group and checks, at the end of the test, that their
// master intervals never overlapped and terms rose.
func (s suite) start(t *testing.T, names ...string) []*Recorder {
	t.Helper()
	return s.startWith(t, Options{}, names...)
}

func (s suite) startWith(t *testing.T, o Options, names ...string) []*Recorder {
	t.Helper()
	group := newGroup()
	rs := make([]*Recorder, len(names))
	_, local := s.lacks[GlobalTerms]
	t.Cleanup(func() { checkNoOverlap(t, !local, rs...) }) // runs after the recorders' own cleanups
	for i, n := range names {
		rs[i] = StartWith(t, n, s.h.NewCandidate(t, group, n), o)
	}
	return rs
}

func isMaster(st []Stamped) bool { return len(st) > 0 && st[len(st)-1].Role == election.Master }

// waitMaster waits until exactly one of rs (not excluded) reports Master and returns it.
func (s suite) waitMaster(t *testing.T, rs []*Recorder, exclude ...*Recorder) *Recorder {
	t.Helper()
	deadline := time.Now().Add(s.settle())
	for {
		var masters []*Recorder
		var chans []<-chan struct{}
		for _, r := range rs {
			r.mu.Lock()
			// An excluded node (killed: its session revoked from outside) may still report Master
			// for the moment it takes to notice; its interval was cut at the Kill (CheckNoOverlap).
			if isMaster(r.states) && !contains(exclude, r) {
				masters = append(masters, r)
			}
			chans = append(chans, r.changed)
			r.mu.Unlock()
		}
		if len(masters) > 1 {
			names := ""
			for _, m := range masters {
				names += " " + m.Name
			}
			t.Fatalf("more than one node reports Master:%s", names)
		}
		if len(masters) == 1 {
			return masters[0]
		}
		if time.Now().After(deadline) {
			for _, r := range rs {
				t.Logf("%s:\n%s", r.Name, r.dump())
			}
			t.Fatalf("no new master within %v", s.settle())
		}
		waitAny(chans, time.Until(deadline))
	}
}

func contains(rs []*Recorder, r *Recorder) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// waitAny waits until one of chans is closed or d has passed.
func waitAny(chans []<-chan struct{}, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	any := make(chan struct{}, len(chans))
	for _, c := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c:
				any <- struct{}{}
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-any:
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
}

// firstMaster returns the first Master State of term in r.
func firstMaster(t *testing.T, r *Recorder, term uint64) Stamped {
	t.Helper()
	for _, st := range r.States() {
		if st.Role == election.Master && st.Term == term {
			return st
		}
	}
	t.Fatalf("%s: no Master State with term %d", r.Name, term)
	return Stamped{}
}

// lastValidUntil returns the last ValidUntil r reported as master of term.
func lastValidUntil(r *Recorder, term uint64) time.Time {
	var vu time.Time
	for _, st := range r.States() {
		if st.Role == election.Master && st.Term == term {
			vu = st.ValidUntil
		}
	}
	return vu
}

// backupOf matches a Backup that names m's master: by node name, or by address where the backend
// names other masters by address (VRRP); and by term where terms are global.
func (s suite) backupOf(m Stamped) func([]Stamped) bool {
	_, local := s.lacks[GlobalTerms]
	return func(st []Stamped) bool {
		if len(st) == 0 {
			return false
		}
		l := st[len(st)-1]
		same := l.Leader.Node == m.Leader.Node ||
			(l.Leader.Address.IsValid() && l.Leader.Address == m.Leader.Address)
		return l.Role == election.Backup && same && (local || l.Term == m.Term)
	}
}

func notMaster(st []Stamped) bool { return len(st) > 0 && st[len(st)-1].Role != election.Master }

// oneMaster: of three candidates exactly one becomes master and keeps renewing; the others are
// backups that name it.
func (s suite) oneMaster(t *testing.T) {
	rs := s.start(t, "a", "b", "c")
	m := s.waitMaster(t, rs)
	ms := m.Last()
	if ms.Leader.Node != m.Name || ms.Term == 0 || ms.Leader.Term != ms.Term {
		t.Fatalf("master %s reports %s: want itself as leader with a non-zero term", m.Name, fmtState(ms.State))
	}
	for _, r := range rs {
		if r != m {
			r.Wait(t, s.settle(), "Backup naming "+m.Name, s.backupOf(ms))
		}
	}
	// Hold: the master renews its validity for two TTLs, and stays the only master.
	if !ms.ValidUntil.IsZero() {
		want := ms.ValidUntil.Add(2 * s.ttl)
		m.Wait(t, s.settle(), "renewals for two TTLs", func(st []Stamped) bool {
			l := st[len(st)-1]
			return l.Role == election.Master && !l.ValidUntil.Before(want)
		})
	}
	if got := s.waitMaster(t, rs); got != m {
		t.Fatalf("master moved from %s to %s without a fault", m.Name, got.Name)
	}
}

// takeoverOnKill: when the master's session is lost abruptly, another candidate takes over with a
// higher term, and the old master notices and reports non-Master.
func (s suite) takeoverOnKill(t *testing.T) {
	rs := s.start(t, "a", "b", "c")
	m := s.waitMaster(t, rs)
	if m.Cand.Kill == nil {
		t.Skip("harness has no Kill")
	}
	old := m.Last()
	killed := time.Now()
	m.Kill()
	n := s.waitMaster(t, rs, m)
	if nt := n.Last().Term; nt <= old.Term {
		t.Fatalf("new master %s has term %d, not above the killed master's %d", n.Name, nt, old.Term)
	}
	m.Wait(t, s.ttl+s.settle(), "non-Master after its session was lost", func(st []Stamped) bool {
		for _, x := range st {
			if x.At.After(killed) && x.Role != election.Master {
				return true
			}
		}
		return false
	})
}

// resign: cancelling the master's Run hands over at once, well before the TTL would expire it.
func (s suite) resign(t *testing.T) {
	rs := s.start(t, "a", "b", "c")
	m := s.waitMaster(t, rs)
	stopped := time.Now()
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if l := m.Last(); l.Role == election.Master {
		t.Fatalf("%s: last State after Run returned is %s, want non-Master", m.Name, fmtState(l.State))
	}
	n := s.waitMaster(t, rs, m)
	took := firstMaster(t, n, n.Last().Term).At.Sub(stopped)
	bound := s.handover()
	t.Logf("handover after resign: %v (bound %v, TTL %v)", took, bound, s.ttl)
	if took >= bound {
		t.Fatalf("handover took %v after the master resigned, want under %v (TTL %v): did it resign at all?", took, bound, s.ttl)
	}
}

// handover is how soon a resign must hand over (see Handoverer).
func (s suite) handover() time.Duration {
	if h, ok := s.h.(Handoverer); ok {
		return h.Handover()
	}
	return s.ttl / 4
}

// termRises: successive masters have strictly rising terms.
func (s suite) termRises(t *testing.T) {
	rs := s.start(t, "a", "b", "c")
	var prev uint64
	var gone []*Recorder
	for range rs {
		m := s.waitMaster(t, rs, gone...)
		term := m.Last().Term
		if term <= prev {
			t.Fatalf("master %s has term %d after term %d", m.Name, term, prev)
		}
		prev = term
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, m)
	}
}

// observe: an observer reads the master record: node and term match the master's State, and follow a
// handover.
func (s suite) observe(t *testing.T) {
	group := newGroup()
	obs := s.h.NewObserver(t, group)
	ctx, cancel := context.WithCancel(context.Background())
	recs := make(chan election.Record)
	obsDone := make(chan error, 1)
	go func() { obsDone <- obs.Observe(ctx, recs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-obsDone:
			if err != nil {
				t.Errorf("Observe returned %v after cancel, want nil", err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("Observe did not return within %v of cancel", stopTimeout)
		}
	})
	waitRecord := func(what string, ok func(election.Record) bool) {
		t.Helper()
		timeout := time.After(s.settle())
		for {
			select {
			case r := <-recs:
				if ok(r) {
					return
				}
			case err := <-obsDone:
				obsDone <- err
				t.Fatalf("Observe returned %v before %s", err, what)
			case <-timeout:
				t.Fatalf("observer saw no %s within %v", what, s.settle())
			}
		}
	}
	waitRecord("zero record for an empty group", election.Record.IsZero)

	all := make([]*Recorder, 2)
	t.Cleanup(func() { CheckNoOverlap(t, all...) })
	for i, n := range []string{"a", "b"} {
		all[i] = Start(t, n, s.h.NewCandidate(t, group, n))
	}
	rs := all
	for range 2 {
		m := s.waitMaster(t, rs)
		ms := m.Last()
		waitRecord("record of master "+m.Name, func(r election.Record) bool {
			return r.Node == m.Name && r.Term == ms.Term && r.Group == group
		})
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
		rs = remove(rs, m)
	}
}

func remove(rs []*Recorder, r *Recorder) []*Recorder {
	var out []*Recorder
	for _, x := range rs {
		if x != r {
			out = append(out, x)
		}
	}
	return out
}

// partition: a master cut off from the store stops reporting Master by its ValidUntil, and the next
// master is elected only after that instant; once reconnected the old master is a backup.
func (s suite) partition(t *testing.T) {
	rs := s.start(t, "a", "b", "c")
	m := s.waitMaster(t, rs)
	if m.Cand.Partition == nil {
		t.Skip("harness has no Partition")
	}
	term := m.Last().Term
	if first := m.Last().ValidUntil; !first.IsZero() { // cut after a renewal, not just after the election
		m.Wait(t, s.settle(), "a renewal", func(st []Stamped) bool {
			l := st[len(st)-1]
			return l.Role == election.Master && l.ValidUntil.After(first)
		})
	}
	cut := time.Now()
	m.Cand.Partition(true)
	partitioned := true
	t.Cleanup(func() {
		if partitioned {
			m.Cand.Partition(false)
		}
	})
	m.Wait(t, s.ttl+s.settle(), "non-Master while cut off", notMaster)
	fenced := m.Last()
	vu := lastValidUntil(m, term)
	t.Logf("cut at %s, last valid-until %s (+%v), reported %s at +%v", cut.Format("15:04:05.000"),
		vu.Format("15:04:05.000"), vu.Sub(cut), fenced.Role, fenced.At.Sub(cut))
	if !vu.IsZero() && fenced.At.After(vu.Add(s.ttl/4)) {
		t.Errorf("%s reported %s at %s, more than TTL/4 after its ValidUntil %s", m.Name, fenced.Role,
			fenced.At.Format("15:04:05.000"), vu.Format("15:04:05.000"))
	}
	n := s.waitMaster(t, rs, m)
	nm := firstMaster(t, n, n.Last().Term)
	t.Logf("new master %s elected at +%v", n.Name, nm.At.Sub(cut))
	if !vu.IsZero() && !nm.At.After(vu) {
		t.Fatalf("split brain: %s elected at %s, before the cut-off master's ValidUntil %s", n.Name,
			nm.At.Format("15:04:05.000"), vu.Format("15:04:05.000"))
	}
	m.Cand.Partition(false)
	partitioned = false
	m.Wait(t, s.settle(), "Backup naming "+n.Name+" after reconnecting", s.backupOf(n.Last()))
}

// yield: a master that yields becomes a backup and another candidate takes over.
func (s suite) yield(t *testing.T) {
	rs := s.start(t, "a", "b")
	m := s.waitMaster(t, rs)
	y, ok := m.Cand.Elector.(election.Yielder)
	if !ok {
		t.Skip("Elector is not a Yielder")
	}
	y.Yield()
	n := s.waitMaster(t, rs, m)
	m.Wait(t, s.settle(), "Backup naming "+n.Name, s.backupOf(n.Last()))
}

// eligibility: an ineligible master resigns and does not campaign until eligible again.
func (s suite) eligibility(t *testing.T) {
	rs := s.start(t, "a", "b")
	m := s.waitMaster(t, rs)
	el, ok := m.Cand.Elector.(election.Eligibility)
	if !ok {
		t.Skip("Elector is not an Eligibility")
	}
	el.SetEligible(false)
	n := s.waitMaster(t, rs, m)
	since := firstMaster(t, n, n.Last().Term).At
	if err := n.Stop(); err != nil { // the only eligible candidate leaves
		t.Fatal(err)
	}
	m.Wait(t, s.settle(), "Backup or Fault with no master", func(st []Stamped) bool {
		l := st[len(st)-1]
		return (l.Role == election.Backup || l.Role == election.Fault) && l.Leader.IsZero()
	})
	for _, st := range m.States() {
		if st.Role == election.Master && st.At.After(since) {
			t.Fatalf("%s reported Master while ineligible: %s", m.Name, fmtState(st.State))
		}
	}
	el.SetEligible(true)
	m.Wait(t, s.settle(), "Master once eligible again", isMaster)
}

// resignWaitsForDemote: a master that resigns on purpose (SetEligible(false)) waits until its consumer
// has demoted before it gives up its candidacy, so no other node is elected while the VIPs are still
// bound. The recorder takes DemoteDelay to demote; a backend that resigned first would let the other
// node win within a store round trip, inside that window (and CheckNoOverlap reports split brain).
func (s suite) resignWaitsForDemote(t *testing.T) {
	// Shorter than any validity (a VRRP master's ends 3 adverts after its last one) and much longer
	// than a store round trip or a VRRP Skew_Time.
	delay := s.ttl / 4
	rs := s.startWith(t, Options{DemoteDelay: delay}, "a", "b")
	m := s.waitMaster(t, rs)
	el, ok := m.Cand.Elector.(election.Eligibility)
	if !ok {
		t.Fatal("Elector is not an Eligibility: name ResignWaitsForDemote in the harness's Lacks")
	}
	mterm := m.Last().Term
	el.SetEligible(false)
	n := s.waitMaster(t, rs, m)
	var demoted time.Time
	from := firstMaster(t, m, mterm).At
	for _, st := range m.States() {
		if st.Role != election.Master && !st.Acted.IsZero() && st.At.After(from) {
			demoted = st.Acted
			break
		}
	}
	won := firstMaster(t, n, n.Last().Term).At
	if demoted.IsZero() || won.Before(demoted) {
		when := "it was still demoting"
		if !demoted.IsZero() {
			when = "it demoted at " + demoted.Format("15:04:05.000")
		}
		t.Fatalf("%s became master at %s, before %s had demoted (%s): it resigned while the VIPs were bound",
			n.Name, won.Format("15:04:05.000"), m.Name, when)
	}
	t.Logf("%s demoted after %v; %s master %v later", m.Name, delay, n.Name, won.Sub(demoted))
}

// storeLeaderLoss: the store's leader dies while a master and a backup run. The TTL rides out the
// store's election, so it is not a failover: the master keeps its term (it may lose the VIPs for a
// moment, reporting Fault, and take them back with the same term), the backup never becomes master,
// and once the store has a leader again the master is renewed.
func (s suite) storeLeaderLoss(t *testing.T) {
	sh := s.h.(StoreHarness)
	rs := s.start(t, "a", "b")
	m := s.waitMaster(t, rs)
	term := m.Last().Term
	restart := sh.KillStoreLeader(t)
	killed := time.Now()
	s.waitRenewedAfter(t, m, term, killed.Add(s.ttl))
	restart()
	s.waitRenewedAfter(t, m, term, time.Now().Add(s.ttl))
	s.checkNoTakeover(t, rs, m, term)
}

// brokenWatch: watches break under every candidate (compaction, endpoint switch). Nobody is deposed
// and the backup keeps its place: when the master then resigns, the backup takes over at once.
func (s suite) brokenWatch(t *testing.T) {
	sh := s.h.(StoreHarness)
	rs := s.start(t, "a", "b")
	m := s.waitMaster(t, rs)
	term := m.Last().Term
	sh.BreakWatches(t)
	s.waitRenewedAfter(t, m, term, time.Now().Add(s.ttl))
	s.checkNoTakeover(t, rs, m, term)
	b := rs[0]
	if b == m {
		b = rs[1]
	}
	stopped := time.Now()
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	n := s.waitMaster(t, rs, m)
	if n != b {
		t.Fatalf("%s became master, want %s", n.Name, b.Name)
	}
	// A backup whose watch was lost would only notice the old master's key when its own session
	// ended or a re-read happened: well after one TTL.
	if took := firstMaster(t, n, n.Last().Term).At.Sub(stopped); took > s.ttl {
		t.Errorf("%s took over %v after the master resigned, want well under the TTL %v: its watch did not survive", n.Name, took, s.ttl)
	}
}

// waitRenewedAfter waits until m reports Master with term and a ValidUntil beyond after.
func (s suite) waitRenewedAfter(t *testing.T, m *Recorder, term uint64, after time.Time) {
	t.Helper()
	m.Wait(t, s.settle(), fmt.Sprintf("Master term %d renewed past %s", term, after.Format("15:04:05.000")),
		func(st []Stamped) bool {
			l := st[len(st)-1]
			return l.Role == election.Master && l.Term == term && l.ValidUntil.After(after)
		})
}

// checkNoTakeover fails t if any recorder other than m reported Master, or m reported another term.
func (s suite) checkNoTakeover(t *testing.T, rs []*Recorder, m *Recorder, term uint64) {
	t.Helper()
	for _, r := range rs {
		for _, st := range r.States() {
			if st.Role != election.Master {
				continue
			}
			if r != m {
				t.Errorf("%s became master (term %d): a store fault caused a failover", r.Name, st.Term)
				break
			}
			if st.Term != term {
				t.Errorf("%s master with term %d after %d: the store fault cost it its term", r.Name, st.Term, term)
				break
			}
		}
	}
}
