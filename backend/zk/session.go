package zk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// session is one ZooKeeper session on its own zk.Conn. The library reconnects within a session by
// itself; when the server expires the session the library would quietly open a new one on the same
// Conn, so session treats a changed session id like expiry (lost is closed) and the owner closes the
// Conn and starts over with a fresh session.
type session struct {
	conn    *zk.Conn
	id      int64
	timeout time.Duration // negotiated with the server
	started time.Time     // when the connection that created the session was dialled: the leader created it later
	log     *zap.Logger

	// lost is closed when the session has expired (or been replaced); reconnected receives a token
	// whenever the connection came back within the session (watches may have missed events).
	lost        <-chan struct{}
	reconnected <-chan struct{}
	ev          *sessionEvents
}

// sessionEvents receives the library's session events through its event callback, which is called
// for every event (unlike the event channel, which drops events when it is full) and must not block.
type sessionEvents struct {
	log *zap.Logger

	mu          sync.Mutex
	offered     int64         // session id in the last connect response read off the wire
	negotiated  time.Duration // timeout in that response
	passwd      []byte        // and password (for tests that close the session from outside)
	offeredDial time.Time     // when that connection was dialled
	id          int64         // our session, once established
	timeout     time.Duration
	started     time.Time // offeredDial of our session
	lostReason  string
	closing     bool          // set by session.close: events after that are expected and not logged
	established chan struct{} // closed when the first session is established
	lost        chan struct{} // closed on expiry or a new session
	reconnected chan struct{} // cap 1
}

func newSessionEvents(log *zap.Logger) *sessionEvents {
	return &sessionEvents{
		log:         log,
		established: make(chan struct{}),
		lost:        make(chan struct{}),
		reconnected: make(chan struct{}, 1),
	}
}

// connectResponse records what the server granted: called by the sniffing conn before the library
// sees the response (so before its StateHasSession event).
func (s *sessionEvents) connectResponse(id int64, timeout time.Duration, passwd []byte, dialed time.Time) {
	s.mu.Lock()
	s.offered, s.negotiated, s.passwd, s.offeredDial = id, timeout, passwd, dialed
	s.mu.Unlock()
}

func (s *sessionEvents) callback(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	switch ev.State {
	case zk.StateHasSession:
		switch {
		case s.id == 0:
			s.id, s.timeout, s.started = s.offered, s.negotiated, s.offeredDial
			close(s.established)
		case s.offered != s.id:
			s.markLost(fmt.Sprintf("session %#x replaced by %#x", s.id, s.offered))
		default:
			s.log.Info("reconnected within the session", zap.String("server", ev.Server))
			select {
			case s.reconnected <- struct{}{}:
			default:
			}
		}
	case zk.StateExpired:
		s.markLost(fmt.Sprintf("session %#x expired", s.id))
	case zk.StateDisconnected:
		if s.id != 0 {
			s.log.Warn("disconnected from ZooKeeper", zap.String("server", ev.Server))
		}
	}
}

// markLost closes lost once; s.mu is held.
func (s *sessionEvents) markLost(reason string) {
	if s.id == 0 || s.lostReason != "" {
		return
	}
	s.lostReason = reason
	close(s.lost)
}

func (s *sessionEvents) reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostReason
}

// sniffConn passes a connection through and reads the session id and negotiated timeout out of the
// first frame the server sends: the connect response (ZooKeeper's ConnectResponse: int32 length,
// int32 protocolVersion, int32 timeOut in ms, int64 sessionId, buffer passwd). go-zookeeper keeps
// the negotiated timeout to itself; the self-fencing deadline needs it.
type sniffConn struct {
	net.Conn
	ev     *sessionEvents
	dialed time.Time
	mu     sync.Mutex
	head   []byte
	done   bool
}

