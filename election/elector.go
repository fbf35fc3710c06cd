package election

import "context"

// An Elector takes part in one election for one node.
//
// Run campaigns until ctx is done and offers every State change on out (an Outbox: latest wins, never
// blocks), so the Elector's own liveness work (lease keepalives, session pings, adverts) never waits
// for the consumer, which may be busy in Promote or Demote for up to the self-fencing deadline.
//
// Demote before resign: whenever the Elector gives up its candidacy on purpose while ctx is alive
// (Yield, SetEligible(false)), it first offers a non-Master State and waits with out.WaitActed until
// the consumer has acted on it (the VIPs are gone), and only then resigns, revokes or deletes its
// candidate. A slow or silent store is never a reason to resign: the Elector keeps its lease or
// session and its candidacy, and reports Fault until the store answers again. When ctx is done the
// consumer has already demoted (the Coordinator cancels the Elector only after demoting): Run then
// resigns (bounded by a short timeout) so another node takes over at once, offers a final non-Master
// State and returns nil, or the error that made it give up. Run may be called once.
type Elector interface {
	Run(ctx context.Context, out *Outbox) error
}

// A Yielder is an Elector that can give up mastership and stay a candidate: it resigns and campaigns
// again, so another candidate, if any, becomes master. The Coordinator calls Yield when becoming
// master failed on this node (a VIP could not be bound). Safe to call from any goroutine.
type Yielder interface {
	Yield()
}

// An Eligibility is an Elector whose candidacy can be withdrawn and restored, for health gating: with
// SetEligible(false) a master resigns and a backup stops campaigning (a VRRP router sends a
// priority-0 advert and enters Fault); SetEligible(true) campaigns again. Safe to call from any
// goroutine. Weighted health checks use Prioritizer instead (see Gate).
type Eligibility interface {
	SetEligible(ok bool)
}

// An Observer follows the master record of a group without taking part in the election. Observe sends
// the current record (a zero Record when the group has no master) and then every change until ctx is
// done. Records that do not parse are reported as a zero Record and logged.
type Observer interface {
	Observe(ctx context.Context, out chan<- Record) error
}

// An Action is one step of becoming or ceasing to be master (fence hook, IPVS table, VIP binding,
// announcement, notify hook). Promote and Demote are idempotent. The Coordinator calls Promote with a
// context that expires at State.ValidUntil, and Demote with a context that outlives a cancelled parent.
type Action interface {
	Promote(ctx context.Context, s State) error
	Demote(ctx context.Context, s State) error
}

// A Renewer is an Action that wants to hear each extension of the master's deadline (a VIP bound with
// a kernel lifetime renews it). Renew is called with the new State while promoted.
type Renewer interface {
	Renew(ctx context.Context, s State) error
}

// A Reasserter is an Action with something to do when a master regains contact with its store
// within its term (State.Contact rose): the VIP action announces the addresses again.
type Reasserter interface {
	Reassert(ctx context.Context, s State) error
}

// A Preparer is an Action with a step that must succeed before anything is promoted for a term
// and that may take longer than the term's deadline: the fence hook, which may power off the
// previous master (STONITH). The Coordinator runs Prepare off its loop, while nothing is bound and
// the Elector keeps its candidacy (its keepalives run on their own), with a context that is not
// bounded by ValidUntil: it is cancelled when the node stops being master of that term or the
// Coordinator stops, and the Preparer bounds its own time (and retries, if it wants to). Once
// Prepare returns nil, Promote runs only if the latest State is still Master of that term and
// valid. An error blocks the takeover: the Coordinator asks a Yielder to yield.
type Preparer interface {
	Prepare(ctx context.Context, s State) error
}

// ActionFunc adapts a pair of functions to an Action.
type ActionFunc struct {
	Name        string
	PromoteFunc func(ctx context.Context, s State) error
	DemoteFunc  func(ctx context.Context, s State) error
}

// Promote calls PromoteFunc, if set.
func (a ActionFunc) Promote(ctx context.Context, s State) error {
	if a.PromoteFunc == nil {
		return nil
	}
	return a.PromoteFunc(ctx, s)
}

// Demote calls DemoteFunc, if set.
func (a ActionFunc) Demote(ctx context.Context, s State) error {
	if a.DemoteFunc == nil {
		return nil
	}
	return a.DemoteFunc(ctx, s)
}

// String returns the action's name for logs.
func (a ActionFunc) String() string { return a.Name }
