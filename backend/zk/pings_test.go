package zk_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// While the liveness round trips run, no ping reaches the server: it would only touch the session
// later than the last round trip did, which delays the server's expiry of a crashed master's
// session. go-zookeeper's ping ticker does not even fire (it would wake the process for nothing),
// and a reconnection still asks for the session timeout the server granted. Once the campaign loop
// stands still (no round trips for a while) pings go out and keep the session: the master comes
// back with the same term.
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

	// 2s of a 1s session: go-zookeeper would ping every 333ms (six times), the round trips go every
	// 250ms.
	before, lib, from := tap.pings.Load(), zkb.LibraryPings(), time.Now()
	a.rec.waitFor(t, "2s of renewals", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && time.Since(from) > 2*time.Second
	})
	if n := tap.pings.Load() - before; n > 1 {
		t.Errorf("%d pings reached the server in 2s of liveness round trips, want none (at most one at a boundary)", n)
	}
	if n := zkb.LibraryPings() - lib; n > 0 {
		t.Errorf("go-zookeeper's ping ticker fired %d times in 2s, want never", n)
	}

	// A reconnection within the session asks for the granted 1s, not what go-zookeeper was told.
	tap.dropAll()
	from = time.Now()
	a.rec.waitFor(t, "renewed after the reconnection", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && time.Since(from) > 500*time.Millisecond
	})
	if asked := tap.connectTimeouts(); len(asked) < 2 || slices.ContainsFunc(asked, func(ms uint32) bool { return ms != 1000 }) {
		t.Errorf("the connect requests asked for %v ms, want 1000 every time (at least twice)", asked)
	}

	stall := make(chan struct{})
	f.stall.Store(&stall)
	stalled := tap.pings.Load()
	a.rec.waitFor(t, "a lets go at its deadline", func(s election.State) bool { return s.Role != election.Master })
	for tap.pings.Load()-stalled < 4 { // the first after 625ms, then every 375ms: longer than the session
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
	asked  []uint32 // the timeout (ms) of each connect request
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

// dropAll closes every connection through the tap: the clients reconnect within their sessions.
func (p *pingTap) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// connectTimeouts returns the timeouts the connect requests asked for, in ms.
func (p *pingTap) connectTimeouts() []uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

// forward copies length-prefixed frames from c to s, counting the pings and noting the timeout of
// the connect request (the first frame: protocolVersion, lastZxidSeen, timeOut).
func (p *pingTap) forward(s, c net.Conn) {
	head := make([]byte, 4)
	for first := true; ; first = false {
		if _, err := io.ReadFull(c, head); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(head))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if first && len(body) >= 16 {
			p.mu.Lock()
			p.asked = append(p.asked, binary.BigEndian.Uint32(body[12:16]))
			p.mu.Unlock()
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
