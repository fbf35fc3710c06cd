package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// sessionRun is the campaign within one session: the serve loop and what it keeps (candidacy,
// master record, liveness). Only its serve goroutine touches it.
type sessionRun struct {
	e   *Elector
	s   *session
	c   conn
	rep *reporter
	log *zap.Logger

	live  liveness
	cand  candidacy
	rec   masterRecord
	retry *retrier

	master      bool      // we report Master for cand.term (or Fault while out of contact)
	masterSince time.Time // when we last became master
	handover    bool      // this term follows a planned move to us (State.Handover)

	vals     valueCache // the other candidates' values (priority rules)
	ws       *watchset  // data and children watches of the priority rules
	maintPub bool       // our maintenance znode exists in this session
}

func newSessionRun(e *Elector, s *session, c conn, rep *reporter, tick time.Duration) *sessionRun {
	t := s.timeout()
	r := &sessionRun{
		e: e, s: s, c: c, rep: rep, log: s.log,
		live:  liveness{s: s, log: s.log, margin: e.cfg.Margin, tick: tick, onRTT: e.cfg.OnRTT},
		cand:  candidacy{warned: map[string]bool{}},
		vals:  newValueCache(),
		ws:    newWatchset(),
		retry: newRetrier(Backoff{Initial: min(e.cfg.Backoff.Initial, t/8), Max: min(e.cfg.Backoff.Max, t)}),
	}
	return r
}

// errRetry asks serve to step again after a backoff.
var errRetry = errors.New("retry")

