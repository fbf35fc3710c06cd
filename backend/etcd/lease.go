package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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

// lease is one etcd lease of the elector and the self-fencing deadline its acknowledged keepalives
// give. Its keepalive loop is its only writer; any goroutine may read.
type lease struct {
	id  clientv3.LeaseID
	ttl time.Duration // as granted

	mu       sync.Mutex
	deadline time.Time // fencing.Deadline of the last acknowledged keepalive
	contact  uint64    // times renewals recovered after failing (State.Contact)
	renewed  chan struct{}
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

func (l *lease) renew(deadline time.Time, recovered bool) {
	l.mu.Lock()
	if deadline.After(l.deadline) {
		l.deadline = deadline
	}
	if recovered {
		l.contact++
	}
	l.mu.Unlock()
	select {
	case l.renewed <- struct{}{}:
	default:
	}
}

// grant asks for a lease of the configured TTL. It returns a *TTLError (and revokes the lease) when
// the store grants another TTL.
func (e *Elector) grant(ctx context.Context, c *conn) (*lease, error) {
	ttl := int64(e.cfg.TTL / time.Second)
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
	l := &lease{id: resp.ID, ttl: time.Duration(resp.TTL) * time.Second, renewed: make(chan struct{}, 1)}
	l.deadline = fencing.Deadline(sent, l.ttl, e.cfg.Margin)
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
		ttl, err := r.renew(ctx, e.cfg.KeepaliveInterval)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound): // also a TTL <= 0 answer
			log.Warn("etcd says the lease is gone", zap.Error(err))
			return errLeaseLost
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
		rtt := time.Since(sent)
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
		l.renew(fencing.Deadline(sent, ttl, e.cfg.Margin), recovered)
		if overdue {
			overdue = false
			e.setReachable(true)
		}
	}
}

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
