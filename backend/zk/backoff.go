package zk

import (
	mrand "math/rand/v2"
	"time"

	"github.com/hacoord/hacoord/internal/retry"
)

// backoff is an exponential backoff with jitter (half to full step).
type backoff struct {
	cfg Backoff
	cur time.Duration
}

func newBackoff(c Backoff) *backoff { return &backoff{cfg: c} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.cfg.Initial
	} else {
		b.cur = min(2*b.cur, b.cfg.Max)
	}
	if b.cur <= 0 {
		return 0
	}
	return b.cur/2 + mrand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// retrier is a timer for the next attempt and the backoff that paces failed ones. It belongs to one
// goroutine.
type retrier struct {
	t  *time.Timer
	bo *backoff
}

func newRetrier(c Backoff) *retrier {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &retrier{t: t, bo: newBackoff(c)}
}

// C fires when an attempt is due.
func (r *retrier) C() <-chan time.Time { return r.t.C }

// next arms the timer after a failure and returns the delay.
func (r *retrier) next() time.Duration {
	d := r.bo.next()
	r.t.Reset(d)
	return d
}

// at arms the timer to fire after d.
func (r *retrier) at(d time.Duration) { r.t.Reset(d) }

// reset forgets past failures.
func (r *retrier) reset() { r.bo.reset() }

func (r *retrier) stop() { r.t.Stop() }

// sleep waits d and reports true, or reports false as soon as ctx is done.
var sleep = retry.Sleep
