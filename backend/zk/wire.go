package zk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// wireConn is one TCP connection of go-zookeeper's to a server. It reads the session id, password
// and negotiated timeout out of the first frame the server sends, the connect response
// (ZooKeeper's ConnectResponse: int32 length, int32 protocolVersion, int32 timeOut in ms, int64
// sessionId, buffer passwd): go-zookeeper keeps the negotiated timeout to itself, and the
// self-fencing deadline needs it. Until that frame has arrived it also bounds every deadline
// go-zookeeper sets to dialed+handshake: go-zookeeper gives the connect exchange ten receive timeouts
// (more than six session timeouts), which a silent server would spend in full.
//
// It also holds back go-zookeeper's pings while the session's own requests keep it alive (Write).
type wireConn struct {
	net.Conn
	ev        *sessionEvents
	addr      string // as the host provider named the server
	remote    string // the address dialled (ip:port), for srvr (watchMode)
	dialed    time.Time
	handshake time.Duration

	mu       sync.Mutex
	head     []byte
	done     bool
	leaderAt time.Time // when srvr said the server is standalone (servermode.go)

	// quiet is how recent another request must be for a ping to be held back (renewInterval of the
	// negotiated timeout; 0 until the connect response has arrived: every ping goes out).
	quiet atomic.Int64
	// lastReq is when the last request other than a ping was written, as time since wireEpoch
	// (monotonic); 0: none yet.
	lastReq atomic.Int64
	// heldBack counts the pings held back (for tests).
	heldBack atomic.Int64

	// own: the session makes its own liveness round trips (keepalive.go): the connect exchange is
	// rewritten so that the library never pings.
	own bool
	// connectSent: the first frame, the connect request, has been written (only the library's
	// connect and send loops write, one after the other).
	connectSent bool
}

// libPings counts go-zookeeper's pings on connections of sessions with their own pings (for tests:
// its ticker should never fire there).
var libPings atomic.Int64

// wireEpoch is the origin of wireConn.lastReq.
var wireEpoch = time.Now()

// pingFrame is go-zookeeper's ping as it writes it: length 8, xid -2, opcode 11 (opPing), no body.
var pingFrame = []byte{0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11}

// Write passes go-zookeeper's frames on, except a ping written less than quiet after another
// request, which it holds back (and reports as written). go-zookeeper pings every third of the
// session timeout, whatever else it sends; the liveness round trips (sessionRun.ping) go out every
// quarter, so while they run every ping is redundant: any request touches the session, and its
// answer satisfies the library's receive timeout (two thirds of the session timeout). Redundant
// pings are not free: each is a packet and a reply to wake for, and each touches the session
// later than the last liveness round trip did, which moves the server's expiry of a crashed
// node's session up to a ping interval later (on average about 10ms at a 300ms session, where a
// crash failover is the session plus a few tens of milliseconds). Once no other request has been
// written for quiet (the liveness loop is busy or stopped) the pings go out again: then the gap
// between two frames the server sees is at most quiet plus one ping interval (seven twelfths of
// the session timeout), within both the session and the receive timeout. A held-back ping gets
// no answer, which go-zookeeper does not expect anyway: it ignores ping replies.
func (c *wireConn) Write(p []byte) (int, error) {
	since := int64(time.Since(wireEpoch))
	if !c.connectSent {
		c.connectSent = true
		if c.own && c.ev != nil {
			// The library asks for what it was told the last connect response granted (libTimeout);
			// ask for what the server granted, as the library would have.
			n, err := c.Conn.Write(patchRequest(p, c.ev.sessionTimeout()))
			c.lastReq.Store(max(since, 1))
			return min(n, len(p)), err
		}
	}
	if bytes.Equal(p, pingFrame) {
		if c.own {
			libPings.Add(1)
		}
		if q, last := c.quiet.Load(), c.lastReq.Load(); q > 0 && last > 0 && since-last < q {
			c.heldBack.Add(1)
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	c.lastReq.Store(max(since, 1)) // before the write: an earlier time holds back fewer pings
	return c.Conn.Write(p)
}

// quietFor is how long ago the last request other than a ping was written (since the dial if
// none).
func (c *wireConn) quietFor() time.Duration {
	last := c.lastReq.Load()
	if last == 0 {
		return time.Since(c.dialed)
	}
	return time.Since(wireEpoch) - time.Duration(last)
}

// ping writes a ping frame itself (keepalive), past the library: a Write of a whole frame is not
// interleaved with the library's (the connection's writes are serialised), and the library
// ignores the answer.
func (c *wireConn) ping() error {
	_, err := c.Conn.Write(pingFrame)
	return err
}

// maxConnectResponse bounds the frame wireConn collects (the password is 16 bytes in practice).
const maxConnectResponse = 4 + 4 + 4 + 8 + 4 + 256 + 1

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	done := c.done
	if n > 0 && !done {
		off := len(c.head) // the stream's offset of p[0] (sniff keeps all bytes until done)
		c.sniff(p[:n])
		if c.own {
			patchResponse(p[:n], off)
		}
	}
	c.mu.Unlock()
	var ne net.Error
	if !done && errors.As(err, &ne) && ne.Timeout() && c.ev != nil {
		c.ev.silent(c.addr) // the connect exchange timed out
	}
	return n, err
}

// SetReadDeadline passes t on, bounded during the connect exchange.
func (c *wireConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.bound(t)) }

