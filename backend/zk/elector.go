// Package zk is the ZooKeeper election backend: an election.Elector built on ephemeral sequential
// znodes and predecessor watches (the ZooKeeper leader-election recipe), and an election.Observer of
// the published master record. It uses github.com/go-zookeeper/zk.
//
// # Znodes
//
//	<chroot>/hacoord                      persistent, shared by all groups
//	<chroot>/hacoord/<group>              persistent
//	<chroot>/hacoord/<group>/election     persistent; one child per candidate:
//	    _c_<guid>-n_<seq>                 ephemeral sequential, data = node name
//	<chroot>/hacoord/<group>/leader       ephemeral, owned by the master's session: the JSON
//	                                      election.Record (Record.Marshal)
//
// The candidate with the lowest sequence number is master; every other candidate watches only the
// candidate just before it (no herd effect when the master goes). The term, the fencing token, is
// the czxid of the master's candidate znode: a new master's candidate was always created after the
// previous master's, so terms strictly increase.
//
// Candidates are created in the protected form (the "_c_<guid>-" prefix of go-zookeeper's
// CreateProtectedEphemeralSequential and of Curator): when a create's reply is lost with the
// connection, the elector looks for its GUID among the children before creating again, so a create
// that succeeded is found, not duplicated. It does this itself because the library's version gives
// up, and forgets the GUID, when the connection is still down the moment it looks.
//
// # The master record
//
// The master creates the leader znode after winning and deletes it together with its candidate (one
// multi-op) when it resigns. If the znode is already there when it wins:
//   - owned by its own session (a retry after a lost reply, or a previous term): overwritten;
//   - persistent (EphemeralOwner 0: hacoord never writes one, so someone else did): logged with its
//     content and replaced;
//   - owned by another live session: that may be a master that has not noticed it lost (a hacoord
//     master notices within a quarter of its session timeout, or its session expires), so the winner
//     waits, and reports Backup, for one negotiated session timeout; if the znode is still there it
//     is logged as stuck and replaced.
//
// # Sessions and self-fencing
//
// go-zookeeper reports an expired session only after it reconnects, and drops session events when
// its channel is full. The elector therefore takes session events through the event callback, reads
// the negotiated session timeout off the connect response, and keeps its own deadline: every quarter
// of the negotiated timeout it makes a liveness round trip (a Sync, which a follower must pass to the
// leader, then an Exists on its candidate znode), and a master reports a new Master State with
// ValidUntil = fencing.Deadline(anchor, negotiated timeout, Margin). The anchor is the send time of
// an earlier answered round trip (see sessionRun.anchor for why not the latest: a follower tells the
// leader about our session only with its pings, every half tick). While cut off nothing is answered,
// so ValidUntil stops moving and the Coordinator fences; the elector also reports Fault once that
// deadline passes. On expiry it reports Fault, closes the connection, opens a new session with
// backoff and campaigns again; after a reconnect within the session it re-reads the election and the
// master record (watches are one-shot and may have missed changes).
//
// # ACLs
//
// With Config.Auth ("user:password", the digest scheme), the group's znodes get
// digest:user:<hash> ALL plus world:anyone READ: anyone can watch the master record, only this
// identity can join, change or delete. /hacoord and the chroot's elements, shared with other groups,
// also give world CREATE, so other identities can add their own groups. Without Auth every znode is
// world:anyone ALL. A NoAuth answer (a group created by another identity, wrong password) makes Run
// return an error that names the znode and the identity.
package zk

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// Elector is an election.Elector (also an election.Yielder and election.Eligibility) over ZooKeeper.
// Run may be called once; Yield and SetEligible are safe from any goroutine.
type Elector struct {
	cfg     Config
	log     *zap.Logger
	servers []string
	paths   paths
	acls    acls

	started  atomic.Bool
	eligible atomic.Bool
	yieldc   chan struct{} // cap 1
	eligc    chan struct{} // cap 1

	// onSession, set only by tests (export_test.go), learns each session's id and password.
	onSession func(id int64, passwd []byte)
	// loseCreateReply, set only by tests, makes the next candidate create report a lost reply
	// after it was applied, as when the connection drops before the answer arrives.
	loseCreateReply atomic.Bool
}

var (
	_ election.Elector     = (*Elector)(nil)
	_ election.Yielder     = (*Elector)(nil)
	_ election.Eligibility = (*Elector)(nil)
)

