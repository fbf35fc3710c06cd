package zk_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/zktest"
)

// gateWait is how long takeoverConn holds a request for the one it should overlap with: far longer
// than a round trip on loopback, so a request that only goes out after the held one has been
// answered shows as a held request that gave up waiting.
const gateWait = 2 * time.Second

// takeoverConn watches the takeover's requests. The read of the transfer record (mayLead), the
// reads of the other candidates' values (mayLead) and the read of the released marker (claim)
// must be in flight together: each waits, up to gateWait, for the reads it should overlap with
// (need). The watch on the master's own record must come after Master was reported: once armed,
// an ExistsW on the leader znode waits, up to gateWait, for the node's recorder to hold a Master
// State.
type takeoverConn struct {
	zkb.Conn
	t *takeoverGate
}

type takeoverGate struct {
	transfer, released, leader, election string
	rec                                  *recorder
	watched                              chan struct{} // closed once the leader znode's watch was armed
	watchOnce                            sync.Once

	mu       sync.Mutex
	armed    bool
	inflight map[string]chan struct{} // kind -> closed when a read of that kind is in flight
	serial   []string                 // what had to wait in vain
}

// need lists, per kind of read, the kinds it must overlap with.
var need = map[string][]string{"transfer": {"released", "value"}, "released": {"transfer"}, "value": {"transfer"}}

func (g *takeoverGate) arm() {
	g.mu.Lock()
	g.armed = true
	g.inflight = map[string]chan struct{}{}
	for k := range need {
		g.inflight[k] = make(chan struct{})
	}
	g.mu.Unlock()
}

func (g *takeoverGate) failed() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.serial...)
}

// read holds a read of kind until the reads it must overlap with are in flight too.
func (g *takeoverGate) read(kind, p string) {
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return
	}
	mine := g.inflight[kind]
	select {
	case <-mine:
	default:
		close(mine)
	}
	var others []chan struct{}
	for _, k := range need[kind] {
		others = append(others, g.inflight[k])
	}
	g.mu.Unlock()
	deadline := time.NewTimer(gateWait)
	defer deadline.Stop()
	for i, o := range others {
		select {
		case <-o:
		case <-deadline.C:
			g.mu.Lock()
			g.serial = append(g.serial, "read of "+p+" went out without the "+need[kind][i]+" read")
			g.mu.Unlock()
			return
		}
	}
}

func (c takeoverConn) Get(p string) ([]byte, *gozk.Stat, error) {
	switch p {
	case c.t.transfer:
		c.t.read("transfer", p)
	case c.t.released:
		c.t.read("released", p)
	}
	return c.Conn.Get(p)
}

func (c takeoverConn) GetW(p string) ([]byte, *gozk.Stat, <-chan gozk.Event, error) {
	if strings.HasPrefix(p, c.t.election+"/") {
		c.t.read("value", p)
	}
	return c.Conn.GetW(p)
}

func (c takeoverConn) ExistsW(p string) (bool, *gozk.Stat, <-chan gozk.Event, error) {
	g := c.t
	g.mu.Lock()
	armed := g.armed && p == g.leader
	g.mu.Unlock()
	if !armed {
		return c.Conn.ExistsW(p)
	}
	if !g.rec.waitMaster(gateWait) {
		g.mu.Lock()
		g.serial = append(g.serial, "ExistsW "+p+" before Master was reported")
		g.mu.Unlock()
	}
	ok, st, w, err := c.Conn.ExistsW(p)
	g.watchOnce.Do(func() { close(g.watched) })
	return ok, st, w, err
}

// waitMaster waits up to d for the latest State to be Master; it reports whether it was.
func (r *recorder) waitMaster(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		c := r.changed
		master := len(r.states) > 0 && r.states[len(r.states)-1].Role == election.Master
		r.mu.Unlock()
		if master {
			return true
		}
		select {
		case <-c:
		case <-deadline.C:
			return false
		}
	}
}

// A backup that finds itself first after the master went reads what it needs in as few round trips
// as it can: the transfer record and the other candidates' values (mayLead) and the released
// marker (claim) in one, and it reports Master as soon as its master record is created, arming the
// watch on the record afterwards.
func TestTakeoverRoundTrips(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	const group = "takeover"
	addr := srv.Addr()
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)

	e, err := zkb.New(config(addr, group, "b"), testLogger(t).Named("b"))
	if err != nil {
		t.Fatal(err)
	}
	g := &takeoverGate{transfer: "/hacoord/" + group + "/transfer", released: "/hacoord/" + group + "/released",
		leader: "/hacoord/" + group + "/leader", election: "/hacoord/" + group + "/election", watched: make(chan struct{})}
	zkb.WrapConn(e, func(c zkb.Conn, _ int64, _ []byte) zkb.Conn { return takeoverConn{Conn: c, t: g} })
	b := runNode(t, "b", e)
	g.rec = b.rec
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })
	// c queues behind b: b, a backup until now, has not read its value.
	c := startNode(t, config(addr, group, "c"), nil)
	c.rec.waitFor(t, "c follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	g.arm()
	if err := a.stop(t); err != nil {
		t.Fatal(err)
	}
	b.waitMaster(t)
	select {
	case <-g.watched:
	case <-time.After(waitLimit):
		t.Fatal("b never watched its master record")
	}
	for _, f := range g.failed() {
		t.Errorf("takeover: %s", f)
	}
}
