package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A backup ends an expired lease at once.
//
// etcd's lessor scans for expired leases every 500ms (lessor.runLoop) and only then proposes their
// revocation, so a dead master's election key outlives its lease by up to half a second. The
// candidate first in line behind the master follows the master's lease with LeaseTimeToLive and,
// once the store shows it expired, revokes it itself. That is safe: the master's deadline
// (fencing.Deadline: the send time of its last acknowledged keepalive + TTL - margin) fell at
// least margin before the store's expiry, and an expired lease cannot be renewed (the lessor
// refuses a keepalive for it and waits for the revocation), so a master cannot win its lease back
// between our reading and our revoke.
//
// What makes this harder than it sounds: LeaseTimeToLive reports the remaining time in whole
// seconds, truncated toward zero (int64(Remaining().Seconds()), etcd v3.7 etcdserver/v3_server.go),
// so TTL 0 means "less than one second left" (or up to a second past expiry), not "expired". A
// backup that revoked on TTL <= 0 would revoke a live lease with up to a second left, whose master
// may have just been acknowledged a keepalive and holds the VIPs. The rule used instead:
//
//   - A reading of TTL 0 sent at s0 and answered at r0 says the lease expires before r0 + 1s, unless
//     it is renewed meanwhile.
//   - A renewal sets the remaining time back to the granted TTL G, so a reading taken less than
//     G - 1s after it shows TTL >= 1. A second reading of TTL 0, sent no earlier than r0 + 1s and
//     answered less than G - 1s after s0, therefore shows that no renewal came in between: the lease
//     expired before that reading. The backup revokes then.
//   - LeaseTimeToLive, unlike a keepalive, is answered by whoever believes it leads, without
//     checking that it still has a quorum: a leader cut off with the backup would show the master's
//     lease running out while the master renews it on the other side. So both readings are framed by
//     linearizable reads of the master's key (which need a quorum) on the same endpoint, and count
//     only if both report the same raft term: the same leader, in office throughout, answered both.
//
// The remaining time is only known to within a second, so the backup reads when the lease could
// first show under a second left: a reading of TTL k >= 2 at s cannot drop below one second before
// s + (k-1)s. It reads every fastReading only once the master's lease has under two seconds left,
// that is after the master has missed renewals for G - 2 seconds. With G >= minExpiryTTL (3s,
// keepalives every 750ms) a live master's lease always shows TTL >= 2, and the backup reads about
// once a second.
//
// # Headroom: TTLs of 1s and 2s
//
// A live lease of 1s or 2s shows TTL 0 or 1 at all times, so its expiry cannot be seen coming. Such
// a TTL V is granted as a lease of G = V + 1s (see headroom), and the candidate publishes
// Validity V in its value: its deadline still falls V - Margin after a keepalive's send. The store's
// reading then says when the master's validity has run out, without waiting for the lease: a
// reading under one second left (TTL 0 of G = V + 1s) shows that the store has renewed nothing for
// over V, so the master's deadline has passed. The backup first in line reads every fastReading (the
// profile's store load: 20 LeaseTimeToLive a second, from one backup), framed by linearizable reads
// of the same raft term as above, and then ends the term: it deletes the master's key and record and
// revokes the lease, a second (plus the expiry scan) before the store would.
//
// Unlike an expired lease, a lease past its validity can still be renewed: a master answered late
// (a stalled process, a keepalive stuck behind a store leader change) would hold on again, while the
// backup's end of its term is on its way. So a master whose keepalive is answered past its deadline
// marks its key (touch: a put that keeps value and lease and moves the mod revision) before it
// holds on, and the backup deletes the key only at the mod revision it read before its readings
// began (a transaction): the store orders the two, and whichever comes second fails. A master that
// finds its key gone gives the lease up (errLeaseLapsed) and campaigns with a new one.
//
// A leader change between the second reading and the revoke revives an expired lease (the new
// leader extends every lease) and the revoke then ends it: the same as etcd's own revocation of an
// expired lease racing a leader change. The master learns it from its own key's deletion.

// minExpiryTTL is the shortest granted TTL whose expiry a backup can see coming without reading
// constantly (see above).
const minExpiryTTL = 3 * time.Second

// fastReading is the pause between readings once a lease has under two seconds left.
const fastReading = 50 * time.Millisecond

// expirySlack covers the rate difference between the store's clock and ours over the second
// between the two readings (ppm in practice).
const expirySlack = 10 * time.Millisecond

// reading is one LeaseTimeToLive answer: the remaining and the granted TTL in whole seconds, and
// when the request was sent and answered.
type reading struct {
	sent, recv   time.Time
	ttl, granted int64
}

// nextReading returns when the lease r read could first show under a second left.
func nextReading(r reading) time.Time {
	return r.sent.Add(max(time.Duration(r.ttl-1)*time.Second, fastReading))
}

