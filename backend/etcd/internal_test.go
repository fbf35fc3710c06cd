package etcd

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// Which errors move the client to the next endpoint: the member could not serve the request; not
// the store's own answers and not the caller's cancellation.
func TestMemberTrouble(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{context.Canceled, false},
		{rpctypes.ErrGRPCNoLeader, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{rpctypes.ErrLeaderChanged, true},
		{status.Error(codes.Unavailable, "connection refused"), true},
		{status.Error(codes.Unknown, errNotPrimary), true},
		{rpctypes.ErrLeaseNotFound, false},
		{rpctypes.ErrCompacted, false},
		{rpctypes.ErrPermissionDenied, false},
		{errors.New("something else"), false},
	} {
		if got := memberTrouble(tc.err); got != tc.want {
			t.Errorf("memberTrouble(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The master record is written in a transaction guarded by the writer's election key (its create
// revision): a node whose key is gone (deleted, its term over) while its lease lives on cannot
// overwrite its successor's record, neither by writing it nor by confirming its term.
func TestDeposedMasterCannotOverwriteRecord(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Group, cfg.TTL, cfg.DialTimeout = srv.Endpoints(), "guard", time.Second, time.Second
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	// The deposed node: its lease alive, its key deleted (its term is over).
	old := cfg
	old.Name = "old"
	oe, err := New(old, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lresp, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	l := &lease{id: lresp.ID, ttl: 30 * time.Second, renewed: make(chan struct{}, 1)}
	stale := &term{e: oe, c: wrap(cli, time.Second, oe.log), l: l, log: oe.log}
	stale.key = ElectionPrefix("guard") + "/old"
	put, err := cli.Put(ctx, stale.key, "old", clientv3.WithLease(l.id))
	if err != nil {
		t.Fatal(err)
	}
	stale.rev = put.Header.Revision
	if _, err := cli.Delete(ctx, stale.key); err != nil {
		t.Fatal(err)
	}

	// Its successor is elected and writes its record.
	next := cfg
	next.Name = "next"
	ne, err := New(next, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := electiontest.Start(t, "next", electiontest.Candidate{Elector: ne})
	r.Wait(t, 15*time.Second, "Master", func(st []electiontest.Stamped) bool {
		return st[len(st)-1].Role == election.Master
	})
	want := r.Last().Leader

	rec := election.Record{Group: "guard", Node: "old", Term: uint64(stale.rev)}
	if _, err := stale.writeRecord(ctx, rec); !errors.Is(err, errKeyGone) {
		t.Errorf("deposed writeRecord = %v, want errKeyGone", err)
	}
	stale.rev = put.Header.Revision
	if err := stale.confirm(ctx, rec); !errors.Is(err, errKeyDeleted) {
		t.Errorf("deposed confirm = %v, want errKeyDeleted", err)
	}
	got, err := cli.Get(ctx, LeaderKey("guard"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 {
		t.Fatalf("%d master records, want the successor's", len(got.Kvs))
	}
	rr, err := election.ParseRecord(got.Kvs[0].Value)
	if err != nil || rr.Node != want.Node || rr.Term != want.Term || clientv3.LeaseID(got.Kvs[0].Lease) == l.id {
		t.Fatalf("master record %+v (lease %x, err %v), want %s's term %d", rr, got.Kvs[0].Lease, err, want.Node, want.Term)
	}
}

// A watch follows the endpoint: one started before a move ends at the move, and one started after
// it runs on the new member, even though the old member went silent (clientv3 would otherwise add
// it to the old member's stream, which hangs).
func TestWatchFollowsTheEndpoint(t *testing.T) {
	fc := followerFirst(t, "follow")
	c, f, admin, cn := fc.c, fc.f, fc.admin, fc.cn
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ep, old, stopOld := cn.watch(ctx, "k")
	defer stopOld()
	put1, err := admin.Put(ctx, "k", "1")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-old:
	case <-time.After(5 * time.Second):
		t.Fatal("no event on the first endpoint")
	}
	c.Cut(f)
	defer c.Heal(f)
	if !cn.move(ep, errors.New("test"), 0) {
		t.Fatal("did not move")
	}
	// At once, while the old stream may still be closing. From after the first put: the new member
	// may not have applied it yet, and a watch from its current revision would report it.
	_, fresh, stopFresh := cn.watch(ctx, "k", clientv3.WithRev(put1.Header.Revision+1))
	defer stopFresh()
	ended := time.After(time.Second)
	for open := true; open; {
		select {
		case _, open = <-old:
		case <-ended:
			t.Fatal("the watch on the old endpoint did not end at the move")
		}
	}
	if _, err := admin.Put(ctx, "k", "2"); err != nil {
		t.Fatal(err)
	}
	// The member the watch moved to may apply the put of 1 only after the watch started (it
	// lags the leader by a moment), so that event may come first; the put of 2 must follow.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case wr, ok := <-fresh:
			if !ok {
				t.Fatal("the watch after the move ended")
			}
			for _, ev := range wr.Events {
				if string(ev.Kv.Value) == "2" {
					return
				}
			}
		case <-deadline:
			t.Fatal("a watch started after the move never saw the put of 2: it went to the silent member")
		}
	}
}

// The expiry rule on whole-second readings (expiry.go): when to read next, and which second
// reading proves a lease expired.
func TestExpiryRule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rd := func(sent, recv int, ttl int64) reading {
		return reading{sent: at(sent), recv: at(recv), ttl: ttl, granted: 3}
	}
	for _, tc := range []struct {
		r    reading
		want time.Time
	}{
		{rd(0, 5, 2), at(1000)}, // 2s or more left: under a second no sooner than 1s later
		{rd(0, 5, 5), at(4000)},
		{rd(0, 5, 1), at(50)}, // under 2s left: read every fastReading
	} {
		if got := nextReading(tc.r); !got.Equal(tc.want) {
			t.Errorf("nextReading(TTL %d) = %v after the send, want %v", tc.r.ttl, got.Sub(t0), tc.want.Sub(t0))
		}
	}
	zero := rd(0, 5, 0) // under a second left at some instant in [0, 5ms]: expires before 1005ms
	for _, tc := range []struct {
		name string
		f    reading
		want bool
	}{
		{"a second after the first answer, still zero", rd(1015, 1020, 0), true},
		{"too early: the lease may have time left", rd(1000, 1005, 0), false},
		{"renewed in between", rd(1015, 1020, 2), false},
		{"gone", rd(1015, 1020, -1), false},
		// Answered 2s (G-1) after the first was sent: a renewal just after the first reading would
		// have run down to under a second by now, unseen.
		{"answered too late to exclude a renewal", rd(1015, 2000, 0), false},
	} {
		if got := confirms(zero, tc.f); got != tc.want {
			t.Errorf("%s: confirms = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRenewerKeepsOneStream: the renewer sends every keepalive of a lease on one stream while it
// answers; a member that goes silent fails the renewal within its timeout and moves the conn on,
// and the next renewal opens a stream on the next member; a revoked lease is ErrLeaseNotFound.
func TestRenewerKeepsOneStream(t *testing.T) {
	fc := followerFirst(t, "renew")
	c, eps, f, admin, cn, cfg := fc.c, fc.eps, fc.f, fc.admin, fc.cn, fc.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := admin.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	r := &renewer{c: cn, id: g.ID, pause: cfg.RetryMin}
	defer r.Close()
	renew := func(timeout time.Duration) {
		t.Helper()
		ttl, err := r.renew(ctx, timeout)
		if err != nil || ttl != 5*time.Second {
			t.Fatalf("renew = %v, %v; want 5s", ttl, err)
		}
	}
	renew(5 * time.Second)
	if r.rev <= 0 {
		t.Fatalf("keepalive answer reported store revision %d; want the store's (recheck paces reads by it)", r.rev)
	}
	first := r.s
	for range 5 {
		renew(time.Second)
	}
	if r.s != first || first.ep != eps[0] {
		t.Fatalf("stream %p after 6 renewals; want the first one, %p, on %s", r.s, first, eps[0])
	}

	c.Cut(f)
	defer c.Heal(f)
	start := time.Now()
	if _, err := r.renew(ctx, 300*time.Millisecond); err == nil || !memberTrouble(err) {
		t.Fatalf("renew on a silent member = %v; want member trouble", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("renew on a silent member took %v; want its timeout, 300ms", took)
	}
	if ep, _ := cn.current(); ep == eps[0] || r.s != nil {
		t.Fatalf("after the failure: endpoint %s, stream %p; want the next endpoint, no stream", ep, r.s)
	}
	renew(5 * time.Second)
	if ep, _ := cn.current(); r.s == nil || r.s.ep != ep || ep == eps[0] {
		t.Fatalf("renewed on %v; want a new stream on %s", r.s, ep)
	}

	if _, err := admin.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.renew(ctx, 5*time.Second); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("renew of a revoked lease = %v; want ErrLeaseNotFound", err)
	}
}

// followerCase is a 3-member cluster whose follower f comes first in the conn's endpoints (eps),
// so that cutting f leaves the store running; an admin client on the other two members, for
// writes while f is cut; and the conn, dialled for group.
type followerCase struct {
	c     *etcdtest.Cluster
	eps   []string
	f     int
	admin *clientv3.Client
	cfg   Config
	cn    *conn
}

func followerFirst(t *testing.T, group string) followerCase {
	t.Helper()
	c := etcdtest.StartCluster(t, 3)
	eps := c.Endpoints()
	f := (c.WaitLeader() + 1) % 3
	eps = append(eps[f:], eps[:f]...)
	admin, err := clientv3.New(clientv3.Config{Endpoints: eps[1:], DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Group, cfg.Name = eps, group, "n"
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	cn, err := dial(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cn.Close)
	return followerCase{c, eps, f, admin, cfg, cn}
}

// A master answered past its deadline marks its key (touch) before holding on, and that voids an
// early end the backup prepared before the mark: the backup deletes the key only at the mod
// revision it read before the readings. Without the mark the same reading ends the term: key and
// lease gone, and the master's next touch says so (errLeaseLapsed).
func TestMarkedKeyVoidsAnEarlyEnd(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Group, cfg.TTL, cfg.DialTimeout, cfg.Name = srv.Endpoints(), "mark", time.Second, time.Second, "m"
	me, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	g, err := cli.Grant(ctx, 2) // TTL 1s + headroom
	if err != nil {
		t.Fatal(err)
	}
	l := &lease{id: g.ID, ttl: 2 * time.Second, validity: time.Second, renewed: make(chan struct{}, 1)}
	c := wrap(cli, time.Second, me.log)
	key := me.keyOf(l)
	val := election.Candidate{Node: "m", Priority: election.DefaultPriority, Validity: time.Second}.Marshal()
	// Not queued yet: nothing a backup could end, so a late answer holds on.
	if err := me.touch(ctx, c, l, me.log); err != nil {
		t.Fatalf("touch without an election key = %v, want nil", err)
	}
	put, err := cli.Put(ctx, key, string(val), clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	l.keyRev.Store(put.Header.Revision) // queued
	bcfg := cfg
	bcfg.Name = "b"
	be, err := New(bcfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	w := &leaseWatch{t: &term{e: be, c: c, log: be.log}, key: key, id: g.ID, validity: time.Second}
	runShort := func() {
		t.Helper()
		for {
			r, err := cli.TimeToLive(ctx, g.ID)
			if err != nil || r.TTL < 0 {
				t.Fatalf("lease: %v, %v", r, err)
			}
			if r.TTL == 0 {
				return // under a second left: no renewal for over the validity
			}
			select {
			case <-ctx.Done():
				t.Fatal("the lease never ran short")
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	exists := func() bool {
		t.Helper()
		r, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Kvs) == 1
	}

	if next, reread := w.step(ctx); reread || next.IsZero() || !w.pre {
		t.Fatalf("live lease: step = %v, %v (read before: %v); want a next reading", next, reread, w.pre)
	}
	runShort()
	// The master is answered now, past its deadline, and marks its key before the backup acts.
	if _, err := cli.KeepAliveOnce(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if err := me.touch(ctx, c, l, me.log); err != nil {
		t.Fatalf("touch of a live key = %v", err)
	}
	runShort()
	if next, reread := w.step(ctx); reread || next.IsZero() {
		t.Fatalf("step = %v, %v after a voided early end; want another reading", next, reread)
	}
	if !exists() {
		t.Fatal("the backup deleted a key its master marked after the backup's read: an early end not voided")
	}
	// Not marked since the backup's last read: the next reading ends the term.
	for i := 0; exists(); i++ {
		if i > 100 {
			t.Fatal("the backup never ended the lease of a master silent past its validity")
		}
		w.step(ctx)
		if exists() {
			runShort()
		}
	}
	if r, err := cli.TimeToLive(ctx, g.ID); err != nil || r.TTL != -1 {
		t.Errorf("the ended master's lease: %v, %v; want revoked", r, err)
	}
	if err := me.touch(ctx, c, l, me.log); !errors.Is(err, errLeaseLapsed) {
		t.Errorf("touch after the backup ended the term = %v, want errLeaseLapsed", err)
	}
}
