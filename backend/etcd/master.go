package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

var (
	errKeyDeleted = errors.New("election key deleted")
	errNotFirst   = errors.New("election key no longer first")
)

// mastership is one term of this node as master, from winning the campaign until it gives up on
// purpose, its election key goes, or its lease is lost. Within it, a missed deadline costs the VIPs
// (a Fault State: suspended) but not the term: once the store answers again and confirms the key
// still leads, the same term is offered as Master again.
type mastership struct {
	t       *term
	rec     election.Record
	log     *zap.Logger
	timer   *time.Timer // fires at validUntil
	valid   time.Time   // ValidUntil of the Master State offered last; zero while suspended
	resumed uint64      // times the term was offered again after a suspension (part of Contact)

	handover  bool                 // the previous master handed over (State.Handover); cleared by a suspension
	firstSeen map[string]time.Time // when this master first saw each preempting candidate, by its key (a node that rejoins waits its preempt_delay again)
}

// master serves one term: it writes the master record, offers Master and keeps renewing it until
// the term ends. It returns nil to campaign again (yielded, made ineligible, election key deleted)
// and ctx's cause when ctx ends (Run stops, or the lease is lost).
func (t *term) master(ctx context.Context) error {
	rec, handover, err := t.claim(ctx)
	if err != nil {
		if errors.Is(err, errKeyGone) {
			return nil // queue again
		}
		return err
	}
	m := &mastership{t: t, rec: rec, log: t.log.With(zap.Uint64("term", rec.Term)), timer: time.NewTimer(time.Hour),
		handover: handover, firstSeen: map[string]time.Time{}}
	defer m.timer.Stop()
	t.masterSince = time.Now()
	t.e.setOwnTerm(rec.Term)
	m.offer("elected")

	wctx, stopWatch := context.WithCancel(ctx)
	keyGone := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func(rev int64) {
		defer wg.Done()
		keyGone <- t.watchOwnKey(wctx, rev)
	}(t.rev)
	// The queue is followed off this loop (its reads must never delay the deadline above).
	nudge, handTo := make(chan struct{}, 1), make(chan string, 1)
	wg.Add(1)
	go func(rev, since int64) {
		defer wg.Done()
		m.follow(wctx, rev, since, nudge, handTo)
	}(t.rev, t.view.rev+1)
	defer wg.Wait()
	defer stopWatch()

	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-m.timer.C:
			m.deadline()
		case <-t.l.Renewed():
			if err := m.renewed(ctx); err != nil {
				return m.deposed(err)
			}
		case err := <-keyGone:
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return m.deposed(err)
		case <-t.e.kick:
			if reason, ok := m.resignRequested(); ok {
				return t.handOver(ctx, reason, nil, rec.Term)
			}
			if err := m.refreshRecord(ctx); err != nil { // SetRecordVIPs
				return m.deposed(err)
			}
			select {
			case nudge <- struct{}{}: // the priority may have changed
			default:
			}
		case to := <-handTo:
			return m.preemptBy(ctx, to)
		case r := <-t.e.reqs:
			err := m.planned(ctx, r)
			r.done <- err
			if err == nil {
				return nil // queue again, at the back
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
	}
}

// planned carries out an operator's Resign or Transfer (Transfer checked its target already).
func (m *mastership) planned(ctx context.Context, r request) error {
	t := m.t
	if r.to == "" {
		return t.handOver(ctx, "resigned", nil, m.rec.Term)
	}
	tr := &election.Transfer{From: t.e.cfg.Name, To: r.to, Until: time.Now().Add(r.timeout).UTC().Round(0)}
	return t.handOver(ctx, "transferred to "+r.to, tr, m.rec.Term)
}

// follow runs beside the master loop, owning the term's published priority while it runs: on
// every change in the queue, every nudge (the priority may have changed: it publishes it again),
// when a preempting candidate's delay passes and every TTL if the store changed (recheck: a queue
// watch that broke without saying so), it reads the queue and sends the node to hand over to
// (preemptor) on handTo, once, then returns. A store failure sends nothing: the next change or the
// TTL's recheck looks again. It returns when ctx ends.
// rev is the term's create revision, from the revision to watch the queue from.
func (m *mastership) follow(ctx context.Context, rev, from int64, nudge <-chan struct{}, handTo chan<- string) {
	t := m.t
	changed := make(chan struct{}, 1)
	changed <- struct{}{} // look at the queue once at the start
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.queueWatch(ctx, from, changed)
	}()
	defer wg.Wait()
	re := t.newRecheck(0) // before the first read: due at recheckEvery
	defer func() { re.Stop() }()
	delay := time.NewTimer(time.Hour) // a preempting candidate's delay
	delay.Stop()
	defer delay.Stop()
	var readRev int64 // of the last read that succeeded
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-nudge:
			t.publishAt(ctx, rev)
		case <-re.C():
			if !re.Fired() {
				continue // the store stands still: nothing to read again yet
			}
		case <-re.Past:
		case <-delay.C:
		}
		v, err := readView(ctx, t.c, t.e.cfg.Group, t.e.cfg.KeepaliveInterval, t.log)
		if err == nil {
			readRev = v.rev
		}
		re.Stop()
		re = t.newRecheck(readRev)
		if err != nil {
			continue
		}
		to, wait := preemptor(t.e.cfg.Name, int(t.e.prio.Load()), v, m.firstSeen, time.Now())
		if to != "" {
			select {
			case handTo <- to:
			case <-ctx.Done():
			}
			return
		}
		if wait > 0 {
			delay.Reset(wait)
		}
	}
}