// New validates cfg (zero durations take DefaultConfig's values) and returns an Elector. It starts
// nothing. log may be nil.
func New(cfg Config, log *zap.Logger) (*Elector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	servers, chroot, _ := parseServers(cfg.Servers)
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Record.Group, cfg.Record.Node = cfg.Group, cfg.Name
	e := &Elector{
		cfg:     cfg,
		log:     log.With(zap.String("group", cfg.Group), zap.String("node", cfg.Name)),
		servers: servers,
		paths:   newPaths(chroot, cfg.Group),
		acls:    newACLs(cfg.Auth),
		yieldc:  make(chan struct{}, 1),
		eligc:   make(chan struct{}, 1),
	}
	e.eligible.Store(true)
	return e, nil
}

// Yield makes a master resign and rejoin the election at the back, after a backoff that doubles
// with every yield in a row, so another candidate, if any, becomes master at once. A backup ignores
// it.
func (e *Elector) Yield() {
	select {
	case e.yieldc <- struct{}{}:
	default:
	}
}

// SetEligible(false) withdraws the candidacy: a master resigns, and the node reports Backup (reason
// "ineligible", naming whoever is master, as the conformance suite expects); SetEligible(true)
// campaigns again.
func (e *Elector) SetEligible(ok bool) {
	if e.eligible.Swap(ok) != ok {
		select {
		case e.eligc <- struct{}{}:
		default:
		}
	}
}

// Run campaigns until ctx is done, then resigns (deletes its znodes and closes the session; if
// ZooKeeper does not answer within Config.ResignTimeout the session is closed regardless, which
// takes go-zookeeper up to 3s more), reports Backup and returns nil. It reports Fault and keeps retrying, with
// backoff, while no session can be had. It returns an error only for what retrying cannot fix: the
// ensemble denies this identity (NoAuth) or rejects its credentials.
func (e *Elector) Run(ctx context.Context, out *election.Outbox) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("zk: Elector.Run called twice")
	}
	rep := newReporter(out)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		rep.run(gctx)
		return nil
	})
	g.Go(func() error { return e.campaign(gctx, rep) })
	err := g.Wait()

	final := election.State{Role: election.Backup, Reason: "stopped"}
	if err != nil {
		final = election.State{Role: election.Fault, Reason: err.Error()}
	}
	if last := rep.last(); last.Leader.Node != e.cfg.Name && last.Role != election.Master {
		final.Term, final.Leader = last.Term, last.Leader
	}
	rep.set(final)
	return err
}

