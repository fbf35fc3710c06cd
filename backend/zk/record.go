package zk

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// masterRecord is the leader znode as this node sees it within one session: the record it publishes
// while master, whether the znode holds it, the watch on the znode, and the record last read. Only
// the session's serve goroutine touches it.
type masterRecord struct {
	mine    election.Record // our record for the current term (zero: none yet)
	owned   bool            // the leader znode holds mine, owned by our session, at version
	version int32
	// released: our claim deleted the released marker: the previous master gave up after its
	// demote, and no master came between (State.Handover).
	released bool

	// foreignSince is when, as winner, we first found the znode held by another live session.
	foreignSince time.Time

	watch    <-chan zk.Event // armed on the leader znode; nil once fired (re-armed by the next step)
	seen     election.Record // last record read (zero: none or unreadable)
	badMzxid int64           // mzxid of the last garbage record logged

	// mark is the read of the released marker that the step which found us first started alongside
	// mayLead's reads (prefetchMark), for claim; nil when none was started.
	mark <-chan markRead
	// watchOwed: claim created the leader znode (ours, version 0) and lead reports Master before
	// arming its watch (watchOwnRecord), one round trip earlier.
	watchOwed bool
}

// markRead is a read of the released marker.
type markRead struct {
	data []byte
	st   *zk.Stat
	err  error
}

// prefetchMark starts reading the released marker for the claim that follows if mayLead lets this
// node lead, so that the read goes out with mayLead's instead of one round trip after them. It is
// sent after the Children read that found us first, so it is answered from a state at least as
// new (ZooKeeper answers a session's requests in order); a marker cannot appear after that
// anyway: a master leaves one only in the multi-op that deletes its candidate, which was ahead of
// ours.
func (r *sessionRun) prefetchMark() {
	ch := make(chan markRead, 1)
	r.rec.mark = ch
	go func() {
		var m markRead
		m.err = r.call(func() (err error) { m.data, m.st, err = r.c.Get(r.e.paths.released); return err })
		ch <- m
	}()
}

// takeMark waits for the prefetched read of the released marker, or reads it now if none was
// started.
func (r *sessionRun) takeMark() markRead {
	if ch := r.rec.mark; ch != nil {
		r.rec.mark = nil
		return <-ch
	}
	var m markRead
	m.err = r.call(func() (err error) { m.data, m.st, err = r.c.Get(r.e.paths.released); return err })
	return m
}

// dropMark waits for a prefetched read of the released marker that no claim will use.
func (r *sessionRun) dropMark() {
	if ch := r.rec.mark; ch != nil {
		r.rec.mark = nil
		<-ch
	}
}

var zeroRecord election.Record

// ourRecord returns the record for term, keeping Since across renewals of the same term.
func (r *sessionRun) ourRecord(term uint64) election.Record {
	if r.rec.mine.Term != term {
		rec := r.e.cfg.Record
		rec.VIPs = r.e.recordVIPs()
		rec.Term = term
		rec.Since = time.Now().Round(0).UTC()
		r.rec.mine, r.rec.owned = rec, false
	}
	return r.rec.mine
}

