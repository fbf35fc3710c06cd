package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
)

// Elector campaigns for mastership of one group in etcd. It implements election.Elector,
// election.Yielder, election.Eligibility, election.Prioritizer, election.Resigner,
// election.Transferer and election.Maintainer (planned.go). Run may be called once; the other
// methods are safe from any goroutine, before or during Run.
//
// One lease carries the candidacy for as long as the store keeps it: store trouble (a leader
// election, a dead or silent member, a quorum loss, broken watches) costs a master its VIPs for as
// long as its deadline cannot be renewed, never its term. Only the store's answer that the lease is
// gone starts a new campaign with a new lease, and only giving up on purpose (Run's end, Yield,
// SetEligible(false)) resigns or revokes.
type Elector struct {
	cfg       Config
	log       *zap.Logger
	prefix    string
	leaderKey string

	ran      atomic.Bool
	yield    atomic.Bool
	eligible atomic.Bool
	maint    atomic.Bool          // SetMaintenance
	prio     atomic.Int64         // SetPriority: the effective priority published
	kick     chan struct{}        // cap 1: yield, eligibility, maintenance or priority changed
	reqs     chan request         // Resign and Transfer, for the master loop
	conn     atomic.Pointer[conn] // Run's connection, for Transfer's read of the queue

	recVIPs election.RecordVIPs // SetRecordVIPs (record.go); none set: cfg.Record.VIPs

	box     *election.Outbox // Run's out
	onLease func(id int64)   // OnLease's f; nil: none
	minTTL  time.Duration    // the store's shortest TTL, once learnt (Run's goroutine only)
	leases  int              // leases granted so far (Run's goroutine only)

	mu  sync.Mutex
	rep standing // what the non-Master States are made of
}

// standing is what the elector reports while it is not master (guarded by Elector.mu).
type standing struct {
	mastering   bool            // a term's master loop owns the State
	unreachable bool            // no lease yet, or its renewals are overdue
	reason      string          // why this node is not master
	observed    election.Record // the master record last seen
	ownTerm     uint64          // the last term this node held
}

// New validates cfg and returns an Elector. It starts nothing; Run does. log may be nil.
func New(cfg Config, log *zap.Logger) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	e := &Elector{
		cfg:       cfg,
		log:       log.Named("etcd").With(zap.String("group", cfg.Group), zap.String("node", cfg.Name)),
		prefix:    ElectionPrefix(cfg.Group),
		leaderKey: LeaderKey(cfg.Group),
		kick:      make(chan struct{}, 1),
		reqs:      make(chan request),
		rep:       standing{unreachable: true},
	}
	e.eligible.Store(true)
	if cfg.Priority == 0 {
		cfg.Priority = election.DefaultPriority
	}
	e.prio.Store(int64(cfg.Priority))
	return e, nil
}

// Yield makes a master resign and campaign again after a pause (RetryMin, doubling with every yield
// in a row up to RetryMax), so another candidate, if any, becomes master. It does nothing on a node
// that is not master.
func (e *Elector) Yield() {
	e.yield.Store(true)
	e.poke()
}

// SetEligible withdraws (false: a master resigns, a candidate deletes its election key) or restores
// (true) this node's candidacy. The lease stays either way.
func (e *Elector) SetEligible(ok bool) {
	if e.eligible.Swap(ok) != ok {
		e.poke()
	}
}

// OnLease makes the elector call f with the ID of every lease it is granted, before it campaigns
// under it, and with 0 once it has revoked its lease on the way out; a fence guard revokes the lease
// it heard of last when the daemon dies (RevokeLease). Call it before Run; f is called on Run's
// goroutine and delays the campaign while it runs.
func (e *Elector) OnLease(f func(id int64)) { e.onLease = f }

func (e *Elector) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run campaigns until ctx is done; see election.Elector. It reports Fault while etcd cannot be
// reached (retrying with backoff), and returns a *TTLError when etcd grants another TTL than
// Config.TTL. On return it has offered a final non-Master State and revoked its lease (retried for
// at most one TTL: the lease expires by then anyway).
func (e *Elector) Run(ctx context.Context, out *election.Outbox) error {
	if !e.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("etcd: elector %s/%s: Run called twice", e.cfg.Group, e.cfg.Name)
	}
	e.box = out
	c, err := dial(e.cfg, e.log)
	if err != nil {
		err = fmt.Errorf("etcd: client for %v: %w", e.cfg.Endpoints, err)
		e.offerFault(err.Error())
		return err
	}
	defer c.Close()
	e.conn.Store(c)
	defer e.conn.Store(nil)

	hctx, stopHelpers := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error { c.watchState(hctx); return nil })
	g.Go(func() error {
		observeLeader(hctx, c, e.leaderKey, e.cfg.KeepaliveInterval, e.cfg, e.log, e.setLeader)
		return nil
	})
	err = e.loop(ctx, c)
	stopHelpers()
	_ = g.Wait()

	if err != nil {
		e.offerFault(err.Error())
	} else {
		e.offerBackup("stopped")
	}
	e.log.Info("elector stopped", zap.Error(err))
	return err
}