// preemptBy hands over to the preempting candidate to, with a transfer record for twice the TTL
// (plenty for one store round trip; if to is gone by then, a normal election runs).
func (m *mastership) preemptBy(ctx context.Context, to string) error {
	t := m.t
	m.log.Info("a preferred candidate is queued: handing over", zap.String("to", to))
	tr := &election.Transfer{From: t.e.cfg.Name, To: to, Until: time.Now().Add(2 * t.e.cfg.TTL).UTC().Round(0)}
	return t.handOver(ctx, "preempted by "+to, tr, m.rec.Term)
}

// offer offers Master with the lease's current deadline, or, if that has passed, suspends.
func (m *mastership) offer(reason string) {
	dl := m.t.l.Deadline()
	if !time.Now().Before(dl) {
		m.suspend()
		return
	}
	m.valid = dl
	m.timer.Reset(time.Until(dl))
	contact := m.t.l.Contact() + m.resumed
	m.t.e.offerMaster(m.rec, dl, contact, reason, m.handover)
	if reason != "renewed" {
		m.log.Info("master", zap.String("reason", reason), zap.Time("valid-until", dl))
	}
}

// deadline handles the timer: a renewal not yet handled moves the deadline on; otherwise the
// deadline passed without an acknowledged renewal, and the node lets go of the VIPs at once.
func (m *mastership) deadline() {
	if m.valid.IsZero() {
		return
	}
	if m.t.l.Deadline().After(m.valid) {
		m.offer("renewed")
		return
	}
	m.suspend()
}

// suspend offers Fault: the VIPs go (the Coordinator also fences on its own timer), the lease and
// the election key stay, and keepalives go on.
func (m *mastership) suspend() {
	m.log.Warn("deadline passed without an acknowledged renewal; letting go of the VIPs, keeping the lease and the term")
	m.valid, m.handover = time.Time{}, false
	m.timer.Stop()
	m.t.e.offerSuspended("lease renewal overdue")
}

// renewed handles an acknowledged keepalive: while master, it offers the new deadline; while
// suspended, it asks the store whether this node still leads and, if so, offers the same term as
// Master again. A store failure leaves it suspended until the next renewal; it returns an error only
// when the store says the term is over.
func (m *mastership) renewed(ctx context.Context) error {
	if !m.valid.IsZero() {
		if m.t.l.Deadline().After(m.valid) {
			m.offer("renewed")
		}
		return nil
	}
	err := m.t.confirm(ctx, m.rec)
	switch {
	case errors.Is(err, errKeyDeleted), errors.Is(err, errNotFirst):
		return err
	case err != nil:
		m.log.Info("store answered the keepalive but confirming the term failed; still suspended", zap.Error(err))
		return nil
	}
	m.resumed++
	m.offer("lease alive and election key first: master again")
	return nil
}

// deposed ends the term because the store says it is over (election key deleted, not first): the
// node is a backup and campaigns again with the same lease.
func (m *mastership) deposed(why error) error {
	m.log.Warn("deposed", zap.Error(why))
	m.t.setRev(0)
	m.t.e.offerBackup(why.Error())
	return nil
}

// resignRequested reports whether a kick asks this master to give up (Yield, SetEligible(false)),
// and why; it counts yields in a row for the backoff before the next campaign.
func (m *mastership) resignRequested() (string, bool) {
	t, e := m.t, m.t.e
	yield := e.yield.Swap(false)
	if !e.mayRun() {
		return e.outReason(), true
	}
	if !yield {
		return "", false
	}
	if time.Since(t.masterSince) > e.cfg.TTL {
		t.yields = 0 // a yield after a good spell as master starts the backoff afresh
	}
	t.yields++
	return "yielded", true
}

// giveUp gives up the candidacy on purpose: it offers a non-Master State, waits until the consumer
// has acted on it (the VIPs are gone: demote before resign), and only then deletes the election key
// (and the master record), retrying until that succeeds. It returns nil, or ctx's cause when ctx
// ends first (Run revokes the lease then).
func (t *term) giveUp(ctx context.Context, reason string) error {
	seq := t.e.offerBackup(reason)
	if err := t.e.box.WaitActed(ctx, seq); err != nil {
		return err
	}
	t.log.Info("resigning", zap.String("reason", reason))
	return t.release(ctx, nil)
}

