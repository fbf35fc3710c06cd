package zk_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/zktest"
)

// waitLimit bounds every wait for an event in these tests: generous for a loaded 2-core machine,
// far below anything a hung test would reach.
const waitLimit = 15 * time.Second

// stamped is a State and when the test received it.
type stamped struct {
	election.State
	At time.Time
}

// recorder keeps every State a node reported and wakes waiters on each.
type recorder struct {
	mu      sync.Mutex
	states  []stamped
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(s election.State) {
	r.mu.Lock()
	r.states = append(r.states, stamped{s, time.Now()})
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// all returns a copy of the history.
func (r *recorder) all() []stamped {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stamped(nil), r.states...)
}

func (r *recorder) last() (stamped, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return stamped{}, false
	}
	return r.states[len(r.states)-1], true
}

// waitFor waits until the latest State satisfies ok.
func (r *recorder) waitFor(t testing.TB, what string, ok func(election.State) bool) stamped {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		c := r.changed
		var cur stamped
		have := len(r.states) > 0
		if have {
			cur = r.states[len(r.states)-1]
		}
		r.mu.Unlock()
		if have && ok(cur.State) {
			return cur
		}
		select {
		case <-c:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; last state %+v", waitLimit, what, cur)
		}
	}
}

func isRole(role election.Role) func(election.State) bool {
	return func(s election.State) bool { return s.Role == role }
}

// node runs one Elector the way the Coordinator does: it always reads out.
type node struct {
	name   string
	e      *zkb.Elector
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startNode(t testing.TB, cfg zkb.Config, log *zap.Logger) *node {
	t.Helper()
	if log == nil {
		log = testLogger(t)
	}
	e, err := zkb.New(cfg, log.Named(cfg.Name))
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	return runNode(t, cfg.Name, e)
}

// runNode runs e until the test ends.
func runNode(t testing.TB, name string, e *zkb.Elector) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{name: name, e: e, rec: newRecorder(), cancel: cancel, done: make(chan error, 1)}
	out := election.NewOutbox()
	runDone := make(chan error, 1)
	go func() { runDone <- e.Run(ctx, out) }()
	go func() {
		for {
			select {
			case <-out.Ready():
				out.TakeAll(n.rec.add)
			case err := <-runDone:
				out.TakeAll(n.rec.add)
				n.done <- err
				return
			}
		}
	}()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop cancels Run and waits for it to return; it returns Run's error.
func (n *node) stop(t testing.TB) error {
	t.Helper()
	n.once.Do(func() {
		n.cancel()
		select {
		case n.err = <-n.done:
		case <-time.After(waitLimit):
			n.err = fmt.Errorf("node %s: Run did not return within %v of cancel", n.name, waitLimit)
			t.Error(n.err)
		}
	})
	return n.err
}

func (n *node) waitMaster(t testing.TB) stamped {
	t.Helper()
	return n.rec.waitFor(t, n.name+" master", isRole(election.Master))
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel))
}

// config is LocalConfig for one node of group on srv's address.
func config(addr, group, name string) zkb.Config {
	c := zkb.LocalConfig()
	c.Servers = []string{addr}
	c.Group = group
	c.Name = name
	c.Record = election.Record{
		Address: netip.MustParseAddr("192.0.2.10"),
		VIPs:    []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32")},
	}
	return c
}

