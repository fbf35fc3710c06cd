package zk

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// candidacy is this node's place in the election queue within one session: its candidate znode (or
// a create whose reply was lost), the term it would hold, the predecessor it watches, the deletes it
// still owes, and its hold-off after a yield. Only the session's serve goroutine touches it.
type candidacy struct {
	node        string // full path of our candidate znode, "" when none
	pendingGUID string // a create whose reply was lost: look for this GUID before creating again
	term        uint64 // czxid of node

	pred      string          // the candidate just before ours
	predWatch <-chan zk.Event // armed on pred; nil once fired (re-armed by the next step)

	// selfWatch is a watch on node, armed by the liveness round trip that found it (ExistsW,
	// sessionRun.checkCandidate) for selfFor; nil once fired or after a reconnect.
	selfWatch <-chan zk.Event
	selfFor   string // the node selfWatch was armed on

	owed *release // znodes to delete before campaigning again (a failed release is retried)

	holdUntil time.Time // after a yield: do not campaign before
	yields    int       // yields in a row (the hold-off doubles)

	since     time.Time          // when node joined the queue (its value's Since)
	published election.Candidate // the value node holds

	childWatch  bool // a children watch on the election is armed (it fires into sessionRun.ws)
	ownTransfer bool // the transfer record names us (or ran out): delete it once master

	moving *election.Transfer // a master's planned move: written with the release (owe)
	marker bool               // the next release leaves the released marker (giveUpPlanned)

	warned map[string]bool // foreign children of the election znode, logged once
}

