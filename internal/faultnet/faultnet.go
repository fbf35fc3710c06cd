// Package faultnet is a TCP proxy on loopback that tests put between a client and a server (etcd,
// ZooKeeper) to cut the client off silently, the way a network partition does.
//
// Block stops forwarding in both directions without closing anything: established connections stay
// open and new ones are accepted but not connected to the target, so neither side sees a reset or an
// EOF; each only notices that nothing arrives, and its own timeouts decide what happens. Bytes read
// while blocked are held (at most one buffer per direction, like packets retransmitted after the
// partition heals) and delivered in order on Unblock, so streams stay intact.
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards every TCP connection accepted on Addr to a target address. Its methods are safe for
// concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	ctx    context.Context // done on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	open    chan struct{} // closed while forwarding; replaced by Block
	blocked bool
	delay   time.Duration // added to every chunk, each way (SetDelay)
	conns   map[net.Conn]struct{}
	closed  bool
}

// New listens on 127.0.0.1 (kernel-chosen port) and forwards each connection to target (host:port).
// Unlike most constructors in hacoord it starts the accept goroutine, like httptest.NewServer; Close
// stops it and every connection goroutine and waits for them.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen for %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		open:   make(chan struct{}),
		conns:  make(map[net.Conn]struct{}),
	}
	close(p.open)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// SetDelay makes every chunk of data, in either direction, wait d after it was read before it is
// forwarded: a round trip across the proxy then takes at least 2d, so a client's send and receive
// instants differ by that much. Chunks keep their order; a chunk that arrives while an earlier one
// waits is read only after that one was written, so under a stream of data the delay adds up (the
// request/response traffic of keepalives and pings sees d each way). 0 turns it off.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay
}

// Addr returns the proxy's listening address (127.0.0.1:port), to give clients instead of target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Block stops forwarding in both directions and holds new connections unconnected, without closing
// anything: a silent partition. Blocking a blocked proxy does nothing.
func (p *Proxy) Block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.blocked {
		p.blocked = true
		p.open = make(chan struct{})
	}
}

// Unblock resumes forwarding: held bytes are delivered and held connections are connected to the
// target.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocked {
		p.blocked = false
		close(p.open)
	}
}

// Blocked reports whether the proxy is blocked.
func (p *Proxy) Blocked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked
}

// Close stops accepting, closes every connection (both sides see them end) and waits for the proxy's
// goroutines. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultnet: close %s: %w", p.Addr(), err)
	}
	return nil
}

// track registers c to be closed by Close; it reports false (and closes c) when the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// waitOpen returns nil once the proxy forwards, or an error once it is closed.
func (p *Proxy) waitOpen() error {
	p.mu.Lock()
	open := p.open
	p.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-p.ctx.Done():
		return net.ErrClosed
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed; Accept errors on loopback are not retried
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve connects client connection c to the target once the proxy forwards, then copies both ways.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	if p.waitOpen() != nil {
		return
	}
	var d net.Dialer
	up, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return // the client sees its connection closed, as with a refused connection
	}
	if !p.track(up) {
		return
	}
	defer p.untrack(up)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(up, c) }()
	go func() { defer wg.Done(); p.copy(c, up) }()
	wg.Wait()
}

// copy forwards src to dst while the proxy is open, holding data while it is blocked. When src ends
// it half-closes dst, so an orderly close crosses the proxy; on any other error it closes both.
func (p *Proxy) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if d := p.currentDelay(); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-p.ctx.Done():
					t.Stop()
					return
				}
			}
			if p.waitOpen() != nil {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				src.Close()
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if p.waitOpen() != nil {
					return
				}
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					return
				}
			}
			dst.Close()
			return
		}
	}
}
