package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// Why a session ended; also the Reason of the State reported for it.
var (
	errLeaseLost    = errors.New("lease lost")
	errSessionDone  = errors.New("session ended")
	errDeadline     = errors.New("lease deadline passed without renewal")
	errKeyDeleted   = errors.New("election key deleted")
	errWatchEnded   = errors.New("watch on election key ended")
	errNotCandidate = errors.New("election key gone after campaign")
)

// Elector campaigns for mastership of one group in etcd. It implements election.Elector,
// election.Yielder and election.Eligibility. Run may be called once; Yield and SetEligible are safe
// from any goroutine, before or during Run.
type Elector struct {
	cfg       Config
	log       *zap.Logger
	prefix    string
	leaderKey string

	ran      atomic.Bool
	yield    atomic.Bool
	eligible atomic.Bool
	kick     chan struct{} // cap 1: yield or eligibility changed

	box *election.Outbox // Run's out

	mu       sync.Mutex
	deadline time.Time       // self-fencing deadline of the current lease
	observed election.Record // last master record seen by the follower
	ownTerm  uint64          // last term this node held
	contact  uint64          // keepalive recoveries (State.Contact)
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
	}
	e.eligible.Store(true)
	return e, nil
}

// Yield makes a master resign and campaign again after a pause (RetryMin, doubling with every yield
// in a row up to RetryMax), so another candidate, if any, becomes master. It does nothing on a node
// that is not master.
func (e *Elector) Yield() {
	e.yield.Store(true)
	e.poke()
}

// SetEligible withdraws (false: a master resigns, a candidate stops campaigning) or restores (true)
// this node's candidacy.
func (e *Elector) SetEligible(ok bool) {
	if e.eligible.Swap(ok) != ok {
		e.poke()
	}
}

func (e *Elector) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run campaigns until ctx is done; see election.Elector. It reports Fault (and keeps retrying with
// backoff) while etcd is unreachable, and returns a *TTLError when etcd grants another TTL than
// Config.TTL. On return it has resigned and revoked its lease (bounded by a short timeout) and has
// offered out a final non-Master State.
func (e *Elector) Run(ctx context.Context, out *election.Outbox) error {
	if !e.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("etcd: elector %s/%s: Run called twice", e.cfg.Group, e.cfg.Name)
	}
	e.box = out
	err := e.loop(ctx)

	if err != nil {
		e.setFault(err.Error())
	} else {
		e.setBackup("stopped")
	}
	e.log.Info("elector stopped", zap.Error(err))
	return err
}