// release is a delete this node owes: its candidate znode and, if it held it, the master record;
// for a planned move also the transfer record to create in the same multi-op.
type release struct {
	candidate string
	leader    bool  // the leader znode is ours
	leaderVer int32 // at this version
	transfer  *election.Transfer
	marker    bool   // create the released marker too (the master gave up after its demote)
	term      uint64 // the term the release ends
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
			if !r.cand.warned[c] {
				r.cand.warned[c] = true
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
	if r.cand.pendingGUID == "" {
		r.cand.pendingGUID = newGUID()
	}
	prefix := r.e.paths.election + "/_c_" + r.cand.pendingGUID + "-n_"
	since := time.Now().Round(0).UTC()
	v := r.e.value(since)
	var p string
	err := r.call(func() (err error) {
		p, err = r.c.Create(prefix, v.Marshal(), zk.FlagEphemeral|zk.FlagSequence, r.e.acls.group)
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, zk.ErrNoAuth):
		return noAuth("create a candidate in", r.e.paths.election, r.e.cfg.Auth)
	case errors.Is(err, zk.ErrNoNode):
		r.cand.pendingGUID = ""
		return ensurePath(r.c, r.e.paths, r.e.acls, r.e.cfg.Auth)
	default:
		// The create may have been applied with its reply lost: keep the GUID and look first.
		return fmt.Errorf("zk: create candidate in %s: %w", r.e.paths.election, err)
	}
	r.log.Debug("candidate created", zap.String("path", p), zap.Int("priority", v.Priority))
	r.cand.since, r.cand.published = since, v
	return r.adopt(p)
}

// newGUID is the GUID of a protected create.
func newGUID() string {
	var g [16]byte
	_, _ = rand.Read(g[:])
	return hex.EncodeToString(g[:])
}

// adopt makes path our candidate and reads its czxid (our term should we win).
func (r *sessionRun) adopt(path string) error {
	if !strings.HasPrefix(path, "/") {
		path = r.e.paths.election + "/" + path
	}
	var ok bool
	var st *zk.Stat
	err := r.call(func() (err error) { ok, st, err = r.c.Exists(path); return err })
	if err != nil {
		return fmt.Errorf("zk: read candidate %s: %w", path, err)
	}
	r.cand.pendingGUID = ""
	if !ok || st.EphemeralOwner != r.s.id {
		return fmt.Errorf("zk: candidate %s vanished or is not ours: %w", path, errRetry)
	}
	r.cand.node, r.cand.term = path, uint64(st.Czxid)
	r.rec.mine = zeroRecord
	return nil
}

// watchPredecessor makes sure a watch is armed on pred. It reports false when pred is gone (the
// caller reads the election again).
func (r *sessionRun) watchPredecessor(pred string) (bool, error) {
	if pred == r.cand.pred && r.cand.predWatch != nil {
		return true, nil
	}
	var ok bool
	var w <-chan zk.Event
	err := r.call(func() (err error) { ok, _, w, err = r.c.ExistsW(pred); return err })
	if err != nil {
		return false, fmt.Errorf("zk: watch predecessor %s: %w", pred, err)
	}
	// If pred is gone, the watch waits for a re-creation that never comes; the next step finds a
	// new predecessor.
	r.cand.pred, r.cand.predWatch = pred, w
	return ok, nil
}

// owe queues the release of our znodes and forgets the candidacy; payRelease deletes them.
func (r *sessionRun) owe() {
	if r.cand.node == "" && !r.rec.owned {
		return
	}
	r.cand.owed = &release{candidate: r.cand.node, leader: r.rec.owned, leaderVer: r.rec.version,
		transfer: r.cand.moving, marker: r.cand.marker && r.rec.owned, term: r.cand.term}
	r.cand.moving, r.cand.marker = nil, false
	r.cand.node, r.cand.pred, r.cand.predWatch = "", "", nil
	r.rec.mine, r.rec.owned, r.rec.seen, r.rec.watchOwed = zeroRecord, false, zeroRecord, false
}

// payRelease deletes the znodes owed (the master record, if ours, and the candidate, in one
// multi-op). A failure leaves them owed: serve retries on every step, with backoff, until the delete
// succeeds or the session ends (which deletes them in any case), and the node does not campaign
// meanwhile: its old candidate may still be first in the queue.
func (r *sessionRun) payRelease() error {
	o := r.cand.owed
	if o == nil {
		return nil
	}
	if err := r.deleteOwn(o); err != nil {
		return fmt.Errorf("zk: release our znodes: %w", err)
	}
	r.cand.owed = nil
	return nil
}

// deleteOwn deletes what o names; a znode already gone counts as deleted.
//
// A planned move's transfer record is created in the same multi-op, and so is the released marker
// of a master that gave up after its demote: the next master's claim deletes the marker (see
// claim), which proves no VIP of the group lingers here (State.Handover). When the multi-op fails,
// the transfer record is written on its own after the deletes (it still steers the election), and
// no marker is left.
func (r *sessionRun) deleteOwn(o *release) error {
	if o.leader {
		ops := []any{
			&zk.DeleteRequest{Path: r.e.paths.leader, Version: o.leaderVer},
			&zk.DeleteRequest{Path: o.candidate, Version: -1}}
		if o.transfer != nil {
			ops = append(ops, &zk.CreateRequest{Path: r.e.paths.transfer, Data: o.transfer.Marshal(),
				Acl: r.e.acls.group, Flags: zk.FlagEphemeral})
		}
		if o.marker {
			mark := election.Record{Group: r.e.cfg.Group, Node: r.e.cfg.Name, Term: o.term}
			ops = append(ops, &zk.CreateRequest{Path: r.e.paths.released, Data: mark.Marshal(),
				Acl: r.e.acls.group, Flags: zk.FlagEphemeral})
		}
		err := r.call(func() error { _, err := r.c.Multi(ops...); return err })
		if err == nil {
			return nil
		}
		// The record changed or vanished under us, or the answer was lost: delete what is still
		// ours, one by one, record first.
		r.log.Debug("multi delete failed; deleting one by one", zap.Error(err))
		var st *zk.Stat
		var ok bool
		err = r.call(func() (err error) { ok, st, err = r.c.Exists(r.e.paths.leader); return err })
		if err != nil {
			return err
		}
		if ok && st.EphemeralOwner == r.s.id {
			err = r.call(func() error { return r.c.Delete(r.e.paths.leader, -1) })
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return err
			}
		}
		o.leader = false
	}
	if o.candidate != "" {
		err := r.call(func() error { return r.c.Delete(o.candidate, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("delete %s: %w", o.candidate, err)
		}
		o.candidate = ""
	}
	if o.transfer != nil {
		if err := r.writeTransfer(*o.transfer); err != nil {
			return err
		}
	}
	return nil
}

// backoffFor is the hold-off after the n-th yield in a row.
func (e *Elector) backoffFor(n int) time.Duration {
	d := e.cfg.Backoff.Initial
	for i := 1; i < n && d < e.cfg.Backoff.Max; i++ {
		d *= 2
	}
	return min(d, e.cfg.Backoff.Max)
}
