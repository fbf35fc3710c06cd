package zk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// session is one ZooKeeper session on its own zk.Conn. The library reconnects within a session by
// itself (to any server of the ensemble); when the server expires the session the library would
// quietly open a new one on the same Conn, so session treats a changed session id like expiry (lost
// is closed) and the owner closes the Conn and starts over with a fresh session.
//
// The session owns the goroutines of the stall guard and of the mode watch (watchMode); close stops
// them and waits for them.
type session struct {
	raw    *zk.Conn
	conn   conn // raw behind the stall guard; tests may wrap it (Elector.wrap)
	id     int64
	passwd []byte
	log    *zap.Logger
	ev     *sessionEvents

	stopGuard context.CancelFunc // stops the stall guard and the mode watch
	keep      *keepalive         // with ownPings: pings while the owner's round trips stand still
	bg        sync.WaitGroup     // their goroutines
}

// sessionEvents receives the library's session events through its event callback, which is called
// for every event (unlike the event channel, which drops events when it is full) and must not block.
// It also learns, from the wireConns, what each connect response granted.
type sessionEvents struct {
	log       *zap.Logger
	requested time.Duration
	hosts     *hostProvider
	onUp      func() // called (without blocking) whenever a connection gets the session
	// ownPings: the owner makes liveness round trips, and the library does not ping (keepalive.go).
	ownPings bool

	mu          sync.Mutex
	offer       offer         // the last connect response read off the wire, until consumed
	id          int64         // our session, once established
	passwd      []byte        // its password (tests close the session from outside with it)
	timeout     time.Duration // the smallest timeout any connect response granted our session
	revalidated time.Time     // dial time of the connection that last (re)established the session
	cur         link          // the connection that has the session now
	lostReason  string
	closing     bool          // set by close: events after that are expected and not logged
	established chan struct{} // closed when the first session is established
	lost        chan struct{} // closed on expiry or a new session
	reconnected chan struct{} // cap 1
	closed      chan struct{} // closed by close: ends a dialer's pause
}

// link is the connection that has the session: since when, and to which server. Its zero value
// (since zero, conn nil) means none; server stays the last one.
type link struct {
	since  time.Time
	conn   *wireConn
	server string
}

// offer is what one connect response granted, on which connection.
type offer struct {
	conn    *wireConn
	id      int64
	timeout time.Duration
	passwd  []byte
}

func newSessionEvents(log *zap.Logger, requested time.Duration) *sessionEvents {
	if log == nil {
		log = zap.NewNop()
	}
	return &sessionEvents{
		log:         log,
		requested:   requested,
		hosts:       &hostProvider{},
		onUp:        func() {},
		established: make(chan struct{}),
		lost:        make(chan struct{}),
		reconnected: make(chan struct{}, 1),
		closed:      make(chan struct{}),
	}
}

// connectResponse records what the server granted on c: called by the wireConn before the library
// sees the response (so before its StateHasSession event).
func (s *sessionEvents) connectResponse(c *wireConn, id int64, timeout time.Duration, passwd []byte) {
	s.mu.Lock()
	s.offer = offer{conn: c, id: id, timeout: timeout, passwd: passwd}
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
		s.hasSession(ev.Server)
	case zk.StateExpired:
		s.markLost(fmt.Sprintf("session %#x expired", s.id))
	case zk.StateDisconnected:
		if s.cur.conn != nil {
			s.log.Warn("disconnected from ZooKeeper; reconnecting within the session", zap.String("server", ev.Server))
		}
		s.cur = link{server: s.cur.server}
	}
}

// hasSession handles a connection that got a session; s.mu is held.
func (s *sessionEvents) hasSession(server string) {
	o := s.offer
	s.offer = offer{}
	switch {
	case o.conn == nil:
		// Cannot happen: the library read a connect response the wireConn could not parse. Nothing
		// is known of this connection, so the deadline keeps its earlier anchor.
		s.log.Error("connected without a readable connect response", zap.String("server", server))
	case s.id == 0:
		s.id, s.passwd, s.timeout, s.revalidated = o.id, o.passwd, o.timeout, o.conn.dialed
		close(s.established)
	case o.id != s.id:
		s.markLost(fmt.Sprintf("session %#x replaced by %#x", s.id, o.id))
		return
	default:
		if o.timeout < s.timeout {
			s.log.Warn("ZooKeeper granted a shorter session timeout on reconnect; the self-fencing deadline uses it",
				zap.String("server", server), zap.Duration("was", s.timeout), zap.Duration("negotiated", o.timeout))
			s.timeout = o.timeout
		}
		// Connecting to a server with our session makes the leader touch it (a follower asks the
		// leader to revalidate it before answering): the session cannot expire before this dial
		// instant plus its timeout.
		s.revalidated = o.conn.dialed
		s.log.Info("reconnected within the session", zap.String("server", server))
		select {
		case s.reconnected <- struct{}{}:
		default:
		}
	}
	s.cur = link{since: time.Now(), conn: o.conn, server: server}
	s.onUp()
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

// sessionTimeout is the smallest timeout granted to the session, or the requested one before the
// first connect response.
func (s *sessionEvents) sessionTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timeout > 0 {
		return s.timeout
	}
	return s.requested
}

