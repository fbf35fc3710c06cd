package zk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

var (
	_ election.Prioritizer = (*Elector)(nil)
	_ election.Resigner    = (*Elector)(nil)
	_ election.Transferer  = (*Elector)(nil)
	_ election.Maintainer  = (*Elector)(nil)
)

// SetPriority re-publishes this node's candidate value with priority p (the configured priority
// moved by track-check weights; clamped to 1-254) in place: the candidate keeps its place in the
// queue. A master whose priority falls below a preempting candidate's hands over to it. Safe from
// any goroutine; it does not block.
func (e *Elector) SetPriority(p int) {
	p = max(1, min(p, 254))
	if e.priority.Swap(int32(p)) != int32(p) {
		notify(e.prioc)
	}
}

// SetMaintenance(true) takes the node out of the election: a master hands over first (a transfer
// to the best other candidate, demote, then delete its znodes), and the node publishes
// <group>/maintenance/<node> instead of a candidate until SetMaintenance(false). Call it before Run
// to start in maintenance. Safe from any goroutine; it does not block.
func (e *Elector) SetMaintenance(on bool) {
	if e.maint.Swap(on) != on {
		notify(e.prioc)
	}
}

// Resign makes a master hand over to the best other candidate (the highest priority, the first in
// the queue among equals) by a planned move: demote, then delete its znodes in the multi-op that
// creates a transfer record naming that candidate, so that the others defer to it and it takes
// over at once. The node then rejoins at the back without preemption until it is master again, so
// that it does not take mastership straight back. It returns once the candidacy is given up;
// ErrNotMaster on a backup. With no other eligible candidate queued it refuses
// (election.ErrNoOtherCandidate) and stays master, untouched. It must not be called from the goroutine that acts on the Elector's
// States (the demote it waits for is that goroutine's).
func (e *Elector) Resign(ctx context.Context) error {
	return e.plan(ctx, plannedReq{op: "resign"})
}

// Transfer is Resign to the named candidate, whose place in the queue does not matter: every other
// candidate that reaches the head defers to it until timeout (0: Config.TransferTimeout) has
// passed; then a normal election runs. ErrNoSuchCandidate when to is not queued.
func (e *Elector) Transfer(ctx context.Context, to string, timeout time.Duration) error {
	if to == "" {
		return errors.New("zk: transfer: no target node named")
	}
	if timeout < 0 {
		return fmt.Errorf("zk: transfer: timeout %v is negative", timeout)
	}
	return e.plan(ctx, plannedReq{op: "transfer", to: to, timeout: timeout})
}

// plannedReq is a Resign or Transfer handed to the serve loop.
type plannedReq struct {
	op      string // "resign" or "transfer"
	to      string
	timeout time.Duration
	done    chan error // cap 1
}

func (e *Elector) plan(ctx context.Context, q plannedReq) error {
	if !e.isMaster.Load() {
		return fmt.Errorf("zk: %s: %w", q.op, election.ErrNotMaster)
	}
	q.done = make(chan error, 1)
	select {
	case e.reqc <- q:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// planned carries out q on the serve goroutine.
func (r *sessionRun) planned(ctx context.Context, q plannedReq) error {
	if !r.master {
		return fmt.Errorf("zk: %s: %w", q.op, election.ErrNotMaster)
	}
	var children []string
	err := r.call(func() (err error) { children, _, err = r.c.Children(r.e.paths.election); return err })
	if err != nil {
		return fmt.Errorf("zk: %s: list candidates in %s: %w", q.op, r.e.paths.election, err)
	}
	cands := r.candidates(children)
	vals, err := r.values(cands)
	if err != nil {
		return fmt.Errorf("zk: %s: %w", q.op, err)
	}
	to, timeout := q.to, q.timeout
	if timeout == 0 {
		timeout = r.e.cfg.TransferTimeout
	}
	switch {
	case q.op == "resign":
		i := best(vals, r.e.cfg.Name, 0, nil)
		if i < 0 {
			// Nobody to hand over to: resigning would only re-elect this node after an outage.
			r.log.Info("resign refused: no other candidate queued; staying master")
			return fmt.Errorf("zk: resign %s: %w", r.e.cfg.Group, election.ErrNoOtherCandidate)
		}
		to = vals[i].Node
	case to == r.e.cfg.Name:
		return fmt.Errorf("zk: transfer to %q: that is this node, the master already", to)
	case !queued(vals, to):
		var names []string
		for _, v := range vals {
			if v.Node != "" && v.Node != r.e.cfg.Name {
				names = append(names, v.Node)
			}
		}
		slices.Sort(names)
		return fmt.Errorf("zk: transfer to %q: queued are [%s]: %w", to, strings.Join(names, " "), election.ErrNoSuchCandidate)
	}
	r.e.holdBack.Store(true) // rejoin without preemption: do not take it straight back
	reason := "resigned to " + to
	if q.op == "transfer" {
		reason = "transferred to " + to
	}
	if err := r.handOver(ctx, to, timeout, reason); err != nil {
		r.e.holdBack.Store(false)
		return fmt.Errorf("zk: %s: %w", q.op, err)
	}
	r.log.Info("planned move: candidacy given up", zap.String("op", q.op), zap.String("to", to))
	return nil
}

// handOffForMaintenance is a master's planned move before it goes into maintenance: a transfer to
// the best other candidate if there is one (best effort: the node withdraws in any case), then the
// withdrawal does the demote and the delete.
func (r *sessionRun) handOffForMaintenance(ctx context.Context) {
	var children []string
	err := r.call(func() (err error) { children, _, err = r.c.Children(r.e.paths.election); return err })
	if err == nil {
		var vals []election.Candidate
		if vals, err = r.values(r.candidates(children)); err == nil {
			if i := best(vals, r.e.cfg.Name, 0, nil); i >= 0 {
				err = r.handOver(ctx, vals[i].Node, r.e.cfg.TransferTimeout, "maintenance")
			}
		}
	}
	if err != nil {
		r.log.Warn("maintenance: no planned move (withdrawing all the same)", zap.Error(err))
	}
}