// SetWriteDeadline passes t on, bounded during the connect exchange.
func (c *wireConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.bound(t)) }

// SetDeadline passes t on, bounded during the connect exchange.
func (c *wireConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.bound(t)) }

func (c *wireConn) bound(t time.Time) time.Time {
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	if done || c.handshake <= 0 {
		return t
	}
	limit := c.dialed.Add(c.handshake)
	if t.IsZero() || t.After(limit) {
		return limit
	}
	return t
}

// sniff collects the connect response; c.mu is held.
func (c *wireConn) sniff(b []byte) {
	c.head = append(c.head, b[:min(len(b), maxConnectResponse-len(c.head))]...)
	if len(c.head) < 4 {
		return
	}
	size := 4 + int(binary.BigEndian.Uint32(c.head[:4]))
	if size < 4+4+4+8 || size > maxConnectResponse {
		c.done = true // not a connect response we understand: the library will fail on it too
		return
	}
	if len(c.head) < size {
		return
	}
	c.done = true
	f := c.head[4:size]
	timeout := time.Duration(int32(binary.BigEndian.Uint32(f[4:8]))) * time.Millisecond
	if timeout > 0 {
		c.quiet.Store(int64(renewInterval(timeout)))
	}
	id := int64(binary.BigEndian.Uint64(f[8:16]))
	var passwd []byte
	if len(f) >= 20 {
		if l := int(int32(binary.BigEndian.Uint32(f[16:20]))); l > 0 && 20+l <= len(f) {
			passwd = append([]byte(nil), f[20:20+l]...)
		}
	}
	c.head = nil
	if c.ev != nil {
		c.ev.connectResponse(c, id, timeout, passwd)
	}
}

// hostProvider hands out the ensemble's addresses round robin, unresolved (the dialer resolves each
// time, so a changed DNS name is followed). It never asks go-zookeeper for its pause (a fixed 1s
// before every round after a failed one, too long next to a session of a few seconds, and with one
// server before every reconnect); instead it tells the dialer, through pauseFirst, that a round of
// failed attempts has ended, and the dialer waits a fraction of the session (see Timing).
//
// A server that was silent (a dial or a connect exchange that timed out, a connection dropped for
// leaving requests unanswered) is skipped for a while (silentFor): it is dead, cut off, or a follower
// that lost its leader, and each attempt on it would cost a timeout while another server may serve.
// When every server is being skipped, the next one is tried anyway.
type hostProvider struct {
	mu      sync.Mutex
	servers []string
	next    int
	tried   map[string]bool      // handed out since the last Connected (or round)
	silent  map[string]time.Time // skip until then
	pause   bool                 // the address just handed out starts a new round after a failed one
	closed  bool                 // the session is closing: let the library's reconnect loop see that it must stop
}

func (h *hostProvider) Init(servers []string) error {
	if len(servers) == 0 {
		return errors.New("zk: no servers")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append([]string(nil), servers...) // already shuffled by zk.Connect
	h.next = 0
	h.tried, h.silent = map[string]bool{}, map[string]time.Time{}
	return nil
}

func (h *hostProvider) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

// Next returns the next address. It asks the library to pause only once the session is closing:
// the library checks for Close only in its pause, so its reconnect loop ends there.
func (h *hostProvider) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	s := h.servers[h.next]
	for range len(h.servers) {
		s = h.servers[h.next]
		h.next = (h.next + 1) % len(h.servers)
		if !now.Before(h.silent[s]) {
			break
		}
	}
	// Back at a server already tried: the round failed.
	h.pause = h.tried[s]
	if h.pause {
		clear(h.tried)
	}
	h.tried[s] = true
	return s, h.closed
}

func (h *hostProvider) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.tried)
	h.pause = false
}

// wasSilent makes Next skip addr for d.
func (h *hostProvider) wasSilent(addr string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.silent[addr] = time.Now().Add(d)
}

// closing makes every later Next ask for the library's pause, in which it notices Close.
func (h *hostProvider) closing() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
}

// pauseFirst reports whether the dial about to be made starts a new round after a round of failed
// attempts (and so should wait first), once per such round.
func (h *hostProvider) pauseFirst() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pause
	h.pause = false
	return p
}
