package main

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// vipAction binds the VIPs of one device on promote (with the deadline, which also sets their
// kernel lifetime), renews the lifetime on every lease renewal and unbinds them on demote. The
// fence guard hears of each beforehand (guardAction, earlier in the chain).
type vipAction struct {
	m   *vip.Manager
	dev string // the device, for the action's name
}

func (a vipAction) Promote(ctx context.Context, s election.State) error {
	if s.Handover {
		// The previous master released the VIPs before it ended its term, and nobody held them
		// since (election.State.Handover): the conflict probe would only find them free.
		return a.m.AcquireAfterHandover(ctx, s.ValidUntil)
	}
	return a.m.Acquire(ctx, s.ValidUntil)
}

func (a vipAction) Renew(ctx context.Context, s election.State) error {
	return a.m.Extend(ctx, s.ValidUntil)
}

func (a vipAction) Demote(ctx context.Context, _ election.State) error { return a.m.Release(ctx) }

func (a vipAction) Reassert(context.Context, election.State) error {
	a.m.Reannounce("contact with the store regained")
	return nil
}

func (a vipAction) String() string { return "vip " + a.dev }

// ipvsAction programs the IPVS table before the VIPs are bound and withdraws it (when
// program_on_backup is off) after they are released. With a reporter, the fence guard hears what
// was programmed before the VIPs are bound, and what is left after the withdrawal.
type ipvsAction struct {
	r      *ipvs.Reconciler
	report *ipvsReporter // nil: none
}

func (a ipvsAction) Promote(ctx context.Context, _ election.State) error {
	err := a.r.Promote(ctx)
	a.tell()
	return err
}

func (a ipvsAction) Demote(ctx context.Context, _ election.State) error {
	err := a.r.Demote(ctx)
	a.tell()
	return err
}

func (a ipvsAction) tell() {
	if a.report != nil {
		a.report.report()
	}
}

func (a ipvsAction) String() string { return "ipvs" }

// Roles hooks are told of.
const (
	roleMaster = "master"
	roleBackup = "backup"
	roleFault  = "fault"
	roleStop   = "stop"
)

// hooks runs an instance's programs: the fence hook before anything is bound (fenceStep, an
// election.Preparer), and the notify hooks off the promote path, each through a fencing.Notifier
// of its own (one at a time, in order, never delaying a failover). notify hears master, backup,
// fault and stop; notify_master, notify_backup, notify_fault and notify_stop hear their role only
// (keepalived's notify_*). Every event carries the reason of its transition (HACOORD_REASON),
// also on a node that was never master (see watch).
type hooks struct {
	group, node string
	fence       *fencing.Hook
	fenceRetry  retryPolicy
	notify      *fencing.Notifier            // nil: none
	byRole      map[string]*fencing.Notifier // role -> notify_<role>
	told        string                       // the role the notify hooks were last told (watch only)
	log         *zap.Logger

	mu       sync.Mutex      // guards previous, and notify and byRole (a reload replaces them, reload.go)
	previous election.Record // the last other master watch saw since this node last held the VIPs
}

// newHooks builds the hooks of hp for group and node: a Notifier (not started) per notify hook.
func newHooks(hp hookPlan, retry retryPolicy, group, node string, log *zap.Logger) (*hooks, error) {
	h := &hooks{group: group, node: node, fenceRetry: retry, byRole: map[string]*fencing.Notifier{}, log: log}
	if f, ok := hp["hooks.fence"]; ok {
		h.fence = &f
	}
	for key, role := range map[string]string{"hooks.notify": "", "hooks.notify_master": roleMaster,
		"hooks.notify_backup": roleBackup, "hooks.notify_fault": roleFault, "hooks.notify_stop": roleStop} {
		hook, ok := hp[key]
		if !ok {
			continue
		}
		name := "notify"
		if role != "" {
			name += "-" + role
		}
		n, err := fencing.NewNotifier(hook, log.Named(name))
		if err != nil {
			return nil, err
		}
		if role == "" {
			h.notify = n
		} else {
			h.byRole[role] = n
		}
	}
	return h, nil
}

// notifiers returns the Notifiers to run.
func (h *hooks) notifiers() []*fencing.Notifier {
	var out []*fencing.Notifier
	if h.notify != nil {
		out = append(out, h.notify)
	}
	for _, n := range h.byRole {
		out = append(out, n)
	}
	return out
}

func (h *hooks) event(role string, st election.State) fencing.Event {
	return fencing.Event{Group: h.group, Node: h.node, Role: role, Term: st.Term, Leader: st.Leader.Node, Reason: st.Reason}
}

// tell queues role's event, for reason, for notify and for notify_<role>.
func (h *hooks) tell(role string, st election.State, reason string) {
	e := h.event(role, st)
	e.Reason = reason
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.notify != nil {
		h.notify.Notify(e)
	}
	if n := h.byRole[role]; n != nil {
		n.Notify(e)
	}
}

// watch hears every Status change from the Coordinator (after it acted on it): it remembers the
// last other master seen (the fence hook's previous master) and tells the notify hooks of each
// change of the role they know of (hookRole), with its reason.
func (h *hooks) watch(cs election.Status) {
	switch l := cs.State.Leader; {
	case cs.Promoted:
		// This node is master: the next master's previous is this one (or whoever it sees
		// after), not a master from before this term.
		h.mu.Lock()
		h.previous = election.Record{}
		h.mu.Unlock()
	case l.Node != "" && l.Node != h.node:
		h.mu.Lock()
		h.previous = l
		h.mu.Unlock()
	}
	role, reason := hookRole(cs)
	if role == "" || role == h.told {
		return
	}
	h.told = role
	h.tell(role, cs.State, reason)
}

// hookRole is the role the notify hooks are told for cs, and why: master once every Action is
// promoted (the VIPs bound); fault when the node fenced itself or cannot take part; backup for a
// candidate that holds nothing (also a master in the store whose takeover failed). "" while
// nothing is known yet, or while the fence hook runs (the role told before stands).
func hookRole(cs election.Status) (role, reason string) {
	s := cs.State
	switch {
	case cs.Promoted:
		return roleMaster, s.Reason
	case cs.Fenced:
		return roleFault, cs.Reason
	case s.Role == election.Fault:
		return roleFault, s.Reason
	case s.Role == election.Backup:
		return roleBackup, s.Reason
	case s.Role == election.Master && !cs.Preparing:
		switch cs.Reason {
		case "", "promoted", "prepared", "preparing":
		default:
			return roleBackup, cs.Reason // the fence hook or a Promote failed, the deadline passed
		}
	}
	return "", ""
}

// previousMaster returns the last master other than this node that watch saw.
func (h *hooks) previousMaster() election.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.previous
}

// actions returns the instance's promote chain: fence hook (prepares, before anything is bound)
// -> fence guard's hold (guard; nil: none) -> IPVS (ipv; nil: none) -> VIPs (one action per
// device). The notify hooks hear the transitions from watch.
func (h *hooks) actions(guard election.Action, ipv election.Action, vms []vipAction) []election.Action {
	var out []election.Action
	if h.fence != nil {
		out = append(out, &fenceStep{h: h, hook: *h.fence, retry: h.fenceRetry, log: h.log.Named("fence-hook")})
	}
	if guard != nil {
		out = append(out, guard)
	}
	if ipv != nil {
		out = append(out, ipv)
	}
	for _, vm := range vms {
		out = append(out, vm)
	}
	return out
}
