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
	// The target deleted the record once master: no active transfer is listed.
	if cs, tr := list(); tr != nil || len(cs) != 2 || cs[0].Node != "b" {
		t.Fatalf("after the transfer: %+v, transfer %+v; want b first and no transfer record", cs, tr)
	}
	electiontest.CheckNoOverlap(t, ra, rb)
}

// A transfer to a node that is queued but never reaches the head in time (here: its priority is
// too low to matter, and it is the target) still makes it master; a target that leaves the queue
// before the others reach the head only delays a normal election until the record's Until.
func TestTransferTargetGoneHoldsUntilTimeout(t *testing.T) {
	srv := etcdtest.Start(t)
	h := &harness{srv: srv, admin: adminClient(t, srv)}
	a := h.NewCandidate(t, "tg", "a")
	ra := electiontest.Start(t, "a", a)
	ra.Wait(t, settle, "a master", lastIs(election.Master))
	b := h.NewCandidate(t, "tg", "b")
	rb := electiontest.Start(t, "b", b)
	candidateKV(t, h.admin, "tg", "b", func(election.Candidate) bool { return true })
	// b goes into maintenance right after the transfer names it: a, queued again, holds back.
	const timeout = 2 * time.Second
	asked := time.Now()
	if err := a.Elector.(election.Transferer).Transfer(opCtx(t), "b", timeout); err != nil {
		t.Fatal(err)
	}
	rb.Wait(t, settle, "b master", lastIs(election.Master))
	b.Elector.(election.Maintainer).SetMaintenance(true)
	// b hands back over to a at once: the record was deleted by b's claim, so a does not hold.
	ra.Wait(t, settle, "a master again", lastIs(election.Master))
	if took := time.Since(asked); took >= timeout {
		t.Errorf("a master again %v after the transfer, want well before the transfer's timeout %v: the record outlived b's claim", took, timeout)
	}
	electiontest.CheckNoOverlap(t, ra, rb)
}
