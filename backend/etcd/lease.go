package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/retry"
)

// errLeaseLost is the store's answer that the lease is gone (expired or revoked): the only thing
// that ends a lease's candidacy other than giving it up on purpose.
var errLeaseLost = errors.New("lease lost")

// errLeaseLapsed ends a lease with headroom whose keepalive was answered past the deadline while
// its election key was gone: a backup ended its term early (see expiry.go), so the candidacy must
// not hold again with it, even though the store renewed it.
var errLeaseLapsed = errors.New("lease answered past its deadline, its election key gone: a backup ended the term")

// lease is one etcd lease of the elector and the self-fencing deadline its acknowledged keepalives
// give. Its keepalive loop is its only writer; any goroutine may read.
type lease struct {
	id       clientv3.LeaseID
	ttl      time.Duration // as granted: validity + headroom
	validity time.Duration // the configured TTL: deadlines fall that long after a keepalive's send, less Margin

	// keyRev is the create revision of the election key the candidacy believes it has (term.rev),
	// 0 while it has none; the term sets it, touch reads it.
	keyRev atomic.Int64

	mu       sync.Mutex
	deadline time.Time // fencing.Deadline of the last acknowledged keepalive
	contact  uint64    // times renewals recovered after failing (State.Contact)
	renewed  chan struct{}
	// rev is the store revision in the header of the last acknowledged keepalive (0: none yet);
	// past are the channels revisionPast handed out, each closed once rev passes its revision.
	rev  int64
	past map[*revWaiter]struct{}
}

// revWaiter is one revisionPast channel and the revision it waits to see passed.
type revWaiter struct {
	rev int64
	ch  chan struct{}
}

// Deadline returns the current self-fencing deadline.
func (l *lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Contact returns how many times renewals recovered after failing or a long silence.
func (l *lease) Contact() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.contact
}

// Renewed is signalled (capacity 1) after every acknowledged keepalive.
func (l *lease) Renewed() <-chan struct{} { return l.renewed }

// renew records an acknowledged keepalive: its deadline, whether it recovered contact, and the
// store revision its answer reported, closing the revisionPast channels it passes. An answer with
// no revision (0: a store that sends no header) counts as past every revision from then on, so
// that the rechecks fall due every TTL as if the store always moved.
func (l *lease) renew(deadline time.Time, recovered bool, rev int64) {
	if rev == 0 {
		rev = math.MaxInt64
	}
	l.mu.Lock()
	if deadline.After(l.deadline) {
		l.deadline = deadline
	}
	if recovered {
		l.contact++
	}
	if rev > l.rev {
		l.rev = rev
		for w := range l.past {
			if rev > w.rev {
				close(w.ch)
				delete(l.past, w)
			}
		}
	}
	l.mu.Unlock()
	select {
	case l.renewed <- struct{}{}:
	default:
	}
}

