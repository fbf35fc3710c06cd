package zk_test

import (
	"context"
	"sync"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// harness runs the conformance suite's candidates against one ZooKeeper (tick 100ms) with 1s
// sessions (LocalConfig): the suite's TTL is the negotiated session timeout. Each candidate reaches
// the server through its own faultnet proxy (Partition).
//
// Kill expires the candidate's session the only way a ZooKeeper session expires: the client goes
// silent. It cuts the candidate off, waits (on a watch, from a direct connection) until the server
// has expired the session and deleted its candidate znode, and reconnects it; the Elector then learns
// of the expiry and campaigns again. Closing the session from outside instead (zktest.CloseSession,
// see TestSessionClosedFromOutside) makes the server drop the client's connection and elect the next
// master within milliseconds, while the killed master, whose last deadline has not passed, still
// reports Master: the suite's "more than one node reports Master" check would race.
type harness struct {
	srv *zktest.Server
	raw *gozk.Conn
}

func (h *harness) TTL() time.Duration { return zkb.LocalConfig().SessionTimeout }

func (h *harness) NewCandidate(t *testing.T, group, name string) electiontest.Candidate {
	px := faultnet.Start(t, h.srv.Addr())
	e, err := zkb.New(config(px.Addr(), group, name), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	// The goroutine that heals a Kill's partition is waited for before the proxy closes.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	return electiontest.Candidate{
		Elector: e,
		Kill: func() {
			id, _ := f.session()
			gone, err := watchSession(h.raw, group, id)
			if err != nil {
				t.Errorf("kill %s: %v", name, err)
				return
			}
			px.Block()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer px.Unblock()
				select {
				case <-gone:
				case <-ctx.Done():
				}
			}()
		},
		Partition: func(cut bool) {
			if cut {
				px.Block()
			} else {
				px.Unblock()
			}
		},
	}
}

func (h *harness) NewObserver(t *testing.T, group string) election.Observer {
	o, err := zkb.NewObserver(config(h.srv.Addr(), group, ""), testLogger(t).Named("observer"))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestConformance(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	electiontest.Run(t, &harness{srv: srv, raw: raw(t, srv.Addr(), "")})
}
