package zk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The client's timers, all fractions of the negotiated session timeout t (see Timing).
func renewInterval(t time.Duration) time.Duration  { return t / 4 }
func stallLimit(t time.Duration) time.Duration     { return max(t/6, 20*time.Millisecond) }
func handshakeLimit(t time.Duration) time.Duration { return stallLimit(t) }
func silentFor(t time.Duration) time.Duration      { return t / 2 }
func roundPause(t time.Duration) time.Duration {
	return min(max(t/20, 10*time.Millisecond), time.Second)
}

// finalizeWait is how long ZooKeeper's FastLeaderElection waits, once a server has a quorum of
// votes for one candidate, for a better vote before it settles (FastLeaderElection.finalizeWait).
const finalizeWait = 200 * time.Millisecond

// Timing is what a node knows of the timers that decide whether a fault of the ensemble costs the
// master its VIPs. The elector logs it once a session is established (warning when the session is
// too short to ride out a leader election of the ensemble).
//
// The client side follows from the negotiated session timeout T (the smallest the ensemble ever
// granted the session: a server may grant less on a reconnect):
//   - every Renewal (T/4) the node makes a liveness round trip (a Sync, which a follower passes to
//     the leader); the self-fencing deadline is anchored on an answered one at most two renewals
//     old, or on the last (re)connection, which the leader itself validates. So a master in contact
//     holds, at every instant, at least WorstValidity = T/2 - Margin of validity. On a standalone
//     server (known from srvr, see servermode.go; not on an ensemble's leader) the deadline is
//     anchored on the latest answered round trip, at most one renewal old: T - Renewal - Margin
//     (3T/4 - Margin);
//   - a server that leaves requests unanswered for Stall (T/6) is dropped and the next server of the
//     ensemble dialled (go-zookeeper alone would wait for its receive timeout, 2T/3, and for a
//     follower that has lost its leader but still answers pings, until that follower gives up);
//     a dial and a connect exchange get Stall too, a server that was silent is skipped for T/2, and a
//     round of failed attempts is followed by a pause of RoundPause (T/20; go-zookeeper's is 1s).
//     When the connected server goes silent, the first request it leaves unanswered goes out within
//     one Renewal; the deadline is at least T/2 - Margin after that request, and the node leaves the
//     server Stall after it (within 5T/12 of the silence), so it reconnects elsewhere in time.
//
// The ensemble side comes from the `conf` four-letter word, when the servers allow it
// (4lw.commands.whitelist): tickTime, the session bounds [MinSession, MaxSession] (by default 2 and
// 20 ticks) and initLimit/syncLimit. After its leader fails, an ensemble serves again after about
// StoreOutage = syncLimit ticks (followers notice a silent leader; a crashed one at once) + 200ms
// (the leader election's final wait) + 2 ticks (the new leader's sync with a quorum, a few ticks on a
// small database, at most initLimit) — an estimate, not a bound. The session itself survives any
// leader election (a new leader restarts every session's timeout), but the VIPs ride it out only
// when the master is back in contact before its deadline: WorstValidity >= StoreOutage + RoundPause.
// RideOut is the smallest session timeout for which that holds.
type Timing struct {
	// Session is the negotiated session timeout; Margin the self-fencing margin it gives.
	Session, Margin time.Duration
	// Tick, MinSession and MaxSession are the server's tickTime and session bounds; zero when
	// unknown (conf not allowed).
	Tick, MinSession, MaxSession time.Duration
	// InitLimit and SyncLimit are the ensemble's limits in ticks; zero when unknown or standalone.
	InitLimit, SyncLimit int
}

// Renewal is the interval between liveness round trips.
func (t Timing) Renewal() time.Duration { return renewInterval(t.Session) }

// Stall is how long requests may go unanswered before the node moves to another server.
func (t Timing) Stall() time.Duration { return stallLimit(t.Session) }

// RoundPause is the pause after a round of failed connection attempts.
func (t Timing) RoundPause() time.Duration { return roundPause(t.Session) }

// WorstValidity is the least validity a master in contact with the ensemble holds at any instant:
// T/2 - Margin in an ensemble (the master's session may be on a follower) or when the servers'
// timing is unknown, T - Renewal - Margin on a standalone server (which answers srvr: it is in
// ZooKeeper's default 4lw.commands.whitelist).
func (t Timing) WorstValidity() time.Duration {
	if t.Standalone() {
		return t.Session - t.Renewal() - t.Margin
	}
	return t.Session/2 - t.Margin
}

// Standalone reports whether the timing is known to be a standalone server's: a tick and no
// syncLimit.
func (t Timing) Standalone() bool { return t.Tick > 0 && t.SyncLimit == 0 }

// StoreOutage estimates how long the ensemble does not serve after its leader fails (0: unknown).
func (t Timing) StoreOutage() time.Duration {
	if t.Tick <= 0 || t.SyncLimit <= 0 {
		return 0
	}
	return time.Duration(t.SyncLimit)*t.Tick + finalizeWait + 2*t.Tick
}

// RidesOut reports whether a master keeps its VIPs through a leader election of the ensemble
// (false when the ensemble's timing is unknown).
func (t Timing) RidesOut() bool {
	o := t.StoreOutage()
	return o > 0 && t.WorstValidity() >= o+t.RoundPause()
}

// RideOut returns the smallest session timeout (in steps of 100ms) that rides out a leader
// election of the ensemble with the margin the node would use for it (the configured one, or
// fencing.DefaultMargin when margin is 0), or 0 when the ensemble's timing is unknown.
func (t Timing) RideOut(margin time.Duration) time.Duration {
	if t.StoreOutage() == 0 {
		return 0
	}
	for s := 100 * time.Millisecond; s <= time.Hour; s += 100 * time.Millisecond {
		m, _ := marginFor(margin, s)
		if (Timing{Session: s, Margin: m, Tick: t.Tick, SyncLimit: t.SyncLimit}).RidesOut() {
			return s
		}
	}
	return 0
}

// errConfRefused is returned by readConf when the server does not allow the conf word.
var errConfRefused = errors.New("conf is not in the server's 4lw.commands.whitelist")

// readConf asks the server at addr for its configuration (the `conf` four-letter word) and fills in
// the ensemble side of t.
func readConf(ctx context.Context, addr string, t *Timing) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("zk: conf from %s: %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("conf")); err != nil {
		return fmt.Errorf("zk: conf from %s: %w", addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil {
		return fmt.Errorf("zk: conf from %s: %w", addr, err)
	}
	if strings.Contains(string(b), "not in the whitelist") || strings.Contains(string(b), "not executed") {
		return fmt.Errorf("zk: conf from %s: %w", addr, errConfRefused)
	}
	return parseConf(string(b), t)
}

// parseConf reads the key=value lines of a conf answer into t.
func parseConf(s string, t *Timing) error {
	ms := func(v string) time.Duration {
		n, _ := strconv.Atoi(v)
		return time.Duration(n) * time.Millisecond
	}
	tick := false
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch k {
		case "tickTime":
			t.Tick, tick = ms(v), true
		case "minSessionTimeout":
			t.MinSession = ms(v)
		case "maxSessionTimeout":
			t.MaxSession = ms(v)
		case "initLimit":
			t.InitLimit, _ = strconv.Atoi(v)
		case "syncLimit":
			t.SyncLimit, _ = strconv.Atoi(v)
		}
	}
	if !tick || t.Tick <= 0 {
		return errors.New("zk: conf: no tickTime in the answer")
	}
	return nil
}
