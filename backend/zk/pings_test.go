package zk_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// While the liveness round trips run, go-zookeeper's own pings are held back: they would only
// touch the session later than the last round trip did, which delays the server's expiry of a
// crashed master's session. Once the campaign loop stands still (no round trips for a while) the
// pings go out again and keep the session: the master comes back with the same term.
func testNoRedundantPings(t *testing.T, addr string) {
	tap := startPingTap(t, addr)
	e, err := zkb.New(config(tap.addr(), "pings", "a"), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	a := runNode(t, "a", e)
	m := a.waitMaster(t)

	// 2s of a 1s session: go-zookeeper pings every 333ms (six times), the round trips go every 250ms.
	before, from := tap.pings.Load(), time.Now()
	a.rec.waitFor(t, "2s of renewals", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && time.Since(from) > 2*time.Second
	})
	if n := tap.pings.Load() - before; n > 1 {
		t.Errorf("%d pings reached the server in 2s of liveness round trips, want none (at most one at a boundary)", n)
	}

	stall := make(chan struct{})
	f.stall.Store(&stall)
	stalled := tap.pings.Load()
	a.rec.waitFor(t, "a lets go at its deadline", func(s election.State) bool { return s.Role != election.Master })
	for tap.pings.Load()-stalled < 4 { // 4 x 333ms: longer than the session
		select {
		case <-tap.pinged:
		case <-time.After(waitLimit):
			t.Fatalf("the campaign loop stood still for %v and %d pings went out, want 4", waitLimit, tap.pings.Load()-stalled)
		}
	}
	f.stall.Store(nil)
	close(stall)
	s := a.rec.waitFor(t, "a master again", isRole(election.Master))
	if s.Term != m.Term {
		t.Errorf("master again with term %d, want %d: the session was lost while the loop stood still", s.Term, m.Term)
	}
}

// pingTap is a TCP proxy to a ZooKeeper server that counts the pings clients send (frames of
// xid -2, opcode 11).
type pingTap struct {
	ln     net.Listener
	pings  atomic.Int64
	pinged chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

var pingBody = []byte{0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11}

func startPingTap(t *testing.T, target string) *pingTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pingTap{ln: ln, pinged: make(chan struct{}, 64)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(c, s); c.Close() }()
			go func() { defer p.wg.Done(); p.forward(s, c); s.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *pingTap) addr() string { return p.ln.Addr().String() }

// forward copies length-prefixed frames from c to s, counting the pings.
func (p *pingTap) forward(s, c net.Conn) {
	head := make([]byte, 4)
	for {
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if bytes.Equal(body, pingBody) {
			p.pings.Add(1)
			select {
			case p.pinged <- struct{}{}:
			default:
			}
		}
		if _, err := s.Write(append(head, body...)); err != nil {
			return
		}
	}
}
