package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// Planned moves and priorities over etcd (election.Candidate documents the rules):
//
//   - Every candidate publishes an election.Candidate as the value of its election key. A change of
//     priority (SetPriority) puts the value again under the same lease, guarded by the key's create
//     revision: the key keeps its place in the queue.
//   - Head rules: a candidate that finds itself first in the queue reads, in the same transaction,
//     the whole queue and the transfer record. It becomes master unless an active transfer names
//     another node (queued: it defers; not queued: it holds, watching the group, until the record's
//     Until), or another node queued has a higher priority (it defers). Deferring deletes its key
//     and puts it again at the back: one more store round trip. The target of an active transfer
//     leads whatever the priorities.
//   - A master follows the queue (a watch on the election prefix) and hands over, by a transfer to
//     it, to the highest-priority node with preempt set and a higher priority than its own once that
//     node has been queued for its preempt delay (counted from the earlier of its published Since
//     and the instant this master first saw it).
//   - Every planned move demotes first (Outbox.WaitActed), then ends the term in one transaction
//     that deletes the election key and the master record, puts the transfer record (if any) and
//     the released marker, both under this node's lease, which it keeps: it queues again at once
//     (or, for maintenance, publishes its maintenance key and stays out).
//   - The next master's claim deletes the transfer record and the released marker in the
//     transaction that writes its master record. A marker it deleted there was written by the
//     previous master when it gave up after demoting (every master claims, and every claim deletes
//     the marker, so no master came between): State.Handover is set, and the VIP action skips the
//     conflict probe. A crash, a lease expiry or a revoke leaves no marker (it is bound to the
//     lease), so a takeover after one probes as before.

// TransferKey is the key of group's transfer record (election.Transfer as JSON).
func TransferKey(group string) string { return groupPrefix(group) + "/transfer" }

// MaintenancePrefix is the prefix of group's maintenance keys, one per node in maintenance.
func MaintenancePrefix(group string) string { return groupPrefix(group) + "/maintenance" }

// releasedKey is the key of the marker a master leaves when it gives up after demoting.
func releasedKey(group string) string { return groupPrefix(group) + "/released" }

// released is the value of the released marker.
type released struct {
	Node string `json:"node"`
	Term uint64 `json:"term"`
}

// queued is one candidate in the queue as read from the store.
type queued struct {
	key   string
	lease clientv3.LeaseID
	cand  election.Candidate
}

// view is the group's queue and transfer record at one revision.
type view struct {
	rev      int64
	queue    []queued // by create revision: the head first
	transfer *election.Transfer
}

// viewOps read the queue (by create revision) and the transfer record of group.
func viewOps(group string) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpGet(ElectionPrefix(group)+"/", clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)),
		clientv3.OpGet(TransferKey(group)),
	}
}

// parseView builds a view from the responses of viewOps.
func parseView(rev int64, q, tr *etcdserverpb.RangeResponse, log *zap.Logger) view {
	v := view{rev: rev}
	for _, kv := range q.GetKvs() {
		c, err := election.ParseCandidate(kv.Value)
		if err != nil {
			log.Warn("ignoring a candidate value that does not parse", zap.String("key", string(kv.Key)), zap.Error(err))
			continue
		}
		v.queue = append(v.queue, queued{key: string(kv.Key), lease: clientv3.LeaseID(kv.Lease), cand: c})
	}
	if kvs := tr.GetKvs(); len(kvs) > 0 {
		if t, err := election.ParseTransfer(kvs[0].Value); err == nil {
			v.transfer = &t
		} else {
			log.Warn("ignoring a transfer record that does not parse", zap.Error(err))
		}
	}
	return v
}

func (v view) queues(node string) bool {
	for _, q := range v.queue {
		if q.cand.Node == node {
			return true
		}
	}
	return false
}

// othersQueued reports whether a candidate other than node, not declaring itself unhealthy, is
// queued (a node in maintenance is not queued).
func (v view) othersQueued(node string) bool {
	for _, q := range v.queue {
		if q.cand.Node != node && (q.cand.Healthy == nil || *q.cand.Healthy) {
			return true
		}
	}
	return false
}

// verdict is what a candidate at the head of the queue does.
type verdict int

const (
	lead     verdict = iota // become master
	deferTo                 // give up the place and queue again at the back
	holdBack                // wait: an active transfer names a node that is not queued
)

// headRule applies the head rules for node self (priority prio) at wall-clock now; it names the
// node deferred or held back for.
func headRule(self string, prio int, v view, now time.Time) (verdict, string) {
	if tr := v.transfer; tr != nil && tr.Active(now) {
		switch {
		case tr.To == self:
			return lead, ""
		case v.queues(tr.To):
			return deferTo, tr.To
		default:
			return holdBack, tr.To
		}
	}
	best, to := prio, ""
	for _, q := range v.queue {
		if q.cand.Node != self && q.cand.Priority > best {
			best, to = q.cand.Priority, q.cand.Node
		}
	}
	if to != "" {
		return deferTo, to
	}
	return lead, ""
}