// loop runs sessions until ctx is done, backing off while etcd cannot be reached.
func (e *Elector) loop(ctx context.Context) error {
	backoff := e.cfg.RetryMin
	for {
		established, err := e.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ttlErr *TTLError
		if errors.As(err, &ttlErr) {
			return err
		}
		wait := backoff
		if established {
			backoff = e.cfg.RetryMin
			wait = e.cfg.RetryMin
			e.log.Info("session ended, campaigning again", zap.Error(err))
		} else {
			e.log.Warn("etcd unavailable, retrying", zap.Strings("endpoints", e.cfg.Endpoints),
				zap.Duration("retry-in", wait), zap.Error(err))
			e.setFault("etcd unavailable")
			backoff = min(2*backoff, e.cfg.RetryMax)
		}
		// ±20% jitter so that candidates cut off together do not retry in lockstep.
		wait += time.Duration((rand.Float64() - 0.5) * 0.4 * float64(wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (e *Elector) clientConfig() clientv3.Config {
	return clientConfig(e.cfg, e.log)
}

func clientConfig(c Config, log *zap.Logger) clientv3.Config {
	return clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: c.DialTimeout,
		TLS:         c.TLS,
		Username:    c.Username,
		Password:    c.Password,
		// The client retries on its own and warns about each attempt; we log what matters.
		Logger: log.Named("client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	}
}

// session runs one client and one lease: campaign, serve as master, until the lease is lost or ctx is
// done, then resign and revoke. established reports whether a lease was granted.
func (e *Elector) session(ctx context.Context) (established bool, err error) {
	cli, err := clientv3.New(e.clientConfig())
	if err != nil {
		return false, fmt.Errorf("etcd: connect to %v: %w", e.cfg.Endpoints, err)
	}
	defer cli.Close()

	ttl := int64(e.cfg.TTL / time.Second)
	sent := time.Now()
	gctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	lresp, err := cli.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return false, fmt.Errorf("etcd: grant %v lease on %v: %w", e.cfg.TTL, e.cfg.Endpoints, err)
	}
	lease := lresp.ID
	if lresp.TTL != ttl {
		rctx, cancel := e.cleanupContext(ctx)
		_, _ = cli.Revoke(rctx, lease) // best effort: it would expire anyway
		cancel()
		return true, &TTLError{Requested: e.cfg.TTL, Granted: time.Duration(lresp.TTL) * time.Second}
	}
	e.setDeadline(fencing.Deadline(sent, time.Duration(lresp.TTL)*time.Second, e.cfg.Margin), true)
	log := e.log.With(zap.String("lease", fmt.Sprintf("%x", int64(lease))))

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease), concurrency.WithTTL(int(ttl)),
		concurrency.WithContext(sctx))
	if err != nil {
		return true, fmt.Errorf("etcd: session on lease %x: %w", int64(lease), err)
	}
	log.Debug("session started")

	g, gctx2 := errgroup.WithContext(sctx)
	renewed := make(chan struct{}, 1)
	g.Go(func() error { return e.keepalive(gctx2, cli, lease, renewed) })
	g.Go(func() error {
		select {
		case <-sess.Done():
			return errSessionDone
		case <-gctx2.Done():
			return nil
		}
	})
	g.Go(func() error {
		observeLeader(gctx2, cli, e.leaderKey, e.cfg, log, e.setLeader)
		return nil
	})

	s := &term{e: e, runCtx: ctx, cli: cli, sess: sess, lease: lease, renewed: renewed, g: g, log: log}
	err = s.serve(gctx2)

	// Demote first (serve has reported a non-Master State), then let go of the candidacy. A lease that
	// is known to be gone needs no revoke.
	if !errors.Is(err, errLeaseLost) {
		rctx, cancel := e.cleanupContext(ctx)
		if s.key != "" {
			if rerr := e.resign(rctx, cli, s.key, s.rev, lease); rerr != nil {
				log.Warn("resign failed; the lease revoke or expiry removes the key", zap.Error(rerr))
			}
		}
		if _, rerr := cli.Revoke(rctx, lease); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			log.Warn("revoke lease failed; it expires within the TTL", zap.Error(rerr))
		}
		cancel()
	}
	scancel()
	cli.Close() // unblocks any request stuck on a silent connection
	_ = g.Wait()
	return true, err
}

// cleanupContext returns the context for resign and revoke: it outlives a cancelled ctx and is bounded
// by min(DialTimeout, 1s).
func (e *Elector) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(e.cfg.DialTimeout, time.Second))
}

// resign deletes this candidate's election key, and the master record if it is ours, in one
// transaction guarded by the key's create revision.
func (e *Elector) resign(ctx context.Context, cli *clientv3.Client, key string, rev int64, lease clientv3.LeaseID) error {
	ours := clientv3.Compare(clientv3.LeaseValue(e.leaderKey), "=", lease)
	_, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key), clientv3.OpTxn([]clientv3.Cmp{ours}, []clientv3.Op{clientv3.OpDelete(e.leaderKey)}, nil)).
		Commit()
	if err != nil {
		return fmt.Errorf("etcd: resign %s: %w", key, err)
	}
	return nil
}

