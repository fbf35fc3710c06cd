// Package zk is the ZooKeeper election backend: an election.Elector built on ephemeral sequential
// znodes and predecessor watches (the ZooKeeper leader-election recipe), and an election.Observer of
// the published master record. It uses github.com/go-zookeeper/zk.
//
// # Znodes
//
//	<chroot>/hacoord                      persistent, shared by all groups
//	<chroot>/hacoord/<group>              persistent
//	<chroot>/hacoord/<group>/election     persistent; one child per candidate:
//	    _c_<guid>-n_<seq>                 ephemeral sequential, data = the JSON election.Candidate
//	                                      (node, address, priority, preempt, preempt_delay, since);
//	                                      an older hacoord wrote the bare node name (read as
//	                                      priority 100 with preemption)
//	<chroot>/hacoord/<group>/leader       ephemeral, owned by the master's session: the JSON
//	                                      election.Record (Record.Marshal)
//	<chroot>/hacoord/<group>/transfer     ephemeral, owned by the session of the master that
//	                                      made a planned move: the JSON election.Transfer
//	<chroot>/hacoord/<group>/released     ephemeral, left by a master that gave up after its
//	                                      demote; deleted by the next master's claim
//	<chroot>/hacoord/<group>/maintenance  persistent, created on first use; one child per node
//	    <node>                            in maintenance: ephemeral, its Candidate with
//	                                      maintenance set (for status)
//
// The candidate with the lowest sequence number is master; every other candidate watches only the
// candidate just before it (no herd effect when the master goes). The term, the fencing token, is
// the czxid of the master's candidate znode: a new master's candidate was always created after the
// previous master's, so terms strictly increase.
//
// Candidates are created in the protected form (the "_c_<guid>-" prefix of go-zookeeper's
// CreateProtectedEphemeralSequential and of Curator): when a create's reply is lost with the
// connection, the elector looks for its GUID among the children before creating again, so a create
// that succeeded is found, not duplicated. It does this itself because the library's version gives
// up, and forgets the GUID, when the connection is still down the moment it looks.
//
// # Priorities and planned moves
//
// keepalived's priority rules (election.Candidate) are applied at the two places where the queue
// decides: the head and the master. A candidate that reaches the head (it heard its predecessor's
// delete at once, through its watch) reads the others' values and the transfer record. It becomes
// master unless another queued candidate has a higher priority, or an active transfer names
// another node: then it defers, deleting its candidate and creating a new one at the back in one
// multi-op, so the next candidate hears of it at once. While a transfer's target is not queued
// (it died after the transfer was made) the head holds back, watching the queue, until the
// target comes or the transfer runs out; then a normal election runs.
//
// The master watches the queue (a children watch) and the others' values (a data watch on each:
// SetPriority re-publishes a value in place, keeping its place in the queue). When a candidate of
// higher priority with preemption has been queued for its preempt_delay, the master hands over by a
// planned move: it writes the transfer record naming that candidate, demotes (Outbox.WaitActed:
// the VIPs are gone), deletes its candidate and master record in one multi-op, and rejoins at the
// back. Resign and Transfer are the same move on an operator's request (Resign names the best other
// candidate); the node that moved away then publishes no preemption until it is master again, so
// it does not take mastership straight back. The target deletes the transfer record once master.
//
// A master that gives up on purpose (a planned move, a withdrawal, a yield) creates the released
// marker in the multi-op that deletes its znodes, after its demote; every master's claim creates
// the master record and deletes the marker in one multi-op. A claim that deleted a marker follows
// a master that had let go of the VIPs, with no master between: it reports State.Handover, and
// the VIP action skips the conflict probe. After a crash or an expiry there is no marker (it goes
// with its session).
// A planned move costs the target one notification and a few pipelined round trips after the
// old master's VIPs are gone. Terms still rise: every master's candidate was created after the
// previous master's.
//
// SetMaintenance(true) withdraws the candidacy as SetEligible(false) does, after a planned move to
// the best other candidate when the node is master, and publishes the maintenance znode while it
// lasts. Observer.Candidates (election.Lister) reads all of this for `hacoord status` from any
// machine, in a short session of its own.
//
// # The master record
//
// The master creates the leader znode after winning and deletes it together with its candidate (one
// multi-op) when it resigns. If the znode is already there when it wins:
//   - owned by its own session (a retry after a lost reply, or a previous term): overwritten;
//   - persistent (EphemeralOwner 0: hacoord never writes one, so someone else did): logged with its
//     content and replaced;
//   - owned by another live session: that may be a master that has not noticed it lost (a hacoord
//     master lets go by its deadline, or its session expires), so the winner waits, and reports
//     Backup, for one negotiated session timeout; if the znode is still there it is logged as stuck
//     and replaced.
//
// # Sessions and self-fencing
//
// go-zookeeper reports an expired session only after it reconnects, and drops session events when
// its channel is full. The elector therefore takes session events through the event callback, reads
// the negotiated session timeout off every connect response (and uses the smallest ever granted),
// and keeps its own deadline: every quarter of the timeout it makes a liveness round trip (a Sync,
// which a follower must pass to the leader, then an Exists on its candidate znode), and a master
// reports a new Master State with ValidUntil = fencing.Deadline(anchor, timeout, Margin). The
// anchor is the dial time of the last (re)connection, which the leader validates, or the send time
// of an earlier answered round trip (see liveness.anchor for why not the latest). These round
// trips keep the session alive too, so go-zookeeper's own pings (every third of the timeout) are
// held back while they run (wireConn.Write): a ping would only touch the session after the last
// round trip and so make the server expire a crashed master's session later.
//
// A store fault is not a failover. While the ensemble does not answer (its leader died or is cut
// off, the connected server is silent) ValidUntil stops moving; the Coordinator fences at the
// deadline and the elector reports Fault, but it keeps its session and its candidate znode. A
// request left unanswered for a sixth of the session makes it drop the connection, so that
// go-zookeeper reconnects to another server at once (see stallGuard), skipping servers that were
// silent and pausing a twentieth of the session between rounds (see hostProvider). Once the
// session is back, on any server, the elector re-reads the election and arms its watches afresh,
// and if its candidate still leads it reports Master again with the same term. Only an expired
// session starts a new campaign (Fault, close, a new session with backoff). Timing documents the
// figures and when a session rides out a leader election of the ensemble.
//
// A dead master's session ends when the ensemble's leader expires it. Sessions expire in buckets of
// one tickTime (ZooKeeper's ExpiryQueue rounds each deadline up to the next tick), so at most a tick
// after the negotiated timeout: there is no scan lag to cut as etcd's lessor has (see the etcd
// backend's expiry.go), and no client can read another session's remaining time anyway. A dead
// daemon's fence guard, told of every session (OnSession), closes it at once (CloseSession).
//
// The candidate and master znodes are deleted only on purpose (stop, Yield, SetEligible(false)), and
// while the node is master only after the consumer has acted on its non-Master State. A delete that
// fails is retried until it succeeds or the session ends.
//
// # ACLs
//
// With Config.Auth ("user:password", the digest scheme), the group's znodes get
// digest:user:<hash> ALL plus world:anyone READ: anyone can watch the master record, only this
// identity can join, change or delete. /hacoord and the chroot's elements, shared with other groups,
// also give world CREATE, so other identities can add their own groups. Without Auth every znode is
// world:anyone ALL. A NoAuth answer (a group created by another identity, wrong password) makes Run
// return an error that names the znode and the identity.
package zk

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
)