// campaign runs sessions one after another until ctx is done or a permanent error.
func (e *Elector) campaign(ctx context.Context, rep *reporter) error {
	bo := newBackoff(e.cfg.Backoff)
	for {
		s, err := dial(ctx, e.cfg, e.servers, e.log, e.onSession)
		var stopWatch func()
		if err == nil {
			stopWatch = closeOnDone(ctx, s, e.cfg.ResignTimeout, s.log)
			err = ensurePath(s, e.paths, e.acls, e.cfg.Auth)
			if err != nil {
				stopWatch()
				s.close()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isPermanent(err) {
				e.log.Error("giving up", zap.Error(err))
				return err
			}
			e.log.Warn("no ZooKeeper session; retrying", zap.Strings("servers", e.servers), zap.Error(err))
			rep.set(e.fault(rep, "no ZooKeeper session: "+err.Error()))
			if !sleep(ctx, bo.next()) {
				return nil
			}
			continue
		}

		start := time.Now()
		r := newSessionRun(e, s, rep)
		err = r.serve(ctx)
		lost := ctx.Err() == nil && !isPermanent(err)
		if lost {
			// Demote first, then tidy up: closing the connection of an expired session makes
			// go-zookeeper wait up to 1s for a close request that can no longer be sent.
			e.log.Warn("session lost; starting a new one", zap.Error(err))
			rep.set(e.fault(rep, err.Error()))
		}
		stopWatch()
		s.close()
		if ctx.Err() != nil {
			return nil
		}
		if !lost {
			e.log.Error("giving up", zap.Error(err))
			return err
		}
		if time.Since(start) > s.timeout {
			bo.reset()
		}
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
}

// fault is a Fault State keeping the last known leader unless that was us.
func (e *Elector) fault(rep *reporter, reason string) election.State {
	st := election.State{Role: election.Fault, Reason: reason}
	if last := rep.last(); last.Role != election.Master && last.Leader.Node != e.cfg.Name {
		st.Term, st.Leader = last.Term, last.Leader
	}
	return st
}

// sessionRun is the campaign within one session. Only its serve goroutine touches it.
type sessionRun struct {
	e   *Elector
	s   *session
	rep *reporter
	log *zap.Logger

	margin   time.Duration
	interval time.Duration // between liveness round trips: negotiated timeout / 4
	contact  uint64        // reconnections within the session (State.Contact)

	// syncs holds the send times of the last answered liveness round trips (oldest first); the
	// deadline's anchor is derived from them (see anchor).
	syncs []time.Time

	// Candidacy.
	node        string // full path of our candidate znode, "" when none
	pendingGUID string // a create whose reply was lost: look for this GUID before creating again
	term        uint64 // czxid of node
	holdUntil   time.Time
	yields      int

	// Mastership.
	master       bool
	masterSince  time.Time
	rec          election.Record // our record for term
	leaderOwned  bool            // we hold the leader znode with leaderVersion
	leaderVer    int32
	foreignSince time.Time // when, as winner, we first found the leader znode held by another session

	// What we watch. A watch channel is re-armed only after it fired, so the library does not pile
	// up channels for one path.
	pred        string
	predWatch   <-chan zk.Event
	leaderWatch <-chan zk.Event
	leader      election.Record // last read master record (zero: none or unreadable)
	badLeader   int64           // mzxid of the last garbage record logged

	warnedChildren map[string]bool
	retry          *time.Timer
	retryBackoff   *backoff
}

func newSessionRun(e *Elector, s *session, rep *reporter) *sessionRun {
	margin := e.cfg.Margin
	if margin == 0 {
		margin = fencing.DefaultMargin(s.timeout)
	}
	if err := fencing.CheckMargin(s.timeout, margin); err != nil {
		def := fencing.DefaultMargin(s.timeout)
		s.log.Warn("margin does not fit the negotiated session timeout; using the default",
			zap.Duration("margin", margin), zap.Duration("negotiated", s.timeout), zap.Duration("default", def))
		margin = def
	}
	r := &sessionRun{
		e: e, s: s, rep: rep, log: s.log,
		margin:         margin,
		interval:       s.timeout / 4,
		warnedChildren: map[string]bool{},
		retry:          time.NewTimer(time.Hour),
		retryBackoff:   newBackoff(Backoff{Initial: min(e.cfg.Backoff.Initial, s.timeout/8), Max: min(e.cfg.Backoff.Max, s.timeout)}),
	}
	r.retry.Stop()
	return r
}

// errRetry asks serve to step again after a backoff.
var errRetry = errors.New("retry")

// serve runs the campaign loop until ctx is done (it then resigns and returns nil) or the session
// is lost (it returns why).
func (r *sessionRun) serve(ctx context.Context) error {
	defer r.retry.Stop()
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	needStep := true
	for {
		if needStep {
			needStep = false
			if err := r.step(ctx); err != nil {
				switch {
				case isPermanent(err):
					r.resign(ctx, "giving up")
					return err
				case sessionGone(err) || r.s.isLost():
					return r.lostErr(err)
				default:
					d := r.retryBackoff.next()
					if !errors.Is(err, errRetry) {
						r.log.Warn("election step failed; retrying", zap.Duration("in", d), zap.Error(err))
					}
					r.retry.Reset(d)
				}
			} else {
				r.retryBackoff.reset()
			}
		}
		select {
		case <-ctx.Done():
			r.resign(ctx, "stopped")
			return nil
		case <-r.s.lost:
			return r.lostErr(nil)
		case <-r.s.reconnected:
			r.contact++ // reported with the next renewal: the VIPs are announced again
			needStep = true
		case ev := <-r.predWatch:
			r.predWatch = nil
			r.log.Debug("predecessor changed", zap.String("path", ev.Path), zap.Stringer("event", ev.Type))
			needStep = true
		case ev := <-r.leaderWatch:
			r.leaderWatch = nil
			r.log.Debug("master record changed", zap.Stringer("event", ev.Type))
			needStep = true
		case <-r.e.yieldc:
			if r.master {
				r.yields++
				d := r.e.backoffFor(r.yields)
				r.log.Info("yielding mastership", zap.Uint64("term", r.term), zap.Duration("rejoin-after", d))
				r.giveUp(ctx, election.Backup, "yielded")
				r.holdUntil = time.Now().Add(d)
				r.retry.Reset(d)
			}
			needStep = true
		case <-r.e.eligc:
			needStep = true
		case <-r.retry.C:
			needStep = true
		case <-tick.C:
			if err := r.ping(ctx); err != nil {
				needStep = true
			}
		}
	}
}

func (r *sessionRun) lostErr(err error) error {
	reason := r.s.ev.reason()
	if reason == "" && err != nil {
		reason = err.Error()
	}
	if reason == "" {
		reason = "session lost"
	}
	return fmt.Errorf("zk: %s", reason)
}

// call runs one request of our session. When the session was lost meanwhile it returns
// errSessionLost instead: go-zookeeper runs requests queued across an expiry in the new session it
// opens, and their answers say nothing about ours.
func (r *sessionRun) call(f func() error) error {
	if r.s.isLost() {
		return errSessionLost
	}
	err := f()
	if r.s.isLost() || r.s.conn.SessionID() != r.s.id {
		return errSessionLost
	}
	return err
}

// validUntil is the self-fencing deadline: fencing.Deadline from anchor.
func (r *sessionRun) validUntil() time.Time {
	return fencing.Deadline(r.anchor(), r.s.timeout, r.margin)
}

// anchor is an instant by which the ZooKeeper leader, which alone expires sessions, has certainly
// heard from our session, so that it cannot expire it before anchor + timeout.
//
// A follower answers reads itself, and keeps doing so for up to syncLimit ticks after losing the
// leader; it forwards the sessions it saw to the leader only with its pings, every half tick. So an
// answered read proves nothing to the leader, and even the send time of an answered Sync (which the
// follower must pass to the leader) runs up to half a tick ahead of the leader's clock for our
// session. The anchor is therefore one of:
//   - the start of the session: creating it is a transaction of the leader's;
//   - the send time S of an answered Sync followed by another answered Sync sent at least one
//     interval (timeout/4) later: that one proves the follower was still with the leader then (a
//     follower that loses the leader drops its clients), so its pings carried S to the leader, and
//     timeout/4 covers the half-tick ping period whenever timeout >= 2 ticks (the server's default
//     minimum session timeout).
//
// With timeout/4 between liveness checks the anchor trails the latest check by one or two intervals:
// a master keeps about 1/2 to 3/4 of the timeout, less the margin, of validity at every renewal.
func (r *sessionRun) anchor() time.Time {
	a := r.s.started
	if n := len(r.syncs); n > 0 {
		last := r.syncs[n-1]
		for i := n - 2; i >= 0; i-- {
			if last.Sub(r.syncs[i]) >= r.gap() {
				if r.syncs[i].After(a) {
					a = r.syncs[i]
				}
				break
			}
		}
	}
	return a
}

// synced records the send time of an answered liveness round trip.
func (r *sessionRun) synced(sent time.Time) {
	r.syncs = append(r.syncs, sent)
	// Keep what anchor can still use: from the newest entry at least one interval older than sent.
	for len(r.syncs) > 2 && sent.Sub(r.syncs[1]) >= r.gap() {
		r.syncs = r.syncs[1:]
	}
}

// gap is the spacing anchor needs between two liveness checks: one interval, less 5% for timer
// jitter between ticks (the margin covers those few milliseconds).
func (r *sessionRun) gap() time.Duration { return r.interval - r.interval/20 }

// ping is the liveness round trip, made every interval whether or not we are a candidate: a Sync on
// the election znode (a follower must pass it to the leader, see anchor), then a check that our
// candidate znode still exists in our session. A master then reports its renewed deadline. It
// returns an error when the campaign should step again.
func (r *sessionRun) ping(ctx context.Context) error {
	sent := time.Now()
	err := r.call(func() error { _, err := r.s.conn.Sync(r.e.paths.election); return err })
	if err != nil {
		r.log.Debug("liveness check failed", zap.Error(err))
		return nil // no renewal: the deadline runs out unless a later check is answered
	}
	if rtt := time.Since(sent); rtt > r.interval/2 {
		// The server was out of reach for a while without the session noticing (a short
		// partition): count it as regained contact, so the VIPs are announced again.
		r.log.Info("ZooKeeper answered after a long silence", zap.Duration("round-trip", rtt))
		r.contact++
	}
	r.synced(sent)
	if r.node == "" {
		return nil
	}
	var (
		ok bool
		st *zk.Stat
	)
	err = r.call(func() (err error) { ok, st, err = r.s.conn.Exists(r.node); return err })
	switch {
	case err != nil:
		r.log.Debug("candidate check failed", zap.Error(err))
		return nil
	case !ok || st.EphemeralOwner != r.s.id:
		r.log.Warn("our candidate znode is gone", zap.String("path", r.node), zap.Uint64("term", r.term))
		if r.master {
			r.giveUp(ctx, election.Backup, "candidate znode deleted")
		}
		r.node = ""
		return errRetry
	}
	if r.master {
		if r.yields > 0 && time.Since(r.masterSince) > r.s.timeout {
			r.yields = 0
		}
		r.reportMaster("renewed")
	}
	return nil
}

func (r *sessionRun) reportMaster(reason string) {
	r.rep.set(election.State{Role: election.Master, Term: r.term, Leader: r.rec,
		ValidUntil: r.validUntil(), Contact: r.contact, Reason: reason})
}

func (r *sessionRun) reportOther(role election.Role, reason string) {
	r.rep.set(election.State{Role: role, Term: r.leader.Term, Leader: r.leader, Reason: reason})
}

// step brings the candidacy in line with the election's current state and reports the result.
func (r *sessionRun) step(ctx context.Context) error {
	for range 8 { // a few quick re-reads when the election changed under us
		again, err := r.stepOnce(ctx)
		if err != nil || !again {
			return err
		}
	}
	return errRetry
}

// stepOnce returns again=true when it changed something that warrants an immediate re-read.
func (r *sessionRun) stepOnce(ctx context.Context) (again bool, err error) {
	eligible := r.e.eligible.Load()
	holding := time.Now().Before(r.holdUntil)

	if !eligible {
		if r.node != "" {
			r.giveUp(ctx, election.Backup, "ineligible")
		}
		if err := r.readLeader(); err != nil {
			return false, err
		}
		r.reportOther(election.Backup, "ineligible")
		return false, nil
	}

	var children []string
	err = r.call(func() error { children, _, err = r.s.conn.Children(r.e.paths.election); return err })
	if errors.Is(err, zk.ErrNoNode) { // someone deleted the election znode: recreate the path
		if err := ensurePath(r.s, r.e.paths, r.e.acls, r.e.cfg.Auth); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("zk: list candidates in %s: %w", r.e.paths.election, err)
	}
	cands := r.candidates(children)

	if r.node == "" && r.pendingGUID != "" {
		if c, ok := findGUID(cands, r.pendingGUID); ok {
			r.log.Info("found our candidate znode after a lost reply", zap.String("path", c))
			if err := r.adopt(c); err != nil {
				return false, err
			}
			return true, nil
		}
	}
	if r.node == "" {
		if holding {
			if err := r.readLeader(); err != nil {
				return false, err
			}
			r.reportOther(election.Backup, "yielded")
			return false, nil
		}
		if err := r.createCandidate(); err != nil {
			return false, err
		}
		return true, nil
	}

	idx := slices.IndexFunc(cands, func(c candidate) bool { return r.e.paths.election+"/"+c.name == r.node })
	if idx < 0 {
		r.log.Warn("our candidate znode is gone", zap.String("path", r.node))
		if r.master {
			r.giveUp(ctx, election.Backup, "candidate znode deleted")
		}
		r.node = ""
		return true, nil
	}

	if idx == 0 {
		return r.lead(ctx)
	}

	if r.master { // cannot happen: sequence numbers only grow. Let go rather than trust it.
		r.log.Error("a candidate ahead of the master appeared; resigning", zap.String("first", cands[0].name))
		r.giveUp(ctx, election.Backup, "lost first place")
		return true, nil
	}
	pred := r.e.paths.election + "/" + cands[idx-1].name
	if pred != r.pred || r.predWatch == nil {
		var ok bool
		var w <-chan zk.Event
		err := r.call(func() error { ok, _, w, err = r.s.conn.ExistsW(pred); return err })
		if err != nil {
			return false, fmt.Errorf("zk: watch predecessor %s: %w", pred, err)
		}
		r.pred, r.predWatch = pred, w
		if !ok {
			return true, nil // gone meanwhile; the watch now waits for a re-creation that never comes
		}
	}
	r.foreignSince = time.Time{}
	if err := r.readLeader(); err != nil {
		return false, err
	}
	r.reportOther(election.Backup, "following")
	return false, nil
}

// candidate is one child of the election znode.
type candidate struct {
	name string
	seq  int64
}

// candidates parses and sorts the election's children by sequence number; children that are not
// candidates are logged once and ignored.
func (r *sessionRun) candidates(children []string) []candidate {
	cs := make([]candidate, 0, len(children))
	for _, c := range children {
		seq, ok := parseSeq(c)
		if !ok {
			if !r.warnedChildren[c] {
				r.warnedChildren[c] = true
				r.log.Warn("ignoring a znode in the election that is not a candidate",
					zap.String("path", r.e.paths.election+"/"+c))
			}
			continue
		}
		cs = append(cs, candidate{c, seq})
	}
	slices.SortFunc(cs, func(a, b candidate) int { return cmp.Compare(a.seq, b.seq) })
	return cs
}

// parseSeq returns the sequence number ZooKeeper appended (10 digits) to a candidate's name.
func parseSeq(name string) (int64, bool) {
	if len(name) < 10 {
		return 0, false
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func findGUID(cs []candidate, guid string) (string, bool) {
	for _, c := range cs {
		if strings.HasPrefix(c.name, "_c_"+guid+"-") {
			return c.name, true
		}
	}
	return "", false
}

// createCandidate creates our candidate znode in the protected form.
func (r *sessionRun) createCandidate() error {
	if r.pendingGUID == "" {
		var g [16]byte
		_, _ = rand.Read(g[:])
		r.pendingGUID = hex.EncodeToString(g[:])
	}
	prefix := r.e.paths.election + "/_c_" + r.pendingGUID + "-n_"
	var p string
	err := r.call(func() (err error) {
		p, err = r.s.conn.Create(prefix, []byte(r.e.cfg.Name), zk.FlagEphemeral|zk.FlagSequence, r.e.acls.group)
		return err
	})
	if err == nil && r.e.loseCreateReply.CompareAndSwap(true, false) {
		err = zk.ErrConnectionClosed // applied, but the answer never came
	}
	switch {
	case err == nil:
	case errors.Is(err, zk.ErrNoAuth):
		return noAuth("create a candidate in", r.e.paths.election, r.e.cfg.Auth)
	case errors.Is(err, zk.ErrNoNode):
		r.pendingGUID = ""
		return ensurePath(r.s, r.e.paths, r.e.acls, r.e.cfg.Auth)
	default:
		// The create may have been applied with its reply lost: keep the GUID and look first.
		return fmt.Errorf("zk: create candidate in %s: %w", r.e.paths.election, err)
	}
	r.log.Debug("candidate created", zap.String("path", p))
	return r.adopt(p)
}

// adopt makes path our candidate and reads its czxid (our term should we win).
func (r *sessionRun) adopt(path string) error {
	if !strings.HasPrefix(path, "/") {
		path = r.e.paths.election + "/" + path
	}
	var ok bool
	var st *zk.Stat
	err := r.call(func() (err error) { ok, st, err = r.s.conn.Exists(path); return err })
	if err != nil {
		return fmt.Errorf("zk: read candidate %s: %w", path, err)
	}
	r.pendingGUID = ""
	if !ok || st.EphemeralOwner != r.s.id {
		return fmt.Errorf("zk: candidate %s vanished or is not ours: %w", path, errRetry)
	}
	r.node, r.term = path, uint64(st.Czxid)
	r.rec = election.Record{}
	return nil
}

// lead handles being the first candidate: publish the master record, then report Master.
func (r *sessionRun) lead(ctx context.Context) (again bool, err error) {
	if r.rec.Term != r.term {
		r.rec = r.e.cfg.Record
		r.rec.VIPs = slices.Clone(r.rec.VIPs)
		r.rec.Term = r.term
		r.rec.Since = time.Now().Round(0).UTC()
		r.leaderOwned = false
	}
	if !r.leaderOwned || r.leaderWatch == nil {
		ok, err := r.publish()
		if err != nil || !ok {
			return false, err
		}
	}
	r.pred, r.predWatch = "", nil
	if !r.master {
		r.master, r.masterSince = true, time.Now()
		r.log.Info("elected master", zap.Uint64("term", r.term), zap.String("candidate", r.node))
		r.reportMaster("elected")
	} else {
		r.reportMaster("master")
	}
	r.leader = r.rec
	return false, nil
}

// publish makes the leader znode hold our record, owned by our session, and watches it. ok=false
// means we must wait for another session's record to go (r.retry is armed).
func (r *sessionRun) publish() (ok bool, err error) {
	p := r.e.paths.leader
	data := r.rec.Marshal()
	err = r.call(func() error { _, err := r.s.conn.Create(p, data, zk.FlagEphemeral, r.e.acls.group); return err })
	switch {
	case err == nil:
		return r.watchOwnRecord(data)
	case errors.Is(err, zk.ErrNoAuth):
		return false, noAuth("create", p, r.e.cfg.Auth)
	case !errors.Is(err, zk.ErrNodeExists):
		return false, fmt.Errorf("zk: create %s: %w", p, err)
	}

	var cur []byte
	var st *zk.Stat
	err = r.call(func() (err error) { cur, st, err = r.s.conn.Get(p); return err })
	if errors.Is(err, zk.ErrNoNode) {
		return false, errRetry // gone meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("zk: read %s: %w", p, err)
	}
	switch owner := st.EphemeralOwner; {
	case owner == r.s.id:
		if string(cur) != string(data) {
			r.log.Warn("master record was changed by someone else, or is from an earlier term; rewriting it",
				zap.ByteString("found", clip(cur)))
			err = r.call(func() error { _, err := r.s.conn.Set(p, data, st.Version); return err })
			if errors.Is(err, zk.ErrNoAuth) {
				return false, noAuth("write", p, r.e.cfg.Auth)
			}
			if err != nil {
				return false, fmt.Errorf("zk: write %s: %w", p, err)
			}
		}
		return r.watchOwnRecord(data)
	case owner == 0:
		r.log.Warn("a persistent znode hacoord did not write holds the master record path; replacing it",
			zap.String("path", p), zap.ByteString("found", clip(cur)))
	default:
		if r.foreignSince.IsZero() {
			r.foreignSince = time.Now()
			rec, perr := election.ParseRecord(cur)
			r.log.Warn("won the election but another session still holds the master record; waiting for it to go",
				zap.String("owner", fmt.Sprintf("%#x", owner)), zap.String("leader", rec.Node),
				zap.Uint64("term", rec.Term), zap.NamedError("parse", perr), zap.Duration("at-most", r.s.timeout))
		}
		if wait := time.Until(r.foreignSince.Add(r.s.timeout)); wait > 0 {
			if r.leaderWatch == nil {
				var w <-chan zk.Event
				var ok bool
				err := r.call(func() (err error) { ok, _, w, err = r.s.conn.ExistsW(p); return err })
				if err != nil {
					return false, fmt.Errorf("zk: watch %s: %w", p, err)
				}
				r.leaderWatch = w
				if !ok {
					return false, errRetry // gone before the watch was set
				}
			}
			r.leader, _ = election.ParseRecord(cur)
			r.reportOther(election.Backup, "waiting for the previous master record to go")
			r.retry.Reset(wait)
			return false, nil
		}
		r.log.Error("the master record is still held by another session after a session timeout; replacing it",
			zap.String("owner", fmt.Sprintf("%#x", owner)), zap.ByteString("found", clip(cur)))
	}
	err = r.call(func() error { return r.s.conn.Delete(p, st.Version) })
	switch {
	case err == nil, errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrBadVersion):
		return false, errRetry
	case errors.Is(err, zk.ErrNoAuth):
		return false, noAuth("delete", p, r.e.cfg.Auth)
	default:
		return false, fmt.Errorf("zk: delete %s: %w", p, err)
	}
}

// watchOwnRecord arms a watch on our leader znode and records its version; a change by anyone
// fires the watch and the next step checks it again.
func (r *sessionRun) watchOwnRecord(data []byte) (bool, error) {
	p := r.e.paths.leader
	var ok bool
	var st *zk.Stat
	var w <-chan zk.Event
	err := r.call(func() (err error) { ok, st, w, err = r.s.conn.ExistsW(p); return err })
	if err != nil {
		return false, fmt.Errorf("zk: watch %s: %w", p, err)
	}
	r.leaderWatch = w
	if !ok || st.EphemeralOwner != r.s.id {
		return false, errRetry
	}
	r.leaderOwned, r.leaderVer = true, st.Version
	r.foreignSince = time.Time{}
	return true, nil
}

// readLeader refreshes r.leader from the leader znode, watching it when no watch is armed.
func (r *sessionRun) readLeader() error {
	p := r.e.paths.leader
	if r.leaderWatch == nil {
		var w <-chan zk.Event
		err := r.call(func() (err error) { _, _, w, err = r.s.conn.ExistsW(p); return err })
		if err != nil {
			return fmt.Errorf("zk: watch %s: %w", p, err)
		}
		r.leaderWatch = w
	}
	var data []byte
	var st *zk.Stat
	err := r.call(func() (err error) { data, st, err = r.s.conn.Get(p); return err })
	switch {
	case errors.Is(err, zk.ErrNoNode):
		r.leader = election.Record{}
		return nil
	case err != nil:
		return fmt.Errorf("zk: read %s: %w", p, err)
	}
	rec, perr := election.ParseRecord(data)
	if perr != nil {
		if st.Mzxid != r.badLeader {
			r.badLeader = st.Mzxid
			r.log.Warn("master record is not a hacoord record; treating the group as having no known master",
				zap.String("path", p), zap.ByteString("found", clip(data)), zap.Error(perr))
		}
		rec = election.Record{}
	}
	r.leader = rec
	return nil
}

// giveUp ends our candidacy: report role first and give the consumer a moment to demote, then
// delete the leader znode (if ours) and the candidate znode in one multi-op.
func (r *sessionRun) giveUp(ctx context.Context, role election.Role, reason string) {
	wasMaster := r.master
	r.master = false
	if wasMaster {
		st := election.State{Role: role, Reason: reason}
		seq := r.rep.set(st)
		r.rep.waitActed(ctx, seq, r.e.cfg.ResignTimeout)
		r.log.Info("resigning mastership", zap.Uint64("term", r.term), zap.String("reason", reason))
	}
	if err := r.deleteOwn(); err != nil {
		r.log.Warn("could not delete our znodes; they go with the session", zap.Error(err))
	}
	r.node, r.rec, r.leaderOwned, r.leader = "", election.Record{}, false, election.Record{}
}

// deleteOwn deletes our candidate znode and, when we hold it, the leader znode, atomically.
func (r *sessionRun) deleteOwn() error {
	if r.node == "" {
		return nil
	}
	var err error
	if r.leaderOwned {
		err = r.call(func() error {
			_, err := r.s.conn.Multi(
				&zk.DeleteRequest{Path: r.e.paths.leader, Version: r.leaderVer},
				&zk.DeleteRequest{Path: r.node, Version: -1})
			return err
		})
		if err == nil {
			return nil
		}
		// The record changed or vanished under us: delete what is still ours, record first.
		r.log.Debug("multi delete failed; deleting one by one", zap.Error(err))
		var st *zk.Stat
		var ok bool
		if err := r.call(func() (err error) { ok, st, err = r.s.conn.Exists(r.e.paths.leader); return err }); err == nil &&
			ok && st.EphemeralOwner == r.s.id {
			_ = r.call(func() error { return r.s.conn.Delete(r.e.paths.leader, -1) })
		}
	}
	err = r.call(func() error { return r.s.conn.Delete(r.node, -1) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("zk: delete %s: %w", r.node, err)
	}
	return nil
}

// resign is the clean-up on stop: delete our znodes (the caller then closes the session, which
// removes them in any case). closeOnDone bounds it to ResignTimeout after ctx is done.
func (r *sessionRun) resign(ctx context.Context, reason string) {
	if r.node == "" {
		return
	}
	r.master = false
	if err := r.deleteOwn(); err != nil {
		r.log.Warn("resign: could not delete our znodes; closing the session removes them", zap.Error(err))
	} else {
		r.log.Info("resigned", zap.Uint64("term", r.term), zap.String("reason", reason))
	}
	r.node = ""
}

// backoffFor is the hold-off after the n-th yield in a row.
func (e *Elector) backoffFor(n int) time.Duration {
	d := e.cfg.Backoff.Initial
	for i := 1; i < n && d < e.cfg.Backoff.Max; i++ {
		d *= 2
	}
	return min(d, e.cfg.Backoff.Max)
}

// clip shortens foreign data for a log line.
func clip(b []byte) []byte {
	if len(b) > 256 {
		return append(b[:256:256], "..."...)
	}
	return b
}

// backoff is an exponential backoff with jitter (half to full step).
type backoff struct {
	cfg Backoff
	cur time.Duration
}

func newBackoff(c Backoff) *backoff { return &backoff{cfg: c} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.cfg.Initial
	} else {
		b.cur = min(2*b.cur, b.cfg.Max)
	}
	if b.cur <= 0 {
		return 0
	}
	return b.cur/2 + mrand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