// publish makes the leader znode hold our record, owned by our session, and watches it. ok=false
// means we must wait for another session's record to go (r.retry is armed).
func (r *sessionRun) publish() (ok bool, err error) {
	p := r.e.paths.leader
	r.rec.watchOwed = false
	data := r.rec.mine.Marshal()
	r.rec.released, err = r.claim(data)
	switch {
	case err == nil:
		// Created in our session just now: ours, at version 0. lead reports Master, then arms the
		// watch (watchOwnRecord); a change meanwhile fires it as it would have a round trip later.
		r.rec.owned, r.rec.version, r.rec.watchOwed = true, 0, true
		r.rec.foreignSince = time.Time{}
		return true, nil
	case errors.Is(err, zk.ErrNoAuth):
		return false, noAuth("create", p, r.e.cfg.Auth)
	case !errors.Is(err, zk.ErrNodeExists):
		return false, fmt.Errorf("zk: create %s: %w", p, err)
	}

	var cur []byte
	var st *zk.Stat
	err = r.call(func() (err error) { cur, st, err = r.c.Get(p); return err })
	if errors.Is(err, zk.ErrNoNode) {
		return false, errRetry // gone meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("zk: read %s: %w", p, err)
	}
	switch owner := st.EphemeralOwner; {
	case owner == r.s.id:
		if string(cur) != string(data) {
			return r.rewrite(data, cur, st.Version)
		}
		return r.watchOwnRecord()
	case owner == 0:
		r.log.Warn("a persistent znode hacoord did not write holds the master record path; replacing it",
			zap.String("path", p), zap.ByteString("found", clip(cur)))
	default:
		if waiting, err := r.waitForeign(owner, cur); waiting || err != nil {
			return false, err
		}
	}
	return false, r.deleteForeign(st.Version)
}

// claim creates the leader znode with our record and, in the same multi-op, deletes the released
// marker (at the version read just before). Every claim deletes the marker, so a claim that found
// it follows a master that gave up after its demote with no master in between: released=true. An
// older hacoord's claim does not delete it, so a marker whose master's term is older than the last
// master record this node read is not trusted (a master of an older version came between). Without
// a marker (a crash, an expiry, the first master) the record is created on its own.
func (r *sessionRun) claim(data []byte) (released bool, err error) {
	p := r.e.paths.leader
	m := r.takeMark()
	mark, st, err := m.data, m.st, m.err
	if err == nil {
		err = r.call(func() error {
			_, err := r.c.Multi(
				&zk.CreateRequest{Path: p, Data: data, Acl: r.e.acls.group, Flags: zk.FlagEphemeral},
				&zk.DeleteRequest{Path: r.e.paths.released, Version: st.Version})
			return err
		})
		if err == nil {
			prev, perr := election.ParseRecord(mark)
			return perr == nil && prev.Term >= r.rec.seen.Term, nil
		}
	}
	if sessionGone(err) {
		return false, err
	}
	err = r.call(func() error { _, err := r.c.Create(p, data, zk.FlagEphemeral, r.e.acls.group); return err })
	return false, err
}

// rewrite puts our record back into our own leader znode (someone changed it, or it is from an
// earlier term of ours).
func (r *sessionRun) rewrite(data, found []byte, version int32) (bool, error) {
	p := r.e.paths.leader
	r.log.Warn("master record was changed by someone else, or is from an earlier term; rewriting it",
		zap.ByteString("found", clip(found)))
	err := r.call(func() error { _, err := r.c.Set(p, data, version); return err })
	if errors.Is(err, zk.ErrNoAuth) {
		return false, noAuth("write", p, r.e.cfg.Auth)
	}
	if err != nil {
		return false, fmt.Errorf("zk: write %s: %w", p, err)
	}
	return r.watchOwnRecord()
}

// waitForeign handles a leader znode held by another live session: that may be a master that has
// not noticed it lost, so we wait (reporting Backup) for one session timeout, watching the znode.
// It reports waiting=false once that time is up: the caller replaces the record.
func (r *sessionRun) waitForeign(owner int64, cur []byte) (waiting bool, err error) {
	p := r.e.paths.leader
	if r.rec.foreignSince.IsZero() {
		r.rec.foreignSince = time.Now()
		rec, perr := election.ParseRecord(cur)
		r.log.Warn("won the election but another session still holds the master record; waiting for it to go",
			zap.String("owner", fmt.Sprintf("%#x", owner)), zap.String("leader", rec.Node),
			zap.Uint64("term", rec.Term), zap.NamedError("parse", perr), zap.Duration("at-most", r.s.timeout()))
	}
	wait := time.Until(r.rec.foreignSince.Add(r.s.timeout()))
	if wait <= 0 {
		r.log.Error("the master record is still held by another session after a session timeout; replacing it",
			zap.String("owner", fmt.Sprintf("%#x", owner)), zap.ByteString("found", clip(cur)))
		return false, nil
	}
	if r.rec.watch == nil {
		var w <-chan zk.Event
		var ok bool
		err := r.call(func() (err error) { ok, _, w, err = r.c.ExistsW(p); return err })
		if err != nil {
			return true, fmt.Errorf("zk: watch %s: %w", p, err)
		}
		r.rec.watch = w
		if !ok {
			return true, errRetry // gone before the watch was set
		}
	}
	r.rec.seen, _ = election.ParseRecord(cur)
	r.reportOther(election.Backup, "waiting for the previous master record to go")
	r.retry.at(wait)
	return true, nil
}

