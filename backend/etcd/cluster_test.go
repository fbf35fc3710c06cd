package etcd_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/faultnet"
)

// clusterTTL is the lease TTL against a 3-member cluster: the 2s. With the cluster profile
// (election timeout 500ms) it rides out a store leader change: 2s - 200ms margin - 500ms keepalive
// interval = 1.3s > 2 x 500ms + 100ms.
const clusterTTL = 2 * time.Second

// clusterConfig is the test profile against a cluster of the given timing: every member an endpoint,
// in the order given (the elector starts with the first).
func clusterConfig(eps []string, group, name string, ttl, electionTimeout time.Duration) etcd.Config {
	cfg := testConfig(eps[0], group, name)
	cfg.Endpoints = eps
	cfg.TTL = ttl
	cfg.StoreElectionTimeout = electionTimeout
	return cfg
}

// rotate returns eps starting at index first, so that a client starts on member first.
func rotate(eps []string, first int) []string {
	return append(append([]string(nil), eps[first:]...), eps[:first]...)
}

// proxies puts one faultnet proxy of its own in front of every endpoint.
func proxies(t *testing.T, eps []string) ([]*faultnet.Proxy, []string) {
	t.Helper()
	var ps []*faultnet.Proxy
	var addrs []string
	for _, ep := range eps {
		p := faultnet.Start(t, ep)
		ps, addrs = append(ps, p), append(addrs, p.Addr())
	}
	return ps, addrs
}

// clusterHarness runs the conformance suite against a 3-member etcd: each candidate reaches every
// member through proxies of its own (Partition blocks them all), and the store faults hit members.
type clusterHarness struct {
	c     *etcdtest.Cluster
	admin *clientv3.Client
}

func (h *clusterHarness) TTL() time.Duration { return clusterTTL }