// connectedAt returns when the current connection got the session (zero while down).
func (s *sessionEvents) connectedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.since
}

// dropStalled closes the connection that got the session at up, if it is still the current one.
func (s *sessionEvents) dropStalled(up time.Time) {
	s.mu.Lock()
	c, server := s.cur.conn, s.cur.server
	if c == nil || !s.cur.since.Equal(up) || s.closing {
		s.mu.Unlock()
		return
	}
	s.cur.conn = nil
	s.mu.Unlock()
	s.log.Warn("ZooKeeper server does not answer; moving to another server of the ensemble",
		zap.String("server", server), zap.Duration("waited", stallLimit(s.sessionTimeout())))
	s.silent(c.addr)
	c.Close()
}

// dialer is go-zookeeper's dialer for this session: it paces rounds of failed attempts (see
// hostProvider) and bounds the dial and the connect exchange by fractions of the session timeout.
func (s *sessionEvents) dialer(network, addr string, timeout time.Duration) (net.Conn, error) {
	t := s.sessionTimeout()
	if s.hosts.pauseFirst() {
		p := time.NewTimer(roundPause(t))
		select {
		case <-p.C:
		case <-s.closed:
			p.Stop()
			return nil, zk.ErrClosing
		}
	}
	dialed := time.Now()
	c, err := net.DialTimeout(network, addr, min(timeout, stallLimit(t)))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.silent(addr)
	}
	if err != nil {
		return nil, err
	}
	return &wireConn{Conn: c, ev: s, addr: addr, remote: c.RemoteAddr().String(), dialed: dialed, handshake: handshakeLimit(t), own: s.ownPings}, nil
}

// silent tells the host provider that the server at addr did not answer in time, so that the next
// rounds skip it for a while.
func (s *sessionEvents) silent(addr string) {
	s.hosts.wasSilent(addr, silentFor(s.sessionTimeout()))
}

// zkLogger sends the library's log lines to zap at debug level: they repeat while a server is
// unreachable, and this package logs what matters itself. Lines after the session was closed (the
// library's goroutines wind down on their own) are dropped.
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
// requested one is logged with both values. ownPings: the caller makes liveness round trips every
// renewInterval and re-arms the session's keepalive with them (session.keepaliveAt); the library
// then does not ping (keepalive.go).
func dial(ctx context.Context, cfg Config, servers []string, log *zap.Logger, ownPings bool) (*session, error) {
	ev := newSessionEvents(log, cfg.SessionTimeout)
	ev.ownPings = ownPings
	raw, _, err := zk.Connect(servers, cfg.SessionTimeout,
		zk.WithDialer(ev.dialer),
		zk.WithHostProvider(ev.hosts),
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
		ev.close(raw)
		return nil, fmt.Errorf("zk: connect to %v: %w within %v", servers, errNoSession, cfg.ConnectTimeout)
	case <-ctx.Done():
		ev.close(raw)
		return nil, context.Cause(ctx)
	}
	s := newSession(raw, ev)
	s.log = log.With(zap.String("session", fmt.Sprintf("%#x", s.id)))
	ev.mu.Lock()
	ev.log = s.log
	server := ev.cur.server
	ev.mu.Unlock()
	if s.timeout() != cfg.SessionTimeout {
		s.log.Warn("ZooKeeper clamped the session timeout; the self-fencing deadline uses the negotiated value",
			zap.Duration("requested", cfg.SessionTimeout), zap.Duration("negotiated", s.timeout()))
	}
	if cfg.Auth != "" {
		if err := raw.AddAuth("digest", []byte(cfg.Auth)); err != nil {
			s.close()
			err = fmt.Errorf("zk: add digest credentials for user %q: %w", authUser(cfg.Auth), err)
			if errors.Is(err, zk.ErrAuthFailed) {
				return nil, permanent(err)
			}
			return nil, err
		}
	}
	s.log.Debug("session established", zap.String("server", server), zap.Duration("timeout", s.timeout()))
	return s, nil
}