// deleteForeign deletes a leader znode that is not ours (at version) so that we can create ours.
func (r *sessionRun) deleteForeign(version int32) error {
	p := r.e.paths.leader
	err := r.call(func() error { return r.c.Delete(p, version) })
	switch {
	case err == nil, errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrBadVersion):
		return errRetry
	case errors.Is(err, zk.ErrNoAuth):
		return noAuth("delete", p, r.e.cfg.Auth)
	default:
		return fmt.Errorf("zk: delete %s: %w", p, err)
	}
}

// watchOwnRecord arms a watch on our leader znode and records its version; a change by anyone
// fires the watch and the next step checks it again.
func (r *sessionRun) watchOwnRecord() (bool, error) {
	p := r.e.paths.leader
	var ok bool
	var st *zk.Stat
	var w <-chan zk.Event
	err := r.call(func() (err error) { ok, st, w, err = r.c.ExistsW(p); return err })
	if err != nil {
		return false, fmt.Errorf("zk: watch %s: %w", p, err)
	}
	r.rec.watch = w
	if !ok || st.EphemeralOwner != r.s.id {
		return false, errRetry
	}
	r.rec.owned, r.rec.version = true, st.Version
	r.rec.foreignSince = time.Time{}
	return true, nil
}

// armOwnRecord arms the watch on the leader znode that claim created (watchOwed). If the znode
// is gone or not ours any more, it is not owned: the step reads the election again (errRetry) and
// publishes anew.
func (r *sessionRun) armOwnRecord() (again bool, err error) {
	r.rec.watchOwed = false
	ok, err := r.watchOwnRecord()
	if !ok {
		r.rec.owned = false
	}
	return false, err
}

// readLeader refreshes r.rec.seen from the leader znode, watching it when no watch is armed.
func (r *sessionRun) readLeader() error {
	p := r.e.paths.leader
	if r.rec.watch == nil {
		var w <-chan zk.Event
		err := r.call(func() (err error) { _, _, w, err = r.c.ExistsW(p); return err })
		if err != nil {
			return fmt.Errorf("zk: watch %s: %w", p, err)
		}
		r.rec.watch = w
	}
	var data []byte
	var st *zk.Stat
	err := r.call(func() (err error) { data, st, err = r.c.Get(p); return err })
	switch {
	case errors.Is(err, zk.ErrNoNode):
		r.rec.seen = zeroRecord
		return nil
	case err != nil:
		return fmt.Errorf("zk: read %s: %w", p, err)
	}
	rec, perr := election.ParseRecord(data)
	if perr != nil {
		if st.Mzxid != r.rec.badMzxid {
			r.rec.badMzxid = st.Mzxid
			r.log.Warn("master record is not a hacoord record; treating the group as having no known master",
				zap.String("path", p), zap.ByteString("found", clip(data)), zap.Error(perr))
		}
		rec = zeroRecord
	}
	r.rec.seen = rec
	return nil
}

// clip shortens foreign data for a log line.
func clip(b []byte) []byte {
	if len(b) > 256 {
		return append(b[:256:256], "..."...)
	}
	return b
}
