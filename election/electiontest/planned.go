package electiontest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// RunPlanned runs the conformance subtests of planned moves and priorities (election.Resigner,
// Transferer, Maintainer, Prioritizer) against h. A subtest whose interface the backend's Elector
// does not implement is skipped, saying so. Priorities are set with SetPriority before Run; every
// candidate preempts (the default).
func RunPlanned(t *testing.T, h Harness) {
	s := suite{h: h, ttl: h.TTL()}
	if l, ok := h.(Limited); ok {
		s.lacks = l.Lacks()
	}
	for _, st := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"OperatorResign", s.operatorResign},
		{"ResignAloneRefused", s.resignAlone},
		{"TransferToNamedNode", s.transferTo},
		{"MaintenanceOnOff", s.maintenance},
		{"HigherPriorityLeads", s.higherPriorityLeads},
		{"PreferredNodeReturns", s.preferredReturns},
		{"PriorityChangeMovesMaster", s.priorityChange},
		{"ListerShowsQueue", s.lister},
	} {
		f := st.f
		if reason, ok := s.lacks[st.name]; ok {
			f = func(t *testing.T) { t.Skip("backend does not give this guarantee: " + reason) }
		}
		t.Run(st.name, f)
	}
}

// as returns c's Elector as an I; it skips t when the backend's Elector is not one.
func as[I any](t *testing.T, c Candidate) I {
	t.Helper()
	i, ok := c.Elector.(I)
	if !ok {
		t.Skipf("%T does not implement %T", c.Elector, (*I)(nil))
	}
	return i
}

// startPrio starts one candidate per name with the given priorities (0: the default), in order,
// each once the one before is queued, so the queue's order is the names' order. The harness's
// Observer must be an election.Lister (it tells when a candidate is queued); else t is skipped.
func (s suite) startPrio(t *testing.T, group string, names []string, prios []int) []*Recorder {
	t.Helper()
	ls, ok := s.h.NewObserver(t, group).(election.Lister)
	if !ok {
		t.Skip("the harness's Observer is not an election.Lister: cannot tell when a candidate is queued")
	}
	var rs []*Recorder
	for i, n := range names {
		c := s.h.NewCandidate(t, group, n)
		if prios != nil && prios[i] != 0 {
			as[election.Prioritizer](t, c).SetPriority(prios[i])
		}
		rs = append(rs, Start(t, n, c))
		waitQueued(t, ls, n, s.settle())
	}
	return rs
}

// waitQueued waits until the Lister shows name queued. The store offers no event for "queued" that
// the suite can see, so it reads the queue again every 10ms, up to d.
func waitQueued(t *testing.T, ls election.Lister, name string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		cs, _, err := ls.Candidates(opContext(t, d))
		if err == nil {
			for _, c := range cs {
				if c.Node == name && !c.Maintenance {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not queued within %v (last listing %+v, %v)", name, d, cs, err)
		}
		tm := time.NewTimer(10 * time.Millisecond)
		<-tm.C
	}
}

func opContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// masterIs waits until want is the one master among rs and returns its State.
func (s suite) masterIs(t *testing.T, rs []*Recorder, want *Recorder, what string) Stamped {
	t.Helper()
	want.Wait(t, s.settle(), what, isMaster)
	if m := s.waitMaster(t, rs); m != want {
		t.Fatalf("%s: %s is master, want %s", what, m.Name, want.Name)
	}
	return want.Last()
}

// operatorResign: Resign on the master hands over at once (the handover bound), the resigner is
// a backup that stays a candidate, the new master's State says it was a handover, and Resign on a
// backup is ErrNotMaster.
func (s suite) operatorResign(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"a", "b"}, nil)
	a, b := rs[0], rs[1]
	s.masterIs(t, rs, a, "a master")
	if err := as[election.Resigner](t, b.Cand).Resign(opContext(t, s.settle())); !errors.Is(err, election.ErrNotMaster) {
		t.Fatalf("Resign on the backup = %v, want ErrNotMaster", err)
	}
	asked := time.Now()
	if err := as[election.Resigner](t, a.Cand).Resign(opContext(t, s.settle())); err != nil {
		t.Fatalf("Resign on the master: %v", err)
	}
	st := s.masterIs(t, rs, b, "b master after a resigned")
	took := firstMaster(t, b, st.Term).At.Sub(asked)
	t.Logf("resign to new master: %v", took)
	if bound := s.handover(); took >= bound {
		t.Errorf("handover took %v, want under %v", took, bound)
	}
	if !st.Handover {
		t.Errorf("the new master's State does not say it follows a handover: %s", fmtState(st.State))
	}
	if l := a.Last(); l.Role != election.Backup {
		t.Errorf("resigned node: %s, want Backup", fmtState(l.State))
	}
	// a is queued again (Resign returns once it gave up its place; it rejoins just after): b
	// resigning hands back to it.
	waitQueued(t, s.h.NewObserver(t, g).(election.Lister), "a", s.settle())
	if err := as[election.Resigner](t, b.Cand).Resign(opContext(t, s.settle())); err != nil {
		t.Fatal(err)
	}
	s.masterIs(t, rs, a, "a master again")
	CheckNoOverlap(t, rs...)
}

