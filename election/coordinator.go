package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DemoteTimeout bounds one Demote pass when the parent context is already cancelled (shutdown).
const DemoteTimeout = 10 * time.Second

// Status is a snapshot of what the Coordinator knows and holds.
type Status struct {
	// State is the last State the Elector reported.
	State State
	// Promoted is true while every Action has been promoted (the node holds the VIPs).
	Promoted bool
	// Fenced is true when the node let go because its deadline passed without a renewal, and has not
	// been promoted again since.
	Fenced bool
	// Since is when Promoted or Fenced last changed.
	Since time.Time
	// Takeover is how long the last promote took: from the first Master State of its term reaching
	// the Coordinator to every Action promoted (the VIPs bound and their first announcement sent).
	// Zero until the node has been promoted.
	Takeover time.Duration
	// Preparing is true while the Preparers (the fence hook) run for State.Term: the node is master
	// in the store but binds nothing yet.
	Preparing bool
	// Reason says why Promoted, Fenced or Preparing last changed ("promoted", "self-fence",
	// "prepare failed", the Elector's reason for a demote, ...), for notify hooks.
	Reason string
}

// Coordinator turns the States an Elector reports into Promote and Demote calls on an ordered list of
// Actions, and enforces the self-fencing deadline.
//
// Guarantees:
//   - Actions are promoted in order and demoted in reverse order. Promote runs only for a Master State
//     whose ValidUntil is still in the future, with a context that expires at ValidUntil.
//   - While promoted, a timer fires at the current ValidUntil; unless a renewal moved it on, the
//     Coordinator demotes everything then (self-fencing). It does not wait for the Elector to notice
//     that its session is gone: the Elector may be stuck in a network call.
//   - A Master State with a new Term while promoted promotes again (Actions are idempotent), so hooks
//     see the new fencing token and the VIPs are announced again. A renewal whose Contact rose calls
//     every Reasserter (the VIPs are announced again after the master was cut off for a while).
//   - If a Promote fails, everything is demoted and the Elector, if it is a Yielder, is asked to
//     yield so that another node can be master.
//   - On shutdown the Actions are demoted before the Elector is stopped (and resigns), so the VIPs
//     are gone before another node can win.
//   - Actions that are Preparers (the fence hook) prepare a term before anything is promoted for
//     it, off the loop and not bounded by ValidUntil (see Preparer): the loop keeps handling States
//     and turning meanwhile. Promote then runs only if the latest State is still Master of that
//     term and valid, with the deadline rules above. A term is prepared once: a later valid State
//     of the same term (a renewal after a self-fence) promotes at once. A new term while promoted
//     demotes first, then prepares. A failed Prepare is a failed Promote: the Elector yields.
//
// A Coordinator is used by one Run call; Status may be called from any goroutine.
type Coordinator struct {
	elector Elector
	actions []Action
	log     *zap.Logger

	mu       sync.Mutex
	status   Status
	onChange []func(Status)
	lastTurn time.Time // when the Run loop last began waiting or handling (LastTurn)
	waiting  bool      // the Run loop waits for its next event
}

// TurnInterval is the unit of the daemon's wedge checks: a loop busy with one event for a few
// TurnIntervals is stuck (LastTurn).
const TurnInterval = time.Second

// LastTurn returns when the Run loop was last seen able to go round: now while it waits for its
// next event (a State, a deadline, a preparation's end, shutdown: it takes each as it comes), else
// when it began handling the one at hand. So a LastTurn older than a few TurnIntervals means the
// loop is wedged (stuck in an Action), and an idle loop needs no timer of its own to prove it is
// not. The zero Time before Run. For the systemd watchdog and /healthz. Safe from any goroutine.
func (c *Coordinator) LastTurn() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		return time.Now()
	}
	return c.lastTurn
}

// turned records that the loop begins to wait for its next event (waiting) or to handle one.
func (c *Coordinator) turned(waiting bool) {
	now := time.Now()
	c.mu.Lock()
	c.lastTurn, c.waiting = now, waiting
	c.mu.Unlock()
}