// claim writes the master record under the lease, guarded by the election key's create revision so
// that only the key's holder writes it, retrying store failures. It returns errKeyGone when the key
// is not there any more.
// The same transaction deletes the transfer record and the released marker; handover reports
// whether the marker was there (the previous master handed over: State.Handover, planned.go).
func (t *term) claim(ctx context.Context) (rec election.Record, handover bool, err error) {
	e := t.e
	rec = e.cfg.Record
	rec.VIPs = e.recordVIPs()
	rec.Group, rec.Node, rec.Term, rec.Since = e.cfg.Group, e.cfg.Name, uint64(t.rev), time.Now().UTC().Round(0)
	err = e.retry(ctx, func(ctx context.Context) error {
		var resp *clientv3.TxnResponse
		resp, err := t.writeRecord(ctx, rec, claimOps(e.cfg.Group)...)
		if err == nil {
			handover = handover || handedOver(resp.Responses[1])
		}
		return err
	})
	if err != nil {
		return election.Record{}, false, err
	}
	return rec, handover, nil
}

// writeRecord puts rec under the master key with the lease, if the election key still has its
// create revision; errKeyGone otherwise (which retry passes on at once).
// extra ops run in the same transaction (their responses follow the put's).
func (t *term) writeRecord(ctx context.Context, rec election.Record, extra ...clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
			Then(append([]clientv3.Op{clientv3.OpPut(t.e.leaderKey, string(rec.Marshal()), clientv3.WithLease(t.l.id))}, extra...)...).
			Commit()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: write master record %s: %w", t.e.leaderKey, err)
	}
	if !resp.Succeeded {
		t.log.Warn("election key gone before the master record was written", zap.String("key", t.key))
		t.setRev(0)
		return nil, permanent(errKeyGone)
	}
	return resp, nil
}

// confirm reads, in one transaction guarded by the election key's create revision, the first key
// under the election prefix and the master record: nil when the key is there and first (the record
// is written again if it is missing or not this lease's), errKeyDeleted or errNotFirst when the term
// is over, another error when the store could not say.
func (t *term) confirm(ctx context.Context, rec election.Record) error {
	var resp *clientv3.TxnResponse
	err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
			Then(clientv3.OpGet(t.e.prefix+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...),
				clientv3.OpGet(t.e.leaderKey)).
			Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd: confirm %s: %w", t.key, err)
	}
	if !resp.Succeeded {
		return errKeyDeleted
	}
	first := resp.Responses[0].GetResponseRange().Kvs
	if len(first) == 0 || string(first[0].Key) != t.key {
		t.log.Error("election key exists but another candidate is first", zap.String("key", t.key))
		return errNotFirst
	}
	if r := resp.Responses[1].GetResponseRange().Kvs; len(r) == 0 || clientv3.LeaseID(r[0].Lease) != t.l.id {
		t.log.Warn("master record missing or not ours; writing it again")
		_, err := t.writeRecord(ctx, rec)
		return err
	}
	return nil
}

// watchOwnKey returns errKeyDeleted once the store shows the election key gone (a DELETE event, or
// a read that finds it missing or created again), or nil when ctx is done. A watch that breaks
// (compacted, cancelled, moved to another endpoint) is followed by a read and a new watch from the
// read's revision: a broken watch never deposes by itself. The key is read again every TTL even while
// the watch is quiet, if the store changed meanwhile (recheck), so a watch that broke without saying
// so costs at most that.
// rev is the key's create revision (passed: the master loop writes t.rev when it gives up).
func (t *term) watchOwnKey(ctx context.Context, rev int64) error {
	failures := 0
	for ctx.Err() == nil {
		var resp *clientv3.GetResponse
		err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
			resp, err = cli.Get(ctx, t.key)
			return err
		})
		if err == nil {
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev {
				return errKeyDeleted
			}
			failures = 0
			var deleted bool
			deleted, err = t.watchDelete(ctx, t.key, resp.Header.Revision+1)
			if deleted {
				return errKeyDeleted
			}
		}
		if err != nil {
			failures++
			if !sleep(ctx, backoff(t.e.cfg, failures)) {
				return nil
			}
		}
	}
	return nil
}

// watchDelete watches key from rev (the revision after the read it follows) until a DELETE (true),
// a broken watch (its error; nil for a move to another endpoint), a recheck due without news (nil:
// recheckEvery passed and the store moved on since the read, see recheck), or ctx's end.
func (t *term) watchDelete(ctx context.Context, key string, rev int64) (bool, error) {
	ep, wch, stop := t.c.watch(ctx, key, clientv3.WithRev(rev))
	defer stop()
	recheck := t.newRecheck(rev - 1)
	defer recheck.Stop()
	for {
		select {
		case <-recheck.C():
			if recheck.Fired() {
				return false, nil
			}
		case <-recheck.Past:
			return false, nil
		case wr, ok := <-wch:
			if !ok {
				return false, nil
			}
			if err := wr.Err(); err != nil {
				t.c.failed(ep, err)
				t.log.Info("watch on own election key broke; reading again", zap.Error(err))
				return false, err
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return true, nil
				}
			}
		}
	}
}