// preemptor returns the node a master self of priority prio hands over to at now: the queued node
// with the highest priority above prio whose Preempt is set and whose delay has passed (firstSeen
// is when this master first saw each node queued; updated here). When a preempting node's delay has
// yet to pass, wait says how long until it does (0: nothing to wait for).
func preemptor(self string, prio int, v view, firstSeen map[string]time.Time, now time.Time) (to string, wait time.Duration) {
	best := prio
	for _, q := range v.queue {
		c := q.cand
		if c.Node == self || !c.Preempt || c.Priority <= prio {
			continue
		}
		seen, ok := firstSeen[q.key]
		if !ok {
			seen = now
			firstSeen[q.key] = now
		}
		if !c.Since.IsZero() && c.Since.Before(seen) {
			seen = c.Since
		}
		if left := c.PreemptDelay - now.Sub(seen); left > 0 {
			if wait == 0 || left < wait {
				wait = left
			}
			continue
		}
		if c.Priority > best {
			best, to = c.Priority, c.Node
		}
	}
	return to, wait
}

// readView reads the group's queue and transfer record (one request, bounded by timeout).
func readView(ctx context.Context, c *conn, group string, timeout time.Duration, log *zap.Logger) (view, error) {
	var resp *clientv3.TxnResponse
	err := c.do(ctx, timeout, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).Then(viewOps(group)...).Commit()
		return err
	})
	if err != nil {
		return view{}, fmt.Errorf("etcd: read the queue of %s: %w", group, err)
	}
	return parseView(resp.Header.Revision, resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange(), log), nil
}

// request is an operator's Resign (to == "") or Transfer, handed to the master loop.
type request struct {
	to      string
	timeout time.Duration
	done    chan error // cap 1
}

// Resign implements election.Resigner: a master demotes, gives up its place (leaving the released
// marker, so the next master skips its conflict probe) and queues again at the back. With no other
// candidate queued it refuses (election.ErrNoOtherCandidate) and stays master: the queue is read
// here, off the master loop; a candidate that leaves after that read makes the resign a normal
// re-election of this node.
func (e *Elector) Resign(ctx context.Context) error {
	if !e.mastering() {
		return election.ErrNotMaster
	}
	c := e.conn.Load()
	if c == nil {
		return election.ErrNotMaster
	}
	v, err := readView(ctx, c, e.cfg.Group, e.cfg.KeepaliveInterval, e.log)
	if err != nil {
		return err
	}
	if !v.othersQueued(e.cfg.Name) {
		return fmt.Errorf("etcd: resign %s: %w", e.cfg.Group, election.ErrNoOtherCandidate)
	}
	return e.request(ctx, request{})
}

// Transfer implements election.Transferer: a master demotes and gives up its place, leaving a
// transfer record for to (Until now+timeout) in the same transaction, and queues again.
func (e *Elector) Transfer(ctx context.Context, to string, timeout time.Duration) error {
	if to == "" {
		return errors.New("etcd: transfer: no target node")
	}
	if timeout <= 0 {
		return fmt.Errorf("etcd: transfer: timeout %v must be positive", timeout)
	}
	if !e.mastering() {
		return election.ErrNotMaster
	}
	if to == e.cfg.Name {
		return fmt.Errorf("etcd: transfer to %s: it is master already", to)
	}
	// The target must be queued: read here, not on the master loop (a read must never delay the
	// deadline there). A target that leaves meanwhile only holds the others back until timeout.
	c := e.conn.Load()
	if c == nil {
		return election.ErrNotMaster
	}
	v, err := readView(ctx, c, e.cfg.Group, e.cfg.KeepaliveInterval, e.log)
	if err != nil {
		return err
	}
	if !v.queues(to) {
		return fmt.Errorf("etcd: transfer to %s: %w", to, election.ErrNoSuchCandidate)
	}
	return e.request(ctx, request{to: to, timeout: timeout})
}

// mastering reports whether a term's master loop owns the State (Master, or suspended).
func (e *Elector) mastering() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rep.mastering
}

