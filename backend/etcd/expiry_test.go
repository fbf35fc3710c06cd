package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// expiryTTL is the shortest TTL whose expiry a backup follows (etcd.minExpiryTTL).
const expiryTTL = 3 * time.Second

// fakeMaster is a candidate first in a group's queue whose lease the test renews by hand, so that
// the test knows when each renewal was sent and acknowledged: the store expires the lease between
// the last acknowledged renewal's send time + TTL and its answer time + TTL.
type fakeMaster struct {
	cli        *clientv3.Client
	id         clientv3.LeaseID
	sent, recv time.Time // the last acknowledged renewal (or the grant)
}

func newFakeMaster(t *testing.T, cli *clientv3.Client, group string) *fakeMaster {
	return newFakeMasterTTL(t, cli, group, expiryTTL, "fake")
}

// newFakeMasterTTL is newFakeMaster with a lease of ttl and the candidate value val.
func newFakeMasterTTL(t *testing.T, cli *clientv3.Client, group string, ttl time.Duration, val string) *fakeMaster {
	t.Helper()
	ctx := opCtx(t)
	f := &fakeMaster{cli: cli, sent: time.Now()}
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	f.id, f.recv = g.ID, time.Now()
	key := fmt.Sprintf("%s/%x", etcd.ElectionPrefix(group), int64(g.ID))
	if _, err := cli.Put(ctx, key, val, clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	return f
}

// renew sends one keepalive; rpctypes.ErrLeaseNotFound means the lease was revoked or expired.
func (f *fakeMaster) renew(ctx context.Context) error {
	sent := time.Now()
	if _, err := f.cli.KeepAliveOnce(ctx, f.id); err != nil {
		return err
	}
	f.sent, f.recv = sent, time.Now()
	return nil
}

// renewFor renews every TTL/4, as a master does, for d.
func (f *fakeMaster) renewFor(t *testing.T, d time.Duration) { f.renewEvery(t, expiryTTL/4, d) }

// renewEvery renews every interval for d.
func (f *fakeMaster) renewEvery(t *testing.T, interval, d time.Duration) {
	t.Helper()
	tk := time.NewTicker(interval)
	defer tk.Stop()
	end := time.After(d)
	for {
		select {
		case <-end:
			return
		case <-tk.C:
			if err := f.renew(opCtx(t)); err != nil {
				t.Fatalf("renewing the master's live lease: %v", err)
			}
		}
	}
}

func expiryBackup(t *testing.T, srv *etcdtest.Server, group string) *electiontest.Recorder {
	return expiryBackupTTL(t, srv, group, expiryTTL)
}

func expiryBackupTTL(t *testing.T, srv *etcdtest.Server, group string, ttl time.Duration) *electiontest.Recorder {
	cfg := testConfig(srv.Endpoints()[0], group, "b")
	cfg.TTL = ttl
	el, err := etcd.New(cfg, testLogger(t).Named("b"))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Start(t, "b", candidate(el))
}

// The backup first in line ends a dead master's lease as soon as the store shows it expired,
// instead of waiting for etcd's expiry scan (every 500ms): it becomes master within a few tens of
// milliseconds of the latest instant the lease can have expired, and never before the earliest.
// A master killed at a random phase of its keepalives, three times.
func TestBackupRevokesTheMastersExpiredLease(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	const runs = 3
	// Catching the last second (fast readings 50ms apart), the confirming reading a second later,
	// the framing reads, the revoke and the campaign are a few round trips on loopback; etcd's own
	// scan alone is late by up to 500ms (more than this in 70% of runs).
	const bound = 150 * time.Millisecond
	var lags []time.Duration
	for i := range runs {
		group := fmt.Sprintf("expiry%d", i)
		m := newFakeMaster(t, admin, group)
		r := expiryBackup(t, srv, group)
		r.Wait(t, settle, "Backup", lastIs(election.Backup))
		m.renewFor(t, expiryTTL/2+rand.N(expiryTTL/4)) // then the master dies, at a random phase
		r.Wait(t, settle, "Master", lastIs(election.Master))
		won := r.Last().At
		earliest, latest := m.sent.Add(expiryTTL), m.recv.Add(expiryTTL)
		if won.Before(earliest) {
			t.Fatalf("run %d: the backup became master %v before the master's lease could expire", i, earliest.Sub(won))
		}
		lag := won.Sub(latest)
		lags = append(lags, lag)
		if lag > bound {
			t.Errorf("run %d: master %v after the latest instant the lease expired, want at most %v", i, lag, bound)
		}
		if ttl, err := admin.TimeToLive(opCtx(t), m.id); err != nil || ttl.TTL != -1 {
			t.Errorf("run %d: the dead master's lease: TTL %v, %v; want gone", i, ttl, err)
		}
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(lags)
	t.Logf("takeover after the latest expiry instant: min %v, median %v, max %v", lags[0], lags[len(lags)/2], lags[len(lags)-1])
}

// A lease with under a second left is not an expired lease: a master whose renewals stall for
// longer than TTL-1s (LeaseTimeToLive reads 0) and then get through keeps its lease and its place,
// and the backup never takes over. (A backup that revoked on TTL 0 would revoke it with up to a
// second left, while that master, acknowledged, holds the VIPs.)
func TestBackupKeepsAStalledMastersLiveLease(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	m := newFakeMaster(t, admin, "stall")
	r := expiryBackup(t, srv, "stall")
	r.Wait(t, settle, "Backup", lastIs(election.Backup))
	m.renewFor(t, expiryTTL/2)
	// Stall past TTL-1s (the store shows 0 from there on), and well past the backup's first reading
	// of 0 plus its fast readings, but renew before the lease runs out (TTL-200ms).
	for _, stall := range []time.Duration{expiryTTL - 900*time.Millisecond, expiryTTL - 500*time.Millisecond, expiryTTL - 200*time.Millisecond} {
		pause := time.NewTimer(time.Until(m.sent.Add(stall)))
		<-pause.C
		if err := m.renew(opCtx(t)); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("after a stall of %v the master's live lease was gone", stall)
		} else if err != nil {
			t.Fatal(err)
		}
		m.renewFor(t, expiryTTL/4)
	}
	for _, s := range r.States() {
		if s.Role == election.Master {
			t.Fatalf("the backup became master at %v while the master's lease was alive", s.At)
		}
	}
}

// A TTL under expiryTTL is granted with a second of headroom and its candidate publishes its
// validity (the TTL): the backup first in line ends a dead master's lease as soon as the store
// shows no renewal for that long, a second (plus etcd's expiry scan, up to 500ms) before the lease
// itself would expire, and never before the master's own deadline can have passed. A TTL 1s master
// killed at a random phase of its keepalives, three times.
func TestBackupEndsTheMastersLeaseAtItsValidity(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	const validity, granted, runs = time.Second, 2 * time.Second, 3
	val := string(election.Candidate{Node: "fake", Priority: election.DefaultPriority, Preempt: true, Validity: validity}.Marshal())
	// Readings 50ms apart, the reads framing the last, the delete, the revoke and the campaign: a
	// few round trips on loopback. Waiting for the lease's expiry would be a second late, or more.
	const bound = 150 * time.Millisecond
	var lags []time.Duration
	for i := range runs {
		group := fmt.Sprintf("validity%d", i)
		m := newFakeMasterTTL(t, admin, group, granted, val)
		r := expiryBackupTTL(t, srv, group, validity)
		r.Wait(t, settle, "Backup", lastIs(election.Backup))
		m.renewEvery(t, validity/4, validity/2+rand.N(validity/4)) // then the master dies, at a random phase
		r.Wait(t, settle, "Master", lastIs(election.Master))
		won := r.Last().At
		earliest, latest := m.sent.Add(validity), m.recv.Add(validity)
		if won.Before(earliest) {
			t.Fatalf("run %d: the backup became master %v before the master's validity could have run out", i, earliest.Sub(won))
		}
		lag := won.Sub(latest)
		lags = append(lags, lag)
		if lag > bound {
			t.Errorf("run %d: master %v after the master's validity ran out, want at most %v", i, lag, bound)
		}
		if ttl, err := admin.TimeToLive(opCtx(t), m.id); err != nil || ttl.TTL != -1 {
			t.Errorf("run %d: the dead master's lease: TTL %v, %v; want gone", i, ttl, err)
		}
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(lags)
	t.Logf("takeover after the master's validity ran out: min %v, median %v, max %v", lags[0], lags[len(lags)/2], lags[len(lags)-1])
}

// A backup queued behind a candidate that does not lead yet follows that candidate's lease as soon
// as the candidates ahead of it go, not at its next recheck: a node restarted during a takeover
// (queued behind the dead master and its successor) takes over as fast from the successor.
func TestBackupFollowsTheLeaseOfANewHead(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	const validity, granted = time.Second, 2 * time.Second
	val := func(node string) string {
		return string(election.Candidate{Node: node, Priority: election.DefaultPriority, Preempt: true, Validity: validity}.Marshal())
	}
	dead := newFakeMasterTTL(t, admin, "head", granted, val("dead"))
	next := newFakeMasterTTL(t, admin, "head", granted, val("next"))
	r := expiryBackupTTL(t, srv, "head", validity)
	r.Wait(t, settle, "Backup", lastIs(election.Backup))
	waitQueued(t, admin, "head", 3)                            // the backup queued behind next, which does not lead
	if _, err := admin.Revoke(opCtx(t), dead.id); err != nil { // next leads now
		t.Fatal(err)
	}
	if err := next.renew(opCtx(t)); err != nil { // its last renewal: then it dies
		t.Fatal(err)
	}
	r.Wait(t, settle, "Master", lastIs(election.Master))
	won := r.Last().At
	if earliest := next.sent.Add(validity); won.Before(earliest) {
		t.Fatalf("the backup became master %v before the new head's validity could have run out", earliest.Sub(won))
	}
	// The recheck (once per granted TTL) would come up to a second later than this.
	if lag := won.Sub(next.recv.Add(validity)); lag > 150*time.Millisecond {
		t.Errorf("master %v after the new head's validity ran out, want at most 150ms", lag)
	}
}

// waitQueued waits until n candidates are queued in group.
func waitQueued(t *testing.T, admin *clientv3.Client, group string, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	wch := admin.Watch(ctx, etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix())
	for {
		r, err := admin.Get(ctx, etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatalf("waiting for %d candidates in %s: %v", n, group, err)
		}
		if r.Count >= n {
			return
		}
		select {
		case <-wch:
		case <-ctx.Done():
			t.Fatalf("%d candidates in %s, want %d", r.Count, group, n)
		}
	}
}

// A master with headroom (TTL 1s) answered past its deadline marks its key before it holds on: cut
// off until it lets go, then let through, it is master again in the same term and its key's mod
// revision moved (which voids a backup's early end prepared meanwhile). Cut off again, and its key
// deleted meanwhile (as a backup's early end does), it is never master again in that term, and no
// lease is left behind.
func TestLateAnsweredMasterMarksItsKey(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	a, p := proxied(t, srv, "late", "a")
	a.Wait(t, settle, "Master", lastIs(election.Master))
	term := a.Last().Term
	key, lease := candidateKey(t, admin, "late", "a")
	modRev := func() int64 {
		t.Helper()
		r, err := admin.Get(opCtx(t), key)
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("a's key: %v, %v", r, err)
		}
		return r.Kvs[0].ModRevision
	}
	before := modRev()

	p.Block()
	a.Wait(t, settle, "Fault past the deadline", lastIs(election.Fault))
	p.Unblock() // the lease (2s) is still alive
	a.Wait(t, settle, "Master again", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Master && l.Term == term
	})
	if after := modRev(); after <= before {
		t.Fatalf("a holds on after a late answer without marking its key (mod revision %d, was %d)", after, before)
	}

	p.Block()
	a.Wait(t, settle, "Fault past the deadline", func(st []electiontest.Stamped) bool {
		return st[len(st)-1].Role == election.Fault
	})
	if _, err := admin.Delete(opCtx(t), key); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	p.Unblock()
	a.Wait(t, settle, "Master in a new term", func(st []electiontest.Stamped) bool {
		l := st[len(st)-1]
		return l.Role == election.Master && l.Term > term
	})
	// Whichever saw the deletion first (the late answer's touch, or the master's watch on its key,
	// which requeues under the same lease), no lease is left behind: only the one of a's new key.
	_, now := candidateKey(t, admin, "late", "a")
	if ls, err := admin.Leases(opCtx(t)); err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != now {
		t.Errorf("leases %v (%v), want only a's current %x (the old was %x)", ls, err, now, lease)
	}
	for _, s := range a.States() {
		if s.Role == election.Master && s.Term == term && s.At.After(deleted) {
			t.Errorf("a master again in term %d at %v, after its key was deleted", term, s.At.Sub(deleted))
		}
	}
}