// keepalive renews lease every KeepaliveInterval with its own KeepAliveOnce and moves the deadline
// on each acknowledgement, counted from the send time. It returns errLeaseLost when etcd no longer
// knows the lease and errDeadline once the deadline has passed without renewal.
func (e *Elector) keepalive(ctx context.Context, cli *clientv3.Client, lease clientv3.LeaseID, renewed chan<- struct{}) error {
	t := time.NewTicker(e.cfg.KeepaliveInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sent := time.Now()
		kctx, cancel := context.WithTimeout(ctx, e.cfg.KeepaliveInterval)
		resp, err := cli.KeepAliveOnce(kctx, lease)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return errLeaseLost
		case err != nil:
			if !failing {
				e.log.Warn("lease keepalive failed", zap.Error(err))
				failing = true
			}
			if !time.Now().Before(e.currentDeadline()) {
				return errDeadline
			}
			continue
		}
		rtt := time.Since(sent)
		if failing || rtt > e.cfg.KeepaliveInterval/2 {
			// Recovered from failures, or answered after a long silence (a short partition the
			// keepalive survived): count it as regained contact, so the VIPs are announced again.
			e.log.Info("lease keepalive recovered", zap.Duration("round-trip", rtt), zap.Bool("after-failures", failing))
			failing = false
			e.mu.Lock()
			e.contact++
			e.mu.Unlock()
		}
		e.setDeadline(fencing.Deadline(sent, time.Duration(resp.TTL)*time.Second, e.cfg.Margin), false)
		select {
		case renewed <- struct{}{}:
		default:
		}
	}
}

func (e *Elector) setDeadline(t time.Time, reset bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if reset || t.After(e.deadline) {
		e.deadline = t
	}
}

func (e *Elector) currentDeadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deadline
}

// setLeader records the master record the follower saw and, unless this node is master, reports it.
func (e *Elector) setLeader(r election.Record) {
	e.mu.Lock()
	e.observed = r
	own := e.ownTerm
	e.mu.Unlock()
	if r.Node == e.cfg.Name && r.Term == own {
		r = election.Record{} // our own past record, about to be deleted
	}
	e.box.Update(func(s *election.State) {
		if s.Role == election.Master || s.Role == election.Init {
			return // Init: the session reports Backup with e.observed
		}
		s.Leader, s.Term = r, r.Term
	})
}

// setBackup reports Backup with the last master record seen (not our own).
func (e *Elector) setBackup(reason string) uint64 {
	e.mu.Lock()
	r, own := e.observed, e.ownTerm
	e.mu.Unlock()
	if r.Node == e.cfg.Name && r.Term == own {
		r = election.Record{}
	}
	return e.box.Update(func(s *election.State) {
		s.Role, s.Term, s.Leader, s.ValidUntil, s.Reason = election.Backup, r.Term, r, time.Time{}, reason
	})
}

// setFault reports Fault; the last known master stays as information.
func (e *Elector) setFault(reason string) {
	e.box.Update(func(s *election.State) {
		if s.Role == election.Master {
			s.Leader, s.Term = election.Record{}, 0
		}
		s.Role, s.ValidUntil, s.Reason = election.Fault, time.Time{}, reason
	})
}

// term is one session's campaign/master state machine.
type term struct {
	e       *Elector
	runCtx  context.Context // Run's ctx: its end is not a loss to report
	cli     *clientv3.Client
	sess    *concurrency.Session
	lease   clientv3.LeaseID
	renewed <-chan struct{}
	g       *errgroup.Group
	log     *zap.Logger

	key string // our election key once Campaign returned
	rev int64  // its create revision

	yields      int       // yields in a row: each doubles the wait before campaigning again
	masterSince time.Time // when this node last became master
}

