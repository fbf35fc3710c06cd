package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
)

// retryPolicy is how often a failing fence hook runs again before the node gives up its
// candidacy: hooks.fence_retries further runs, hooks.fence_retry_interval apart.
type retryPolicy struct {
	retries  int
	interval time.Duration
}

// fenceStep runs the fence hook as an election.Preparer: once the store has made this node
// master, before anything is bound, under the hook's own timeout (hooks.timeout), not the lease's
// validity, so an IPMI or STONITH call can finish. Meanwhile the Elector keeps the candidacy (the
// lease keepalives and session pings go on) and nothing is bound. The hook is told the previous
// master (HACOORD_PREVIOUS_MASTER, HACOORD_PREVIOUS_ADDRESS): the last other master this node saw
// in the master record. A run that fails or times out blocks the takeover; it is retried under
// the retryPolicy, and after the last failure Prepare fails, so the Coordinator yields the
// candidacy and another node may try.
type fenceStep struct {
	h     *hooks
	hook  fencing.Hook
	retry retryPolicy
	log   *zap.Logger
}

// Prepare runs the hook for s's term until it succeeds, at most 1 + retries times.
func (f *fenceStep) Prepare(ctx context.Context, s election.State) error {
	e := f.h.fenceEvent(s)
	var err error
	for e.Attempt = 1; ; e.Attempt++ {
		start := time.Now()
		err = f.hook.Run(ctx, e)
		fields := []zap.Field{zap.Uint64("term", s.Term), zap.String("previous-master", e.PreviousMaster),
			zap.Int("attempt", e.Attempt), zap.Duration("took", time.Since(start))}
		if err == nil {
			f.log.Info("fence hook succeeded; taking over", fields...)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if e.Attempt > f.retry.retries {
			break
		}
		f.log.Warn("fence hook failed; not taking over yet, retrying", append(fields, zap.Error(err),
			zap.Duration("retry-in", f.retry.interval))...)
		t := time.NewTimer(f.retry.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	return fmt.Errorf("fence hook failed %d times; giving up the candidacy: %w", e.Attempt, err)
}

// fenceEvent is the fence hook's event for st: master, with the previous master to fence.
func (h *hooks) fenceEvent(st election.State) fencing.Event {
	e := h.event(roleMaster, st)
	prev := h.previousMaster()
	e.PreviousMaster = prev.Node
	if prev.Address.IsValid() {
		e.PreviousAddress = prev.Address.String()
	}
	return e
}

// Promote does nothing: the hook ran in Prepare.
func (f *fenceStep) Promote(context.Context, election.State) error { return nil }

// Demote does nothing: fencing the previous master is not undone.
func (f *fenceStep) Demote(context.Context, election.State) error { return nil }

func (f *fenceStep) String() string { return "fence-hook" }

// fenceRetry returns the instance's retry policy for the fence hook.
func (ip *instancePlan) fenceRetry() retryPolicy {
	h := ip.in.keys.Hooks
	return retryPolicy{retries: h.FenceRetries, interval: h.FenceRetryInterval}
}

// stopReason is the reason notify_stop hears: "shutdown" for a daemon told to stop, else what
// stopped the instance.
func stopReason(err error, ctx context.Context) string {
	if cause := context.Cause(ctx); err == nil && (cause == nil || errors.Is(cause, context.Canceled)) {
		return "shutdown"
	} else if err == nil {
		err = cause
	}
	return err.Error()
}
