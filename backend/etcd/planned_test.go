package etcd_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// isCandidate reports whether an election key's value is node name's candidacy.
func isCandidate(v []byte, name string) bool {
	c, err := election.ParseCandidate(v)
	return err == nil && c.Node == name
}

func TestPlannedConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	electiontest.RunPlanned(t, &harness{srv: srv, admin: adminClient(t, srv)})
}

// Over three members, with the store's leader under the candidates' first endpoint or not, the
// planned moves still hand over within the bound.
func TestPlannedConformanceCluster(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	electiontest.RunPlanned(t, &clusterHarness{c: c, admin: c.Client()})
}

// The candidate value is an election.Candidate with the configured priority; SetPriority puts it
// again with the same create revision (the place in the queue is kept, no new lease).
func TestCandidateValueAndSetPriority(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	cfg := testConfig(srv.Endpoints()[0], "cv", "a")
	cfg.Priority, cfg.PreemptDelay = 120, 3*time.Second
	el, err := etcd.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := electiontest.Start(t, "a", electiontest.Candidate{Elector: el})
	r.Wait(t, settle, "Master", lastIs(election.Master))
	kv := candidateKV(t, admin, "cv", "a", func(c election.Candidate) bool { return c.Priority == 120 })
	c, _ := election.ParseCandidate(kv.Value)
	if !c.Preempt || c.PreemptDelay != 3*time.Second || c.Since.IsZero() {
		t.Errorf("published %+v, want preempt, delay 3s and a since", c)
	}
	el.SetPriority(80)
	kv2 := candidateKV(t, admin, "cv", "a", func(c election.Candidate) bool { return c.Priority == 80 })
	if kv2.CreateRevision != kv.CreateRevision || kv2.Lease != kv.Lease {
		t.Errorf("SetPriority re-queued: create revision %d -> %d, lease %x -> %x", kv.CreateRevision, kv2.CreateRevision, kv.Lease, kv2.Lease)
	}
	if l := r.Last(); l.Role != election.Master || l.Term != uint64(kv.CreateRevision) {
		t.Errorf("after SetPriority: %v term %d, want still Master of term %d", l.Role, l.Term, kv.CreateRevision)
	}
}

