package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/faultnet"
)

const settle = 15 * time.Second

func newElector(t *testing.T, endpoint, group, name string) *etcd.Elector {
	t.Helper()
	el, err := etcd.New(testConfig(endpoint, group, name), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return el
}

func candidate(el *etcd.Elector) electiontest.Candidate { return electiontest.Candidate{Elector: el} }

func lastIs(role election.Role) func([]electiontest.Stamped) bool {
	return func(st []electiontest.Stamped) bool { return len(st) > 0 && st[len(st)-1].Role == role }
}

func TestConfigValidate(t *testing.T) {
	good := testConfig("127.0.0.1:2379", "web", "n1")
	if err := good.Validate(); err != nil {
		t.Fatalf("fast test profile: %v", err)
	}
	def := etcd.DefaultConfig()
	def.Endpoints, def.Group, def.Name = []string{"127.0.0.1:2379"}, "web", "n1"
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*etcd.Config)
		want string
	}{
		{"no endpoints", func(c *etcd.Config) { c.Endpoints = nil }, "no endpoints"},
		{"no group", func(c *etcd.Config) { c.Group = "" }, "group"},
		{"slash in group", func(c *etcd.Config) { c.Group = "a/b" }, "group"},
		{"no name", func(c *etcd.Config) { c.Name = "" }, "name is required"},
		{"record of another node", func(c *etcd.Config) { c.Record.Node = "n2" }, "differs from name"},
		{"fractional ttl", func(c *etcd.Config) { c.TTL = 1500 * time.Millisecond }, "whole number of seconds"},
		{"sub-second ttl", func(c *etcd.Config) { c.TTL = 500 * time.Millisecond }, "whole number of seconds"},
		{"margin over half", func(c *etcd.Config) { c.Margin = 600 * time.Millisecond }, "margin"},
		{"keepalive too slow", func(c *etcd.Config) { c.KeepaliveInterval = 900 * time.Millisecond }, "keepalive interval"},
		{"no dial timeout", func(c *etcd.Config) { c.DialTimeout = 0 }, "dial timeout"},
		{"backoff inverted", func(c *etcd.Config) { c.RetryMax = time.Millisecond }, "retry backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			if _, err := etcd.New(c, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// Every ValidUntil counts from the send time of an acknowledged keepalive: it is at most
// TTL-margin after the State arrived, it is still ahead when the State arrives, and it moves on.
func TestValidUntilCountsFromSendTime(t *testing.T) {
	srv := etcdtest.Start(t)
	p := proxy(t, srv)
	r := electiontest.Start(t, "a", candidate(newElector(t, p.Addr(), "vu", "a")))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	// Every keepalive now takes at least 2 x oneWay from send to answer, so a deadline counted
	// from the send time ends at least that much before one counted from the receipt.
	const oneWay = 80 * time.Millisecond
	p.SetDelay(oneWay)
	delayed := time.Now()
	r.Wait(t, settle, "renewals for 2 TTLs through the delay", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Master && l.ValidUntil.After(delayed.Add(2*testTTL))
	})
	margin := fencing.DefaultMargin(testTTL)
	renewals := 0
	for _, s := range r.States() {
		if s.Role != election.Master || !s.At.After(delayed.Add(testTTL/2)) {
			continue // renewals sent before the delay took hold
		}
		renewals++
		// Sent at least 2 x oneWay before the answer arrived, which is before the recorder got it.
		if limit := s.At.Add(testTTL - margin - 2*oneWay); s.ValidUntil.After(limit) {
			t.Errorf("ValidUntil %v is after receipt-RTT+TTL-margin %v: counted from the answer, not the send",
				s.ValidUntil.Format("15:04:05.000"), limit.Format("15:04:05.000"))
		}
		if !s.ValidUntil.After(s.At) {
			t.Errorf("State arrived at %v already past its ValidUntil %v", s.At, s.ValidUntil)
		}
	}
	if renewals < 2 {
		t.Fatalf("%d renewals through the delay, want several", renewals)
	}
	t.Logf("%d renewals through a %v round trip", renewals, 2*oneWay)
}

// A lease revoked from outside demotes the master at once, not at its deadline, and it campaigns
// again with a new, higher term.
func TestRevokedLeaseDemotesAtOnce(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	r := electiontest.Start(t, "a", candidate(newElector(t, srv.Endpoints()[0], "revoke", "a")))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	m := r.Last()
	n := len(r.States())
	revoked := time.Now()
	revokeCandidate(t, admin, "revoke", "a")
	var demoted electiontest.Stamped
	r.Wait(t, settle, "non-Master after revoke", func(st []electiontest.Stamped) bool {
		for _, s := range st[n:] {
			if s.Role != election.Master {
				demoted = s
				return true
			}
		}
		return false
	})
	if took := demoted.At.Sub(revoked); took > testTTL/2 {
		t.Errorf("demoted %v after the revoke, want well before the deadline", took)
	}
	t.Logf("demoted %v after revoke: %s %q", demoted.At.Sub(revoked), demoted.Role, demoted.Reason)
	r.Wait(t, settle, "Master again with a higher term", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Master && l.Term > m.Term
	})
}