// serve campaigns and serves as master until ctx (the session) ends; it returns the cause. It reports
// a non-Master State before returning.
func (t *term) serve(ctx context.Context) error {
	e := t.e
	for {
		if !e.eligible.Load() {
			e.setBackup("not eligible")
			select {
			case <-ctx.Done():
				return t.lost(ctx)
			case <-e.kick:
				continue
			}
		}
		if t.yields > 0 {
			// Yielded: let the other candidates go first (they may still be starting up),
			// waiting longer after every yield in a row.
			d := min(t.e.cfg.RetryMin<<min(t.yields-1, 10), t.e.cfg.RetryMax)
			tm := time.NewTimer(d)
			select {
			case <-ctx.Done():
				tm.Stop()
				return t.lost(ctx)
			case <-tm.C:
			}
		}
		e.setBackup("campaigning")
		e.yield.Store(false) // a yield asked before this campaign is stale

		won, err := t.campaign(ctx)
		if err != nil {
			return t.lost(ctx)
		}
		if !won {
			continue // eligibility changed
		}
		rec, validUntil, err := t.claim(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return t.lost(ctx)
			}
			e.setBackup(err.Error())
			return err
		}
		t.masterSince = time.Now()
		if err := t.master(ctx, rec, validUntil); err != nil {
			return err
		}
	}
}

// lost reports the loss of the session (Fault) or the end of Run (nothing: Run reports) and returns
// the cause.
func (t *term) lost(ctx context.Context) error {
	cause := context.Cause(ctx)
	if t.runCtx.Err() != nil {
		return cause
	}
	t.e.setFault(cause.Error())
	return cause
}

// campaign runs Election.Campaign until it wins (true), eligibility is withdrawn (false), or ctx ends
// (error). Campaign runs in the session's group: when its cancellation path blocks on a silent
// connection, closing the client releases it.
func (t *term) campaign(ctx context.Context) (bool, error) {
	e := t.e
	el := concurrency.NewElection(t.sess, e.prefix)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	t.g.Go(func() error {
		done <- el.Campaign(cctx, e.cfg.Name)
		return nil
	})
	for {
		select {
		case <-ctx.Done():
			return false, context.Cause(ctx)
		case <-e.kick:
			if e.eligible.Load() {
				e.yield.Store(false)
				continue
			}
			cancel() // Campaign deletes our key on cancellation
			select {
			case err := <-done:
				if err == nil { // won just before the cancel: give it back
					rctx, rcancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
					rerr := e.resign(rctx, t.cli, el.Key(), el.Rev(), t.lease)
					rcancel()
					if rerr != nil {
						return false, rerr
					}
				}
				return false, nil
			case <-ctx.Done():
				return false, context.Cause(ctx)
			}
		case err := <-done:
			if err != nil {
				if ctx.Err() != nil {
					return false, context.Cause(ctx)
				}
				return false, fmt.Errorf("etcd: campaign in %s: %w", e.prefix, err)
			}
			t.key, t.rev = el.Key(), el.Rev()
			return true, nil
		}
	}
}

