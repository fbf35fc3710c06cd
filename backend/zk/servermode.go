package zk

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// The mode of the server a connection is on, and what it buys the self-fencing deadline.
//
// liveness.anchor trails the latest answered Sync by one interval because a follower does not touch
// our session at the leader when it receives a request: it reports the sessions it saw to the
// leader only in its replies to the leader's pings. A leader, and a standalone server, touch the
// session themselves on receipt of every request of it (ZooKeeperServer.submitRequestNow: touch
// before anything else; LeaderSessionTracker / SessionTrackerImpl.touchSession), so on such a
// server the session cannot expire before receipt + timeout, and the receipt is after the send: an
// answered Sync's own send time is an anchor.
//
// Whether the server of a connection is the leader is read with the `srvr` four-letter word (in
// ZooKeeper's default 4lw.commands.whitelist) over a separate TCP connection to the same address,
// dialled only after our connection got the session. Why the answer holds for our connection:
// a server that changes role (a leader that loses its quorum, a follower that becomes leader)
// closes all its client connections first (Leader.shutdown, Learner.shutdown:
// closeAllConnections), and a restarted server is another process on a fresh socket. Let C be when
// our connection got the session, M when srvr answered "leader" (C < M), and S > M the send time
// of a Sync answered on that same connection. The server received the Sync at some P > S > M on a
// connection it had since C. Had it changed role at any instant in [C, P], our connection would
// have been closed then, and no request sent after M could be answered on it; so the server was in
// the role srvr named through all of [C, P], and touched the session at P.
//
// Only round trips sent after the srvr answer count (a round trip sent earlier is still anchored by
// today's rule), and only when the connection that carried them is the same before the send and
// after the answer (go-zookeeper sends only on the current connection, and every new connection is
// a new wireConn: see sessionRun.ping). Any other answer of srvr (follower, observer, read-only),
// a refusal (srvr not whitelisted) or no answer leaves that connection on today's rule.
//
// The argument assumes that an address of the connection string reaches one server: a load
// balancer that spreads connections to one address over several servers of an ensemble could
// answer srvr from the leader for a session on a follower. The connection string of a ZooKeeper
// client names its servers (or a name that resolves to each of them, dialled one address at a
// time), not such a balancer.

// Why a standalone server only, and not an ensemble's leader as well: a leader touches the session
// itself too, but a leader that has lost its quorum (cut off from its followers, not from us) goes
// on answering Syncs, which it serves without a proposal, until its own quorum check notices: up to
// about syncLimit ticks plus a tick after the cut, while the followers, whose reads time out after
// syncLimit ticks, may already have elected a new leader (finalizeWait 200ms later). The new leader
// gives every session a full timeout from its start and never hears of our Syncs to the old one.
// An anchor on such a Sync could fall up to a tick minus 200ms after the new leader's start, past the
// margin (for hacoord's default 2s tick, by about a second). Today's rule, which trails by an
// interval, keeps its previous exposure there; a standalone server has no other leader to fear.

// isLeaderMode reports whether srvr's mode means our Syncs' receipts are the only session touches
// that count: a standalone server (see above for why not an ensemble's leader).
func isLeaderMode(mode string) bool { return mode == "standalone" }

// modeQuery asks the server at addr for its mode (serverMode; tests replace it).
type modeQuery func(ctx context.Context, addr string) (string, error)

// watchMode reads the mode of the server of every new connection of the session, once per
// connection, and marks the connection when the server touches sessions itself
// (wireConn.markLeader). kick is poked whenever a connection gets the session. It returns when ctx
// is done; the session owns its goroutine (newSession, close).
func (s *sessionEvents) watchMode(ctx context.Context, kick <-chan struct{}, query modeQuery) {
	var checked *wireConn
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		c := s.current()
		if c == nil || c == checked {
			continue
		}
		checked = c
		// Bounded by the session timeout: a late answer only delays the shorter anchor.
		qctx, cancel := context.WithTimeout(ctx, s.sessionTimeout())
		mode, err := query(qctx, c.remote)
		cancel()
		s.mu.Lock()
		log := s.log // dial names the session in it after the watch started
		s.mu.Unlock()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Debug("server mode unknown; the deadline trails the latest liveness round trip by one interval",
					zap.String("server", c.addr), zap.Error(err))
			}
		case isLeaderMode(mode):
			c.markLeader(time.Now())
			log.Debug("server touches our session itself; liveness round trips anchor the deadline directly",
				zap.String("server", c.addr), zap.String("mode", mode))
		default:
			log.Debug("server mode", zap.String("server", c.addr), zap.String("mode", mode))
		}
	}
}

// current returns the connection that has the session now (nil while down).
func (s *sessionEvents) current() *wireConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur.conn
}

// markLeader records that srvr, answered at t, said c's server is standalone.
func (c *wireConn) markLeader(t time.Time) {
	c.mu.Lock()
	c.leaderAt = t
	c.mu.Unlock()
}

// directFrom reports whether a round trip sent at sent on c, and answered on c, was received by a
// server that touched the session itself: srvr said standalone before sent.
func (c *wireConn) directFrom(sent time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.leaderAt.IsZero() && sent.After(c.leaderAt)
}
