package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

var (
	errIneligible = errors.New("not eligible")
	errKeyGone    = errors.New("election key gone")
)

// Why the elector runs its own campaign rather than concurrency.Election.Campaign (v3.7.3), with
// the same key layout (<prefix>/<lease id in hex>, value: the node name) so that etcdctl elect and
// concurrency.Election see the same queue:
//   - Campaign waits on its predecessor with a plain watch. When that watch breaks (ErrCompacted after
//     a reconnect, a member restart) Campaign returns the error and keeps the key; calling it again
//     with the same session finds the key (its Txn's Else branch), keeps its create revision and waits
//     again, so the place in the queue survives. But cancelling Campaign's context resigns, deleting
//     the key, so a caller cannot stop a wait that hangs on a silent member without losing its place.
//   - Nothing can wake it to read again (after the elector moved to another endpoint, or to recheck)
//     short of that cancellation.
//
// campaign below re-reads after every broken watch, every move to another endpoint and every
// recheckEvery, requires a leader for its watches, and never deletes its key unless told to.

// campaign makes sure this node's election key exists under the lease and waits until it has the
// lowest create revision under the election prefix. It returns nil once it does (t.key and t.rev
// name the key), errIneligible when eligibility was withdrawn meanwhile (the key is still there),
// errLeaseLost when the store says the lease is gone, and ctx's cause when ctx ends. Store failures are retried with backoff; they never cost the key.
func (t *term) campaign(ctx context.Context) error {
	failures := 0
	for {
		pred, rev, err := t.queue(ctx)
		if errors.Is(err, errKeyGone) {
			continue // put it again at once
		}
		if err == nil && pred.key == "" {
			t.republish(ctx)
			var vd verdict
			var who string
			vd, who = headRule(t.e.cfg.Name, int(t.e.prio.Load()), t.view, time.Now())
			switch vd {
			case lead:
				return nil
			case deferTo:
				t.log.Info("first in line, deferring to a preferred candidate", zap.String("to", who))
				err = t.requeue(ctx)
			case holdBack:
				t.log.Info("first in line, holding back for a transfer to a node not queued", zap.String("to", who),
					zap.Time("until", t.view.transfer.Until))
				err = t.holdFor(ctx, t.view)
			}
			if err == nil {
				failures = 0
				continue
			}
		}
		switch {
		case err == nil && pred.key == "":
			// handled above
		case err == nil:
			t.republish(ctx)
			err = t.waitDelete(ctx, pred, rev)
			if err == nil {
				failures = 0
				continue
			}
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, errIneligible) {
			return err
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return errLeaseLost // the store's answer: no use retrying with this lease
		}
		if failures == 0 {
			t.log.Warn("campaign: store request failed; retrying", zap.Error(err))
		}
		failures++
		// An answered keepalive means the store is back: no use waiting out the backoff.
		if err := t.pause(ctx, backoff(t.e.cfg, failures), t.l.Renewed()); err != nil {
			return err
		}
	}
}

// ahead is the candidate just ahead of this one in the queue.
type ahead struct {
	key   string           // its election key; "": none, we lead
	lease clientv3.LeaseID // the lease the key is put under
	first bool             // it leads the queue: the master, or about to be
	// validity is the Validity its candidate value publishes: its deadline falls that long after a
	// renewal, the lease's headroom beyond (expiry.go). 0: none published.
	validity time.Duration
}

