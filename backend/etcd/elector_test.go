package etcd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/etcdtest"
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
	r := electiontest.Start(t, "a", candidate(newElector(t, srv.Endpoints()[0], "vu", "a")))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	first := r.Last().ValidUntil
	r.Wait(t, settle, "renewals for 2 TTLs", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Master && l.ValidUntil.After(first.Add(2*testTTL))
	})
	margin := fencing.DefaultMargin(testTTL)
	renewals := 0
	for _, s := range r.States() {
		if s.Role != election.Master {
			continue
		}
		renewals++
		if limit := s.At.Add(testTTL - margin); s.ValidUntil.After(limit) {
			t.Errorf("ValidUntil %v is after receipt+TTL-margin %v: not counted from the send time", s.ValidUntil, limit)
		}
		if !s.ValidUntil.After(s.At) {
			t.Errorf("State arrived at %v already past its ValidUntil %v", s.At, s.ValidUntil)
		}
	}
	t.Logf("%d Master States (election + renewals) in %v", renewals, r.Last().At.Sub(r.States()[0].At))
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