// serve runs the campaign loop until ctx is done (it then resigns and returns nil) or the session
// is lost (it returns why). A slow or silent ensemble is not a reason to return: the session and
// the candidacy are kept (the deadline, enforced by the reporter, takes the VIPs), and the campaign
// goes on with the same term when the ensemble answers again.
func (r *sessionRun) serve(ctx context.Context) error {
	defer r.retry.stop()
	defer r.ws.close()
	ping := time.NewTimer(r.live.interval())
	defer ping.Stop()
	r.s.keepaliveAt(r.live.interval())
	needStep := true
	for {
		if needStep {
			needStep = false
			if err := r.stepOrRetry(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			r.resign("stopped")
			return nil
		case <-r.s.lost():
			return r.lostErr(nil)
		case <-r.s.reconnected():
			r.reconnected()
			needStep = true
		case ev := <-r.cand.predWatch:
			r.cand.predWatch = nil
			r.log.Debug("predecessor changed", zap.String("path", ev.Path), zap.Stringer("event", ev.Type))
			needStep = true
		case ev := <-r.cand.selfWatch:
			r.cand.selfWatch = nil
			// A change of our value is our own republish; anything else (deleted, the watch ended)
			// is checked by a step now. The next round trip arms the watch again.
			if ev.Path == r.cand.node && ev.Type != zk.EventNodeDataChanged {
				r.log.Debug("our candidate znode changed", zap.String("path", ev.Path), zap.Stringer("event", ev.Type))
				needStep = true
			}
		case ev := <-r.rec.watch:
			r.rec.watch = nil
			r.log.Debug("master record changed", zap.Stringer("event", ev.Type))
			needStep = true
		case <-r.e.yieldc:
			r.yield(ctx)
			needStep = true
		case <-r.e.eligc:
			needStep = true
		case <-r.e.prioc:
			needStep = true
		case ev := <-r.ws.c:
			r.watchFired(ev)
			needStep = true
		case q := <-r.e.reqc:
			q.done <- r.planned(ctx, q)
			needStep = true
		case <-r.retry.C():
			needStep = true
		case <-ping.C:
			sent, again := r.ping(ctx)
			// Measured from the send time, so answered round trips are at least one interval apart
			// (liveness.gap).
			next := time.Until(sent.Add(r.live.interval()))
			ping.Reset(next)
			r.s.keepaliveAt(next) // the same instant: one wake-up for both
			needStep = needStep || again
		}
	}
}

// stepOrRetry steps; a failure that retrying may fix arms the retry timer. It returns an error only
// when serve must end: the session is gone, or a permanent error (after resigning).
func (r *sessionRun) stepOrRetry(ctx context.Context) error {
	err := r.step(ctx)
	switch {
	case err == nil:
		r.retry.reset()
		return nil
	case isPermanent(err):
		r.resign("giving up")
		return err
	case sessionGone(err) || r.s.isLost():
		return r.lostErr(err)
	}
	d := r.retry.next()
	if !errors.Is(err, errRetry) {
		r.log.Warn("election step failed; retrying", zap.Duration("in", d), zap.Error(err))
	}
	return nil
}

// reconnected handles a reconnect within the session (to any server): the VIPs are announced again
// with the next Master State, and the watches are armed afresh (go-zookeeper re-registers the old
// ones, but does not retry when that fails), after re-reading the election.
func (r *sessionRun) reconnected() {
	r.live.contact++
	r.cand.predWatch, r.rec.watch, r.cand.selfWatch = nil, nil, nil
	r.cand.childWatch = false
	clear(r.vals.vals)
}

// yield gives up mastership for a hold-off that doubles with every yield in a row.
func (r *sessionRun) yield(ctx context.Context) {
	if !r.master {
		return
	}
	r.cand.yields++
	d := r.e.backoffFor(r.cand.yields)
	r.log.Info("yielding mastership", zap.Uint64("term", r.cand.term), zap.Duration("rejoin-after", d))
	r.giveUpPlanned(ctx, "yielded")
	r.cand.holdUntil = time.Now().Add(d)
	r.retry.at(d)
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
	if r.s.isLost() || r.s.raw.SessionID() != r.s.id {
		return errSessionLost
	}
	return err
}

// ping is the liveness round trip, made every interval whether or not we are a candidate: a Sync on
// the election znode (a follower must pass it to the leader, see liveness.anchor), then, while no
// watch on our candidate znode is armed, a check that it still exists in our session
// (checkCandidate). A master then reports its renewed deadline. It returns the send time, and
// again=true when the campaign should step again.
//
// The Sync anchors the deadline directly when the connection that has the session before it is
// sent is the one that has it after the answer, and srvr said before the send that its server is
// a standalone server (servermode.go): go-zookeeper sends requests only on its current
// connection, a new connection is a new wireConn, and sessionEvents makes a connection current
// (hasSession) before go-zookeeper sends anything on it.
func (r *sessionRun) ping(ctx context.Context) (sent time.Time, again bool) {
	via := r.s.current()
	sent = time.Now()
	err := r.call(func() error { _, err := r.c.Sync(r.e.paths.election); return err })
	direct := via != nil && r.s.current() == via && via.directFrom(sent)
	if err != nil {
		r.log.Debug("liveness check failed", zap.Error(err))
		return sent, sessionGone(err) // no renewal: the deadline runs out unless a later one is answered
	}
	if rtt := time.Since(sent); rtt > r.live.interval()/2 {
		// The server was out of reach for a while without the connection dropping (a short
		// partition): count it as regained contact, so the VIPs are announced again.
		r.log.Info("ZooKeeper answered after a long silence", zap.Duration("round-trip", rtt))
		r.live.contact++
	}
	r.live.synced(sent, direct)
	if r.cand.node == "" {
		return sent, false
	}
	if ok, again := r.checkCandidate(ctx); !ok {
		return sent, again
	}
	if r.master {
		if r.cand.yields > 0 && time.Since(r.masterSince) > r.s.timeout() {
			r.cand.yields = 0
		}
		r.reportMaster("renewed")
	}
	return sent, false
}

// checkCandidate makes sure our candidate znode still exists in our session: with an Exists that
// arms a watch on it, unless the watch an earlier round trip armed is still pending. ok=false when
// the round trip must end there (again as for ping).
//
// Why the watch bounds the same case as an Exists every round trip, sooner: the znode is ours (an
// ephemeral of our session, its sequential name never reused), so it can change only by a delete
// (an operator's, or the server's expiry of the session, which ends the campaign anyway) or by a
// set of its value (our republish, or an operator's). Our server sends the watch event when it
// applies the delete (as our successor's server sends the event of its watch on the same znode), in
// zxid order with the answers to our requests: an Exists each round trip saw it up to one interval
// later. While the connection is down no event arrives, and no Exists would be answered either; a
// reconnect drops the watch (go-zookeeper re-registers watches without retrying when that fails),
// and the step after it lists the election, so a delete in between is found there, and the next
// round trip arms a new watch. A watch that fired is re-armed by the next round trip's Exists, whose answer
// covers the time in between. An idle master so sends one request per round trip instead of two.
func (r *sessionRun) checkCandidate(ctx context.Context) (ok, again bool) {
	if r.cand.selfWatch != nil && r.cand.selfFor == r.cand.node {
		return true, false
	}
	var exists bool
	var st *zk.Stat
	var w <-chan zk.Event
	err := r.call(func() (err error) { exists, st, w, err = r.c.ExistsW(r.cand.node); return err })
	switch {
	case err != nil:
		r.log.Debug("candidate check failed", zap.Error(err))
		return false, sessionGone(err)
	case !exists || st.EphemeralOwner != r.s.id:
		r.log.Warn("our candidate znode is gone", zap.String("path", r.cand.node), zap.Uint64("term", r.cand.term))
		r.giveUp(ctx, election.Backup, "candidate znode deleted")
		return false, true
	}
	r.cand.selfWatch, r.cand.selfFor = w, r.cand.node
	return true, false
}

// reportMaster offers Master with the current deadline, or Fault when that deadline has already
// passed (contact was regained, but the anchor is too old to hold the VIPs again yet).
func (r *sessionRun) reportMaster(reason string) {
	vu := r.live.validUntil()
	if !time.Now().Before(vu) {
		r.rep.set(election.State{Role: election.Fault, Term: r.cand.term,
			Reason: "no liveness round trip acknowledged in time"})
		return
	}
	r.rep.set(election.State{Role: election.Master, Term: r.cand.term, Leader: r.rec.mine,
		ValidUntil: vu, Contact: r.live.contact, Reason: reason, Handover: r.handover})
}

func (r *sessionRun) reportOther(role election.Role, reason string) {
	r.rep.set(election.State{Role: role, Term: r.rec.seen.Term, Leader: r.rec.seen, Reason: reason})
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
	if maint := r.e.maint.Load(); maint || !r.e.eligible.Load() {
		reason := "ineligible"
		if maint {
			reason = "maintenance"
			if r.master {
				r.handOffForMaintenance(ctx)
			}
		}
		return false, r.stepIneligible(ctx, reason)
	}
	if err := r.syncMaintenance(); err != nil {
		return false, err
	}
	if err := r.payRelease(); err != nil {
		return false, err
	}
	var children []string
	err = r.call(func() error { children, _, err = r.c.Children(r.e.paths.election); return err })
	if errors.Is(err, zk.ErrNoNode) { // someone deleted the election znode: recreate the path
		return true, ensurePath(r.c, r.e.paths, r.e.acls, r.e.cfg.Auth)
	}
	if err != nil {
		return false, fmt.Errorf("zk: list candidates in %s: %w", r.e.paths.election, err)
	}
	cands := r.candidates(children)
	if r.cand.node == "" {
		return r.join(cands)
	}
	idx := slices.IndexFunc(cands, func(c candidate) bool { return r.e.paths.election+"/"+c.name == r.cand.node })
	if idx >= 0 {
		if err := r.republish(); err != nil {
			return false, err
		}
	}
	switch {
	case idx < 0:
		r.log.Warn("our candidate znode is gone", zap.String("path", r.cand.node))
		r.giveUp(ctx, election.Backup, "candidate znode deleted")
		return true, nil
	case idx == 0:
		if !r.master {
			if !r.rec.owned {
				r.prefetchMark() // for claim, alongside mayLead's reads
			}
			if ok, again, err := r.mayLead(cands); !ok || err != nil {
				r.dropMark()
				return again, err
			}
		}
		again, err := r.lead()
		r.dropMark() // lead published without a claim (its record was still ours)
		if err != nil || again || !r.master {
			return again, err
		}
		if err := r.republish(); err != nil { // the hold-back after a planned move ends here
			return false, err
		}
		r.dropTransfer()
		return r.checkPreempt(ctx, cands)
	case r.master: // cannot happen: sequence numbers only grow. Let go rather than trust it.
		r.log.Error("a candidate ahead of the master appeared; resigning", zap.String("first", cands[0].name))
		r.giveUp(ctx, election.Backup, "lost first place")
		return true, nil
	}
	return r.follow(r.e.paths.election + "/" + cands[idx-1].name)
}

// stepIneligible withdraws the candidacy and reports Backup naming whoever is master.
func (r *sessionRun) stepIneligible(ctx context.Context, reason string) error {
	if r.cand.node != "" || r.master {
		r.giveUpPlanned(ctx, reason)
	}
	if err := r.payRelease(); err != nil {
		return err
	}
	if err := r.syncMaintenance(); err != nil {
		return err
	}
	if err := r.readLeader(); err != nil {
		return err
	}
	r.reportOther(election.Backup, reason)
	return nil
}

// join adopts a candidate znode whose create reply was lost, or creates one (unless holding off
// after a yield).
func (r *sessionRun) join(cands []candidate) (again bool, err error) {
	if r.cand.pendingGUID != "" {
		if c, ok := findGUID(cands, r.cand.pendingGUID); ok {
			r.log.Info("found our candidate znode after a lost reply", zap.String("path", c))
			// Its value is not known for sure: the next step publishes it again (republish).
			r.cand.since, r.cand.published = time.Now().Round(0).UTC(), election.Candidate{}
			return true, r.adopt(c)
		}
	}
	if time.Now().Before(r.cand.holdUntil) {
		if err := r.readLeader(); err != nil {
			return false, err
		}
		r.reportOther(election.Backup, "yielded")
		return false, nil
	}
	return true, r.createCandidate()
}

// follow is a backup's step: watch the predecessor, read the master record, report Backup.
func (r *sessionRun) follow(pred string) (again bool, err error) {
	ok, err := r.watchPredecessor(pred)
	if err != nil || !ok {
		return !ok && err == nil, err
	}
	r.rec.foreignSince = time.Time{}
	if err := r.readLeader(); err != nil {
		return false, err
	}
	r.reportOther(election.Backup, "following")
	return false, nil
}

// lead handles being the first candidate: publish the master record, then report Master (with the
// same term as before a loss of contact: the term is our candidate's czxid).
func (r *sessionRun) lead() (again bool, err error) {
	r.ourRecord(r.cand.term)
	if err := r.refreshVIPs(); err != nil { // SetRecordVIPs
		return false, err
	}
	if !r.rec.owned || r.rec.watch == nil {
		ok, err := r.publish()
		if err != nil || !ok {
			return false, err
		}
	}
	if r.rec.watchOwed {
		// Arm the watch on the record claim just created once Master is reported (the
		// Coordinator's promote starts meanwhile), or now if this step does not report.
		defer func() {
			if err == nil {
				again, err = r.armOwnRecord()
			}
		}()
	}
	r.cand.pred, r.cand.predWatch = "", nil
	r.rec.seen = r.rec.mine
	if !r.master {
		r.master, r.masterSince = true, time.Now()
		// Our claim deleted the marker the previous master left when it gave up after its demote.
		r.handover = r.rec.released
		r.e.isMaster.Store(true)
		r.e.holdBack.Store(false) // master again: preempt as configured from now on
		r.log.Info("elected master", zap.Uint64("term", r.cand.term), zap.String("candidate", r.cand.node))
		r.reportMaster("elected")
		return false, nil
	}
	r.reportMaster("master")
	return false, nil
}

// giveUp ends our candidacy on purpose. A master first reports role and waits until the consumer has
// acted on it (the VIPs are gone), or until ctx is done (the Coordinator demotes before it stops the
// Elector): only then are its znodes deleted, so no other node can win while the VIPs are bound. The
// delete is retried until it succeeds (see payRelease).
func (r *sessionRun) giveUp(ctx context.Context, role election.Role, reason string) {
	if r.master {
		r.master = false
		r.e.isMaster.Store(false)
		seq := r.rep.set(election.State{Role: role, Term: r.cand.term, Reason: reason})
		if err := r.rep.waitActed(ctx, seq); err != nil {
			r.log.Info("stopped while waiting for the demote; the consumer demotes before stopping", zap.Error(err))
			r.cand.marker = false // no proof of the demote for the next master
		}
		r.log.Info("resigning mastership", zap.Uint64("term", r.cand.term), zap.String("reason", reason))
	}
	r.owe()
	if err := r.payRelease(); err != nil {
		r.log.Warn("could not delete our znodes; retrying", zap.Error(err))
	}
}

// giveUpPlanned is giveUp on purpose, while the session is fine (a yield, a withdrawal, a planned
// move): a master's release then also leaves the released marker for the next master's claim.
func (r *sessionRun) giveUpPlanned(ctx context.Context, reason string) {
	r.cand.marker = r.master
	r.giveUp(ctx, election.Backup, reason)
}

// resign is the clean-up on stop: the consumer has demoted already. Delete our znodes (the caller
// then closes the session, which removes them in any case); closeOnDone bounds it to ResignTimeout.
func (r *sessionRun) resign(reason string) {
	term := r.cand.term
	r.master = false
	r.e.isMaster.Store(false)
	r.owe()
	if r.cand.owed == nil {
		return
	}
	if err := r.payRelease(); err != nil {
		r.log.Warn("resign: could not delete our znodes; closing the session removes them", zap.Error(err))
		return
	}
	r.log.Info("resigned", zap.Uint64("term", term), zap.String("reason", reason))
}
