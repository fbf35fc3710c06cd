package zk_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// An idle master checks its candidate znode once, with a watch (sessionRun.checkCandidate), not
// with an Exists every liveness round trip; a delete of that znode is noticed through the watch at
// once, not at the next round trip.
func testCandidateWatch(t *testing.T, addr string) {
	cfg := config(addr, "candwatch", "a")
	cfg.SessionTimeout = 2 * time.Second // round trips every 500ms (the test server's maximum session)
	e, err := zkb.New(cfg, testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var exists atomic.Int32
	zkb.WrapConn(e, func(c zkb.Conn, _ int64, _ []byte) zkb.Conn { return existsCounter{Conn: c, n: &exists} })
	a := runNode(t, "a", e)
	a.waitMaster(t)

	// 2s: four round trips.
	before, from := exists.Load(), time.Now()
	a.rec.waitFor(t, "2s of renewals", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && time.Since(from) > 2*time.Second
	})
	if n := exists.Load() - before; n > 1 {
		t.Errorf("%d candidate checks in 2s (4 liveness round trips) of an idle master, want at most 1 (a watch)", n)
	}

	// Right after a renewal: the next round trip is about 500ms away.
	c := raw(t, addr, "")
	cands := candidates(t, c, "/hacoord/candwatch/election")
	if len(cands) != 1 {
		t.Fatalf("candidates %v, want one", cands)
	}
	seen := len(a.rec.all())
	last := a.rec.waitFor(t, "a renewal", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && len(a.rec.all()) > seen
	})
	if late := time.Since(last.At); late > 100*time.Millisecond {
		t.Skipf("the renewal was seen %v late; cannot time the delete against the next round trip", late)
	}
	deleted := time.Now()
	if err := c.Delete("/hacoord/candwatch/election/"+cands[0], -1); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, "a gives up", func(s election.State) bool {
		return s.Role != election.Master && s.Reason == "candidate znode deleted"
	})
	if d := time.Since(deleted); d > 150*time.Millisecond {
		t.Errorf("the master noticed its candidate znode deleted after %v, want well within a round trip interval (500ms): the watch", d)
	}
	a.rec.waitFor(t, "a master again with a new candidate", isRole(election.Master))

	// A backup has no children watch on the election (it watches its predecessor): only its own
	// watch tells it at once that its candidate znode is gone, and it joins again.
	mine := candidates(t, c, "/hacoord/candwatch/election")
	eb, err := zkb.New(config(addr, "candwatch", "b"), testLogger(t).Named("b"))
	if err != nil {
		t.Fatal(err)
	}
	checked := make(chan string, 16)
	zkb.WrapConn(eb, func(c zkb.Conn, _ int64, _ []byte) zkb.Conn {
		return existsCounter{Conn: c, n: new(atomic.Int32), done: checked}
	})
	b := runNode(t, "b", eb)
	b.rec.waitFor(t, "b backup", isRole(election.Backup))
	var bs string
	for _, n := range candidates(t, c, "/hacoord/candwatch/election") {
		if !slices.Contains(mine, n) {
			bs = n
		}
	}
	if bs == "" {
		t.Fatal("no candidate znode of b's")
	}
	for p := ""; p != "/hacoord/candwatch/election/"+bs; { // b's first round trip armed the watch
		select {
		case p = <-checked:
		case <-time.After(waitLimit):
			t.Fatalf("b did not check its candidate znode within %v", waitLimit)
		}
	}
	deleted = time.Now()
	if err := c.Delete("/hacoord/candwatch/election/"+bs, -1); err != nil {
		t.Fatal(err)
	}
	for {
		ch, _, w, err := c.ChildrenW("/hacoord/candwatch/election")
		if err != nil {
			t.Fatal(err)
		}
		if len(ch) == 2 {
			break
		}
		select {
		case <-w:
		case <-time.After(waitLimit):
			t.Fatalf("b did not join again within %v of its candidate znode's delete", waitLimit)
		}
	}
	if d := time.Since(deleted); d > 150*time.Millisecond {
		t.Errorf("the backup joined again %v after its candidate znode was deleted, want well within a round trip interval (250ms): the watch", d)
	}
}

// existsCounter counts the Exists and ExistsW requests of a session; done, if not nil, receives
// the path of each answered ExistsW (dropped when full).
type existsCounter struct {
	zkb.Conn
	n    *atomic.Int32
	done chan string
}

func (c existsCounter) Exists(p string) (bool, *gozk.Stat, error) {
	c.n.Add(1)
	return c.Conn.Exists(p)
}

func (c existsCounter) ExistsW(p string) (bool, *gozk.Stat, <-chan gozk.Event, error) {
	c.n.Add(1)
	ok, st, w, err := c.Conn.ExistsW(p)
	if c.done != nil {
		select {
		case c.done <- p:
		default:
		}
	}
	return ok, st, w, err
}