// maxConnectResponse bounds the frame sniffConn collects (the password is 16 bytes in practice).
const maxConnectResponse = 4 + 4 + 4 + 8 + 4 + 256 + 1

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.done {
			c.sniff(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *sniffConn) sniff(b []byte) {
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
	id := int64(binary.BigEndian.Uint64(f[8:16]))
	var passwd []byte
	if len(f) >= 20 {
		if l := int(int32(binary.BigEndian.Uint32(f[16:20]))); l > 0 && 20+l <= len(f) {
			passwd = append([]byte(nil), f[20:20+l]...)
		}
	}
	c.ev.connectResponse(id, timeout, passwd, c.dialed)
	c.head = nil
}

// zkLogger sends the library's log lines to zap at debug level: they repeat every second while a
// server is unreachable, and this package logs what matters itself.
// Lines after the session was closed (the library's goroutines wind down on their own) are dropped.
type zkLogger struct {
	l  *zap.Logger
	ev *sessionEvents
}

func (z zkLogger) Printf(format string, args ...any) {
	z.ev.mu.Lock()
	closing := z.ev.closing
	z.ev.mu.Unlock()
	if !closing {
		z.l.Debug(fmt.Sprintf(format, args...))
	}
}

// errNoSession is returned by dial when no session was established within the connect timeout.
var errNoSession = errors.New("no session established")

// dial connects to the ensemble and waits (at most connectTimeout, or until ctx is done) for a
// session; it then adds the digest credentials, if any. A negotiated timeout that differs from the
// requested one is logged with both values.
func dial(ctx context.Context, cfg Config, servers []string, log *zap.Logger, hook func(id int64, passwd []byte)) (*session, error) {
	ev := newSessionEvents(log)
	dialer := func(network, addr string, timeout time.Duration) (net.Conn, error) {
		dialed := time.Now()
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		return &sniffConn{Conn: c, ev: ev, dialed: dialed}, nil
	}
	conn, _, err := zk.Connect(servers, cfg.SessionTimeout,
		zk.WithDialer(dialer),
		zk.WithHostProvider(&hostProvider{}),
		zk.WithEventCallback(ev.callback),
		zk.WithLogger(zkLogger{log.Named("client"), ev}),
		zk.WithLogInfo(true),
		zk.WithMaxBufferSize(4<<20))
	if err != nil {
		return nil, fmt.Errorf("zk: connect to %v: %w", servers, err)
	}
	t := time.NewTimer(cfg.ConnectTimeout)
	defer t.Stop()
	select {
	case <-ev.established:
	case <-t.C:
		ev.close(conn)
		return nil, fmt.Errorf("zk: connect to %v: %w within %v", servers, errNoSession, cfg.ConnectTimeout)
	case <-ctx.Done():
		ev.close(conn)
		return nil, context.Cause(ctx)
	}
	ev.mu.Lock()
	s := &session{conn: conn, id: ev.id, timeout: ev.timeout, started: ev.started, lost: ev.lost, reconnected: ev.reconnected, ev: ev}
	passwd := ev.passwd
	ev.mu.Unlock()
	if hook != nil {
		hook(s.id, passwd)
	}
	s.log = log.With(zap.String("session", fmt.Sprintf("%#x", s.id)))
	if s.timeout <= 0 { // cannot happen with a real server; never trust a zero deadline
		s.close()
		return nil, fmt.Errorf("zk: connect to %v: server granted session timeout %v", servers, s.timeout)
	}
	if s.timeout != cfg.SessionTimeout {
		s.log.Warn("ZooKeeper clamped the session timeout; the self-fencing deadline uses the negotiated value",
			zap.Duration("requested", cfg.SessionTimeout), zap.Duration("negotiated", s.timeout))
	}
	if cfg.Auth != "" {
		if err := conn.AddAuth("digest", []byte(cfg.Auth)); err != nil {
			s.close()
			err = fmt.Errorf("zk: add digest credentials for user %q: %w", authUser(cfg.Auth), err)
			if errors.Is(err, zk.ErrAuthFailed) {
				return nil, permanent(err)
			}
			return nil, err
		}
	}
	s.log.Debug("session established", zap.String("server", conn.Server()), zap.Duration("timeout", s.timeout))
	return s, nil
}

// close ends the session: the server deletes its ephemeral znodes at once. Bounded by the library
// (about 3s when the server is unreachable).
func (s *session) close() { s.ev.close(s.conn) }

// close marks the session as closing (its late events are not logged) and closes conn.
func (s *sessionEvents) close(conn *zk.Conn) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	conn.Close()
}