// Elector is an election.Elector over ZooKeeper, also an election.Yielder, Eligibility,
// Prioritizer, Resigner, Transferer and Maintainer. Run may be called once; the other methods are
// safe from any goroutine.
type Elector struct {
	cfg     Config
	log     *zap.Logger
	servers []string
	paths   paths
	acls    acls

	started  atomic.Bool
	eligible atomic.Bool
	yieldc   chan struct{} // cap 1
	eligc    chan struct{} // cap 1

	priority atomic.Int32    // effective priority (SetPriority)
	maint    atomic.Bool     // maintenance on (SetMaintenance)
	holdBack atomic.Bool     // after Resign/Transfer: publish no preemption until master again
	isMaster atomic.Bool     // a session reports Master (Resign's quick ErrNotMaster)
	prioc    chan struct{}   // cap 1: priority or maintenance changed
	reqc     chan plannedReq // Resign and Transfer, served by the session's loop

	recVIPs election.RecordVIPs // SetRecordVIPs (recordvips.go); none set: cfg.Record.VIPs

	onSession func(id int64, passwd []byte) // OnSession's f; nil: none

	// wrap, when set (only by tests, export_test.go), wraps each session's connection, to inject
	// faults.
	wrap func(c conn, s *session) conn
}

var (
	_ election.Elector     = (*Elector)(nil)
	_ election.Yielder     = (*Elector)(nil)
	_ election.Eligibility = (*Elector)(nil)
)