// queue puts the election key if it is missing and returns the candidate just ahead of it (the key
// with the highest create revision below ours) and the revision of that read.
func (t *term) queue(ctx context.Context) (ahead, int64, error) {
	if t.rev == 0 {
		if err := t.putKey(ctx); err != nil {
			return ahead{}, 0, err
		}
	}
	var resp *clientv3.TxnResponse
	err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
			Then(append([]clientv3.Op{clientv3.OpGet(t.e.prefix+"/", append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(t.rev-1))...)},
				viewOps(t.e.cfg.Group)...)...).
			Commit()
		return err
	})
	if err != nil {
		return ahead{}, 0, fmt.Errorf("etcd: read the candidates ahead of %s: %w", t.key, err)
	}
	if !resp.Succeeded {
		t.log.Warn("election key vanished while queued; queuing again", zap.String("key", t.key), zap.Int64("rev", t.rev))
		t.setRev(0)
		return ahead{}, 0, errKeyGone
	}
	t.view = parseView(resp.Header.Revision, resp.Responses[1].GetResponseRange(), resp.Responses[2].GetResponseRange(), t.log)
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return ahead{}, resp.Header.Revision, nil
	}
	a := ahead{key: string(kvs[0].Key), lease: clientv3.LeaseID(kvs[0].Lease)}
	if c, err := election.ParseCandidate(kvs[0].Value); err == nil {
		a.validity = c.Validity
	}
	a.first = len(t.view.queue) > 0 && t.view.queue[0].key == a.key
	return a, resp.Header.Revision, nil
}

// putKey creates the election key under the lease, or finds it (a retry after a lost reply, a
// campaign resumed after a yield's pause) and keeps its create revision.
func (t *term) putKey(ctx context.Context) error {
	if t.since.IsZero() {
		t.since = time.Now()
	}
	prio := int(t.e.prio.Load())
	val := string(t.e.candidate(t.since).Marshal())
	var resp *clientv3.TxnResponse
	err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", 0)).
			Then(clientv3.OpPut(t.key, val, clientv3.WithLease(t.l.id))).
			Else(clientv3.OpGet(t.key)).
			Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd: put election key %s: %w", t.key, err)
	}
	t.setRev(resp.Header.Revision)
	t.pubPrio.Store(int64(prio))
	if !resp.Succeeded {
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		t.setRev(kv.CreateRevision)
		t.pubPrio.Store(-1) // its value may be older: publish again
		if c, err := election.ParseCandidate(kv.Value); err == nil {
			t.pubPrio.Store(int64(c.Priority))
		}
	}
	t.log.Info("queued", zap.String("key", t.key), zap.Int64("rev", t.rev), zap.Bool("existing", !resp.Succeeded))
	return nil
}

// waitDelete waits until pred, the candidate ahead, may be gone or lead: its DELETE event (any
// DELETE in the queue while pred does not lead), a watch that broke or moved to another endpoint,
// or a recheck due without news (recheckEvery, once the store moved past rev: a watch that broke
// without saying so costs at most that). When
// pred leads the queue, it also follows pred's lease and ends it once the store shows it expired,
// or unrenewed for pred's validity (see expiry.go). It returns nil then, for the caller to read
// again; errIneligible or ctx's cause otherwise. A yield asked of a backup is void.
func (t *term) waitDelete(ctx context.Context, pred ahead, rev int64) error {
	// Behind a candidate that does not lead, watch the whole queue: when the keys ahead of pred go,
	// pred leads, and this candidate is first in line and follows its lease (a restarted node that
	// queued during a takeover would otherwise wait for the next recheck before it followed the
	// new master's lease).
	key, opts := pred.key, []clientv3.OpOption{clientv3.WithRev(rev + 1)}
	if !pred.first {
		key, opts = t.e.prefix+"/", append(opts, clientv3.WithPrefix())
	}
	ep, wch, stop := t.c.watch(ctx, key, opts...)
	defer stop()
	recheck := t.newRecheck(rev)
	defer recheck.Stop()
	var lw *leaseWatch
	var lwc <-chan time.Time // lw's next reading
	if pred.first {
		lw = &leaseWatch{t: t, key: pred.key, id: pred.lease, validity: pred.validity}
		tm := time.NewTimer(0)
		defer tm.Stop()
		lw.timer, lwc = tm, tm.C
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-recheck.C():
			if recheck.Fired() {
				return nil
			}
		case <-recheck.Past:
			return nil
		case <-lwc:
			if lw.check(ctx) {
				return nil // revoked, or gone: read again
			}
		case r := <-t.e.reqs:
			refuse(r)
		case <-t.e.kick:
			if err := t.kicked(ctx); err != nil {
				return err
			}
		case wr, ok := <-wch:
			if !ok {
				return nil // moved to another endpoint, or ctx done
			}
			if err := wr.Err(); err != nil {
				t.c.failed(ep, err)
				t.log.Info("watch on the candidate ahead broke; reading again", zap.String("watched", key), zap.Error(err))
				return nil
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return nil
				}
			}
		}
	}
}