// raw is a plain go-zookeeper session for inspecting and tampering, closed in t.Cleanup. addr is
// host:port or a comma-separated list.
func raw(t testing.TB, addr, auth string) *gozk.Conn {
	t.Helper()
	c, ev, err := gozk.Connect(strings.Split(addr, ","), 5*time.Second, gozk.WithLogInfo(false), gozk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for c.State() != gozk.StateHasSession {
		select {
		case <-ev:
		case <-deadline.C:
			t.Fatalf("raw client: no session with %s", addr)
		}
	}
	if auth != "" {
		if err := c.AddAuth("digest", []byte(auth)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// candidates lists the election's children.
func candidates(t testing.TB, c *gozk.Conn, electionPath string) []string {
	t.Helper()
	ch, _, err := c.Children(electionPath)
	if err != nil && err != gozk.ErrNoNode {
		t.Fatalf("children of %s: %v", electionPath, err)
	}
	return ch
}

// watchers parses `wchp` (paths and the sessions watching each) for paths under prefix.
func watchers(t testing.TB, addr, prefix string) map[string][]string {
	t.Helper()
	s, err := zktest.FourLetter(context.Background(), addr, "wchp")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	var cur string
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "/"):
			cur = strings.TrimSpace(line)
		case strings.TrimSpace(line) != "" && cur != "" && strings.HasPrefix(cur, prefix):
			m[cur] = append(m[cur], strings.TrimSpace(line))
		}
	}
	return m
}

// observe runs an Observer and records what it sends.
type observed struct {
	mu      sync.Mutex
	recs    []election.Record
	changed chan struct{}
}

func startObserver(t testing.TB, cfg zkb.Config) *observed {
	t.Helper()
	o, err := zkb.NewObserver(cfg, testLogger(t).Named("observer"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan election.Record)
	ob := &observed{changed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- o.Observe(ctx, out) }()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case r := <-out:
				ob.mu.Lock()
				ob.recs = append(ob.recs, r)
				close(ob.changed)
				ob.changed = make(chan struct{})
				ob.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-readerDone
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Observe: %v", err)
			}
		case <-time.After(waitLimit):
			t.Error("Observe did not return after cancel")
		}
	})
	return ob
}

func (o *observed) waitFor(t testing.TB, what string, ok func(election.Record) bool) election.Record {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		c := o.changed
		var cur election.Record
		have := len(o.recs) > 0
		if have {
			cur = o.recs[len(o.recs)-1]
		}
		o.mu.Unlock()
		if have && ok(cur) {
			return cur
		}
		select {
		case <-c:
		case <-deadline.C:
			t.Fatalf("observer: waited %v for %s; last record %+v", waitLimit, what, cur)
		}
	}
}

// faults wraps an Elector's connections (zkb.WrapConn) to learn each session and to inject faults:
// a candidate create whose reply is lost after the server applied it, deletes that fail.
type faults struct {
	loseCreate  atomic.Bool
	failDeletes atomic.Int32 // this many Delete and Multi calls fail (connection lost) unsent
	deletes     atomic.Int32 // Delete and Multi calls made
	// stall, while not nil, holds every Sync (the liveness round trip) until it is closed: the
	// campaign loop, which sends them, stands still.
	stall atomic.Pointer[chan struct{}]

	mu     sync.Mutex
	id     int64
	passwd []byte
}

// wrap installs f on e; call it before Run.
func (f *faults) wrap(e *zkb.Elector) {
	zkb.WrapConn(e, func(c zkb.Conn, id int64, passwd []byte) zkb.Conn {
		f.mu.Lock()
		f.id, f.passwd = id, passwd
		f.mu.Unlock()
		return faultConn{Conn: c, f: f}
	})
}

// session returns the id and password of the latest session.
func (f *faults) session() (int64, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id, f.passwd
}

type faultConn struct {
	zkb.Conn
	f *faults
}

// Create loses the reply of a candidate create (a sequential znode) when asked to.
func (c faultConn) Create(path string, data []byte, flags int32, acl []gozk.ACL) (string, error) {
	p, err := c.Conn.Create(path, data, flags, acl)
	if err == nil && flags&gozk.FlagSequence != 0 && c.f.loseCreate.CompareAndSwap(true, false) {
		return "", gozk.ErrConnectionClosed // applied, but the answer never came
	}
	return p, err
}

// failDelete reports whether this delete is to fail.
func (c faultConn) failDelete() bool {
	c.f.deletes.Add(1)
	return c.f.failDeletes.Add(-1) >= 0
}

func (c faultConn) Delete(path string, version int32) error {
	if c.failDelete() {
		return gozk.ErrConnectionClosed
	}
	return c.Conn.Delete(path, version)
}

// Sync waits while the test stalls the liveness round trips.
func (c faultConn) Sync(path string) (string, error) {
	if ch := c.f.stall.Load(); ch != nil {
		<-*ch
	}
	return c.Conn.Sync(path)
}

func (c faultConn) Multi(ops ...any) ([]gozk.MultiResponse, error) {
	if c.failDelete() {
		return nil, gozk.ErrConnectionClosed
	}
	return c.Conn.Multi(ops...)
}
