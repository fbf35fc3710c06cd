// Package retry holds the waits of the backends' retry loops: a sleep that ends with its context,
// and the rounds over a list of servers that the fence guard's one-shot calls (an etcd lease revoke,
// a ZooKeeper session close) make until one server answers.
package retry

import (
	"context"
	"time"
)

// Sleep waits d and reports true, or reports false as soon as ctx is done.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Pause is the wait after round (from 0) of tries over every server: 50ms, doubling, up to 800ms
// (the fifth round on).
func Pause(round int) time.Duration {
	return min(50*time.Millisecond<<min(round, 4), time.Second)
}

// Servers calls try on each server in turn, round after round with a Pause between rounds, until
// try reports done, and returns the error try returned with it. When ctx is done it returns the
// last error try returned (nil if it was never called). try bounds each of its calls itself.
func Servers[S any](ctx context.Context, servers []S, try func(S) (done bool, err error)) error {
	var last error
	for round := 0; ; round++ {
		for _, s := range servers {
			done, err := try(s)
			if done {
				return err
			}
			last = err
			if ctx.Err() != nil {
				return last
			}
		}
		if !Sleep(ctx, Pause(round)) {
			return last
		}
	}
}