// isLost reports whether the session has expired or been replaced.
func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// errSessionLost is returned for requests made, or answered, after the session was lost.
var errSessionLost = errors.New("zk: session lost")

// sessionGone reports whether err means the session is over.
func sessionGone(err error) bool {
	return errors.Is(err, errSessionLost) || errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved)
}

// permanentError marks an error that retrying will not fix (wrong credentials, ACLs that deny us):
// Run gives up with it.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// noAuth wraps a NoAuth answer with what to check.
func noAuth(op, path string, auth string) error {
	who := "without credentials"
	if auth != "" {
		who = fmt.Sprintf("as digest user %q", authUser(auth))
	}
	return permanent(fmt.Errorf("zk: %s %s: not allowed %s: the znode belongs to another identity (check --zk-auth): %w",
		op, path, who, zk.ErrNoAuth))
}

// ensurePath creates the persistent znodes leading to (and including) p that are missing: the
// chroot's elements and /hacoord with the shared ACL, the group's znodes with the group ACL.
func ensurePath(s *session, ps paths, a acls, auth string) error {
	var chain []string
	for q := ps.election; q != "" && q != "/"; {
		chain = append([]string{q}, chain...)
		i := len(q) - 1
		for i > 0 && q[i] != '/' {
			i--
		}
		q = q[:i]
	}
	for _, p := range chain {
		ok, _, err := s.conn.Exists(p)
		if err != nil {
			return fmt.Errorf("zk: check %s: %w", p, err)
		}
		if ok {
			continue
		}
		acl := a.group
		if len(p) <= len(ps.root) {
			acl = a.shared
		}
		_, err = s.conn.Create(p, nil, 0, acl)
		switch {
		case err == nil, errors.Is(err, zk.ErrNodeExists):
		case errors.Is(err, zk.ErrNoAuth):
			return noAuth("create", p, auth)
		default:
			return fmt.Errorf("zk: create %s: %w", p, err)
		}
	}
	return nil
}

// hostProvider hands out the ensemble's addresses round robin, unresolved (the dialer resolves each
// time, so a changed DNS name is followed). It differs from go-zookeeper's DNSHostProvider in when it
// asks the library to pause (1s) before a round: only after a full round of failed attempts, never
// before the first attempt after a connection was lost. With one server, the library's provider
// pauses 1s before every reconnect, which delays learning that a session expired.
type hostProvider struct {
	mu      sync.Mutex
	servers []string
	next    int
	tries   int // Next calls since the last Connected
}

func (h *hostProvider) Init(servers []string) error {
	if len(servers) == 0 {
		return errors.New("zk: no servers")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = append([]string(nil), servers...) // already shuffled by zk.Connect
	h.next, h.tries = 0, 0
	return nil
}

func (h *hostProvider) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

func (h *hostProvider) Next() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	h.tries++
	n := len(h.servers)
	return s, h.tries > n && (h.tries-1)%n == 0
}

func (h *hostProvider) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tries = 0
}

// closeOnDone closes s once ctx is done and grace has passed, so that requests stuck on a dead
// connection (go-zookeeper's calls take no context and wait for the connection to time out, up to
// ten times two thirds of the session timeout while it reconnects) cannot hold up a stop. stop ends
// the watch and waits for its goroutine.
func closeOnDone(ctx context.Context, s *session, grace time.Duration, log *zap.Logger) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			if grace > 0 {
				log.Warn("ZooKeeper did not answer in time at stop; closing the session", zap.Duration("waited", grace))
			}
			s.close()
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