// A master whose client goes away without resigning (crash) keeps the election until its lease
// expires; then the elector takes over.
func TestTakeoverFromOrphanedSession(t *testing.T) {
	srv := etcdtest.Start(t)
	ghostCli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ghostCli.Close() })
	sess, err := concurrency.NewSession(ghostCli, concurrency.WithTTL(int(testTTL/time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if err := concurrency.NewElection(sess, etcd.ElectionPrefix("orphan")).Campaign(opCtx(t), "ghost"); err != nil {
		t.Fatal(err)
	}

	r := electiontest.Start(t, "a", candidate(newElector(t, srv.Endpoints()[0], "orphan", "a")))
	r.Wait(t, settle, "Backup", lastIs(election.Backup))
	orphaned := time.Now()
	sess.Orphan()
	ghostCli.Close() // no resign, no revoke
	r.Wait(t, settle, "Master after the orphaned lease expired", lastIs(election.Master))
	took := r.Last().At.Sub(orphaned)
	t.Logf("takeover %v after the ghost stopped keeping its lease alive (TTL %v)", took, testTTL)
	if took < testTTL/2 {
		t.Fatalf("took over %v after the ghost vanished: before its lease could have expired", took)
	}
}

// A value in the leader key that is not a master record is reported as no master, by an observer and
// by a backup, and a valid record later is reported.
func TestGarbageLeaderRecord(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	ctx := opCtx(t)
	if _, err := admin.Put(ctx, etcd.LeaderKey("junk"), "{not json"); err != nil {
		t.Fatal(err)
	}
	o, err := etcd.NewObserver(testConfig(srv.Endpoints()[0], "junk", ""), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithCancel(context.Background())
	recs := make(chan election.Record)
	done := make(chan error, 1)
	go func() { done <- o.Observe(octx, recs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Observe: %v", err)
		}
	})
	next := func() election.Record {
		t.Helper()
		select {
		case r := <-recs:
			return r
		case <-time.After(settle):
			t.Fatal("no record from the observer")
		}
		return election.Record{}
	}
	if r := next(); !r.IsZero() {
		t.Fatalf("garbage record observed as %+v, want zero", r)
	}
	valid := election.Record{Group: "junk", Node: "other", Term: 7}
	if _, err := admin.Put(ctx, etcd.LeaderKey("junk"), string(valid.Marshal())); err != nil {
		t.Fatal(err)
	}
	if r := next(); r.Node != "other" || r.Term != 7 {
		t.Fatalf("observed %+v, want node other term 7", r)
	}
	if _, err := admin.Put(ctx, etcd.LeaderKey("junk"), `{"node":""}`); err != nil {
		t.Fatal(err)
	}
	if r := next(); !r.IsZero() {
		t.Fatalf("record without node observed as %+v, want zero", r)
	}
}

// etcd grants at least its minimum TTL; a configured TTL below it is a configuration error naming
// both TTLs, and Run gives up instead of running with a deadline it cannot keep.
func TestTTLBelowServerMinimum(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithTimeouts(50, 700)) // minimum lease TTL 2s
	el := newElector(t, srv.Endpoints()[0], "ttl", "a")
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	out := election.NewOutbox()
	done := make(chan error, 1)
	go func() { done <- el.Run(ctx, out) }()
	var err error
	var states []election.State
	add := func(s election.State) { states = append(states, s) }
	for collecting := true; collecting; {
		select {
		case <-out.Ready():
			out.TakeAll(add)
		case err = <-done:
			out.TakeAll(add)
			collecting = false
		}
	}
	var ttlErr *etcd.TTLError
	if !errors.As(err, &ttlErr) {
		t.Fatalf("Run = %v, want a *TTLError", err)
	}
	if ttlErr.Requested != time.Second || ttlErr.Granted != 2*time.Second {
		t.Fatalf("TTLError %+v, want requested 1s granted 2s", ttlErr)
	}
	if !strings.Contains(err.Error(), "1s") || !strings.Contains(err.Error(), "2s") {
		t.Errorf("error %q does not name both TTLs", err)
	}
	for _, s := range states {
		if s.Role == election.Master {
			t.Fatalf("reported Master: %+v", s)
		}
	}
	t.Logf("Run: %v", err)
}

// With etcd unreachable at start the elector reports Fault, never Master, and keeps retrying; once
// etcd answers it is elected.
func TestUnreachableAtStart(t *testing.T) {
	srv := etcdtest.Start(t)
	p := proxy(t, srv)
	p.Block()
	r := electiontest.Start(t, "a", candidate(newElector(t, p.Addr(), "unreach", "a")))
	r.Wait(t, settle, "Fault", lastIs(election.Fault))
	faults := 0
	// Keep it cut off for several retry rounds (dial timeout 1s): it must neither exit nor flap.
	// The wait is the fault's duration, not synchronisation.
	select {
	case <-r.Done():
	case <-time.After(3 * time.Second):
	}
	for _, s := range r.States() {
		if s.Role == election.Master {
			t.Fatalf("Master while etcd is unreachable: %+v", s)
		}
		if s.Role == election.Fault {
			faults++
		}
	}
	if faults != 1 {
		t.Errorf("%d Fault States while cut off, want 1 (reported once per change)", faults)
	}
	select {
	case <-r.Done():
		t.Fatal("Run returned while etcd was unreachable")
	default:
	}
	p.Unblock()
	r.Wait(t, settle, "Master once etcd answers", lastIs(election.Master))
}

// An elector made ineligible before Run campaigns for nothing, and becomes master once eligible.
func TestIneligibleFromStart(t *testing.T) {
	srv := etcdtest.Start(t)
	el := newElector(t, srv.Endpoints()[0], "inel", "a")
	el.SetEligible(false)
	r := electiontest.Start(t, "a", candidate(el))
	r.Wait(t, settle, "Backup (not eligible)", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Backup && l.Reason == "not eligible"
	})
	admin := adminClient(t, srv)
	resp, err := admin.Get(opCtx(t), etcd.ElectionPrefix("inel")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d election keys while ineligible, want none", resp.Count)
	}
	el.SetEligible(true)
	r.Wait(t, settle, "Master once eligible", lastIs(election.Master))
}