func (h *clusterHarness) NewCandidate(t *testing.T, group, name string) electiontest.Candidate {
	ps, eps := proxies(t, h.c.Endpoints())
	el, err := etcd.New(clusterConfig(eps, group, name, clusterTTL, etcdtest.ClusterElectionMs*time.Millisecond),
		testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Candidate{
		Elector: el,
		Kill:    func() { revokeCandidate(t, h.admin, group, name) },
		Partition: func(cut bool) {
			for _, p := range ps {
				if cut {
					p.Block()
				} else {
					p.Unblock()
				}
			}
		},
	}
}

func (h *clusterHarness) NewObserver(t *testing.T, group string) election.Observer {
	cfg := clusterConfig(h.c.Endpoints(), group, "", clusterTTL, 0)
	o, err := etcd.NewObserver(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// KillStoreLeader crashes the leader member and waits for the others to elect a new one.
func (h *clusterHarness) KillStoreLeader(t *testing.T) func() {
	l := h.c.WaitLeader()
	h.c.Kill(l)
	n := h.c.WaitLeader(l)
	t.Logf("store leader m%d killed; m%d leads", l, n)
	return func() { h.c.Restart(l) }
}

// BreakWatches compacts the history to the current revision and restarts every member in turn, the
// leader last: every watch stream breaks, and one that resumes on the same member resumes from a
// compacted revision (ErrCompacted).
func (h *clusterHarness) BreakWatches(t *testing.T) {
	rev := h.c.Compact(h.admin)
	l := h.c.WaitLeader()
	order := []int{}
	for i := range h.c.N() {
		if i != l {
			order = append(order, i)
		}
	}
	for _, i := range append(order, l) {
		h.c.Kill(i)
		h.c.Restart(i)
		h.c.WaitLeader()
	}
	t.Logf("compacted to %d and restarted every member", rev)
}

func TestConformanceCluster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	electiontest.Run(t, &clusterHarness{c: c, admin: c.Client()})
}

// startOn starts a candidate whose client starts on member first of c, with lease ttl.
func startOn(t *testing.T, c *etcdtest.Cluster, first int, group, name string, ttl, et time.Duration) *electiontest.Recorder {
	t.Helper()
	el, err := etcd.New(clusterConfig(rotate(c.Endpoints(), first), group, name, ttl, et), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Start(t, name, candidate(el))
}

// renewedPast waits until r reports Master of term with a ValidUntil after t0.
func renewedPast(t *testing.T, r *electiontest.Recorder, term uint64, t0 time.Time) {
	t.Helper()
	r.Wait(t, settle, fmt.Sprintf("Master term %d renewed past %s", term, t0.Format("15:04:05.000")),
		func(st []electiontest.Stamped) bool {
			l := st[len(st)-1]
			return l.Role == election.Master && l.Term == term && l.ValidUntil.After(t0)
		})
}

// outage sums the time r was without the VIPs within its term after from: from each non-Master
// State to the next Master State of the term (the Coordinator demotes on the first and promotes on
// the second). It also returns the longest gap between two States r received as master (renewals
// unanswered).
func outage(r *electiontest.Recorder, term uint64, from time.Time) (total, longest time.Duration, faults int) {
	var down, last time.Time
	for _, s := range r.States() {
		if s.At.Before(from) {
			if s.Role == election.Master {
				last = s.At
			}
			continue
		}
		switch {
		case s.Role == election.Master && s.Term == term:
			if !down.IsZero() {
				total += s.At.Sub(down)
				down = time.Time{}
			}
			if !last.IsZero() {
				longest = max(longest, s.At.Sub(last))
			}
			last = s.At
		case down.IsZero():
			down = s.At
			faults++
		}
	}
	if !down.IsZero() {
		total += time.Since(down)
	}
	return total, longest, faults
}

// noOtherMaster fails t if any of others ever reported Master.
func noOtherMaster(t *testing.T, others ...*electiontest.Recorder) {
	t.Helper()
	for _, r := range others {
		for _, s := range r.States() {
			if s.Role == election.Master {
				t.Errorf("%s became master (term %d): the store fault caused a failover", r.Name, s.Term)
				break
			}
		}
	}
}

// The store's leader dies or is cut off while a master's client talks to it and a backup waits on
// another member. That is not a failover: the backup never becomes master, the master keeps its term,
// and with a TTL that rides out the store's leader change it never even lets go of the VIPs.
// Otherwise it may let go for a moment, at most 1.5s (the bound; the protocol's own is
// the leader change plus a keepalive interval beyond the deadline).
func TestStoreLeaderFaultIsNoFailover(t *testing.T) {
	for _, tc := range []struct {
		name           string
		tickMs, elecMs uint
		ttl            time.Duration
		cut            time.Duration // 0: kill
		zeroOutage     bool
		maxOutageTotal time.Duration
	}{
		// 1s - 100ms - 250ms < 1.1s: the deadline passes during the leader change (the log).
		{"kill/ttl1s", etcdtest.ClusterTickMs, etcdtest.ClusterElectionMs, time.Second, 0, false, 1500 * time.Millisecond},
		{"kill/ttl2s", etcdtest.ClusterTickMs, etcdtest.ClusterElectionMs, 2 * time.Second, 0, false, 1500 * time.Millisecond},
		{"cut6s/ttl2s", etcdtest.ClusterTickMs, etcdtest.ClusterElectionMs, 2 * time.Second, 6 * time.Second, false, 1500 * time.Millisecond},
		{"kill/ttl3s", etcdtest.ClusterTickMs, etcdtest.ClusterElectionMs, 3 * time.Second, 0, true, 0},
		{"cut6s/ttl3s", etcdtest.ClusterTickMs, etcdtest.ClusterElectionMs, 3 * time.Second, 6 * time.Second, true, 0},
		{"kill/default-timing/ttl4s", etcdtest.DefaultTickMs, etcdtest.DefaultElectionMs, 4 * time.Second, 0, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			et := time.Duration(tc.elecMs) * time.Millisecond
			tm := etcd.Timing{ElectionTimeout: et}
			margin := tc.ttl / 10
			if tc.zeroOutage && !tm.RidesOut(tc.ttl, margin, tc.ttl/4) {
				t.Fatalf("TTL %v does not ride out a %v election: the case is wrong", tc.ttl, et)
			}
			c := etcdtest.StartCluster(t, 3, etcdtest.WithTimeouts(tc.tickMs, tc.elecMs))
			l := c.WaitLeader()
			a := startOn(t, c, l, "sl", "a", tc.ttl, et)
			a.Wait(t, settle, "Master", lastIs(election.Master))
			b := startOn(t, c, (l+1)%3, "sl", "b", tc.ttl, et)
			b.Wait(t, settle, "Backup", lastIs(election.Backup))
			t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })
			term := a.Last().Term
			renewedPast(t, a, term, time.Now().Add(tc.ttl/2))

			hit := time.Now()
			if tc.cut == 0 {
				c.Kill(l)
			} else {
				c.Cut(l)
				t.Cleanup(func() { c.Heal(l) })
			}
			n := c.WaitLeader(l)
			t.Logf("store leader m%d %s; m%d leads %v later", l, map[bool]string{true: "cut", false: "killed"}[tc.cut > 0], n, time.Since(hit))
			renewedPast(t, a, term, hit.Add(tc.ttl))
			if tc.cut > 0 {
				select { // the fault's duration, not synchronisation
				case <-time.After(tc.cut - time.Since(hit)):
				case <-a.Done():
				}
				c.Heal(l)
				renewedPast(t, a, term, time.Now().Add(tc.ttl))
			}
			total, longest, faults := outage(a, term, hit)
			t.Logf("master without VIPs %v (%d times), renewals unanswered for at most %v (deadline TTL-margin %v)",
				total, faults, longest, tc.ttl-margin)
			noOtherMaster(t, b)
			for _, s := range a.States() {
				if s.Role == election.Master && s.Term != term {
					t.Errorf("a master with term %d after %d: the store fault cost it its term", s.Term, term)
				}
			}
			if tc.zeroOutage && faults > 0 {
				t.Errorf("master let go of the VIPs %d times (%v) although TTL %v rides out a %v election",
					faults, total, tc.ttl, et)
			}
			if !tc.zeroOutage && total > tc.maxOutageTotal {
				t.Errorf("master without VIPs for %v, want at most %v", total, tc.maxOutageTotal)
			}
		})
	}
}