// New validates cfg (zero durations take DefaultConfig's values) and returns an Elector. It starts
// nothing. log may be nil.
func New(cfg Config, log *zap.Logger) (*Elector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	servers, chroot, _ := parseServers(cfg.Servers)
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Record.Group, cfg.Record.Node = cfg.Group, cfg.Name
	e := &Elector{
		cfg:     cfg,
		log:     log.With(zap.String("group", cfg.Group), zap.String("node", cfg.Name)),
		servers: servers,
		paths:   newPaths(chroot, cfg.Group),
		acls:    newACLs(cfg.Auth),
		yieldc:  make(chan struct{}, 1),
		eligc:   make(chan struct{}, 1),
		prioc:   make(chan struct{}, 1),
		reqc:    make(chan plannedReq),
	}
	e.eligible.Store(true)
	e.priority.Store(int32(cfg.Priority))
	return e, nil
}

// Yield makes a master resign and rejoin the election at the back, after a backoff that doubles
// with every yield in a row, so another candidate, if any, becomes master at once. A backup ignores
// it.
func (e *Elector) Yield() {
	select {
	case e.yieldc <- struct{}{}:
	default:
	}
}

// OnSession makes the elector call f with the id and password of every session it opens, before it
// campaigns in it; a fence guard closes the session it heard of last when the daemon dies
// (CloseSession), which deletes the dead daemon's znodes at once (a session the daemon closed
// itself is gone: closing it again does nothing). Call
// it before Run; f is called on Run's goroutine and delays the campaign while it runs.
func (e *Elector) OnSession(f func(id int64, passwd []byte)) { e.onSession = f }

// SetEligible(false) withdraws the candidacy: a master resigns, and the node reports Backup (reason
// "ineligible", naming whoever is master, as the conformance suite expects); SetEligible(true)
// campaigns again.
func (e *Elector) SetEligible(ok bool) {
	if e.eligible.Swap(ok) != ok {
		select {
		case e.eligc <- struct{}{}:
		default:
		}
	}
}

// Run campaigns until ctx is done, then resigns (deletes its znodes and closes the session; if
// ZooKeeper does not answer within Config.ResignTimeout the session is closed regardless, which
// removes them too), reports Backup and returns nil. It reports Fault and keeps retrying, with
// backoff, while no session can be had. It returns an error only for what retrying cannot fix: the
// ensemble denies this identity (NoAuth) or rejects its credentials.
func (e *Elector) Run(ctx context.Context, out *election.Outbox) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("zk: Elector.Run called twice")
	}
	rep := newReporter(out)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		rep.run(gctx)
		return nil
	})
	g.Go(func() error { return e.campaign(gctx, rep) })
	err := g.Wait()

	final := election.State{Role: election.Backup, Reason: "stopped"}
	if err != nil {
		final = election.State{Role: election.Fault, Reason: err.Error()}
	}
	if last := rep.last(); last.Leader.Node != e.cfg.Name && last.Role != election.Master {
		final.Term, final.Leader = last.Term, last.Leader
	}
	rep.set(final)
	return err
}