// revisionPast returns a channel that is closed once an acknowledged keepalive reports a store
// revision above rev (at once if the last one did), and a function that gives the channel up.
// Every write moves etcd's revision (a put, a delete, a lease's expiry deleting its keys; a
// keepalive does not), so while it stays at rev, a read of anything would find what a read at rev
// found. The revision is the answering member's: one that lags reports a change once it has applied
// it, which a linearizable read through it waits for as well.
func (l *lease) revisionPast(rev int64) (<-chan struct{}, func()) {
	w := &revWaiter{rev: rev, ch: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev > rev {
		close(w.ch)
		return w.ch, func() {}
	}
	if l.past == nil {
		l.past = map[*revWaiter]struct{}{}
	}
	l.past[w] = struct{}{}
	return w.ch, func() {
		l.mu.Lock()
		delete(l.past, w)
		l.mu.Unlock()
	}
}

// headroom is how much longer than the configured TTL (the master's validity) the store's lease is
// granted: a second below minExpiryTTL, so that a backup can tell from the store's whole-second
// reading that a master has had no renewal for its validity and end its lease early (expiry.go);
// none from minExpiryTTL on, where a backup can see the lease itself expire.
func headroom(ttl time.Duration) time.Duration {
	if ttl < minExpiryTTL {
		return time.Second
	}
	return 0
}

// Headroom returns how much longer than ttl the elector asks for its leases (see headroom): a
// second below 3s, where the backup first in line ends a dead master's term once the store shows
// the lease unrenewed for ttl, reading every EarlyEndReading; 0 from 3s on.
func Headroom(ttl time.Duration) time.Duration { return headroom(ttl) }

// EarlyEndReading is how often the backup first in line reads a lease with headroom.
const EarlyEndReading = fastReading

// validity is the Validity this elector's candidates publish: the TTL when its leases have
// headroom, else 0 (the lease's own TTL).
func (e *Elector) validity() time.Duration {
	if headroom(e.cfg.TTL) > 0 {
		return e.cfg.TTL
	}
	return 0
}

// grant asks for a lease of the configured TTL plus headroom. It returns a *TTLError (and revokes
// the lease) when the store grants another TTL, or, before the first lease, when the configured
// TTL is below the store's minimum (which headroom would otherwise hide; learnt later, it is logged:
// Run does not end a working candidacy for it).
func (e *Elector) grant(ctx context.Context, c *conn) (*lease, error) {
	if m := e.minTTL; m > e.cfg.TTL && e.leases == 0 {
		return nil, &TTLError{Requested: e.cfg.TTL, Granted: m}
	}
	ttl := int64((e.cfg.TTL + headroom(e.cfg.TTL)) / time.Second)
	var resp *clientv3.LeaseGrantResponse
	sent := time.Now()
	err := c.do(ctx, e.cfg.DialTimeout, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Grant(ctx, ttl)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: grant %v lease on %v: %w", e.cfg.TTL, e.cfg.Endpoints, err)
	}
	if resp.TTL != ttl {
		_ = c.do(ctx, e.cfg.DialTimeout, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.Revoke(ctx, resp.ID) // best effort: it would expire anyway
			return err
		})
		return nil, &TTLError{Requested: e.cfg.TTL, Granted: time.Duration(resp.TTL) * time.Second}
	}
	e.leases++
	l := &lease{id: resp.ID, ttl: time.Duration(resp.TTL) * time.Second, validity: e.cfg.TTL, renewed: make(chan struct{}, 1)}
	l.deadline = fencing.Deadline(sent, l.validity, e.cfg.Margin)
	return l, nil
}

// keepalive renews l every KeepaliveInterval, one keepalive at a time on one long-lived stream (see
// renewer), each attempt bounded by the interval; a failed attempt moves c to the next endpoint, so
// the next one (at once: the failed one used up the interval) reaches another member. Every
// acknowledgement moves l's deadline to fencing.Deadline(send time, TTL, Margin), the send time
// being taken before the attempt (before any stream is opened for it). A missed deadline is not a reason to stop: the lease may
// well be alive (a store leader election, a quorum loss: a new leader extends every lease), and the
// elector learns which only from the store. keepalive returns errLeaseLost when the store answers
// that the lease is gone, and nil when ctx is done.
func (e *Elector) keepalive(ctx context.Context, c *conn, l *lease, log *zap.Logger) error {
	t := time.NewTicker(e.cfg.KeepaliveInterval)
	defer t.Stop()
	r := &renewer{c: c, id: l.id, pause: e.cfg.RetryMin}
	defer r.Close()
	failing, overdue := false, false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sent := time.Now()
		_, err := r.renew(ctx, e.cfg.KeepaliveInterval) // the deadline follows the validity, not the TTL answered
		rtt := time.Since(sent)
		if err == nil && l.ttl > l.validity && !time.Now().Before(l.Deadline()) {
			// Answered after the deadline: the store may have gone the validity without a renewal,
			// and a backup may be ending the lease (expiry.go). Touch the key before holding on.
			err = e.touch(ctx, c, l, log)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound): // also a TTL <= 0 answer
			log.Warn("etcd says the lease is gone", zap.Error(err))
			return errLeaseLost
		case errors.Is(err, errLeaseLapsed):
			return err
		case err != nil:
			if !failing {
				log.Warn("lease keepalive failed; renewing on", zap.Error(err))
				failing = true
			}
			if !overdue && !time.Now().Before(l.Deadline()) {
				overdue = true
				e.setReachable(false)
			}
			continue
		}
		if e.cfg.OnRTT != nil {
			e.cfg.OnRTT(rtt)
		}
		// Recovered from failures, or answered after a long silence (a short partition the keepalive
		// survived): count it as regained contact, so that the VIPs are announced again.
		recovered := failing || rtt > e.cfg.KeepaliveInterval/2
		if recovered {
			log.Info("lease keepalive answered again", zap.Duration("round-trip", rtt), zap.Bool("after-failures", failing))
			failing = false
		}
		l.renew(fencing.Deadline(sent, l.validity, e.cfg.Margin), recovered, r.rev)
		if overdue {
			overdue = false
			e.setReachable(true)
		}
	}
}

