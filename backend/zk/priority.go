package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// This file holds keepalived's priority rules over the queue (see the package comment, "Priorities
// and planned moves"): the candidate values, the rules a head and a master apply, and the transfer
// and maintenance znodes.

// value is the election.Candidate this node publishes in its candidate znode, for a candidacy that
// joined at since.
func (e *Elector) value(since time.Time) election.Candidate {
	return election.Candidate{
		Node:         e.cfg.Name,
		Address:      e.cfg.Record.Address,
		Priority:     int(e.priority.Load()),
		Preempt:      !e.cfg.NoPreempt && !e.holdBack.Load(),
		PreemptDelay: e.cfg.PreemptDelay,
		Since:        since,
	}
}

// valueCache holds the values of the other candidates, each read with a data watch: an entry stays
// valid until its watch fires (a priority re-published, the candidate gone). firstSeen is when this
// session first saw each candidate (bounds PreemptDelay against a candidate's clock running behind).
// Only the session's serve goroutine touches it.
type valueCache struct {
	vals      map[string]election.Candidate // by full path
	firstSeen map[string]time.Time
	warned    map[string]bool // unreadable values, logged once
	kept      map[string]bool // higher-priority candidates without preemption, logged once
}

func newValueCache() valueCache {
	return valueCache{vals: map[string]election.Candidate{}, firstSeen: map[string]time.Time{}, warned: map[string]bool{},
		kept: map[string]bool{}}
}

// watchset forwards the events of one-shot watches (data watches on candidates, the children watch
// on the election) to a single channel the serve loop selects on. It owns one goroutine per armed
// watch; close stops them and waits.
type watchset struct {
	c    chan zk.Event
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWatchset() *watchset { return &watchset{c: make(chan zk.Event, 16), stop: make(chan struct{})} }

func (w *watchset) add(ch <-chan zk.Event) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case ev, ok := <-ch:
			if ok {
				select {
				case w.c <- ev:
				case <-w.stop:
				}
			}
		case <-w.stop:
		}
	}()
}

func (w *watchset) close() {
	close(w.stop)
	w.wg.Wait()
}

// watchFired handles an event of the watchset: the value it covered, or the children list, must be
// read again.
func (r *sessionRun) watchFired(ev zk.Event) {
	if ev.Path == r.e.paths.election {
		r.cand.childWatch = false
		return
	}
	delete(r.vals.vals, ev.Path)
}

// armChildren makes sure a children watch is armed on the election (a master hears a candidate
// join; a head waiting for a transfer's target hears it come or its sender go). A watch armed now
// covers only changes after its read: changed=true says that read differs from cands, which the
// step read earlier (a candidate joined in between, and no watch will tell), so the caller steps
// again.
func (r *sessionRun) armChildren(cands []candidate) (changed bool, err error) {
	if r.cand.childWatch {
		return false, nil
	}
	var w <-chan zk.Event
	var children []string
	err = r.call(func() (err error) { children, _, w, err = r.c.ChildrenW(r.e.paths.election); return err })
	if err != nil {
		return false, fmt.Errorf("zk: watch %s: %w", r.e.paths.election, err)
	}
	r.ws.add(w)
	r.cand.childWatch = true
	now := r.candidates(children)
	return !slices.Equal(now, cands), nil
}

