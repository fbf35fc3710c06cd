package zk

import (
	"encoding/binary"
	"sync"
	"time"
)

// A session whose owner makes its own liveness round trips (the Elector's: sessionRun.ping, every
// renewInterval) does not need go-zookeeper's pings, and the library cannot be told so: it pings
// every third of the session timeout, from a ticker in its send loop. Holding the pings back
// (wireConn.Write) keeps them off the wire, but the ticker still wakes the process for each one,
// 1.5 times a second at a 2s session, between the round trips' own wake-ups: on an idle node that
// was more than a third of its wake-ups (issue 14: an idle master at most 0.2 % of a core).
//
// So on such a session (sessionEvents.ownPings) the wireConn tells the library, in the connect
// response it reads, that the server granted libTimeout, and the library's ticker, receive timeout
// and write deadlines follow that: its ticker never fires. Nothing of ours reads the library's
// idea of the timeout; the self-fencing deadline, the stall guard and the round trips use the
// timeout the server granted (sessionEvents.sessionTimeout). The library also sends its idea back
// in the connect request of every reconnection, so the wireConn writes the granted timeout there
// instead (what the library would have sent).
//
// What the library's pings did for such a session is done by keepalive: while the campaign loop
// stands still it pings, directly on the connection; see keepalive. What the library's receive
// timeout did (drop a server that sends nothing) the stall guard does for every request, sooner:
// each round trip is one. While the loop stands still nothing drops a silent server; the loop's
// next request does.

// libTimeout is the session timeout go-zookeeper is told on a session with its own pings.
const libTimeout = 24 * time.Hour

// Offsets of the timeout fields in the connect exchange, counting the frame's 4-byte length: the
// ConnectRequest (length, protocolVersion, lastZxidSeen int64, timeOut) and the ConnectResponse
// (length, protocolVersion, timeOut).
const (
	requestTimeoutAt  = 4 + 4 + 8
	responseTimeoutAt = 4 + 4
)

// putMillis writes d in milliseconds, as the connect exchange carries it (int32).
func putMillis(b []byte, d time.Duration) {
	binary.BigEndian.PutUint32(b, uint32(int32(d/time.Millisecond)))
}

// patchResponse rewrites the connect response's timeout in b, the bytes of the connection's
// stream from offset off on, to libTimeout.
func patchResponse(b []byte, off int) {
	var lib [4]byte
	putMillis(lib[:], libTimeout)
	for i := range b {
		if o := off + i - responseTimeoutAt; o >= 0 && o < len(lib) {
			b[i] = lib[o]
		}
	}
}

// patchRequest returns the connect request p with its timeout set to t (a copy: a Write must not
// change its caller's bytes).
func patchRequest(p []byte, t time.Duration) []byte {
	if len(p) < requestTimeoutAt+4 {
		return p
	}
	b := append([]byte(nil), p...)
	putMillis(b[requestTimeoutAt:], t)
	return b
}

// keepalive pings on a session with its own pings while its campaign loop stands still, as the
// library's pings would have. The loop re-arms it, for the instant of its own next round trip,
// each time it arms its own timer (at), so that both fire in the same wake-up of the process.
// When it fires and the loop has not re-armed it meanwhile, it re-arms itself for one and a half
// intervals later; when it fires and no request has been written for one and a half intervals or
// more, it pings the connection that has the session. So a loop that stops after a round trip
// gets its first ping two and a half intervals after that round trip, then one every one and a
// half intervals: the longest gap the server sees between two frames is five eighths of the
// session timeout, within the session. A ping's answer is ignored by the library, as its own
// pings' are.
type keepalive struct {
	ev *sessionEvents

	mu      sync.Mutex
	t       *time.Timer
	gen     uint64 // counts at: a firing re-arms only if the loop did not meanwhile
	stopped bool
}

func startKeepalive(ev *sessionEvents) *keepalive {
	k := &keepalive{ev: ev}
	k.mu.Lock()
	k.t = time.AfterFunc(k.interval(), k.fire)
	k.mu.Unlock()
	return k
}

// interval is the campaign loop's round-trip interval (liveness.interval: half a tick is never
// longer, as a session is at least two ticks).
func (k *keepalive) interval() time.Duration { return renewInterval(k.ev.sessionTimeout()) }

// at re-arms k to fire in d: the campaign loop's own timer's duration.
func (k *keepalive) at(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen++
	if !k.stopped {
		k.t.Reset(d)
	}
}

func (k *keepalive) fire() {
	k.mu.Lock()
	gen := k.gen
	k.mu.Unlock()
	iv := k.interval()
	if c := k.ev.current(); c != nil && c.quietFor() >= iv*3/2 {
		_ = c.ping() // a broken connection is the library's to notice
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// Fired together with the loop's timer, the loop re-arms k itself, now or in a moment (moving a
	// timer later than it stands leaves a wake-up at the earlier time, so k does not do it first).
	// A loop that stands still does not: then k goes on alone.
	if gen == k.gen && !k.stopped {
		k.t.Reset(iv * 3 / 2)
	}
}

func (k *keepalive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}