// A quorum loss longer than the TTL (two of three members down): the master lets go by its deadline
// (nobody can be elected meanwhile), and etcd's leases survive it (the new leader extends every lease
// by its election timeout: lessor Promote), so once the quorum is back the same node is master
// again with the same term, and the backup never is.
func TestQuorumLossSameMaster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	admin := c.Client()
	et := etcdtest.ClusterElectionMs * time.Millisecond
	l := c.WaitLeader()
	survivor := (l + 1) % 3
	a := startOn(t, c, l, "ql", "a", clusterTTL, et)
	a.Wait(t, settle, "Master", lastIs(election.Master))
	b := startOn(t, c, survivor, "ql", "b", clusterTTL, et)
	b.Wait(t, settle, "Backup", lastIs(election.Backup))
	t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })
	term := a.Last().Term
	renewedPast(t, a, term, time.Now().Add(clusterTTL/2))
	n := len(a.States())

	lost := time.Now()
	down := []int{l, (l + 2) % 3}
	c.Kill(down...)
	a.Wait(t, settle, "non-Master without a quorum", func(st []electiontest.Stamped) bool {
		return len(st) > n && st[len(st)-1].Role != election.Master
	})
	fenced := a.Last()
	vu := lastValidUntilOf(a, term)
	t.Logf("quorum lost at %s; last valid-until +%v; a reported %s at +%v", lost.Format("15:04:05.000"),
		vu.Sub(lost), fenced.Role, fenced.At.Sub(lost))
	if late := fenced.At.Sub(vu); late > clusterTTL/4 {
		t.Errorf("a let go %v after its deadline, want within TTL/4", late)
	}
	select { // the fault lasts two TTLs: longer than the lease would live without its keepalives
	case <-time.After(2*clusterTTL - time.Since(lost)):
	case <-a.Done():
	}
	c.Restart(down...)
	back := time.Now()
	renewedPast(t, a, term, back)
	t.Logf("quorum back after %v; a master again with term %d %v later", back.Sub(lost), term,
		firstMasterAfter(a, term, back).Sub(back))
	noOtherMaster(t, b)

	if ttl := leaseTTL(t, admin, "ql", "a"); ttl < 0 { // -1: not found; a live lease under 1s left reads 0
		t.Errorf("a's lease has TTL %d after the quorum came back, want alive", ttl)
	}
}