func (e *Elector) request(ctx context.Context, r request) error {
	if !e.mastering() {
		return election.ErrNotMaster
	}
	r.done = make(chan error, 1)
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// refuse answers a request that reached a node which is not master.
func refuse(r request) { r.done <- election.ErrNotMaster }

// SetPriority implements election.Prioritizer: the candidate value is put again with the new
// priority (same lease, same place in the queue). A master whose priority falls below a
// preempting candidate's hands over to it.
func (e *Elector) SetPriority(p int) {
	if int(e.prio.Swap(int64(p))) != p {
		e.poke()
	}
}

// SetMaintenance implements election.Maintainer: on, a master hands over (demote first) and the
// node withdraws its candidacy and publishes its maintenance key; off, it campaigns again if
// eligible. Call it before Run to start in maintenance.
func (e *Elector) SetMaintenance(on bool) {
	if e.maint.Swap(on) != on {
		e.poke()
	}
}

// mayRun reports whether the node campaigns: eligible and not in maintenance.
func (e *Elector) mayRun() bool { return e.eligible.Load() && !e.maint.Load() }

// outReason says why a node that may not run does not.
func (e *Elector) outReason() string {
	if e.maint.Load() {
		return "maintenance"
	}
	return "not eligible"
}

// candidate returns the value this node publishes, queued since since.
func (e *Elector) candidate(since time.Time) election.Candidate {
	return election.Candidate{Node: e.cfg.Name, Address: e.cfg.Record.Address, Priority: int(e.prio.Load()),
		Preempt: !e.cfg.NoPreempt, PreemptDelay: e.cfg.PreemptDelay, Since: since.UTC().Round(0), Validity: e.validity()}
}

// republish puts the candidate value again if its priority changed (one attempt: the campaign
// loop tries again after its next read).
func (t *term) republish(ctx context.Context) { t.publishAt(ctx, t.rev) }

// kicked handles a kick to a candidate that is waiting (queued, holding back or pausing): a yield
// request is moot for a backup, a withdrawal ends the wait (errIneligible), and a new priority is
// published under the candidate's key (nothing while it has none).
func (t *term) kicked(ctx context.Context) error {
	t.e.yield.Store(false)
	if !t.e.mayRun() {
		return errIneligible
	}
	t.republish(ctx)
	return nil
}

// publishAt is republish for the key of create revision rev (the master's follow goroutine passes
// its term's, so it never reads t.rev, which the master loop writes).
func (t *term) publishAt(ctx context.Context, rev int64) {
	p := int(t.e.prio.Load())
	if rev == 0 || int64(p) == t.pubPrio.Load() {
		return
	}
	val := string(t.e.candidate(t.since).Marshal())
	err := t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", rev)).
			Then(clientv3.OpPut(t.key, val, clientv3.WithLease(t.l.id))).
			Commit()
		return err
	})
	if err != nil {
		t.log.Info("publishing the new priority failed; trying again later", zap.Int("priority", p), zap.Error(err))
		return
	}
	t.pubPrio.Store(int64(p))
	t.log.Info("priority published", zap.Int("priority", p))
}

