package zk

import (
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/fencing"
)

// liveness keeps the self-fencing deadline of one session: the send times of answered liveness round
// trips, the anchor derived from them, and the count of regained contacts (State.Contact). Only the
// session's serve goroutine touches it.
type liveness struct {
	s      *session
	log    *zap.Logger
	margin time.Duration // configured margin; 0: fencing.DefaultMargin of the session timeout
	tick   time.Duration // the server's tickTime when known (conf), else 0

	// syncs holds the send times of the last answered liveness round trips (oldest first).
	syncs []time.Time
	// direct is the send time of the latest answered round trip that a server touching the session
	// itself received (the leader, or a standalone server: servermode.go).
	direct     time.Time
	contact    uint64 // times contact was lost and regained within the session
	warnMargin bool   // the configured margin did not fit the negotiated timeout (logged once)
	// onRTT is Config.OnRTT.
	onRTT func(time.Duration)
}

// interval is the time between liveness round trips: a quarter of the session timeout, and at least
// half a tick (see gap).
func (l *liveness) interval() time.Duration { return max(renewInterval(l.s.timeout()), l.tick/2) }

// marginNow is the margin for the current session timeout (see marginFor); a configured margin that
// does not fit is logged once.
func (l *liveness) marginNow() time.Duration {
	t := l.s.timeout()
	m, fits := marginFor(l.margin, t)
	if !fits && !l.warnMargin {
		l.warnMargin = true
		l.log.Warn("margin does not fit the negotiated session timeout; using the default",
			zap.Duration("margin", l.margin), zap.Duration("negotiated", t), zap.Duration("default", m))
	}
	return m
}

// marginFor is the margin for session timeout t: the configured one if it fits t (fits=true), else
// fencing.DefaultMargin(t); a configured 0 means the default.
func marginFor(configured, t time.Duration) (m time.Duration, fits bool) {
	if configured == 0 {
		return fencing.DefaultMargin(t), true
	}
	if fencing.CheckMargin(t, configured) != nil {
		return fencing.DefaultMargin(t), false
	}
	return configured, true
}

// validUntil is the self-fencing deadline: fencing.Deadline from anchor.
func (l *liveness) validUntil() time.Time {
	return fencing.Deadline(l.anchor(), l.s.timeout(), l.marginNow())
}

// anchor is an instant by which the ZooKeeper leader, which alone expires sessions, has certainly
// heard from our session, so that it cannot expire it before anchor + timeout. It is the later of:
//   - the dial time of the connection that last (re)established the session: creating a session is
//     a transaction of the leader's, and a server that takes a client back into its session asks the
//     leader to revalidate it first (a touch of the session), before it answers the connect;
//   - the send time S of an answered Sync followed by another answered Sync sent at least gap later
//     (on the same connection: a reconnect in between makes the first point later than S anyway);
//   - the send time of the latest answered Sync that the leader, or a standalone server, received
//     itself on a connection srvr said was to it (direct; see servermode.go): such a server touches
//     the session on receipt.
//
// Why not the latest answered Sync in general: a follower answers reads itself, and even a Sync
// (which it must pass to the leader) does not touch our session at the leader: the follower
// reports the sessions it saw to the leader only in its replies to the leader's pings, which come
// every half tick. An answered Sync sent gap >= tick/2 after S proves the follower was still with
// the leader then (a follower that loses its leader drops its clients), so a ping in between
// carried S to the leader. On a follower (or when the server's mode is unknown) the anchor so
// trails the latest answered Sync by one interval; on a standalone server it does not.
func (l *liveness) anchor() time.Time {
	a := l.s.revalidated()
	if l.direct.After(a) {
		a = l.direct
	}
	if n := len(l.syncs); n > 0 {
		last := l.syncs[n-1]
		for i := n - 2; i >= 0; i-- {
			if last.Sub(l.syncs[i]) >= l.gap() {
				if l.syncs[i].After(a) {
					a = l.syncs[i]
				}
				break
			}
		}
	}
	return a
}

// gap is the spacing anchor needs between two answered Syncs: no shorter than the leader's ping
// period, half a tick. When the tick is unknown, a quarter of the session timeout covers it: the
// server grants no session shorter than minSessionTimeout, by default two ticks. A shorter gap would
// not make the deadline safer, only the pings more frequent (load on the ensemble for nothing);
// serve spaces the round trips by interval, measured from each send, so that consecutive answered
// Syncs are always at least gap apart and the anchor trails the latest by one interval.
func (l *liveness) gap() time.Duration { return l.interval() }

// synced records the send time of an answered liveness round trip; direct says that a server
// touching the session itself received it (sessionRun.ping).
func (l *liveness) synced(sent time.Time, direct bool) {
	if l.onRTT != nil {
		l.onRTT(time.Since(sent))
	}
	if direct && sent.After(l.direct) {
		l.direct = sent
	}
	l.syncs = append(l.syncs, sent)
	// Keep what anchor can still use: from the newest entry at least gap older than sent.
	for len(l.syncs) > 2 && sent.Sub(l.syncs[1]) >= l.gap() {
		l.syncs = l.syncs[1:]
	}
}