// claim checks, after Campaign returned, that we still hold the election (session alive, deadline
// ahead, election key still ours: the transaction's guard) and writes the master record under our
// lease.
func (t *term) claim(ctx context.Context) (election.Record, time.Time, error) {
	e := t.e
	select {
	case <-t.sess.Done():
		return election.Record{}, time.Time{}, errSessionDone
	default:
	}
	if !time.Now().Before(e.currentDeadline()) {
		return election.Record{}, time.Time{}, errDeadline
	}
	rec := e.cfg.Record
	rec.VIPs = append(rec.VIPs[:0:0], rec.VIPs...)
	rec.Group, rec.Node, rec.Term, rec.Since = e.cfg.Group, e.cfg.Name, uint64(t.rev), time.Now().UTC().Round(0)

	tctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	defer cancel()
	resp, err := t.cli.Txn(tctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
		Then(clientv3.OpPut(e.leaderKey, string(rec.Marshal()), clientv3.WithLease(t.lease))).
		Commit()
	if err != nil {
		return election.Record{}, time.Time{}, fmt.Errorf("etcd: write master record %s: %w", e.leaderKey, err)
	}
	if !resp.Succeeded {
		t.log.Warn("election key gone after Campaign returned", zap.String("key", t.key))
		t.key = ""
		return election.Record{}, time.Time{}, errNotCandidate
	}
	validUntil := e.currentDeadline()
	if !time.Now().Before(validUntil) {
		return election.Record{}, time.Time{}, errDeadline
	}
	return rec, validUntil, nil
}

// master reports Master and holds it, renewing ValidUntil, until the lease is lost, the deadline
// passes, the election key is deleted, or it resigns (Yield, SetEligible(false): nil, campaign again).
func (t *term) master(ctx context.Context, rec election.Record, validUntil time.Time) error {
	e := t.e
	e.mu.Lock()
	e.ownTerm = rec.Term
	e.mu.Unlock()
	e.box.Update(func(s *election.State) {
		s.Role, s.Term, s.Leader, s.ValidUntil, s.Reason = election.Master, rec.Term, rec, validUntil, "elected"
	})
	log := t.log.With(zap.Uint64("term", rec.Term))
	log.Info("elected master", zap.Time("valid-until", validUntil))

	// The deadline timer is armed first: nothing below may block on the network.
	timer := time.NewTimer(time.Until(validUntil))
	defer timer.Stop()
	// Watch our election key in the session's group: clientv3's Watch call itself blocks while the
	// connection is silent.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	keyGone := make(chan error, 1)
	key, rev := t.key, t.rev
	t.g.Go(func() error {
		keyGone <- watchKey(wctx, t.cli, key, rev)
		return nil
	})

	demote := func(role election.Role, why error) error {
		if role == election.Fault {
			e.setFault(why.Error())
		} else {
			e.setBackup(why.Error())
		}
		log.Warn("lost mastership", zap.Error(why))
		return why
	}
	for {
		select {
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if t.runCtx.Err() != nil {
				return cause // Run reports the final State after resigning
			}
			return demote(election.Fault, cause)
		case <-timer.C:
			dl := e.currentDeadline()
			if time.Now().Before(dl) {
				timer.Reset(time.Until(dl))
				continue
			}
			return demote(election.Fault, errDeadline)
		case <-t.renewed:
			dl := e.currentDeadline()
			e.mu.Lock()
			contact := e.contact
			e.mu.Unlock()
			if !dl.After(validUntil) {
				continue
			}
			validUntil = dl
			timer.Reset(time.Until(validUntil))
			e.box.Update(func(s *election.State) {
				if s.Role == election.Master {
					s.ValidUntil, s.Contact, s.Reason = validUntil, contact, "renewed"
				}
			})
		case err := <-keyGone:
			if ctx.Err() != nil {
				continue // reported by the ctx case
			}
			if errors.Is(err, errKeyDeleted) {
				t.key = ""
			}
			return demote(election.Backup, err)
		case <-e.kick:
			yield := e.yield.Swap(false)
			if !yield && e.eligible.Load() {
				continue
			}
			reason := "yielded"
			if !e.eligible.Load() {
				reason = "not eligible"
			} else {
				if time.Since(t.masterSince) > e.cfg.TTL {
					t.yields = 0 // a yield after a good spell as master starts the backoff afresh
				}
				t.yields++
			}
			// Demote first: the Backup State is delivered before the key goes, so this node never
			// reports Master after the next master was elected.
			seq := e.setBackup(reason)
			if err := e.box.WaitActed(ctx, seq); err != nil {
				continue // ctx ended: handled above
			}
			log.Info("resigning", zap.String("reason", reason))
			rctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
			err := e.resign(rctx, t.cli, t.key, t.rev, t.lease)
			cancel()
			if err != nil {
				return err
			}
			t.key = ""
			return nil
		}
	}
}

// watchKey waits until the election key (created at rev) is deleted (errKeyDeleted), the watch fails
// (errWatchEnded), or ctx is done (nil).
func watchKey(ctx context.Context, cli *clientv3.Client, key string, rev int64) error {
	for wr := range cli.Watch(ctx, key, clientv3.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("%w: %v", errWatchEnded, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return errKeyDeleted
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errWatchEnded
}