// loop runs one lease after another until ctx is done, backing off while etcd cannot be reached.
func (e *Elector) loop(ctx context.Context, c *conn) error {
	learnt := false
	for failures := 0; ; {
		if !learnt {
			learnt = e.learnTiming(ctx, c)
		}
		l, err := e.grant(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		var ttlErr *TTLError
		if errors.As(err, &ttlErr) {
			return err
		}
		if cerr := credentialsError(err); cerr != nil {
			return fmt.Errorf("etcd: %v: %w", e.cfg.Endpoints, cerr) // retrying cannot cure it
		}
		if err != nil && failures == 0 {
			if cerr := probeTLS(ctx, e.cfg); cerr != nil { // a timeout that hides a refused certificate
				return fmt.Errorf("etcd: %v: %w", e.cfg.Endpoints, cerr)
			}
		}
		if err != nil {
			failures++
			wait := backoff(e.cfg, failures)
			if failures == 1 {
				e.log.Warn("etcd unavailable, retrying", zap.Strings("endpoints", e.cfg.Endpoints), zap.Error(err))
			}
			e.setReachable(false)
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		}
		failures = 0
		e.setReachable(true)
		if e.onLease != nil {
			e.onLease(int64(l.id))
		}
		if err := e.session(ctx, c, l); err != nil {
			e.log.Info("campaigning again with a new lease", zap.Error(err))
		}
		if !sleep(ctx, backoff(e.cfg, 1)) {
			return nil
		}
	}
}

// session runs the candidacy of lease l until the store says it is gone (errLeaseLost) or ctx is
// done (nil: the lease is revoked).
func (e *Elector) session(ctx context.Context, c *conn, l *lease) error {
	log := e.log.With(zap.String("lease", fmt.Sprintf("%x", int64(l.id))))
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := e.keepalive(sctx, c, l, log); err != nil {
			cancel(err)
		}
	}()
	t := &term{e: e, c: c, l: l, log: log, key: e.keyOf(l)}
	t.pubPrio.Store(-1)
	err := t.serve(sctx)
	if ctx.Err() != nil {
		// Stopping: the consumer has demoted; say so, then let go of the lease.
		e.offerBackup("stopped")
		cancel(nil)
		wg.Wait()
		e.revoke(c, l, log)
		return nil
	}
	cancel(nil)
	wg.Wait()
	e.offerBackup(err.Error())
	if errors.Is(err, errLeaseLapsed) {
		e.revoke(c, l, log) // alive in the store, but not to be held again: do not leave it behind
	}
	return err
}

// learnTiming learns the store's timing once (see Timing) and warns when the TTL cannot ride out a
// store leader change. It reports whether it could.
func (e *Elector) learnTiming(ctx context.Context, c *conn) bool {
	var tm Timing
	err := c.do(ctx, e.cfg.DialTimeout, func(ctx context.Context, cli *clientv3.Client) (err error) {
		tm, err = LearnTiming(ctx, cli)
		return err
	})
	if err != nil {
		return false
	}
	e.minTTL = tm.MinTTL
	if e.cfg.TTL < tm.MinTTL && e.leases > 0 {
		e.log.Error("lease ttl below the store's minimum lease TTL: the master lets go of the VIPs at every store leader change; configure ttl >= min-ttl",
			zap.Duration("ttl", e.cfg.TTL), zap.Duration("min-ttl", tm.MinTTL))
	}
	if e.cfg.StoreElectionTimeout > 0 {
		tm.ElectionTimeout = e.cfg.StoreElectionTimeout
	}
	fields := []zap.Field{zap.Duration("ttl", e.cfg.TTL), zap.Duration("min-ttl", tm.MinTTL),
		zap.Duration("election-timeout", tm.ElectionTimeout), zap.Duration("leader-change", tm.LeaderChange()),
		zap.Duration("ride-out-ttl", tm.RideOutTTL())}
	if e.cfg.TTL >= tm.MinTTL && !tm.RidesOut(e.cfg.TTL, e.cfg.Margin, e.cfg.KeepaliveInterval) {
		e.log.Warn("lease ttl too short to ride out an etcd leader change: the master will let go of the VIPs "+
			"for a moment when the store's leader fails (it keeps its term); ride-out-ttl would not", fields...)
	} else {
		e.log.Info("etcd timing", fields...)
	}
	return true
}

