package lab

import (
	"context"
	"testing"
	"time"
)

// The store scenarios run against 3-member stores (3 etcd members, a ZooKeeper ensemble of 3), one
// lab per scenario and backend. What a user would notice:
//
//   - never two holders: no fault of the store may put the VIP on two nodes (must hold now);
//   - availability (issue #9 item 2: a master that misses its deadline keeps its lease or session
//     and is master again, with the same term, once the store answers): no spurious failover (no
//     node was hit, so the VIP must not move) and a client outage of at most maxStoreOutage;
//   - quorum loss: the master lets go of the VIP by its deadline (within a TTL of the loss) and a
//     node holds it again once the quorum is back; with item 2, the same node.

// maxStoreOutage is the longest client outage a store fault that leaves a quorum may cause.
const maxStoreOutage = 1500 * time.Millisecond

func newStoreLab(t *testing.T, backend string) *Lab {
	t.Helper()
	return newLab(t, backend, func(o *Options) { o.StoreMembers = 3 })
}

func runStoreScenario(t *testing.T, backend, name string) (*Lab, Result) {
	t.Helper()
	l := newStoreLab(t, backend)
	r, err := l.RunScenario(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.Summary())
	t.Logf("timeline:\n%s", FormatTimeline(r))
	if r.TwoHolders != 0 {
		t.Errorf("%s: the VIP was on two nodes for %v", name, r.TwoHolders)
	}
	return l, r
}

// checkAvailable asserts what a fault that leaves the store a quorum must not cost the clients.
func checkAvailable(t *testing.T, r Result) {
	t.Helper()
	if r.Spurious != 0 {
		t.Errorf("availability: %d spurious failovers (%s -> %s) though no node was hit", r.Spurious, r.Old, r.New)
	}
	if r.Outage > maxStoreOutage {
		t.Errorf("availability: client outage %v (%d failed probes), want at most %v", r.Outage, r.FailedProbes, maxStoreOutage)
	}
	if r.New != r.Old {
		t.Errorf("availability: %s held the VIP before the fault, %s after it", r.Old, r.New)
	}
}

func TestStoreLeaderKill(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		_, r := runStoreScenario(t, backend, StoreLeaderKill)
		if r.NewStoreLeader == "" || r.NewStoreLeader == r.StoreLeader {
			t.Errorf("store leader %s killed, leader after: %q", r.StoreLeader, r.NewStoreLeader)
		}
		checkAvailable(t, r)
	})
}

func TestStoreLeaderCut(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		_, r := runStoreScenario(t, backend, StoreLeaderCut)
		if r.NewStoreLeader == "" || r.NewStoreLeader == r.StoreLeader {
			t.Errorf("store leader %s cut off, leader after: %q", r.StoreLeader, r.NewStoreLeader)
		}
		checkAvailable(t, r)
	})
}

func TestStoreMemberRestart(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		_, r := runStoreScenario(t, backend, StoreMemberRestart)
		checkAvailable(t, r)
	})
}

func TestStoreQuorumLoss(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) {
		l, r := runStoreScenario(t, backend, StoreQuorumLoss)
		// The master's deadline is at most a TTL after its last acknowledged keepalive, which came
		// before the loss; the sampler adds its resolution.
		period, round, _ := l.Sampler.Resolution()
		if limit := l.TTL() + period + round; r.OldReleased < 0 || r.OldReleased > limit {
			t.Errorf("%s let go of the VIP %v after the store lost its quorum, want by its deadline (within %v)", r.Old, r.OldReleased, limit)
		}
		if r.Back == "" {
			t.Fatalf("no node took the VIP back within the window once the quorum was back (after %v)", r.QuorumBack)
		}
		if r.Back != r.Old || r.Spurious != 0 {
			t.Errorf("availability: %s held the VIP before the quorum loss, %s took it back (%d spurious failovers)", r.Old, r.Back, r.Spurious)
		}
	})
}

func TestLongestGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pr := func(end int, node string) Probe { return Probe{Start: at(end - 1), End: at(end), Node: node} }
	probes := []Probe{pr(-10, "n1"), pr(5, "n1"), pr(15, ""), pr(25, ""), pr(35, "n1"), pr(45, ""), pr(55, "n2"), pr(65, "")}
	if gap, failed := longestGap(probes, at(0), at(100)); gap != 45*time.Millisecond || failed != 1 {
		t.Errorf("longestGap = %v, %d failed; want the trailing 45ms, 1", gap, failed)
	}
	if gap, failed := longestGap(probes, at(0), at(60)); gap != 30*time.Millisecond || failed != 2 {
		t.Errorf("longestGap = %v, %d failed; want 30ms, 2", gap, failed)
	}
	if gap, failed := longestGap(probes[:2], at(0), at(100)); gap != 0 || failed != 0 {
		t.Errorf("no failures: longestGap = %v, %d", gap, failed)
	}
}

func TestFailovers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	hh := []HolderChange{
		{At: at(0), Holders: []string{"n1"}},
		{At: at(10), Holders: nil},
		{At: at(20), Holders: []string{"n1"}},       // back to the same node: no failover
		{At: at(30), Holders: []string{"n1", "n2"}}, // two holders, then n1 alone: none
		{At: at(40), Holders: []string{"n1"}},
		{At: at(50), Holders: nil},
		{At: at(60), Holders: []string{"n2"}}, // one
		{At: at(70), Holders: []string{"n3"}}, // two
	}
	if n := failovers(hh, "n1", at(0), at(100)); n != 2 {
		t.Errorf("failovers = %d, want 2", n)
	}
	if n := failovers(hh, "n1", at(0), at(65)); n != 1 {
		t.Errorf("failovers before 65ms = %d, want 1", n)
	}
}