// confirms reports whether f, a reading taken after zero (the first TTL 0 of a series), proves the
// lease expired: TTL 0 again, sent a second after zero was answered, and answered less than G - 1s
// after zero was sent, so that a renewal between them would have shown.
func confirms(zero, f reading) bool {
	return f.ttl == 0 && !f.sent.Before(zero.recv.Add(time.Second+expirySlack)) &&
		f.recv.Sub(zero.sent) < time.Duration(f.granted-1)*time.Second
}

// leaseWatch follows the lease of the candidate first in line, ahead of this one, for waitDelete.
// Only waitDelete's goroutine touches it.
type leaseWatch struct {
	t     *term
	key   string           // the candidate's election key
	id    clientv3.LeaseID // its lease
	timer *time.Timer      // the next reading

	zero  *reading        // the first TTL 0 of the current series, framed by a read of term
	term  uint64          // the raft term of the read before zero (or before the readings: pre)
	epoch context.Context // the endpoint's epoch then: done if the conn moved since

	// With headroom (the candidate publishes a validity below the lease's TTL):
	validity time.Duration // the candidate's published Validity; 0: none
	pre      bool          // term, epoch and modRev hold a read taken before the current readings
	modRev   int64         // the candidate key's mod revision at that read
}

// check takes the next reading and acts on it. It reports true when the caller should read the
// queue again (the lease was revoked, or is gone); otherwise it arms the timer for the next reading,
// or leaves it stopped when the lease's expiry cannot be told (a TTL under minExpiryTTL).
func (w *leaseWatch) check(ctx context.Context) bool {
	next, reread := w.step(ctx)
	if !reread && !next.IsZero() {
		w.timer.Reset(time.Until(next))
	}
	return reread
}

func (w *leaseWatch) step(ctx context.Context) (next time.Time, reread bool) {
	if w.validity > 0 && !w.pre {
		_, epoch := w.t.c.current()
		term, rev, ok, err := w.leaderTerm(ctx)
		switch {
		case err != nil:
			return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false
		case !ok:
			return time.Time{}, true
		}
		w.term, w.modRev, w.epoch, w.pre = term, rev, epoch, true
	}
	r, err := w.read(ctx)
	if err == nil && r.ttl >= 0 && spare(r, w.validity) >= 1 {
		return w.headroomStep(ctx, r)
	}
	if w.zero != nil && (err != nil || r.ttl != 0) {
		w.zero = nil // the series is broken: renewed, gone, or the store did not answer
	}
	switch {
	case err != nil:
		return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false
	case r.ttl < 0:
		return time.Time{}, true // revoked already: its keys go with it
	case time.Duration(r.granted)*time.Second < minExpiryTTL:
		return time.Time{}, false
	case r.ttl > 0:
		return nextReading(r), false
	case w.zero == nil:
		return w.startSeries(ctx)
	case !confirms(*w.zero, r):
		w.zero = nil
		return time.Now(), false
	}
	zero := *w.zero
	w.zero = nil
	if next, reread, ok := w.confirmLeader(ctx, "ran out"); !ok {
		return next, reread
	}
	w.revoke(ctx, zero)
	return time.Time{}, true
}

// confirmLeader is the read after a reading: ok when it reports the raft term of the read before
// it, on the same endpoint (the same leader answered throughout); otherwise it returns what the
// step does instead (read again later, or read the queue again: the key is gone).
func (w *leaseWatch) confirmLeader(ctx context.Context, what string) (next time.Time, reread, ok bool) {
	term, _, found, err := w.leaderTerm(ctx)
	switch {
	case err != nil:
		return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false, false
	case !found:
		return time.Time{}, true, false
	case term != w.term || w.epoch.Err() != nil:
		w.t.log.Info("the store's leader changed while the master's lease "+what+"; reading it again",
			zap.Uint64("raft-term", w.term), zap.Uint64("now", term))
		return time.Now(), false, false
	}
	return time.Time{}, false, true
}

// startSeries frames a first TTL 0 reading with a linearizable read before it (see above).
func (w *leaseWatch) startSeries(ctx context.Context) (time.Time, bool) {
	_, epoch := w.t.c.current()
	term, _, ok, err := w.leaderTerm(ctx)
	if err != nil {
		return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false
	}
	if !ok {
		return time.Time{}, true
	}
	r, err := w.read(ctx)
	switch {
	case err != nil:
		return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false
	case r.ttl < 0:
		return time.Time{}, true
	case r.ttl > 0:
		return nextReading(r), false
	}
	w.zero, w.term, w.epoch = &r, term, epoch
	return r.recv.Add(time.Second + expirySlack), false
}

// read asks the store for the lease's remaining TTL.
func (w *leaseWatch) read(ctx context.Context) (reading, error) {
	var resp *clientv3.LeaseTimeToLiveResponse
	r := reading{sent: time.Now()}
	err := w.t.c.do(ctx, w.t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.TimeToLive(ctx, w.id)
		return err
	})
	r.recv = time.Now()
	if err != nil {
		return r, err
	}
	r.ttl, r.granted = resp.TTL, resp.GrantedTTL
	return r, nil
}