// campaign runs sessions one after another until ctx is done or a permanent error.
func (e *Elector) campaign(ctx context.Context, rep *reporter) error {
	bo := newBackoff(e.cfg.Backoff)
	var tm *Timing // learnt with the first session
	for {
		s, err := e.open(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isPermanent(err) {
				e.log.Error("giving up", zap.Error(err))
				return err
			}
			e.log.Warn("no ZooKeeper session; retrying", zap.Strings("servers", e.servers), zap.Error(err))
			rep.set(e.fault(rep, "no ZooKeeper session: "+err.Error()))
			if !sleep(ctx, bo.next()) {
				return nil
			}
			continue
		}
		if tm == nil {
			tm = e.learnTiming(ctx, s)
		}
		if e.onSession != nil {
			e.onSession(s.id, s.passwd)
		}
		start := time.Now()
		err = e.serveSession(ctx, s, rep, tm.Tick)
		if ctx.Err() != nil {
			return nil
		}
		if isPermanent(err) {
			e.log.Error("giving up", zap.Error(err))
			return err
		}
		if time.Since(start) > s.timeout() {
			bo.reset()
		}
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
}

// open dials a session and makes sure the election's path exists.
func (e *Elector) open(ctx context.Context) (*session, error) {
	s, err := dial(ctx, e.cfg, e.servers, e.log, true)
	if err != nil {
		return nil, err
	}
	if e.wrap != nil {
		s.conn = e.wrap(s.conn, s)
	}
	if err := ensurePath(s.conn, e.paths, e.acls, e.cfg.Auth); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// serveSession campaigns within s until ctx is done or the session is lost, and closes it.
func (e *Elector) serveSession(ctx context.Context, s *session, rep *reporter, tick time.Duration) error {
	stopWatch := closeOnDone(ctx, s, e.cfg.ResignTimeout, s.log)
	err := newSessionRun(e, s, s.conn, rep, tick).serve(ctx)
	e.isMaster.Store(false)
	if ctx.Err() == nil && !isPermanent(err) {
		// Demote first, then tidy up: closing the connection of an expired session makes
		// go-zookeeper wait up to 1s for a close request that can no longer be sent.
		e.log.Warn("session lost; starting a new one", zap.Error(err))
		rep.set(e.fault(rep, err.Error()))
	}
	stopWatch()
	s.close()
	return err
}

// fault is a Fault State keeping the last known leader unless that was us.
func (e *Elector) fault(rep *reporter, reason string) election.State {
	st := election.State{Role: election.Fault, Reason: reason}
	if last := rep.last(); last.Role != election.Master && last.Leader.Node != e.cfg.Name {
		st.Term, st.Leader = last.Term, last.Leader
	}
	return st
}

// learnTiming reads the ensemble's timing from the server s is on (best effort: the conf word may
// not be allowed) and logs it, warning when the session is too short to ride out a leader election
// of the ensemble.
func (e *Elector) learnTiming(ctx context.Context, s *session) *Timing {
	margin, _ := marginFor(e.cfg.Margin, s.timeout())
	tm := &Timing{Session: s.timeout(), Margin: margin}
	cctx, cancel := context.WithTimeout(ctx, min(time.Second, s.timeout()/4))
	err := readConf(cctx, s.server(), tm)
	cancel()
	fields := []zap.Field{zap.Duration("session-timeout", tm.Session), zap.Duration("margin", tm.Margin),
		zap.Duration("renewal", tm.Renewal()), zap.Duration("stall", tm.Stall()),
		zap.Duration("worst-validity", tm.WorstValidity())}
	if err != nil {
		e.log.Info("ZooKeeper timing (the ensemble's tickTime is unknown)", append(fields, zap.Error(err))...)
		return tm
	}
	fields = append(fields, zap.Duration("tick", tm.Tick), zap.Duration("min-session", tm.MinSession),
		zap.Duration("max-session", tm.MaxSession), zap.Int("init-limit", tm.InitLimit), zap.Int("sync-limit", tm.SyncLimit))
	switch {
	case tm.SyncLimit == 0:
		e.log.Info("ZooKeeper timing (standalone server)", fields...)
	case tm.RidesOut():
		e.log.Info("ZooKeeper timing", append(fields, zap.Duration("store-outage", tm.StoreOutage()))...)
	default:
		e.log.Warn("the session timeout is too short to ride out a leader election of the ensemble: the master will let go of the VIPs when the ZooKeeper leader fails",
			append(fields, zap.Duration("store-outage", tm.StoreOutage()), zap.Duration("rides-out-from", tm.RideOut(e.cfg.Margin)))...)
	}
	return tm
}