func TestRunTwice(t *testing.T) {
	srv := etcdtest.Start(t)
	el := newElector(t, srv.Endpoints()[0], "twice", "a")
	r := electiontest.Start(t, "a", candidate(el))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	if err := el.Run(context.Background(), election.NewOutbox()); err == nil {
		t.Fatal("second Run returned nil, want an error")
	}
}

// A watch broken by compaction deposes no one and costs no backup its place. With a single member
// the client resumes its watches on the same member after a restart, from the revision it last saw,
// which a compaction has removed meanwhile: ErrCompacted. The master keeps its term, and when it
// resigns the backup takes over at once with the create revision of the key it queued with.
func TestWatchBrokenByCompaction(t *testing.T) {
	c := etcdtest.StartCluster(t, 1)
	admin := c.Client()
	core, logs := observer.New(zap.InfoLevel)
	newRec := func(name string) *electiontest.Recorder {
		cfg := clusterConfig(c.Endpoints(), "compact", name, clusterTTL, etcdtest.ClusterElectionMs*time.Millisecond)
		el, err := etcd.New(cfg, zap.New(zapcore.NewTee(core, testLogger(t).Core())).Named(name))
		if err != nil {
			t.Fatal(err)
		}
		return electiontest.Start(t, name, candidate(el))
	}
	a := newRec("a")
	a.Wait(t, settle, "Master", lastIs(election.Master))
	b := newRec("b")
	b.Wait(t, settle, "Backup", lastIs(election.Backup))
	t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })
	term := a.Last().Term
	queued := candidateRev(t, admin, "compact", "b")

	// Move the revision on past what the watches started from, compact it away, restart the member.
	for i := range 5 {
		if _, err := admin.Put(opCtx(t), fmt.Sprintf("/other/%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	rev := c.Compact(admin)
	k := time.Now()
	c.Kill(0)
	r := time.Now()
	c.Restart(0)
	t.Logf("kill %v, restart %v", r.Sub(k), time.Since(r))
	renewedPast(t, a, term, time.Now().Add(clusterTTL))
	compacted := 0
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if f.Key == "error" && strings.Contains(fmt.Sprint(f.Interface), "compacted") {
				compacted++
			}
		}
	}
	t.Logf("compacted to %d; %d watches saw ErrCompacted", rev, compacted)
	if compacted == 0 {
		t.Fatal("no watch saw ErrCompacted: the test did not break them the way it means to")
	}
	for _, s := range a.States() {
		if s.Role != election.Master && s.Reason != "lease renewal overdue" && s.At.After(firstMasterAfter(a, term, time.Time{})) {
			t.Errorf("master demoted after its watch broke: %s %q", s.Role, s.Reason)
		}
	}
	noOtherMaster(t, b)

	stopped := time.Now()
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	b.Wait(t, settle, "Master after a resigned", lastIs(election.Master))
	took := b.Last().At.Sub(stopped)
	t.Logf("backup took over %v after the resign, with term %d (queued at %d)", took, b.Last().Term, queued)
	if took > clusterTTL/4 {
		t.Errorf("backup took over %v after the resign, want under TTL/4 %v", took, clusterTTL/4)
	}
	if got := b.Last().Term; got != uint64(queued) {
		t.Errorf("backup master with term %d, want %d, the create revision it queued with: it lost its place", got, queued)
	}
}