// candidateKV waits until name's election key in group holds a value satisfying ok.
func candidateKV(t *testing.T, admin *clientv3.Client, group, name string, ok func(election.Candidate) bool) *mvccpb.KeyValue {
	t.Helper()
	deadline := time.Now().Add(settle)
	for time.Now().Before(deadline) {
		resp, err := admin.Get(opCtx(t), etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if c, err := election.ParseCandidate(kv.Value); err == nil && c.Node == name && ok(c) {
				return kv
			}
		}
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		<-admin.Watch(wctx, etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		cancel()
	}
	t.Fatalf("no candidate value of %s in %s as wanted within %v", name, group, settle)
	return nil
}

// The Lister, usable from anywhere without campaigning, shows the queue in order (head first),
// then the nodes in maintenance, and an active transfer record.
func TestListerShowsQueueMaintenanceTransfer(t *testing.T) {
	srv := etcdtest.Start(t)
	h := &harness{srv: srv, admin: adminClient(t, srv)}
	ls, err := etcd.NewLister(testConfig(srv.Endpoints()[0], "ls", ""), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var _ election.Lister = ls
	list := func() ([]election.Candidate, *election.Transfer) {
		t.Helper()
		cs, tr, err := ls.Candidates(opCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		return cs, tr
	}
	if cs, tr := list(); len(cs) != 0 || tr != nil {
		t.Fatalf("empty group lists %v, %v", cs, tr)
	}
	a := h.NewCandidate(t, "ls", "a")
	ra := electiontest.Start(t, "a", a)
	ra.Wait(t, settle, "a master", lastIs(election.Master))
	b := h.NewCandidate(t, "ls", "b")
	b.Elector.(election.Prioritizer).SetPriority(90)
	rb := electiontest.Start(t, "b", b)
	candidateKV(t, h.admin, "ls", "b", func(election.Candidate) bool { return true })
	cs, _ := list()
	if len(cs) != 2 || cs[0].Node != "a" || cs[1].Node != "b" || cs[1].Priority != 90 {
		t.Fatalf("queue %+v, want a then b (priority 90)", cs)
	}
	b.Elector.(election.Maintainer).SetMaintenance(true)
	rb.Wait(t, settle, "b in maintenance", func(st []electiontest.Stamped) bool {
		return len(st) > 0 && st[len(st)-1].Reason == "maintenance"
	})
	deadline := time.Now().Add(settle)
	for cs, _ = list(); len(cs) != 2 || !cs[1].Maintenance; cs, _ = list() {
		if time.Now().After(deadline) {
			t.Fatalf("list %+v, want a queued and b in maintenance", cs)
		}
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		<-h.admin.Watch(wctx, etcd.MaintenancePrefix("ls")+"/", clientv3.WithPrefix())
		cancel()
	}
	if cs[0].Node != "a" || cs[0].Maintenance || cs[1].Node != "b" {
		t.Fatalf("list %+v, want a queued, then b in maintenance", cs)
	}
	b.Elector.(election.Maintainer).SetMaintenance(false)
	b.Elector.(election.Prioritizer).SetPriority(100) // else a, preferred, would take it back at once
	candidateKV(t, h.admin, "ls", "b", func(c election.Candidate) bool { return c.Priority == 100 })
	if err := a.Elector.(election.Transferer).Transfer(opCtx(t), "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	rb.Wait(t, settle, "b master", lastIs(election.Master))
	candidateKV(t, h.admin, "ls", "a", func(election.Candidate) bool { return true }) // a queued again
	// The target deleted the record once master: no active transfer is listed.
	if cs, tr := list(); tr != nil || len(cs) != 2 || cs[0].Node != "b" {
		t.Fatalf("after the transfer: %+v, transfer %+v; want b first and no transfer record", cs, tr)
	}
	electiontest.CheckNoOverlap(t, ra, rb)
}

// The target's claim deletes the transfer record: when the target goes into maintenance right
// after taking over, the next master (the old one) takes over at once, not after the timeout.
func TestTransferRecordGoesWithTheTargetsClaim(t *testing.T) {
	srv := etcdtest.Start(t)
	h := &harness{srv: srv, admin: adminClient(t, srv)}
	a := h.NewCandidate(t, "tg", "a")
	ra := electiontest.Start(t, "a", a)
	ra.Wait(t, settle, "a master", lastIs(election.Master))
	b := h.NewCandidate(t, "tg", "b")
	rb := electiontest.Start(t, "b", b)
	candidateKV(t, h.admin, "tg", "b", func(election.Candidate) bool { return true })
	const timeout = 2 * time.Second
	asked := time.Now()
	if err := a.Elector.(election.Transferer).Transfer(opCtx(t), "b", timeout); err != nil {
		t.Fatal(err)
	}
	rb.Wait(t, settle, "b master", lastIs(election.Master))
	b.Elector.(election.Maintainer).SetMaintenance(true)
	// b hands back to a at once: b's claim deleted the record, so a does not hold back.
	ra.Wait(t, settle, "a master again", lastIs(election.Master))
	if took := time.Since(asked); took >= timeout {
		t.Errorf("a master again %v after the transfer, want well before the transfer's timeout %v: the record outlived b's claim", took, timeout)
	}
	electiontest.CheckNoOverlap(t, ra, rb)
}

func newPrioElector(t *testing.T, h *harness, group, name string, prio int, noPreempt bool, delay time.Duration) electiontest.Candidate {
	t.Helper()
	p := proxy(t, h.srv)
	cfg := testConfig(p.Addr(), group, name)
	cfg.Priority, cfg.NoPreempt, cfg.PreemptDelay = prio, noPreempt, delay
	el, err := etcd.New(cfg, testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Candidate{Elector: el}
}

// A higher-priority node with a preempt delay takes over only once it has been queued that long;
// one with nopreempt never takes over from a live master, but leads once the master resigns.
func TestPreemptDelayAndNoPreempt(t *testing.T) {
	srv := etcdtest.Start(t)
	h := &harness{srv: srv, admin: adminClient(t, srv)}
	ra := electiontest.Start(t, "a", newPrioElector(t, h, "pd", "a", 100, false, 0))
	ra.Wait(t, settle, "a master", lastIs(election.Master))
	const delay = 1500 * time.Millisecond
	joined := time.Now()
	rb := electiontest.Start(t, "b", newPrioElector(t, h, "pd", "b", 200, false, delay))
	rb.Wait(t, settle, "b master", lastIs(election.Master))
	took := time.Since(joined)
	t.Logf("b (preempt_delay %v) master %v after it started", delay, took)
	if took < delay {
		t.Errorf("b took over %v after joining, before its preempt delay %v", took, delay)
	}
	if took > delay+testTTL {
		t.Errorf("b took over %v after joining, want soon after its preempt delay %v", took, delay)
	}
	electiontest.CheckNoOverlap(t, ra, rb)

	rc := electiontest.Start(t, "c", newPrioElector(t, h, "pd", "c", 250, true, 0))
	candidateKV(t, h.admin, "pd", "c", func(election.Candidate) bool { return true })
	// Negative check: for two TTLs, c (nopreempt) leaves b, the live master, alone.
	tm := time.NewTimer(2 * testTTL)
	<-tm.C
	for _, st := range rc.States() {
		if st.Role == election.Master {
			t.Fatalf("c (nopreempt) took over from a live master: %v", st.State)
		}
	}
	if err := rb.Cand.Elector.(election.Resigner).Resign(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	rc.Wait(t, settle, "c master after b resigned", lastIs(election.Master))
	electiontest.CheckNoOverlap(t, ra, rb, rc)
}

// An active transfer to a node that is not queued makes the head hold back until its Until, then
// a normal election runs; the record is gone once someone is master.
func TestTransferToAbsentNodeHoldsUntilTimeout(t *testing.T) {
	srv := etcdtest.Start(t)
	h := &harness{srv: srv, admin: adminClient(t, srv)}
	ra := electiontest.Start(t, "a", h.NewCandidate(t, "ab", "a"))
	ra.Wait(t, settle, "a master", lastIs(election.Master))
	rb := electiontest.Start(t, "b", h.NewCandidate(t, "ab", "b"))
	candidateKV(t, h.admin, "ab", "b", func(election.Candidate) bool { return true })
	until := time.Now().Add(1500 * time.Millisecond)
	tr := election.Transfer{From: "a", To: "ghost", Until: until}
	if _, err := h.admin.Put(opCtx(t), etcd.TransferKey("ab"), string(tr.Marshal())); err != nil {
		t.Fatal(err)
	}
	if err := ra.Cand.Elector.(election.Resigner).Resign(opCtx(t)); err != nil {
		t.Fatal(err)
	}
	// b, first in line after a resigned, holds back for the absent target.
	rb.Wait(t, settle, "b master", lastIs(election.Master))
	next := rb
	at := next.Last().At
	if at.Before(until) {
		t.Errorf("%s master at %v, before the transfer to an absent node ran out at %v", next.Name, at, until)
	}
	t.Logf("%s master %v after the record's Until", next.Name, at.Sub(until))
	resp, err := h.admin.Get(opCtx(t), etcd.TransferKey("ab"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("transfer record left after a master claimed: %s", resp.Kvs[0].Value)
	}
	electiontest.CheckNoOverlap(t, ra, rb)
}