// newSession wraps an established connection and starts its stall guard and the watch of the
// server mode of each connection (watchMode).
func newSession(raw *zk.Conn, ev *sessionEvents) *session {
	ev.mu.Lock()
	id, passwd := ev.id, ev.passwd
	ev.mu.Unlock()
	g := newStallGuard(func() time.Duration { return stallLimit(ev.sessionTimeout()) }, ev.connectedAt, ev.dropStalled)
	modeKick := make(chan struct{}, 1)
	modeKick <- struct{}{} // the first connection got the session before the watch started
	ev.mu.Lock()
	ev.onUp = func() {
		g.poke()
		select {
		case modeKick <- struct{}{}:
		default:
		}
	}
	ev.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{raw: raw, conn: guardedConn{raw, g}, id: id, passwd: passwd, log: ev.log, ev: ev, stopGuard: cancel}
	if ev.ownPings {
		s.keep = startKeepalive(ev)
	}
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		g.run(ctx)
	}()
	go func() {
		defer s.bg.Done()
		ev.watchMode(ctx, modeKick, serverMode)
	}()
	return s
}

// keepaliveAt re-arms the keepalive (with ownPings) to fire in d, when the owner's next liveness
// round trip is due.
func (s *session) keepaliveAt(d time.Duration) {
	if s.keep != nil {
		s.keep.at(d)
	}
}

// current is the connection that has the session now (nil while down).
func (s *session) current() *wireConn { return s.ev.current() }

// timeout is the smallest session timeout the ensemble granted this session.
func (s *session) timeout() time.Duration { return s.ev.sessionTimeout() }

// revalidated is the dial time of the connection that last (re)established the session: the
// leader touched the session after it (see sessionEvents.hasSession).
func (s *session) revalidated() time.Time {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return s.ev.revalidated
}

// server is the address of the server the session is on (or was on last).
func (s *session) server() string {
	s.ev.mu.Lock()
	defer s.ev.mu.Unlock()
	return s.ev.cur.server
}

// lost is closed when the session has expired or been replaced.
func (s *session) lost() <-chan struct{} { return s.ev.lost }

// reconnected receives a token whenever the connection came back within the session (to any
// server): watches may have missed events meanwhile.
func (s *session) reconnected() <-chan struct{} { return s.ev.reconnected }

// close ends the session: the server deletes its ephemeral znodes at once. Bounded by the library
// (about 1s when the server is unreachable). It stops the stall guard and the mode watch and waits
// for them.
func (s *session) close() {
	if s.keep != nil {
		s.keep.stop()
	}
	s.ev.close(s.raw)
	s.stopGuard()
	s.bg.Wait()
}

// close marks the session as closing (its late events are not logged; a dialer's pause ends and the
// library's reconnect loop may stop) and closes conn.
func (s *sessionEvents) close(conn *zk.Conn) {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.closed)
	}
	s.mu.Unlock()
	s.hosts.closing()
	conn.Close()
}

// isLost reports whether the session has expired or been replaced.
func (s *session) isLost() bool {
	select {
	case <-s.ev.lost:
		return true
	default:
		return false
	}
}

// errSessionLost is returned for requests made, or answered, after the session was lost.
var errSessionLost = errors.New("zk: session lost")

// sessionGone reports whether err means the session is over. ErrSessionMoved is not among them: the
// server says the session now lives on another connection (the library reconnected elsewhere), and
// the session itself is alive.
func sessionGone(err error) bool {
	return errors.Is(err, errSessionLost) || errors.Is(err, zk.ErrSessionExpired)
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

// ensurePath creates the persistent znodes leading to (and including) the election znode that are
// missing: the chroot's elements and /hacoord with the shared ACL, the group's znodes with the group
// ACL.
func ensurePath(c conn, ps paths, a acls, auth string) error {
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
		ok, _, err := c.Exists(p)
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
		_, err = c.Create(p, nil, 0, acl)
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

// closeOnDone closes s once ctx is done and grace has passed, so that requests stuck on a dead
// connection (go-zookeeper's calls take no context and wait until a connection answers) cannot hold
// up a stop. stop ends the watch and waits for its goroutine.
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
			s.ev.close(s.raw)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
