package election

import (
	"slices"
	"testing"
)

// A quorum backend that publishes a priority (etcd, ZooKeeper: Eligibility and Prioritizer) has
// its priority moved by weighted checks, as VRRP's is, and is withdrawn only by a failing check of
// weight 0.
func TestGatePrioritizingQuorumBackend(t *testing.T) {
	el := &prioGated{}
	g, err := NewGate(el, 100, []Check{{Name: "nginx", Up: true, Weight: -30}, {Name: "bonus", Up: true, Weight: 20},
		{Name: "eth0", Up: true}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Set("nginx", false) // 100 + 20 - 30
	g.Set("bonus", false) // 100 - 30
	if want := []int{120, 90, 70}; !slices.Equal(el.prios, want) {
		t.Fatalf("SetPriority calls %v, want %v", el.prios, want)
	}
	if len(el.eligible) != 0 {
		t.Fatalf("weighted checks withdrew the candidacy: SetEligible %v", el.eligible)
	}
	g.Set("eth0", false) // weight 0: out
	if !slices.Equal(el.eligible, []bool{false}) {
		t.Fatalf("SetEligible calls %v after a weight-0 check failed, want [false]", el.eligible)
	}
	if ok, p := g.Eligible(); ok || p != 70 {
		t.Fatalf("Eligible() = %v, %d; want false, 70", ok, p)
	}
}