// leaderTerm reads the candidate's key linearizably (so through a leader that has a quorum) and
// returns the raft term of the member that answered and the key's mod revision; ok is false when
// the key is gone.
func (w *leaseWatch) leaderTerm(ctx context.Context) (term uint64, modRev int64, ok bool, err error) {
	var resp *clientv3.GetResponse
	err = w.t.c.do(ctx, w.t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Get(ctx, w.key, clientv3.WithKeysOnly())
		return err
	})
	if err != nil || len(resp.Kvs) == 0 {
		return 0, 0, false, err
	}
	return resp.Header.RaftTerm, resp.Kvs[0].ModRevision, true, nil
}

// spare returns how many whole seconds lease r's granted TTL exceeds validity, the candidate's
// published deadline after a renewal (0 when it published none).
func spare(r reading, validity time.Duration) int64 {
	if validity <= 0 || validity%time.Second != 0 {
		return 0
	}
	return max(r.granted-int64(validity/time.Second), 0)
}

// headroomStep acts on reading r of a lease with h >= 1 spare seconds (see above): a reading under
// h seconds left, framed by reads of the same raft term, shows that the store has renewed the lease
// for longer than the candidate's validity, whose deadline has therefore passed; the backup then
// deletes the candidate's key at the mod revision the read before the readings saw (so a master
// that was answered since, and marked its key, keeps it) and revokes the lease.
func (w *leaseWatch) headroomStep(ctx context.Context, r reading) (next time.Time, reread bool) {
	h := spare(r, w.validity)
	if r.ttl >= h {
		// Under h seconds left no earlier than (ttl - h)s after this reading was sent.
		return r.sent.Add(max(time.Duration(r.ttl-h)*time.Second, fastReading)), false
	}
	w.pre = false // whatever happens, the next readings need a new read before them
	if next, reread, ok := w.confirmLeader(ctx, "ran short"); !ok {
		return next, reread
	}
	switch w.endEarly(ctx, r) {
	case nil:
		return time.Time{}, true
	case errVoided:
		return time.Now(), false // answered again, or gone: the next read before the readings tells
	default:
		return time.Now().Add(w.t.e.cfg.KeepaliveInterval), false // not blindly again at once
	}
}

// errVoided is an early end that did not happen: the candidate's key changed since the read
// before the readings.
var errVoided = errors.New("the candidate's key changed")

// endEarly deletes the candidate's key (and the master record, if it is under its lease) at the
// mod revision read before reading r, then revokes the lease. It returns errVoided when the key
// changed meanwhile, and the store's error when the delete failed.
func (w *leaseWatch) endEarly(ctx context.Context, r reading) error {
	e := w.t.e
	ours := clientv3.Compare(clientv3.LeaseValue(e.leaderKey), "=", w.id)
	var resp *clientv3.TxnResponse
	err := w.t.c.do(ctx, e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(w.key), "=", w.modRev)).
			Then(clientv3.OpDelete(w.key), clientv3.OpTxn([]clientv3.Cmp{ours}, []clientv3.Op{clientv3.OpDelete(e.leaderKey)}, nil)).
			Commit()
		return err
	})
	switch {
	case err != nil:
		w.t.log.Info("ending the master's lease early failed; reading it again", zap.String("candidate", w.key), zap.Error(err))
		return err
	case !resp.Succeeded:
		w.t.log.Info("the master's key changed since it ran short (answered again, or gone); reading it again", zap.String("candidate", w.key))
		return errVoided
	}
	if err := w.revokeLease(ctx); err != nil {
		w.t.log.Info("revoking the lease of the master's deleted key failed; the store expires it", zap.String("candidate", w.key), zap.Error(err))
	}
	w.t.log.Info("the master had no renewal for its validity; ended its term without waiting for the lease's expiry",
		zap.String("candidate", w.key), zap.String("lease", leaseHex(w.id)), zap.Duration("validity", w.validity),
		zap.Int64("ttl-left-s", r.ttl), zap.Duration("since-reading", time.Since(r.recv)))
	return nil
}

// revokeLease revokes the lease; one already gone counts as revoked.
func (w *leaseWatch) revokeLease(ctx context.Context) error {
	return w.t.c.do(ctx, w.t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Revoke(ctx, w.id)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil // the store's own scan came first
		}
		return err
	})
}

// revoke revokes the expired lease, once: a failure is not retried blindly (the next reading
// decides again).
func (w *leaseWatch) revoke(ctx context.Context, zero reading) {
	err := w.revokeLease(ctx)
	// The lease expired before zero.recv + 1s: how much later than that we revoked.
	late := time.Since(zero.recv.Add(time.Second))
	if err != nil {
		w.t.log.Info("revoking the master's expired lease failed; the store revokes it", zap.String("candidate", w.key), zap.Error(err))
		return
	}
	w.t.log.Info("the master's lease expired; revoked it without waiting for the store's expiry scan",
		zap.String("candidate", w.key), zap.String("lease", leaseHex(w.id)), zap.Duration("after-expiry-at-most", late))
}

func leaseHex(id clientv3.LeaseID) string { return fmt.Sprintf("%x", int64(id)) }