// resignAlone: Resign on a master alone in its group is ErrNoOtherCandidate and costs nothing: the
// master offers no other State (no demote, the same term). Once another candidate is queued, Resign
// hands over to it.
func (s suite) resignAlone(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"a"}, nil)
	a := rs[0]
	st := s.masterIs(t, rs, a, "a master")
	if err := as[election.Resigner](t, a.Cand).Resign(opContext(t, s.settle())); !errors.Is(err, election.ErrNoOtherCandidate) {
		t.Fatalf("Resign alone = %v, want ErrNoOtherCandidate", err)
	}
	stillMaster(t, a, st)
	c := s.h.NewCandidate(t, g, "b")
	b := Start(t, "b", c)
	rs = append(rs, b)
	waitQueued(t, s.h.NewObserver(t, g).(election.Lister), "b", s.settle())
	if err := as[election.Resigner](t, a.Cand).Resign(opContext(t, s.settle())); err != nil {
		t.Fatalf("Resign with b queued: %v", err)
	}
	s.masterIs(t, rs, b, "b master after a resigned")
	CheckNoOverlap(t, rs...)
}

// stillMaster fails t unless r, master since st, has offered nothing but Master in st's term since
// (renewals allowed): a refused Resign left it alone.
func stillMaster(t *testing.T, r *Recorder, st Stamped) {
	t.Helper()
	for _, x := range r.States() {
		if x.At.Before(st.At) {
			continue
		}
		if x.Role != election.Master || x.Term != st.Term {
			t.Fatalf("%s after a refused Resign: %s, want Master in term %d throughout", r.Name, fmtState(x.State), st.Term)
		}
	}
}

// transferTo: Transfer to the last candidate in the queue makes it master, not the next one; a
// target that is not queued is ErrNoSuchCandidate and leaves the master in place.
func (s suite) transferTo(t *testing.T) {
	rs := s.startPrio(t, newGroup(), []string{"a", "b", "c"}, nil)
	a, b, c := rs[0], rs[1], rs[2]
	s.masterIs(t, rs, a, "a master")
	tr := as[election.Transferer](t, a.Cand)
	if err := tr.Transfer(opContext(t, s.settle()), "nobody", time.Minute); !errors.Is(err, election.ErrNoSuchCandidate) {
		t.Fatalf("Transfer to a node not queued = %v, want ErrNoSuchCandidate", err)
	}
	if !isMaster(a.States()) {
		t.Fatal("a refused transfer cost the master its mastership")
	}
	if err := tr.Transfer(opContext(t, s.settle()), "c", 10*s.ttl); err != nil {
		t.Fatalf("Transfer to c: %v", err)
	}
	st := s.masterIs(t, rs, c, "c master after the transfer")
	if !st.Handover {
		t.Errorf("c's State does not say it follows a handover: %s", fmtState(st.State))
	}
	for _, s := range b.States() {
		if s.Role == election.Master {
			t.Fatalf("b became master during a transfer to c")
		}
	}
	if err := as[election.Transferer](t, b.Cand).Transfer(opContext(t, s.settle()), "a", time.Second); !errors.Is(err, election.ErrNotMaster) {
		t.Fatalf("Transfer on a backup = %v, want ErrNotMaster", err)
	}
	CheckNoOverlap(t, rs...)
}

// maintenance: a master put in maintenance hands over and stays out, even when it is the only
// other candidate left; out of maintenance it is a candidate again.
func (s suite) maintenance(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"a", "b"}, nil)
	a, b := rs[0], rs[1]
	s.masterIs(t, rs, a, "a master")
	as[election.Maintainer](t, a.Cand).SetMaintenance(true)
	st := s.masterIs(t, rs, b, "b master after a went into maintenance")
	if !st.Handover {
		t.Errorf("b's State does not say it follows a handover: %s", fmtState(st.State))
	}
	// b resigns: a, in maintenance, is no candidate, so b refuses and stays master in its term.
	if err := as[election.Resigner](t, b.Cand).Resign(opContext(t, s.settle())); !errors.Is(err, election.ErrNoOtherCandidate) {
		t.Fatalf("Resign with the only other node in maintenance = %v, want ErrNoOtherCandidate", err)
	}
	stillMaster(t, b, st)
	for _, s := range a.States() {
		if s.Role == election.Master && s.At.After(st.At) {
			t.Fatal("a became master while in maintenance")
		}
	}
	as[election.Maintainer](t, a.Cand).SetMaintenance(false)
	waitQueued(t, s.h.NewObserver(t, g).(election.Lister), "a", s.settle())
	if err := as[election.Resigner](t, b.Cand).Resign(opContext(t, s.settle())); err != nil {
		t.Fatal(err)
	}
	s.masterIs(t, rs, a, "a master once out of maintenance")
	CheckNoOverlap(t, rs...)
}