// candidateRev waits until name has an election key in group (a Backup State is offered before the
// key is put) and returns its create revision.
func candidateRev(t *testing.T, admin *clientv3.Client, group, name string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	pfx := etcd.ElectionPrefix(group) + "/"
	resp, err := admin.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if isCandidate(kv.Value, name) {
			return kv.CreateRevision
		}
	}
	for wr := range admin.Watch(ctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.PUT && isCandidate(ev.Kv.Value, name) {
				return ev.Kv.CreateRevision
			}
		}
	}
	t.Fatalf("no election key of %s in %s within %v", name, group, settle)
	return 0
}

// observeRecords runs an Observer of group at endpoint until the test ends and returns next: it
// waits up to settle for an observed record that satisfies ok, and returns it.
func observeRecords(t *testing.T, endpoint, group string) (next func(what string, ok func(election.Record) bool) election.Record) {
	t.Helper()
	o, err := etcd.NewObserver(testConfig(endpoint, group, ""), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	recs := make(chan election.Record, 16)
	done := make(chan error, 1)
	go func() { done <- o.Observe(ctx, recs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Observe: %v", err)
		}
	})
	next = func(what string, ok func(election.Record) bool) election.Record {
		t.Helper()
		timeout := time.After(settle)
		for {
			select {
			case r := <-recs:
				if ok(r) {
					return r
				}
			case <-timeout:
				t.Fatalf("observer saw no %s", what)
			}
		}
	}
	return next
}

// The master record lives on the master's lease: when the lease is revoked, the record goes with it
// and an observer sees no master (a zero Record) before the node is elected again.
func TestRecordGoesWithLease(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	next := observeRecords(t, srv.Endpoints()[0], "gone")
	r := electiontest.Start(t, "a", candidate(newElector(t, srv.Endpoints()[0], "gone", "a")))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	term := r.Last().Term
	next("record of a", func(rec election.Record) bool { return rec.Node == "a" && rec.Term == term })
	revokeCandidate(t, admin, "gone", "a")
	next("zero record after the revoke", election.Record.IsZero)
	if resp, err := admin.Get(opCtx(t), etcd.LeaderKey("gone")); err != nil {
		t.Fatal(err)
	} else if len(resp.Kvs) > 0 && resp.Kvs[0].ModRevision <= int64(term) {
		t.Errorf("the old master record is still there")
	}
	next("record of the next term", func(rec election.Record) bool { return rec.Node == "a" && rec.Term > term })
}