// touch marks this lease's election key after a keepalive that was answered past the deadline: a
// put that keeps value and lease but moves the key's mod revision, which voids a backup's pending
// early end of the lease (expiry.go: the backup deletes the key only at the mod revision it read
// before it saw the lease run out). A key that is gone while the candidacy believes it queued
// (l.keyRev) was ended by a backup: touch returns errLeaseLapsed, and this lease must not be held
// again. A candidacy with no key (not queued yet, in maintenance, pausing after a yield) has
// nothing a backup could end, and holds on.
func (e *Elector) touch(ctx context.Context, c *conn, l *lease, log *zap.Logger) error {
	key := e.keyOf(l)
	var resp *clientv3.TxnResponse
	err := c.do(ctx, e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
			Then(clientv3.OpPut(key, "", clientv3.WithIgnoreValue(), clientv3.WithIgnoreLease())).
			Commit()
		return err
	})
	switch {
	case err != nil:
		log.Warn("keepalive answered past the deadline, but marking the election key failed; not holding on yet", zap.Error(err))
		return err
	case !resp.Succeeded && l.keyRev.Load() == 0:
		return nil // not queued: no key to end
	case !resp.Succeeded:
		log.Warn("keepalive answered past the deadline, and the election key is gone; campaigning with a new lease", zap.String("key", key))
		return errLeaseLapsed
	}
	log.Info("keepalive answered past the deadline; election key marked, holding on", zap.String("key", key))
	return nil
}

// keyOf returns lease l's election key: <prefix>/<lease id in hex>.
func (e *Elector) keyOf(l *lease) string { return fmt.Sprintf("%s/%x", e.prefix, int64(l.id)) }

// revoke revokes l on the way out (Run's ctx is done). Once keepalives have stopped the store
// expires the lease within its TTL anyway, so retrying longer than that gains nothing: revoke
// retries, each attempt bounded by KeepaliveInterval and moving on to the next endpoint when one
// fails, for at most one TTL in all.
func (e *Elector) revoke(c *conn, l *lease, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl)
	defer cancel()
	err := e.retry(ctx, func(ctx context.Context) error {
		return c.do(ctx, e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) error {
			_, err := cli.Revoke(ctx, l.id)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return nil // gone already
			}
			return err
		})
	})
	if err != nil {
		log.Warn("revoking the lease failed; it expires within its TTL", zap.Duration("ttl", l.ttl), zap.Error(err))
		return
	}
	if e.onLease != nil {
		e.onLease(0)
	}
}

// retry calls f until it succeeds, fails with an error marked permanent (which it returns
// unwrapped), or ctx is done (it returns f's last error then), backing off between attempts.
func (e *Elector) retry(ctx context.Context, f func(ctx context.Context) error) error {
	for failures := 1; ; failures++ {
		err := f(ctx)
		var p permanentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &p):
			return p.error
		}
		if !sleep(ctx, backoff(e.cfg, failures)) {
			return err
		}
	}
}

// permanentError marks an error that retrying does not cure.
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

func permanent(err error) error { return permanentError{err} }

// backoff returns the wait after the given number of failures in a row: RetryMin doubling up to
// RetryMax, with ±20% jitter so that candidates cut off together do not retry in lockstep.
func backoff(cfg Config, failures int) time.Duration {
	d := min(cfg.RetryMin<<min(max(failures-1, 0), 16), cfg.RetryMax)
	return d + time.Duration((rand.Float64()-0.5)*0.4*float64(d))
}

// sleep waits d and reports true, or reports false as soon as ctx is done.
var sleep = retry.Sleep