func lastValidUntilOf(r *electiontest.Recorder, term uint64) time.Time {
	var vu time.Time
	for _, s := range r.States() {
		if s.Role == election.Master && s.Term == term {
			vu = s.ValidUntil
		}
	}
	return vu
}

func firstMasterAfter(r *electiontest.Recorder, term uint64, t0 time.Time) time.Time {
	for _, s := range r.States() {
		if s.Role == election.Master && s.Term == term && s.At.After(t0) {
			return s.At
		}
	}
	return time.Time{}
}

// leaseTTL returns the remaining TTL (seconds) of the lease of name's election key in group.
func leaseTTL(t *testing.T, admin *clientv3.Client, group, name string) int64 {
	t.Helper()
	ctx := opCtx(t)
	resp, err := admin.Get(ctx, etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if isCandidate(kv.Value, name) {
			tr, err := admin.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				t.Fatal(err)
			}
			return tr.TTL
		}
	}
	t.Fatalf("no election key of %s", name)
	return 0
}

// The member a client talks to dies or goes silent (not the store's leader: the store carries on).
// Renewals reach a live member within one keepalive interval of the failed attempt, so the master
// never lets go. Then the member a waiting backup talks to fails and the master resigns at once:
// the backup's watch on the failed member is left for a live member as fast, and it takes over.
func TestPinnedMemberFails(t *testing.T) {
	for _, kill := range []bool{true, false} {
		t.Run(map[bool]string{true: "kill", false: "cut"}[kill], func(t *testing.T) {
			c := etcdtest.StartCluster(t, 3)
			et := etcdtest.ClusterElectionMs * time.Millisecond
			eps := c.Endpoints()
			l := c.WaitLeader()
			pa, pb := (l+1)%3, (l+2)%3
			fail := func(i int) {
				if kill {
					c.Kill(i)
				} else {
					c.Cut(i)
				}
			}
			restore := func(i int) {
				if kill {
					c.Restart(i)
				} else {
					c.Heal(i)
				}
				c.WaitLeader()
			}
			a := startWith(t, []string{eps[pa], eps[l], eps[pb]}, "pin", "a", et)
			a.Wait(t, settle, "Master", lastIs(election.Master))
			b := startWith(t, []string{eps[pb], eps[l], eps[pa]}, "pin", "b", et)
			b.Wait(t, settle, "Backup", lastIs(election.Backup))
			t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })
			term := a.Last().Term
			renewedPast(t, a, term, time.Now().Add(clusterTTL/2))

			hit := time.Now()
			fail(pa)
			renewedPast(t, a, term, hit.Add(clusterTTL))
			ki := clusterTTL / 4
			_, longest, faults := outage(a, term, hit)
			// One attempt fails (at most an interval), the next goes to a live member at once.
			bound := 2*ki + ki/2
			t.Logf("renewals unanswered for at most %v after the master's member m%d failed (bound %v, deadline %v)",
				longest, pa, bound, clusterTTL-clusterTTL/10)
			if faults > 0 || longest > bound {
				t.Errorf("master let go %d times, renewals unanswered for %v: want none, and at most %v", faults, longest, bound)
			}
			restore(pa)

			fail(pb)
			stopped := time.Now()
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}
			b.Wait(t, settle, "Master after a resigned", lastIs(election.Master))
			took := b.Last().At.Sub(stopped)
			t.Logf("backup whose member m%d failed took over %v after the resign (bound %v)", pb, took, bound)
			if took > bound {
				t.Errorf("backup took over %v after the resign, want at most %v: its watch stayed on the failed member", took, bound)
			}
		})
	}
}

// startWith starts a candidate of the cluster profile with the given endpoints, in order.
func startWith(t *testing.T, eps []string, group, name string, et time.Duration) *electiontest.Recorder {
	t.Helper()
	el, err := etcd.New(clusterConfig(eps, group, name, clusterTTL, et), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Start(t, name, candidate(el))
}