// higherPriorityLeads: the head rules. With m master and lo (its priority lowered to 50) and hi
// (100) queued behind it in that order, m resigning makes hi master: lo, first in line, defers to
// hi and is never master (a backend that let lo win and hand over later would show lo as master).
func (s suite) higherPriorityLeads(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"m", "lo", "hi"}, nil)
	m, lo, hi := rs[0], rs[1], rs[2]
	s.masterIs(t, rs, m, "m master")
	as[election.Prioritizer](t, lo.Cand).SetPriority(50)
	waitPublished(t, s.h.NewObserver(t, g).(election.Lister), "lo", 50, s.settle())
	asked := time.Now()
	if err := as[election.Resigner](t, m.Cand).Resign(opContext(t, s.settle())); err != nil {
		t.Fatal(err)
	}
	s.masterIs(t, rs, hi, "hi master after m resigned")
	for _, st := range lo.States() {
		if st.Role == election.Master && st.At.After(asked) {
			t.Fatalf("lo (priority 50) became master ahead of hi (100): %s", fmtState(st.State))
		}
	}
	CheckNoOverlap(t, rs...)
}

// waitPublished waits until the Lister shows name with priority prio (10ms reads, as waitQueued).
func waitPublished(t *testing.T, ls election.Lister, name string, prio int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		cs, _, err := ls.Candidates(opContext(t, d))
		for _, c := range cs {
			if err == nil && c.Node == name && c.Priority == prio {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never published priority %d within %v (last listing %+v, %v)", name, prio, d, cs, err)
		}
		tm := time.NewTimer(10 * time.Millisecond)
		<-tm.C
	}
}

// preferredReturns: a higher-priority node that joins a group with a master takes over by a
// planned handover (its State says so), with no two masters.
func (s suite) preferredReturns(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"a", "b"}, []int{100, 100})
	s.masterIs(t, rs, rs[0], "a master")
	c := s.h.NewCandidate(t, g, "pref")
	as[election.Prioritizer](t, c).SetPriority(200)
	joined := time.Now()
	p := Start(t, "pref", c)
	rs = append(rs, p)
	st := s.masterIs(t, rs, p, "the preferred node master")
	t.Logf("preferred node master %v after it started", firstMaster(t, p, st.Term).At.Sub(joined))
	if !st.Handover {
		t.Errorf("the preferred node's State does not say it follows a handover: %s", fmtState(st.State))
	}
	CheckNoOverlap(t, rs...)
}

// priorityChange: raising a backup's priority above the master's (SetPriority at run time, as a
// track weight does) moves mastership to it; lowering it again does not move it back (the other
// node's priority is not higher).
func (s suite) priorityChange(t *testing.T) {
	rs := s.startPrio(t, newGroup(), []string{"a", "b"}, nil)
	a, b := rs[0], rs[1]
	s.masterIs(t, rs, a, "a master")
	as[election.Prioritizer](t, b.Cand).SetPriority(150)
	s.masterIs(t, rs, b, "b master after its priority rose")
	as[election.Prioritizer](t, b.Cand).SetPriority(100)
	as[election.Prioritizer](t, a.Cand).SetPriority(120)
	s.masterIs(t, rs, a, "a master after b's priority fell below a's")
	CheckNoOverlap(t, rs...)
}

// lister: the Observer's Lister shows the queue head first with each node's priority, a node in
// maintenance after the queued ones (marked), and no transfer record while none is active.
func (s suite) lister(t *testing.T) {
	g := newGroup()
	rs := s.startPrio(t, g, []string{"a", "b", "c"}, []int{0, 90, 80})
	s.masterIs(t, rs, rs[0], "a master")
	ls := s.h.NewObserver(t, g).(election.Lister)
	cs, tr, err := ls.Candidates(opContext(t, s.settle()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.Node)
	}
	if len(cs) != 3 || cs[0].Node != "a" || cs[0].Priority != election.DefaultPriority || cs[1].Priority != 90 || cs[2].Priority != 80 || tr != nil {
		t.Fatalf("listing %+v (nodes %v), transfer %+v; want a (100), b (90), c (80), no transfer", cs, got, tr)
	}
	as[election.Maintainer](t, rs[1].Cand).SetMaintenance(true)
	deadline := time.Now().Add(s.settle())
	for {
		cs, _, err = ls.Candidates(opContext(t, s.settle()))
		if err == nil && len(cs) == 3 && cs[0].Node == "a" && cs[1].Node == "c" && cs[2].Node == "b" && cs[2].Maintenance {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing %+v (%v), want a, c queued, then b in maintenance", cs, err)
		}
		tm := time.NewTimer(10 * time.Millisecond)
		<-tm.C
	}
}