// values returns the value of every candidate in cands (ours from memory), reading those not
// cached with a data watch, all at once (go-zookeeper pipelines them: one round trip). A candidate
// gone meanwhile has a zero value (Node ""). A value that does not parse counts as a candidate of
// default priority without preemption.
func (r *sessionRun) values(cands []candidate) ([]election.Candidate, error) {
	out := make([]election.Candidate, len(cands))
	now := time.Now()
	var missing []int
	live := make(map[string]bool, len(cands))
	for i, c := range cands {
		p := r.e.paths.election + "/" + c.name
		live[p] = true
		if _, ok := r.vals.firstSeen[p]; !ok {
			r.vals.firstSeen[p] = now
		}
		switch v, ok := r.vals.vals[p]; {
		case p == r.cand.node:
			out[i] = r.cand.published
		case ok:
			out[i] = v
		default:
			missing = append(missing, i)
		}
	}
	for p := range r.vals.firstSeen {
		if !live[p] {
			delete(r.vals.firstSeen, p)
			delete(r.vals.vals, p)
			delete(r.vals.kept, p)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	type got struct {
		data []byte
		w    <-chan zk.Event
		err  error
	}
	res := make([]got, len(missing))
	err := r.call(func() error {
		var wg sync.WaitGroup
		for j, i := range missing {
			wg.Go(func() {
				res[j].data, _, res[j].w, res[j].err = r.c.GetW(r.e.paths.election + "/" + cands[i].name)
			})
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for j, i := range missing {
		p := r.e.paths.election + "/" + cands[i].name
		g := res[j]
		switch {
		case errors.Is(g.err, zk.ErrNoNode):
			continue // left meanwhile: a zero value
		case g.err != nil:
			return nil, fmt.Errorf("zk: read candidate %s: %w", p, g.err)
		}
		r.ws.add(g.w)
		v, perr := election.ParseCandidate(g.data)
		if perr != nil {
			if !r.vals.warned[p] {
				r.vals.warned[p] = true
				r.log.Warn("candidate value does not parse; counting it at the default priority, without preemption",
					zap.String("path", p), zap.ByteString("found", clip(g.data)), zap.Error(perr))
			}
			v = election.Candidate{Node: cands[i].name, Priority: election.DefaultPriority}
		}
		r.vals.vals[p] = v
		out[i] = v
	}
	return out, nil
}

// eligibleRival reports whether v may be deferred or handed over to: a live candidate that does
// not declare itself unhealthy.
func eligibleRival(v election.Candidate) bool {
	return v.Node != "" && (v.Healthy == nil || *v.Healthy)
}

// best returns the index of the candidate other than self with the highest priority (the first in
// the queue among equals) that is above floor, or -1.
func best(vals []election.Candidate, self string, floor int, ok func(election.Candidate) bool) int {
	bi := -1
	for i, v := range vals {
		if v.Node == self || !eligibleRival(v) || v.Priority <= floor || (ok != nil && !ok(v)) {
			continue
		}
		if bi < 0 || v.Priority > vals[bi].Priority {
			bi = i
		}
	}
	return bi
}

func queued(vals []election.Candidate, node string) bool {
	return slices.ContainsFunc(vals, func(v election.Candidate) bool { return v.Node == node })
}

// mayLead applies the head's rules (election.Candidate): a head defers (rejoins at the back) to a
// queued candidate of higher priority, or to the target of an active transfer; while a transfer's
// target is not queued it waits, at the head, until the target comes or the transfer runs out.
// ok=true: this node may become master.
func (r *sessionRun) mayLead(cands []candidate) (ok, again bool, err error) {
	// The transfer record is read alongside the values (both after the Children read that found
	// us first): one round trip for both.
	var (
		tr     *election.Transfer
		stale  bool
		trErr  error
		trDone = make(chan struct{})
	)
	go func() {
		defer close(trDone)
		tr, stale, trErr = r.readTransfer()
	}()
	vals, err := r.values(cands)
	<-trDone
	if err != nil {
		return false, false, err
	}
	if err := trErr; err != nil {
		return false, false, err
	}
	me := r.cand.published
	switch {
	case tr != nil && tr.To == me.Node:
		r.cand.ownTransfer = true
		return true, false, nil
	case tr != nil && queued(vals, tr.To):
		return false, true, r.requeue("a transfer to "+tr.To+" is in progress", zap.String("to", tr.To))
	case tr != nil:
		// Wake on the target joining (the queue) and on the record going (its sender's session
		// ended, which the queue does not show for a sender in maintenance).
		if changed, err := r.armChildren(cands); err != nil || changed {
			return false, changed, err
		}
		var w <-chan zk.Event
		err := r.call(func() (err error) { _, _, w, err = r.c.ExistsW(r.e.paths.transfer); return err })
		if err != nil {
			return false, false, fmt.Errorf("zk: watch %s: %w", r.e.paths.transfer, err)
		}
		r.ws.add(w)
		if err := r.readLeader(); err != nil {
			return false, false, err
		}
		r.log.Info("first in line, holding back for a transfer's target", zap.String("to", tr.To),
			zap.String("from", tr.From), zap.Time("until", tr.Until))
		r.reportOther(election.Backup, "holding back for a transfer to "+tr.To)
		r.retry.at(time.Until(tr.Until))
		return false, false, nil
	}
	r.cand.ownTransfer = stale // an expired record is tidied up by the next master
	if i := best(vals, me.Node, me.Priority, nil); i >= 0 {
		return false, true, r.requeue("a candidate of higher priority is queued",
			zap.String("to", vals[i].Node), zap.Int("their-priority", vals[i].Priority), zap.Int("priority", me.Priority))
	}
	return true, false, nil
}

// checkPreempt is a master's rule: hand over to the highest-priority candidate above us whose
// Preempt is set, once its PreemptDelay has passed (measured from its Since, and at most from when
// this session first saw it). It arms the children watch, so that a candidate joining is heard, and
// returns again=true when it handed over.
func (r *sessionRun) checkPreempt(ctx context.Context, cands []candidate) (again bool, err error) {
	if changed, err := r.armChildren(cands); err != nil || changed {
		return changed, err
	}
	vals, err := r.values(cands)
	if err != nil {
		return false, err
	}
	me := r.cand.published
	me.Priority = int(r.e.priority.Load())
	for i, v := range vals {
		p := r.e.paths.election + "/" + cands[i].name
		if eligibleRival(v) && v.Node != me.Node && v.Priority > me.Priority && !v.Preempt && !r.vals.kept[p] {
			r.vals.kept[p] = true
			r.log.Info("a candidate of higher priority is queued without preemption; keeping mastership",
				zap.String("candidate", v.Node), zap.Int("their-priority", v.Priority), zap.Int("priority", me.Priority))
		}
	}
	i := best(vals, me.Node, me.Priority, func(v election.Candidate) bool { return v.Preempt })
	if i < 0 {
		return false, nil
	}
	v := vals[i]
	p := r.e.paths.election + "/" + cands[i].name
	due := r.vals.firstSeen[p].Add(v.PreemptDelay)
	if !v.Since.IsZero() && v.Since.Add(v.PreemptDelay).Before(due) {
		due = v.Since.Add(v.PreemptDelay)
	}
	if wait := time.Until(due); wait > 0 {
		r.log.Info("a candidate of higher priority will preempt after its delay", zap.String("to", v.Node),
			zap.Int("their-priority", v.Priority), zap.Duration("in", wait))
		r.retry.at(wait)
		return false, nil
	}
	r.log.Info("handing over to a candidate of higher priority", zap.String("to", v.Node),
		zap.Int("their-priority", v.Priority), zap.Int("priority", me.Priority))
	if err := r.handOver(ctx, v.Node, r.e.cfg.TransferTimeout, "preempted by "+v.Node); err != nil {
		return false, err
	}
	return true, nil
}

// requeue gives up a place at the head that is not ours to take: one multi-op deletes our candidate
// and creates a new one at the back of the queue (a new term, should it win). A failure leaves the
// old candidate owed and the new one pending (found by its GUID if the reply was lost).
func (r *sessionRun) requeue(why string, fields ...zap.Field) error {
	old := r.cand.node
	r.log.Info("deferring: rejoining at the back of the queue", append(fields, zap.String("reason", why))...)
	r.owe()
	guid := newGUID()
	r.cand.pendingGUID = guid
	since := time.Now().Round(0).UTC()
	v := r.e.value(since)
	var resp []zk.MultiResponse
	err := r.call(func() (err error) {
		resp, err = r.c.Multi(
			&zk.DeleteRequest{Path: old, Version: -1},
			&zk.CreateRequest{Path: r.e.paths.election + "/_c_" + guid + "-n_", Data: v.Marshal(),
				Acl: r.e.acls.group, Flags: zk.FlagEphemeral | zk.FlagSequence})
		return err
	})
	if err != nil {
		return fmt.Errorf("zk: rejoin the queue: %w", err)
	}
	r.cand.owed = nil
	r.cand.since, r.cand.published = since, v
	return r.adopt(resp[1].String)
}

// republish writes our value again when it changed (SetPriority, the hold-back after a planned
// move ended), in place: the candidate keeps its place in the queue.
func (r *sessionRun) republish() error {
	v := r.e.value(r.cand.since)
	if r.cand.node == "" || v == r.cand.published {
		return nil
	}
	err := r.call(func() error { _, err := r.c.Set(r.cand.node, v.Marshal(), -1); return err })
	if err != nil {
		return fmt.Errorf("zk: publish priority %d in %s: %w", v.Priority, r.cand.node, err)
	}
	r.log.Info("published candidate value", zap.Int("priority", v.Priority), zap.Bool("preempt", v.Preempt))
	r.cand.published = v
	return nil
}

// readTransfer returns the active transfer record (nil when none), and stale=true when a record
// is there that no longer binds (run out, or unreadable).
func (r *sessionRun) readTransfer() (tr *election.Transfer, stale bool, err error) {
	var data []byte
	err = r.call(func() (err error) { data, _, err = r.c.Get(r.e.paths.transfer); return err })
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("zk: read %s: %w", r.e.paths.transfer, err)
	}
	t, perr := election.ParseTransfer(data)
	if perr != nil {
		r.log.Warn("transfer record does not parse; ignoring it", zap.ByteString("found", clip(data)), zap.Error(perr))
		return nil, true, nil
	}
	if !t.Active(time.Now()) {
		return nil, true, nil
	}
	return &t, false, nil
}

// writeTransfer publishes t as the group's transfer record, ephemeral in our session (it goes with
// us if we die before the target takes over), replacing any earlier one.
func (r *sessionRun) writeTransfer(t election.Transfer) error {
	p := r.e.paths.transfer
	for range 3 {
		err := r.call(func() error { _, err := r.c.Create(p, t.Marshal(), zk.FlagEphemeral, r.e.acls.group); return err })
		switch {
		case err == nil:
			return nil
		case errors.Is(err, zk.ErrNoAuth):
			return noAuth("create", p, r.e.cfg.Auth)
		case !errors.Is(err, zk.ErrNodeExists):
			return fmt.Errorf("zk: create %s: %w", p, err)
		}
		err = r.call(func() error { return r.c.Delete(p, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("zk: replace %s: %w", p, err)
		}
	}
	return fmt.Errorf("zk: create %s: %w", p, zk.ErrNodeExists)
}

// dropTransfer deletes the transfer record once the master it named (or any master, for one that
// ran out) has taken over. Best effort: a record left behind runs out, and goes with its sender's
// session.
func (r *sessionRun) dropTransfer() {
	if !r.cand.ownTransfer {
		return
	}
	r.cand.ownTransfer = false
	err := r.call(func() error { return r.c.Delete(r.e.paths.transfer, -1) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		r.log.Warn("could not delete the transfer record; it runs out by itself", zap.Error(err))
	}
}

// handOver is a master's planned move to node to: give up as giveUp does (demote first), and delete
// our znodes in one multi-op that also creates the transfer record naming to (any earlier record
// is deleted first). The next step rejoins the queue at the back.
func (r *sessionRun) handOver(ctx context.Context, to string, timeout time.Duration, reason string) error {
	err := r.call(func() error { return r.c.Delete(r.e.paths.transfer, -1) })
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("zk: delete the earlier %s: %w", r.e.paths.transfer, err)
	}
	r.cand.ownTransfer = false
	r.cand.moving = &election.Transfer{From: r.e.cfg.Name, To: to, Until: time.Now().Add(timeout).Round(0).UTC()}
	r.log.Info("planned move", zap.String("to", to), zap.Duration("timeout", timeout), zap.String("reason", reason))
	r.giveUpPlanned(ctx, reason)
	return nil
}

// syncMaintenance makes the maintenance znode match the operator's flag: while maintenance is on,
// <group>/maintenance/<node> exists, ephemeral in our session, holding our value with Maintenance
// set (for status); otherwise ours is deleted.
func (r *sessionRun) syncMaintenance() error {
	want := r.e.maint.Load()
	if want == r.maintPub {
		return nil
	}
	p := r.e.paths.maint + "/" + r.e.cfg.Name
	if !want {
		err := r.call(func() error { return r.c.Delete(p, -1) })
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("zk: delete %s: %w", p, err)
		}
		r.maintPub = false
		r.log.Info("maintenance off")
		return nil
	}
	v := r.e.value(time.Now().Round(0).UTC())
	v.Maintenance = true
	for range 3 {
		err := r.call(func() error { _, err := r.c.Create(p, v.Marshal(), zk.FlagEphemeral, r.e.acls.group); return err })
		switch {
		case err == nil:
			r.maintPub = true
			r.log.Info("maintenance on: out of the election", zap.String("path", p))
			return nil
		case errors.Is(err, zk.ErrNoAuth):
			return noAuth("create", p, r.e.cfg.Auth)
		case errors.Is(err, zk.ErrNoNode): // the parent, persistent, is created on first use
			err = r.call(func() error { _, err := r.c.Create(r.e.paths.maint, nil, 0, r.e.acls.group); return err })
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("zk: create %s: %w", r.e.paths.maint, err)
			}
		case errors.Is(err, zk.ErrNodeExists): // an earlier session of ours, not yet expired
			err = r.call(func() error { return r.c.Delete(p, -1) })
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return fmt.Errorf("zk: replace %s: %w", p, err)
			}
		default:
			return fmt.Errorf("zk: create %s: %w", p, err)
		}
	}
	return fmt.Errorf("zk: create %s: gave up after 3 attempts", p)
}