// term is one lease's candidacy: campaign, serve as master, give up on purpose and campaign again,
// until the lease is lost or Run's ctx ends. Only serve's goroutine touches it.
type term struct {
	e   *Elector
	c   *conn
	l   *lease
	log *zap.Logger
	key string // this lease's election key: <prefix>/<lease id in hex>
	rev int64  // its create revision; 0 while it does not exist

	yields      int       // yields in a row: each doubles the wait before campaigning again
	masterSince time.Time // when this node last became master

	since    time.Time    // when this lease's key was first queued (Candidate.Since)
	pubPrio  atomic.Int64 // the priority published in the key's value; -1: unknown (the master's follow writes it too)
	maintPub bool         // the maintenance key is published
	view     view         // the queue as queue read it last
}

// serve campaigns and serves as master until ctx ends; it returns ctx's cause.
func (t *term) serve(ctx context.Context) error {
	e := t.e
	for {
		if err := t.waitEligible(ctx); err != nil {
			return err
		}
		if t.yields > 0 {
			// Yielded: let the other candidates go first (they may still be starting up),
			// waiting longer after every yield in a row.
			d := min(e.cfg.RetryMin<<min(t.yields-1, 10), e.cfg.RetryMax)
			if err := t.pause(ctx, d, nil); err != nil && !errors.Is(err, errIneligible) {
				return err
			}
		}
		e.offerBackup("campaigning")
		e.yield.Store(false) // a yield asked before this campaign is stale
		err := t.campaign(ctx)
		if errors.Is(err, errIneligible) {
			if err := t.giveUp(ctx, e.outReason()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := t.master(ctx); err != nil {
			return err
		}
	}
}

// waitEligible returns at once while eligible; otherwise it reports Backup and waits until
// eligibility is restored (nil) or ctx ends (its cause).
func (t *term) waitEligible(ctx context.Context) error {
	for !t.e.mayRun() {
		if err := t.syncMaintenance(ctx); err != nil {
			return err
		}
		t.e.offerBackup(t.e.outReason())
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case r := <-t.e.reqs:
			refuse(r)
		case <-t.e.kick:
		}
	}
	return t.syncMaintenance(ctx)
}

// setReachable records whether etcd answers (a lease was granted, its renewals are acknowledged in
// time), and re-reports a non-master.
func (e *Elector) setReachable(ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.unreachable = !ok
	if !e.rep.mastering {
		e.offerBackupLocked()
	}
}

// setLeader records the master record the follower saw and, unless this node is master, reports it.
func (e *Elector) setLeader(r election.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.observed = r
	if !e.rep.mastering {
		e.offerBackupLocked()
	}
}

func (e *Elector) setOwnTerm(term uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.ownTerm = term
}

// offerBackup ends any mastership and offers Backup for reason (Fault while etcd is unreachable)
// with the last master record seen (not our own); it returns the version, for WaitActed.
func (e *Elector) offerBackup(reason string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.mastering, e.rep.reason = false, reason
	return e.offerBackupLocked()
}

func (e *Elector) offerBackupLocked() uint64 {
	r := e.rep.observed
	if r.Node == e.cfg.Name && r.Term == e.rep.ownTerm {
		r = election.Record{} // our own past record, about to be deleted
	}
	role, reason := election.Backup, e.rep.reason
	if e.rep.unreachable {
		role, reason = election.Fault, "etcd unreachable"
	}
	return e.box.Update(func(s *election.State) {
		*s = election.State{Role: role, Term: r.Term, Leader: r, Reason: reason}
	})
}

// offerFault ends any mastership and offers Fault for reason (Run gives up).
func (e *Elector) offerFault(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.mastering = false
	e.box.Update(func(s *election.State) {
		*s = election.State{Role: election.Fault, Reason: reason}
	})
}

// offerMaster offers Master of rec's term, valid until validUntil.
func (e *Elector) offerMaster(rec election.Record, validUntil time.Time, contact uint64, reason string, handover bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.mastering = true
	e.box.Update(func(s *election.State) {
		*s = election.State{Role: election.Master, Term: rec.Term, Leader: rec, ValidUntil: validUntil,
			Contact: contact, Reason: reason, Handover: handover}
	})
}

// offerSuspended offers Fault for a master whose deadline passed: the consumer lets go of the VIPs
// while the term goes on (the master loop still owns the State).
func (e *Elector) offerSuspended(reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rep.mastering = true
	e.box.Update(func(s *election.State) {
		*s = election.State{Role: election.Fault, Reason: reason}
	})
}