// etcd's concurrency.Election.Campaign, which the elector's own campaign replaces (see campaign.go):
// campaigning again on a session whose key exists keeps the key's create revision (the place in the
// queue), but a Campaign whose context ends deletes the key.
func TestConcurrencyCampaignSemantics(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := adminClient(t, srv)
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	first := concurrency.NewElection(sess, etcd.ElectionPrefix("cc"))
	if err := first.Campaign(opCtx(t), "x"); err != nil {
		t.Fatal(err)
	}
	again := concurrency.NewElection(sess, etcd.ElectionPrefix("cc"))
	if err := again.Campaign(opCtx(t), "x"); err != nil {
		t.Fatal(err)
	}
	if again.Rev() != first.Rev() || again.Key() != first.Key() {
		t.Fatalf("Campaign again: key %s rev %d, want %s rev %d (resumed)", again.Key(), again.Rev(), first.Key(), first.Rev())
	}

	other, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	waiting := concurrency.NewElection(other, etcd.ElectionPrefix("cc"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := waiting.Campaign(ctx, "y"); err == nil {
		t.Fatal("second session won while the first holds the election")
	}
	resp, err := cli.Get(opCtx(t), etcd.ElectionPrefix("cc")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 1 {
		t.Fatalf("%d election keys after the waiting Campaign's context ended, want 1 (its key deleted)", resp.Count)
	}
}

// proxied starts a candidate of the fast profile (adjusted by mod) that reaches srv through a proxy
// of its own.
func proxied(t *testing.T, srv *etcdtest.Server, group, name string, mod ...func(*etcd.Config)) (*electiontest.Recorder, *faultnet.Proxy) {
	t.Helper()
	p := proxy(t, srv)
	cfg := testConfig(p.Addr(), group, name)
	for _, f := range mod {
		f(&cfg)
	}
	el, err := etcd.New(cfg, testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Start(t, name, candidate(el)), p
}

// A master cut off past its deadline lets go (Fault) but keeps its lease. If its election key is
// deleted meanwhile and another node is elected, the store's answer to its next keepalive (the lease
// is alive) is not enough: it reads its key, finds it gone, and is a backup, never master again.
func TestSuspendedMasterConfirmsItsKey(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	// A wide margin: a lets go 1s before its lease can expire, time to delete its key, elect b and
	// reconnect a while its lease is alive.
	a, p := proxied(t, srv, "confirm", "a", func(c *etcd.Config) { c.TTL, c.Margin = 2*time.Second, time.Second })
	a.Wait(t, settle, "Master", lastIs(election.Master))
	b, _ := proxied(t, srv, "confirm", "b")
	b.Wait(t, settle, "Backup", lastIs(election.Backup))
	t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })
	term := a.Last().Term
	key, lease := candidateKey(t, admin, "confirm", "a")

	p.Block()
	a.Wait(t, settle, "Fault while cut off", lastIs(election.Fault))
	if _, err := admin.Delete(opCtx(t), key); err != nil {
		t.Fatal(err)
	}
	b.Wait(t, settle, "Master once a's key is gone", lastIs(election.Master))
	p.Unblock()
	if tr, err := admin.TimeToLive(opCtx(t), lease); err != nil || tr.TTL < 0 { // -1: not found (a live lease under 1s left reads 0)
		t.Fatalf("a's lease expired before a reconnected (%v, %v): the test needs it alive", tr, err)
	}
	a.Wait(t, settle, "Backup naming b", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Backup && l.Leader.Node == "b"
	})
	for _, s := range a.States() {
		if s.Role == election.Master && s.Term == term && s.At.After(firstMasterAfter(a, term, time.Time{})) &&
			s.Reason != "elected" && s.Reason != "renewed" {
			t.Errorf("a master again with term %d (%q) after its key was deleted", term, s.Reason)
		}
	}
}

// candidateKey returns name's election key in group and its lease.
func candidateKey(t *testing.T, admin *clientv3.Client, group, name string) (string, clientv3.LeaseID) {
	t.Helper()
	resp, err := admin.Get(opCtx(t), etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if isCandidate(kv.Value, name) {
			return string(kv.Key), clientv3.LeaseID(kv.Lease)
		}
	}
	t.Fatalf("no election key of %s in %s", name, group)
	return "", 0
}

// A master made ineligible while the store is down demotes at once and keeps trying to resign:
// once the store is back (well within the lease's life, so nothing else would remove its key) the
// resign goes through and the backup takes over.
func TestResignRetriedUntilItSucceeds(t *testing.T) {
	c := etcdtest.StartCluster(t, 1)
	et := etcdtest.ClusterElectionMs * time.Millisecond
	a := startWith(t, c.Endpoints(), "retry", "a", et)
	a.Wait(t, settle, "Master", lastIs(election.Master))
	b := startWith(t, c.Endpoints(), "retry", "b", et)
	b.Wait(t, settle, "Backup", lastIs(election.Backup))
	t.Cleanup(func() { electiontest.CheckNoOverlap(t, a, b) })

	c.Kill(0)
	a.Cand.Elector.(election.Eligibility).SetEligible(false)
	a.Wait(t, settle, "Backup (not eligible)", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role != election.Master && !l.Acted.IsZero()
	})
	ki := clusterTTL / 4
	select { // the store stays down for two keepalive intervals: longer than one resign attempt
	case <-time.After(2 * ki):
	case <-a.Done():
	}
	c.Restart(0)
	back := time.Now()
	// The next attempt follows within the backoff (at most RetryMax, 500ms) and a reconnection (at
	// most an interval); had the resign been given up, the key would stay for as long as a keeps
	// its lease alive.
	bound := 4 * ki
	b.Wait(t, bound, "Master once a's resign went through", lastIs(election.Master))
	t.Logf("b master %v after the store came back", time.Since(back))
}
