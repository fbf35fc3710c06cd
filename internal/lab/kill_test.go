package lab

import (
	"context"
	"slices"
	"testing"
	"time"
)

// SIGKILL of the master's daemon: its fence guard removes the VIP the moment its pipe closes and,
// once the VIP is gone, ends the dead daemon's candidacy in the store (etcd: revokes its lease
// through the JSON gateway; ZooKeeper: closes its session), so the next candidate binds the VIP at
// once rather than when the store notices the silence (lease TTL or session timeout: at least
// TTL - keepalive interval after the kill, 1.5s here). Never two holders: the candidacy ends only
// after the VIP is gone. Several kills at random phases of the keepalives, each node restarted in
// between.
func TestKillTakeoverEndsTheCandidacy(t *testing.T) { forBackends(t, testKillTakeover) }

func testKillTakeover(t *testing.T, backend string) {
	l := newLab(t, backend, func(o *Options) { o.Jitter = testTTL / 2 })
	t.Logf("lab logs in %s", l.Dir())
	const runs = 4
	// Well below what the store's own detection can give (>= TTL - TTL/4), with room for a loaded
	// 2-core machine: the path is a pipe EOF, a netlink delete, one store request, a watch event
	// and the next master's campaign and bind.
	bound := testTTL / 4
	var takeovers, released []time.Duration
	for i := range runs {
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := l.RestoreAll(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		r := runScenario(t, l, Kill)
		takeovers, released = append(takeovers, r.Takeover), append(released, r.OldReleased)
		if r.TwoHolders != 0 {
			t.Errorf("run %d: two holders for %v after the SIGKILL", i, r.TwoHolders)
		}
		if r.OldReleased < 0 || r.OldReleased > r.Takeover {
			t.Errorf("run %d: the killed node's VIP went %v after the kill, the new holder bound it after %v", i, r.OldReleased, r.Takeover)
		}
		if r.Takeover > bound {
			t.Errorf("run %d: %s took over %v after the kill, want within %v: the dead daemon's candidacy was not ended", i, r.New, r.Takeover, bound)
		}
	}
	slices.Sort(takeovers)
	slices.Sort(released)
	t.Logf("%s kill, %d runs: takeover min %v median %v max %v; old released min %v median %v max %v", backend, runs,
		takeovers[0], takeovers[len(takeovers)/2], takeovers[len(takeovers)-1], released[0], released[len(released)/2], released[len(released)-1])
}
