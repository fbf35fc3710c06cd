package syncgroup

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hacoord/hacoord/election"
)

// log records events from every member in order.
type log struct {
	mu     sync.Mutex
	events []string
}

func (l *log) add(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, a...))
}

func (l *log) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *log) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = nil
}

// fake is a scripted Elector: it offers the States the test sends and, like a real backend, waits
// until a non-Master State has been acted on before it "resigns".
type fake struct {
	name string
	in   chan election.State
	log  *log

	mu       sync.Mutex
	eligible []bool
	yields   int
}

func (f *fake) Run(ctx context.Context, out *election.Outbox) error {
	for {
		select {
		case <-ctx.Done():
			out.Set(election.State{Role: election.Backup, Reason: "stopped"})
			return nil
		case s := <-f.in:
			seq := out.Set(s)
			if s.Role != election.Master && out.WaitActed(ctx, seq) == nil {
				f.log.add("resign %s", f.name)
			}
		}
	}
}

func (f *fake) SetEligible(ok bool) { f.mu.Lock(); f.eligible = append(f.eligible, ok); f.mu.Unlock() }
func (f *fake) Yield()              { f.mu.Lock(); f.yields++; f.mu.Unlock() }

func (f *fake) lastEligible() (bool, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.eligible) == 0 {
		return true, 0 // electors start eligible
	}
	return f.eligible[len(f.eligible)-1], len(f.eligible)
}

// vipAction records promote and demote of one member's VIPs.
type vipAction struct {
	name string
	log  *log
}

func (a vipAction) Promote(_ context.Context, s election.State) error {
	a.log.add("promote %s %d", a.name, s.Term)
	return nil
}

func (a vipAction) Demote(context.Context, election.State) error {
	a.log.add("demote %s", a.name)
	return nil
}

type fixture struct {
	log    *log
	a, b   *fake
	g      *Group
	coA    *election.Coordinator
	coB    *election.Coordinator
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func start(t *testing.T) *fixture {
	l := &log{}
	f := &fixture{log: l, a: &fake{name: "A", in: make(chan election.State), log: l}, b: &fake{name: "B", in: make(chan election.State), log: l}}
	var err error
	f.g, err = New("G", []string{"A", "B"}, []election.Elector{f.a, f.b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.coA, err = election.NewCoordinator(f.g.Member(0), []election.Action{vipAction{"A", l}}, nil); err != nil {
		t.Fatal(err)
	}
	if f.coB, err = election.NewCoordinator(f.g.Member(1), []election.Action{vipAction{"B", l}}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	f.cancel = cancel
	for _, co := range []*election.Coordinator{f.coA, f.coB} {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := co.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
	}
	synctest.Wait()
	return f
}

func (f *fixture) stop() { f.cancel(); f.wg.Wait() }

func send(el *fake, s election.State) { el.in <- s; synctest.Wait() }

func master(term uint64, ttl time.Duration) election.State {
	return election.State{Role: election.Master, Term: term, ValidUntil: time.Now().Add(ttl), Reason: "elected"}
}

func backup(reason string) election.State {
	return election.State{Role: election.Backup, Term: 99, Reason: reason}
}

// wantEvents checks the events since the last call, in any order: the members' Coordinators run
// side by side.
func wantEvents(t *testing.T, f *fixture, want ...string) {
	t.Helper()
	got := f.log.list()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("events = %q\nwant     %q", got, want)
	}
	f.log.reset()
}

// Members hold their VIPs only once all are master; the follower is a candidate only while the
// leader is master here; when one member leaves master both demote, and the member that resigns
// does so only after its own VIPs are gone.
func TestMovesTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		if ok, _ := f.b.lastEligible(); ok {
			t.Fatal("follower B is a candidate before this node is master of leader A")
		}
		send(f.a, master(5, 2*time.Second))
		if ok, _ := f.b.lastEligible(); !ok {
			t.Fatal("follower B is not a candidate once this node is master of A")
		}
		wantEvents(t, f) // A alone is master: nothing is held
		if f.coA.Status().Promoted {
			t.Fatal("A promoted while B is not master")
		}
		send(f.b, master(7, 3*time.Second))
		wantEvents(t, f, "promote A 5", "promote B 7")
		if !f.g.Master() || !f.coB.Status().Promoted {
			t.Fatal("group not master with both members master")
		}
		send(f.b, backup("lease lost"))
		got := f.log.list()
		if i, j := slices.Index(got, "demote B"), slices.Index(got, "resign B"); len(got) != 3 || !slices.Contains(got, "demote A") || i < 0 || j < i {
			t.Fatalf("events = %q, want both demoted, B's demote before B resigns", got)
		}
		f.log.reset()
		if ok, _ := f.b.lastEligible(); !ok {
			t.Error("B lost its candidacy although this node still leads")
		}
		// The leader leaves: the follower loses its candidacy.
		send(f.a, backup("resigned"))
		wantEvents(t, f, "resign A") // nothing was held
		if ok, _ := f.b.lastEligible(); ok {
			t.Error("B still a candidate after this node lost leader A")
		}
		f.stop()
	})
}

// Every member's Coordinator holds until the earliest member deadline: when the leader's lease is
// not renewed, both let go at its deadline, although the follower's runs longer.
func TestEarliestDeadlineFencesAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		a := master(5, time.Second)
		send(f.a, a)
		send(f.b, master(7, 3*time.Second))
		if got := f.coB.Status().State.ValidUntil; !got.Equal(a.ValidUntil) {
			t.Fatalf("B holds until %v, want A's deadline %v", got, a.ValidUntil)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		for name, co := range map[string]*election.Coordinator{"A": f.coA, "B": f.coB} {
			if st := co.Status(); st.Promoted || !st.Fenced {
				t.Errorf("%s at A's deadline: %+v, want fenced", name, st)
			}
		}
		f.stop()
	})
}

// A failing check of one member (its Gate's verdict) withdraws every member's candidacy; a yield
// asked for by any member's Coordinator yields the leader.
func TestHealthAndYieldActOnTheGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := start(t)
		send(f.a, master(5, 2*time.Second))
		gateB := f.g.Member(1).(election.Eligibility)
		gateB.SetEligible(false)
		if ok, _ := f.a.lastEligible(); ok {
			t.Error("leader A still a candidate while member B is unhealthy")
		}
		if ok, _ := f.b.lastEligible(); ok {
			t.Error("B still a candidate while unhealthy")
		}
		gateB.SetEligible(true)
		if ok, _ := f.a.lastEligible(); !ok {
			t.Error("A not a candidate again once B is healthy")
		}
		f.g.Member(1).(election.Yielder).Yield()
		if f.a.yields != 1 || f.b.yields != 0 {
			t.Errorf("yields A=%d B=%d, want the leader to yield", f.a.yields, f.b.yields)
		}
		f.stop()
	})
}

func TestNewRefusesAGroupOfOne(t *testing.T) {
	if _, err := New("G", []string{"A"}, []election.Elector{&fake{}}, nil); err == nil {
		t.Fatal("a sync group of one member was accepted")
	}
}
