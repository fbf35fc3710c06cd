package zk

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// conn is the part of go-zookeeper's *zk.Conn that the elector and the observer call. A session
// hands out a guardedConn; tests wrap it to inject faults (a reply lost after the server applied
// the request, a delay).
type conn interface {
	Children(path string) ([]string, *zk.Stat, error)
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Delete(path string, version int32) error
	Exists(path string) (bool, *zk.Stat, error)
	ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error)
	Get(path string) ([]byte, *zk.Stat, error)
	GetW(path string) ([]byte, *zk.Stat, <-chan zk.Event, error)
	ChildrenW(path string) ([]string, *zk.Stat, <-chan zk.Event, error)
	Set(path string, data []byte, version int32) (*zk.Stat, error)
	Multi(ops ...any) ([]zk.MultiResponse, error)
	Sync(path string) (string, error)
}

// guardedConn is a *zk.Conn whose every request is watched by a stallGuard.
type guardedConn struct {
	c *zk.Conn
	g *stallGuard
}

var _ conn = guardedConn{}

func (g guardedConn) Children(p string) ([]string, *zk.Stat, error) {
	defer g.g.begin()()
	return g.c.Children(p)
}

func (g guardedConn) Create(p string, data []byte, flags int32, acl []zk.ACL) (string, error) {
	defer g.g.begin()()
	return g.c.Create(p, data, flags, acl)
}

func (g guardedConn) Delete(p string, version int32) error {
	defer g.g.begin()()
	return g.c.Delete(p, version)
}

func (g guardedConn) Exists(p string) (bool, *zk.Stat, error) {
	defer g.g.begin()()
	return g.c.Exists(p)
}

func (g guardedConn) ExistsW(p string) (bool, *zk.Stat, <-chan zk.Event, error) {
	defer g.g.begin()()
	return g.c.ExistsW(p)
}

func (g guardedConn) Get(p string) ([]byte, *zk.Stat, error) {
	defer g.g.begin()()
	return g.c.Get(p)
}

func (g guardedConn) GetW(p string) ([]byte, *zk.Stat, <-chan zk.Event, error) {
	defer g.g.begin()()
	return g.c.GetW(p)
}

func (g guardedConn) ChildrenW(p string) ([]string, *zk.Stat, <-chan zk.Event, error) {
	defer g.g.begin()()
	return g.c.ChildrenW(p)
}

func (g guardedConn) Set(p string, data []byte, version int32) (*zk.Stat, error) {
	defer g.g.begin()()
	return g.c.Set(p, data, version)
}

func (g guardedConn) Multi(ops ...any) ([]zk.MultiResponse, error) {
	defer g.g.begin()()
	return g.c.Multi(ops...)
}

func (g guardedConn) Sync(p string) (string, error) {
	defer g.g.begin()()
	return g.c.Sync(p)
}

// stallGuard drops the connection to the current server when requests have been in flight on it
// for limit without any of them being answered, so that go-zookeeper moves on to the next server of
// the ensemble at once. Left alone, go-zookeeper notices a silent server only after its receive
// timeout (two thirds of the session timeout: too late to keep the master's deadline, which trails
// its last renewal by up to half the session), and never notices a follower that has lost its
// leader: such a follower keeps its clients for syncLimit ticks and answers their pings itself, while
// every request that needs the leader (our Sync, every write) waits.
//
// Requests made while no connection is up are not timed: go-zookeeper sends them once it has one,
// and the guard starts counting then. One goroutine (run, owned by the session) keeps the timer;
// begin is safe from any goroutine.
type stallGuard struct {
	limit func() time.Duration
	up    func() time.Time   // when the current connection got its session; zero while down
	drop  func(up time.Time) // closes the connection that got its session at up, if still current
	kick  chan struct{}      // cap 1: re-evaluate

	mu       sync.Mutex
	inflight int
	progress time.Time // a request began with none in flight, or one was answered

	armed atomic.Int64 // times run armed its timer (for tests)
	fired atomic.Int64 // times run's timer fired at the time it was set for (for tests)
}

func newStallGuard(limit func() time.Duration, up func() time.Time, drop func(time.Time)) *stallGuard {
	return &stallGuard{limit: limit, up: up, drop: drop, kick: make(chan struct{}, 1)}
}

// begin records a request going out and returns the function that records its answer (or failure).
func (g *stallGuard) begin() (end func()) {
	g.mu.Lock()
	if g.inflight == 0 {
		g.progress = time.Now()
	}
	g.inflight++
	g.mu.Unlock()
	g.poke()
	return func() {
		g.mu.Lock()
		g.inflight--
		g.progress = time.Now()
		idle := g.inflight == 0
		g.mu.Unlock()
		if idle {
			// run stops its timer now, while the process is awake for the answer anyway: left
			// armed, it would fire limit later only to find nothing in flight, a wake-up of its own
			// for every request (two a second for an idle candidate at a 2s session).
			g.poke()
		}
	}
}

// poke makes run look again (a request began, the last one in flight ended, a connection came up).
func (g *stallGuard) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// run drops stalled connections until ctx is done.
func (g *stallGuard) run(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	flush := false // t was set to expire at once (below)
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
		case <-t.C:
			if !flush {
				g.fired.Add(1)
			}
			flush = false
		}
		pending := t.Stop()
		switch wait := g.check(time.Now()); {
		case wait > 0:
			t.Reset(wait)
			flush = false
			g.armed.Add(1)
		case pending:
			// Nothing in flight, the timer stopped early (end poked): let it expire now instead.
			// The runtime leaves a stopped timer in its heap, and sleeps until the time it was
			// set for before it notices, a wake-up of the process for nothing; a timer moved
			// earlier is taken out while the process is still awake. It fires into the next
			// turn of this loop, which finds nothing to do.
			t.Reset(time.Nanosecond)
			flush = true
		}
	}
}

// check drops the connection if it has stalled at now, and returns how long to wait before looking
// again (0: until poked).
func (g *stallGuard) check(now time.Time) time.Duration {
	up, limit := g.up(), g.limit()
	g.mu.Lock()
	if g.inflight == 0 || up.IsZero() {
		g.mu.Unlock()
		return 0
	}
	since := g.progress
	if up.After(since) {
		since = up // the requests were sent (again) when this connection came up
	}
	wait := since.Add(limit).Sub(now)
	if wait <= 0 {
		g.progress = now // the next connection gets its own limit
	}
	g.mu.Unlock()
	if wait > 0 {
		return wait
	}
	g.drop(up)
	return limit
}