// syncMaintenance puts or deletes the maintenance key, under the lease, as SetMaintenance asks,
// retrying until it succeeds or ctx ends.
func (t *term) syncMaintenance(ctx context.Context) error {
	want := t.e.maint.Load()
	if want == t.maintPub {
		return nil
	}
	key := MaintenancePrefix(t.e.cfg.Group) + "/" + t.e.cfg.Name
	c := t.e.candidate(time.Now())
	c.Maintenance = true
	val := string(c.Marshal())
	err := t.e.retry(ctx, func(ctx context.Context) error {
		return t.c.do(ctx, t.e.cfg.KeepaliveInterval, func(ctx context.Context, cli *clientv3.Client) (err error) {
			if want {
				_, err = cli.Put(ctx, key, val, clientv3.WithLease(t.l.id))
			} else {
				_, err = cli.Delete(ctx, key)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	t.maintPub = want
	t.log.Info("maintenance", zap.Bool("on", want))
	return nil
}

// holdFor waits, while an active transfer names a node that is not queued, until the transfer's
// Until, a change under the group's prefix, recheckEvery, a withdrawal (errIneligible) or ctx's end.
func (t *term) holdFor(ctx context.Context, v view) error {
	d := min(time.Until(v.transfer.Until), t.recheckEvery())
	tm := time.NewTimer(max(d, time.Millisecond))
	defer tm.Stop()
	_, wch, stop := t.c.watch(ctx, groupPrefix(t.e.cfg.Group)+"/", clientv3.WithPrefix(), clientv3.WithRev(v.rev+1))
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tm.C:
			return nil
		case r := <-t.e.reqs:
			refuse(r)
		case <-t.e.kick:
			if err := t.kicked(ctx); err != nil {
				return err
			}
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil || len(wr.Events) > 0 {
				return nil
			}
		}
	}
}

// requeue gives up this candidate's place without having been master (a deferral) and puts its key
// again, at the back.
func (t *term) requeue(ctx context.Context) error {
	if err := t.release(ctx, nil); err != nil {
		return err
	}
	return t.putKey(ctx)
}

// queueWatch signals on ch (cap 1) every change under the election prefix, from rev on, until ctx
// ends; a broken watch is started again from the current revision (after a signal: read again).
func (t *term) queueWatch(ctx context.Context, rev int64, ch chan<- struct{}) {
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	for failures := 0; ctx.Err() == nil; {
		ep, wch, stop := t.c.watch(ctx, t.e.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev))
		broke := false
		for wr := range wch {
			if err := wr.Err(); err != nil {
				t.c.failed(ep, err)
				broke = true
				break
			}
			if len(wr.Events) > 0 {
				rev = wr.Header.Revision + 1
				signal()
			}
		}
		stop()
		rev = 0 // from now: a read follows the signal
		signal()
		if broke {
			failures++
			if !sleep(ctx, backoff(t.e.cfg, failures)) {
				return
			}
		} else {
			failures = 0
		}
	}
}

// handOver ends this node's term on purpose: it offers Backup for reason, waits until the consumer
// has demoted, then deletes the election key and the master record, putting the transfer record tr
// (nil: none) and the released marker in the same transaction.
func (t *term) handOver(ctx context.Context, reason string, tr *election.Transfer, term uint64) error {
	seq := t.e.offerBackup(reason)
	if err := t.e.box.WaitActed(ctx, seq); err != nil {
		return err
	}
	t.log.Info("resigning", zap.String("reason", reason))
	return t.release(ctx, &endOfTerm{transfer: tr, term: term})
}

// endOfTerm is what a master that gave up after demoting leaves in the store.
type endOfTerm struct {
	transfer *election.Transfer // nil: none
	term     uint64
}

// releaseOps are the writes of a clean end of term: the transfer record and the released marker,
// under the lease.
func (t *term) releaseOps(end *endOfTerm) []clientv3.Op {
	if end == nil {
		return nil
	}
	g := t.e.cfg.Group
	m, _ := json.Marshal(released{Node: t.e.cfg.Name, Term: end.term})
	ops := []clientv3.Op{clientv3.OpPut(releasedKey(g), string(m), clientv3.WithLease(t.l.id))}
	if end.transfer != nil {
		ops = append(ops, clientv3.OpPut(TransferKey(g), string(end.transfer.Marshal()), clientv3.WithLease(t.l.id)))
	}
	return ops
}

// claimOps are the deletions a new master's claim makes: the transfer record and the released
// marker (its previous value tells whether the last master handed over).
func claimOps(group string) []clientv3.Op {
	return []clientv3.Op{clientv3.OpDelete(releasedKey(group), clientv3.WithPrevKV()), clientv3.OpDelete(TransferKey(group))}
}

// handedOver reports whether the released marker deleted by a claim (the response of its first
// claimOps op) was there.
func handedOver(r *etcdserverpb.ResponseOp) bool {
	d := r.GetResponseDeleteRange()
	if d == nil || len(d.PrevKvs) == 0 {
		return false
	}
	var m released
	return json.Unmarshal(d.PrevKvs[0].Value, &m) == nil && m.Node != ""
}

// NewLister returns a Lister of cfg.Group's queue (the Observer is one); cfg needs what
// NewObserver needs.
func NewLister(cfg Config, log *zap.Logger) (*Observer, error) { return NewObserver(cfg, log) }

// Candidates implements election.Lister: the queued candidates, the head first, then the nodes in
// maintenance; and the transfer record while it is active. It tries each endpoint once.
func (o *Observer) Candidates(ctx context.Context) ([]election.Candidate, *election.Transfer, error) {
	c, err := dial(o.cfg, o.log)
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: connect to %v: %w", o.cfg.Endpoints, err)
	}
	defer c.Close()
	g := o.cfg.Group
	ops := append(viewOps(g), clientv3.OpGet(MaintenancePrefix(g)+"/", clientv3.WithPrefix()))
	var resp *clientv3.TxnResponse
	for range o.cfg.Endpoints {
		err = c.do(ctx, o.cfg.DialTimeout, func(ctx context.Context, cli *clientv3.Client) (err error) {
			resp, err = cli.Txn(ctx).Then(ops...).Commit()
			return err
		})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: read the candidates of %s from %v: %w", g, o.cfg.Endpoints, err)
	}
	v := parseView(resp.Header.Revision, resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange(), o.log)
	var out []election.Candidate
	for _, q := range v.queue {
		out = append(out, q.cand)
	}
	for _, kv := range resp.Responses[2].GetResponseRange().GetKvs() {
		if c, err := election.ParseCandidate(kv.Value); err == nil {
			c.Maintenance = true
			out = append(out, c)
		}
	}
	var tr *election.Transfer
	if v.transfer != nil && v.transfer.Active(time.Now()) {
		tr = v.transfer
	}
	return out, tr, nil
}