// OnChange registers f to be called with the new Status after every change (a State reported,
// promoted, demoted, fenced), synchronously on the Coordinator's loop: f must be quick and must not
// call back into the Coordinator. Several functions may be registered; they are called in the
// order registered. Call it before Run. The daemon keeps its status file and its metrics with it.
func (c *Coordinator) OnChange(f func(Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onChange = append(c.onChange, f)
}

// changed hands the current Status to the OnChange functions.
func (c *Coordinator) changed() {
	c.mu.Lock()
	st, fs := c.status, c.onChange
	c.mu.Unlock()
	for _, f := range fs {
		f(st)
	}
}

// NewCoordinator returns a Coordinator for elector and actions (in promote order). It starts nothing.
func NewCoordinator(elector Elector, actions []Action, log *zap.Logger) (*Coordinator, error) {
	if elector == nil {
		return nil, errors.New("election: coordinator needs an elector")
	}
	for i, a := range actions {
		if a == nil {
			return nil, fmt.Errorf("election: action %d is nil", i)
		}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Coordinator{elector: elector, actions: actions, log: log}, nil
}

// Status returns a snapshot of the Coordinator's view.
func (c *Coordinator) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run runs the Elector and acts on its States until ctx is done, then demotes, stops the Elector and
// returns its error. It returns early, after demoting, if the Elector gives up on its own.
func (c *Coordinator) Run(ctx context.Context) error {
	// The Elector outlives ctx: it is stopped only after the demote, so it resigns last.
	ectx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElector()
	out := NewOutbox()
	done := make(chan error, 1)
	go func() { done <- c.elector.Run(ectx, out) }()

	r := &run{c: c, timer: time.NewTimer(time.Hour)}
	r.timer.Stop()
	defer r.timer.Stop()
	defer c.turned(false) // a stopped loop is waiting for nothing
	for {
		c.turned(true)
		select {
		case err := <-r.prepared():
			c.turned(false)
			r.finishPrepare(ctx, err)
			r.report()
		case <-ctx.Done():
			c.turned(false)
			r.stopPrepare("shutdown")
			r.demote(ctx, "shutdown")
			r.report()
			stopElector()
			for {
				select {
				case <-out.Ready():
					r.drain(out)
				case err := <-done:
					r.drain(out)
					return err
				}
			}
		case err := <-done:
			c.turned(false)
			r.drain(out)
			r.stopPrepare("elector stopped")
			r.demote(ctx, "elector stopped")
			r.report()
			if err == nil {
				err = errors.New("stopped before its context was done")
			}
			return fmt.Errorf("election: elector: %w", err)
		case <-out.Ready():
			c.turned(false)
			// Acknowledged after handle: after the demote, if s asked for one, so the Elector may
			// resign then.
			out.TakeAll(func(s State) { r.handle(ctx, s) })
		case <-r.timer.C:
			c.turned(false)
			r.fence(ctx)
			r.report()
		}
	}
}

// run is the state of one Coordinator.Run loop; only that loop touches it.
type run struct {
	c       *Coordinator
	cur     State // last State from the Elector
	held    bool  // all Actions promoted
	term    uint64
	contact uint64       // State.Contact when last promoted or reasserted
	dirty   bool         // Status changed since OnChange last heard
	timer   *time.Timer  // fires at the held State's ValidUntil
	prep    *preparation // the Preparers running, nil when none are
	ready   *uint64      // the last term the Preparers succeeded for (nil: none; a term may be 0)
	// heard is when the first Master State of term heardTerm reached the loop (Status.Takeover).
	heard     time.Time
	heardTerm uint64
	// lapsed counts the promotes of term lapsedTerm in a row that failed after their State's
	// deadline had passed (see promote).
	lapsed     int
	lapsedTerm uint64
}

// maxLapsedPromotes is how many promotes of one term in a row may fail after their deadline
// passed before the node yields after all.
const maxLapsedPromotes = 3

// preparation is one run of the Preparers for a term, in a goroutine that the loop waits for.
type preparation struct {
	term   uint64
	cancel context.CancelFunc
	done   chan error // buffered: the result
}

// drain records what the Elector offered after the Coordinator stopped acting (shutdown): nothing is
// promoted any more, so every State counts as acted on.
func (r *run) drain(out *Outbox) {
	out.TakeAll(func(s State) {
		r.observe(s)
		r.report()
	})
}

// observe records s as the current State and logs a change of role, term or leader.
func (r *run) observe(s State) {
	prev := r.cur
	r.cur = s
	r.c.mu.Lock()
	r.c.status.State = s
	r.c.mu.Unlock()
	if prev.Role != s.Role || prev.Term != s.Term || prev.Leader.Node != s.Leader.Node {
		r.dirty = true
		r.c.log.Info("election state",
			zap.Stringer("role", s.Role), zap.Uint64("term", s.Term),
			zap.String("leader", s.Leader.Node), zap.String("reason", s.Reason))
	}
}

func (r *run) handle(ctx context.Context, s State) {
	r.observe(s)
	// OnChange hears of the change after the Coordinator has acted on it: promoting or demoting
	// comes first, reporting after.
	defer r.report()
	now := time.Now()
	switch {
	case s.Role == Master && s.Valid(now):
		if s.Term != r.heardTerm {
			r.heard, r.heardTerm = now, s.Term
		}
		if r.held && s.Term == r.term {
			r.renew(ctx, s)
		} else {
			r.promote(ctx, s)
		}
	case s.Role == Master:
		r.c.log.Warn("master state arrived after its deadline; not acting on it",
			zap.Uint64("term", s.Term), zap.Duration("late-by", now.Sub(s.ValidUntil)))
		r.stopPrepare("deadline passed")
		r.demote(ctx, "deadline passed")
	default:
		r.stopPrepare(s.Reason)
		r.demote(ctx, s.Reason)
	}
}

// preparers reports whether any Action is a Preparer.
func (r *run) preparers() bool {
	for _, a := range r.c.actions {
		if _, ok := a.(Preparer); ok {
			return true
		}
	}
	return false
}

// prepared returns the channel the running preparation reports on (nil, never ready, when none
// runs).
func (r *run) prepared() <-chan error {
	if r.prep == nil {
		return nil
	}
	return r.prep.done
}

// startPrepare runs the Preparers for s's term in a goroutine, unless they already run for it.
func (r *run) startPrepare(ctx context.Context, s State) {
	if r.prep != nil {
		if r.prep.term == s.Term {
			return
		}
		r.stopPrepare("new term")
	}
	pctx, cancel := context.WithCancel(ctx)
	p := &preparation{term: s.Term, cancel: cancel, done: make(chan error, 1)}
	r.prep = p
	r.c.log.Info("master in the store; preparing before binding anything", zap.Uint64("term", s.Term))
	go func() {
		for i, a := range r.c.actions {
			if pa, ok := a.(Preparer); ok {
				if err := pa.Prepare(pctx, s); err != nil {
					p.done <- fmt.Errorf("%s: %w", actionName(a, i), err)
					return
				}
			}
		}
		p.done <- nil
	}()
	r.setPreparing(true, "preparing")
}

// stopPrepare cancels the running preparation, if any, and waits for it to return.
func (r *run) stopPrepare(reason string) {
	p := r.prep
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
	r.prep = nil
	r.c.log.Info("preparation abandoned", zap.Uint64("term", p.term), zap.String("reason", reason))
	r.setPreparing(false, reason)
}

// finishPrepare acts on the result of the preparation that just returned: on success it promotes
// if the latest State is still Master of that term and valid; on failure the Elector yields.
func (r *run) finishPrepare(ctx context.Context, err error) {
	p := r.prep
	r.prep = nil
	p.cancel()
	s := r.cur
	if err != nil {
		r.c.log.Error("prepare failed; not taking over", zap.Uint64("term", p.term), zap.Error(err))
		r.setPreparing(false, "prepare failed")
		if s.Role == Master && s.Term == p.term {
			if y, ok := r.c.elector.(Yielder); ok {
				y.Yield()
			}
		}
		return
	}
	r.ready = &p.term
	r.setPreparing(false, "prepared")
	switch {
	case s.Role == Master && s.Term == p.term && s.Valid(time.Now()):
		r.promote(ctx, s)
	default:
		r.c.log.Warn("prepared, but the latest state is not a valid master of that term; not promoting",
			zap.Uint64("term", p.term), zap.Stringer("role", s.Role), zap.Uint64("state-term", s.Term))
	}
}

func (r *run) setPreparing(on bool, reason string) {
	r.c.mu.Lock()
	r.c.status.Preparing, r.c.status.Reason = on, reason
	r.c.mu.Unlock()
	r.dirty = true
}

// arm sets the fencing timer to the deadline of s (none for a zero ValidUntil).
func (r *run) arm(s State) {
	r.timer.Stop()
	if !s.ValidUntil.IsZero() {
		r.timer.Reset(time.Until(s.ValidUntil))
	}
}

// untilValid returns ctx bounded by the deadline of s, if it has one.
func untilValid(ctx context.Context, s State) (context.Context, context.CancelFunc) {
	if s.ValidUntil.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, s.ValidUntil)
}

func (r *run) promote(ctx context.Context, s State) {
	if (r.ready == nil || *r.ready != s.Term) && r.preparers() {
		if r.held {
			r.demote(ctx, "new term: prepare first")
		}
		r.startPrepare(ctx, s)
		return
	}
	pctx, cancel := untilValid(ctx, s)
	defer cancel()
	for i, a := range r.c.actions {
		if err := a.Promote(pctx, s); err != nil {
			failed := time.Now() // before the demote, which may take its own while
			r.c.log.Error("promote failed; letting go",
				zap.Uint64("term", s.Term), zap.String("action", actionName(a, i)), zap.Error(err))
			r.held = true // demote everything, including what a failed Promote half did
			r.demote(ctx, "promote failed")
			if r.lapsedPromote(s, failed) {
				// The State's validity ran out during the promote (a short TTL on a loaded
				// host): the action is not at fault, and another node would start from the
				// same thin validity. The Elector renews the deadline with its next round
				// trip, and that Master State promotes again, in the same term (prepared).
				r.c.log.Warn("the deadline passed during the promote; promoting again with the next renewal instead of yielding",
					zap.Uint64("term", s.Term), zap.Int("in-a-row", r.lapsed))
				return
			}
			if y, ok := r.c.elector.(Yielder); ok {
				y.Yield()
			}
			return
		}
	}
	r.lapsed = 0
	r.held, r.term, r.contact = true, s.Term, s.Contact
	r.arm(s)
	if r.heardTerm == s.Term {
		r.c.mu.Lock()
		r.c.status.Takeover = time.Since(r.heard)
		r.c.mu.Unlock()
	}
	r.setStatus(true, false, "promoted")
	r.c.log.Info("became master", zap.Uint64("term", s.Term), zap.Time("valid-until", s.ValidUntil))
}

// lapsedPromote reports whether a promote of s that failed at failed did so after s's deadline had
// passed, for at most maxLapsedPromotes such failures of its term in a row: past them, an action
// that always outlasts the validity is at fault, and the node yields. failed is taken before the
// demote, so that a slow demote does not make a failure of the action's own look lapsed.
func (r *run) lapsedPromote(s State, failed time.Time) bool {
	if s.ValidUntil.IsZero() || failed.Before(s.ValidUntil) {
		r.lapsed = 0
		return false
	}
	if r.lapsedTerm != s.Term {
		r.lapsed, r.lapsedTerm = 0, s.Term
	}
	r.lapsed++
	return r.lapsed <= maxLapsedPromotes
}

func (r *run) renew(ctx context.Context, s State) {
	r.arm(s)
	// Nothing on the loop waits past the deadline: the fence timer must fire on time.
	ctx, cancel := untilValid(ctx, s)
	defer cancel()
	if s.Contact != r.contact {
		r.contact = s.Contact
		r.c.log.Info("contact with the store regained within the term; announcing again", zap.Uint64("term", s.Term))
		for i, a := range r.c.actions {
			if ra, ok := a.(Reasserter); ok {
				if err := ra.Reassert(ctx, s); err != nil {
					r.c.log.Warn("reassert failed", zap.String("action", actionName(a, i)), zap.Error(err))
				}
			}
		}
	}
	for i, a := range r.c.actions {
		rn, ok := a.(Renewer)
		if !ok {
			continue
		}
		if err := rn.Renew(ctx, s); err != nil {
			// The previous deadline still binds what the action holds, so this is not a safety issue.
			r.c.log.Warn("renew failed", zap.String("action", actionName(a, i)), zap.Error(err))
		}
	}
}

// fence is the self-fencing path: the deadline passed with no renewal.
func (r *run) fence(ctx context.Context) {
	if !r.held {
		return
	}
	r.c.log.Error("self-fencing: no lease renewal acknowledged before the deadline; letting go",
		zap.Uint64("term", r.term))
	r.demote(ctx, "self-fence")
	r.setStatus(false, true, "self-fence")
}

// demote demotes every Action in reverse order, with a context that outlives a cancelled ctx.
func (r *run) demote(ctx context.Context, reason string) {
	r.timer.Stop()
	if !r.held {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DemoteTimeout)
	defer cancel()
	s := r.cur
	for i := len(r.c.actions) - 1; i >= 0; i-- {
		a := r.c.actions[i]
		if err := a.Demote(dctx, s); err != nil {
			r.c.log.Error("demote failed", zap.String("action", actionName(a, i)), zap.Error(err))
		}
	}
	r.held = false
	r.setStatus(false, false, reason)
	r.c.log.Info("no longer master", zap.Uint64("term", r.term), zap.String("reason", reason))
}

func (r *run) setStatus(promoted, fenced bool, reason string) {
	r.c.mu.Lock()
	r.c.status.Promoted, r.c.status.Fenced, r.c.status.Since = promoted, fenced, time.Now()
	r.c.status.Reason = reason
	r.c.mu.Unlock()
	r.dirty = true
}

// report hands the Status to OnChange if something a reader cares about changed (role, term,
// leader, promoted, fenced); plain renewals are left to the status file's periodic refresh.
func (r *run) report() {
	if r.dirty {
		r.dirty = false
		r.c.changed()
	}
}

func actionName(a Action, i int) string {
	if s, ok := a.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("action-%d", i)
}