// setRev sets the create revision of the term's election key (0: none), which the lease's
// keepalive loop reads too (lease.keyRev, for touch).
func (t *term) setRev(rev int64) {
	t.rev = rev
	t.l.keyRev.Store(rev)
}

// recheckEvery is how often a candidate reads again what it watches (the candidate ahead, its own
// key, the master's queue) even though the watch is quiet, provided the store changed (see
// recheck): once per TTL (the validity, for a lease with headroom), one small read per candidate.
func (t *term) recheckEvery() time.Duration {
	if t.l.validity > 0 {
		return t.l.validity
	}
	return t.l.ttl
}

// recheck paces the reads a candidate makes again, though its watch is quiet, of what it watches:
// they guard against a watch that broke without saying so. A recheck falls due recheckEvery after
// the read it follows, at store revision rev, but not before an acknowledged keepalive reports the
// store past rev (lease.revisionPast): at an unchanged revision a read can only find what the last
// one found, so a store that stands still, as under an idle master, is not read at all. The bound
// stays recheckEvery: a change made after the read shows in the first keepalive answered after it,
// at most a KeepaliveInterval (shorter than recheckEvery) later, so the recheck falls due at
// recheckEvery after the read or at that answer, whichever is later, within recheckEvery of the
// change. A candidate whose keepalives go unanswered rechecks nothing, as a read would fail too;
// a master then lets go at its deadline and confirms its key before it holds again (renewed).
//
// A recheck is used by the goroutine that made it; select on C and Past, and call Fired when C
// fires, Stop when done.
type recheck struct {
	l     *lease
	rev   int64
	timer *time.Timer
	// Past is nil until the timer fired with the store still at rev; then it is closed once a
	// keepalive reports a later revision.
	Past   <-chan struct{}
	unwait func()
}

// newRecheck starts the pacing of a recheck after a read at revision rev.
func (t *term) newRecheck(rev int64) *recheck {
	return &recheck{l: t.l, rev: rev, timer: time.NewTimer(t.recheckEvery()), unwait: func() {}}
}

// C fires when recheckEvery has passed.
func (r *recheck) C() <-chan time.Time { return r.timer.C }

// Fired handles C and reports whether the recheck is due now (the store moved past rev); if not,
// Past is set to be closed when it does.
func (r *recheck) Fired() bool {
	past, unwait := r.l.revisionPast(r.rev)
	select {
	case <-past:
		return true
	default:
	}
	r.Past, r.unwait = past, unwait
	return false
}

// Stop stops the timer and gives up Past.
func (r *recheck) Stop() {
	r.timer.Stop()
	r.unwait()
}

// pause waits d, or less: until wake fires (nil: never), eligibility is withdrawn (errIneligible)
// or ctx ends (its cause).
func (t *term) pause(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tm.C:
			return nil
		case <-wake:
			return nil
		case r := <-t.e.reqs:
			refuse(r)
		case <-t.e.kick:
			if err := t.kicked(ctx); err != nil {
				return err
			}
		}
	}
}

// release deletes the election key, and the master record if it is this lease's, in one
// transaction guarded by the key's create revision, retrying until it succeeds or ctx ends. It is
// only called once the consumer has acted on a non-Master State. end, for a master that gave up
// after demoting, adds its transfer record and released marker to the transaction (planned.go).
func (t *term) release(ctx context.Context, end *endOfTerm) error {
	if t.rev == 0 {
		return nil
	}
	ours := clientv3.Compare(clientv3.LeaseValue(t.e.leaderKey), "=", t.l.id)
	err := t.e.retry(ctx, func(ctx context.Context) error {
		return t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
				Then(append([]clientv3.Op{clientv3.OpDelete(t.key),
					clientv3.OpTxn([]clientv3.Cmp{ours}, []clientv3.Op{clientv3.OpDelete(t.e.leaderKey)}, nil)},
					t.releaseOps(end)...)...).
				Commit()
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("etcd: resign %s: %w", t.key, err)
	}
	t.setRev(0)
	return nil
}
