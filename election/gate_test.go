package election

import (
	"context"
	"sync"
	"testing"
)

// gated records the calls a Gate makes.
type gated struct {
	mu       sync.Mutex
	eligible []bool
	prios    []int
}

func (g *gated) Run(context.Context, *Outbox) error { return nil }
func (g *gated) SetEligible(ok bool)                { g.mu.Lock(); g.eligible = append(g.eligible, ok); g.mu.Unlock() }

type prioGated struct{ gated }

func (g *prioGated) SetPriority(p int) { g.mu.Lock(); g.prios = append(g.prios, p); g.mu.Unlock() }

func TestGateQuorumBackendWithdrawsOnAnyFailure(t *testing.T) {
	el := &gated{}
	g, err := NewGate(el, 100, []Check{{Name: "nginx", Up: true, Weight: 20}, {Name: "eth0", Up: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(el.eligible) != 0 {
		t.Fatalf("healthy start called SetEligible %v, want nothing", el.eligible)
	}
	g.Set("nginx", false) // a weight does not help a quorum backend: any failure withdraws
	g.Set("eth0", false)
	g.Set("nginx", true) // still one failing
	g.Set("eth0", true)
	g.Set("unknown", false)
	want := []bool{false, true}
	if len(el.eligible) != 2 || el.eligible[0] != want[0] || el.eligible[1] != want[1] {
		t.Fatalf("SetEligible calls %v, want %v", el.eligible, want)
	}
}

func TestGateStartsIneligibleWhenACheckStartsDown(t *testing.T) {
	el := &gated{}
	if _, err := NewGate(el, 100, []Check{{Name: "script", Up: false}}, nil); err != nil {
		t.Fatal(err)
	}
	if len(el.eligible) != 1 || el.eligible[0] {
		t.Fatalf("SetEligible calls %v, want [false]", el.eligible)
	}
}

func TestGateVRRPWeights(t *testing.T) {
	el := &prioGated{}
	g, err := NewGate(el, 100, []Check{
		{Name: "plus", Weight: 20, Up: true},
		{Name: "minus", Weight: -150, Up: true},
		{Name: "fatal", Weight: 0, Up: true},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		up       bool
		eligible bool
		prio     int
	}{
		{"plus", false, true, 100},   // the bonus goes
		{"minus", false, true, 1},    // 100-150 clamps to 1
		{"plus", true, true, 1},      // 120-150 clamps to 1
		{"minus", true, true, 120},   // back to base+bonus
		{"fatal", false, false, 120}, // weight 0: out of the election (FAULT)
		{"fatal", true, true, 120},
	}
	if e, p := g.Eligible(); !e || p != 120 {
		t.Fatalf("initial: eligible %v priority %d, want true 120", e, p)
	}
	for i, s := range steps {
		g.Set(s.name, s.up)
		if e, p := g.Eligible(); e != s.eligible || p != s.prio {
			t.Fatalf("step %d (%s up=%v): eligible %v priority %d, want %v %d", i, s.name, s.up, e, p, s.eligible, s.prio)
		}
	}
	if el.prios[0] != 120 || el.prios[len(el.prios)-1] != 120 {
		t.Errorf("SetPriority calls %v", el.prios)
	}
}

func TestGateOwnerPriorityFixed(t *testing.T) {
	el := &prioGated{}
	g, _ := NewGate(el, 255, []Check{{Name: "minus", Weight: -50, Up: true}}, nil)
	g.Set("minus", false)
	if _, p := g.Eligible(); p != 255 {
		t.Fatalf("owner priority %d after a failing weighted check, want 255", p)
	}
}

func TestGateRejectsBadChecks(t *testing.T) {
	for name, checks := range map[string][]Check{
		"no name":   {{Name: ""}},
		"duplicate": {{Name: "a"}, {Name: "a"}},
	} {
		if _, err := NewGate(&gated{}, 100, checks, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewGate(plainElector{}, 100, []Check{{Name: "a"}}, nil); err == nil {
		t.Error("an elector without Eligibility or Prioritizer was gated")
	}
}

type plainElector struct{}

func (plainElector) Run(context.Context, *Outbox) error { return nil }

// OnChange hears of every verdict that changes and of every new list of checks, and of nothing
// else (a repeated verdict, an unknown check).
func TestGateOnChange(t *testing.T) {
	g, err := NewGate(&gated{}, 100, []Check{{Name: "nginx", Up: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var told int
	g.OnChange(func() { told++ })
	g.Set("nginx", true) // no change
	g.Set("unknown", false)
	if told != 0 {
		t.Fatalf("OnChange called %d times for no change, want 0", told)
	}
	g.Set("nginx", false)
	g.Set("nginx", true)
	if told != 2 {
		t.Fatalf("OnChange called %d times for 2 verdict changes, want 2", told)
	}
	if _, _, err := g.SetChecks([]Check{{Name: "nginx", Up: true}, {Name: "eth0", Up: true}}); err != nil {
		t.Fatal(err)
	}
	if told != 3 {
		t.Fatalf("OnChange called %d times after SetChecks, want 3", told)
	}
}
