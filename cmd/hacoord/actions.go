package main

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// vipAction binds the VIPs on promote (with the deadline, which also sets their kernel lifetime),
// renews the lifetime on every lease renewal and unbinds them on demote.
// With a fence guard, the guard hears of the hold (and its deadline) before anything is bound, of
// every renewal before the kernel lifetime moves, and of the release after the VIPs are gone.
type vipAction struct {
	m     *vip.Manager
	guard *guard // nil: no fence guard
	dev   string // the device, for the action's name
	log   *zap.Logger
}

func (a vipAction) hold(until time.Time) error {
	if a.guard == nil {
		return nil
	}
	err := a.guard.Hold(until)
	if err != nil && !errors.Is(err, fencing.ErrGuardDeadline) {
		// The daemon still fences itself and the kernel lifetime still backs it up.
		a.log.Error("fence guard unreachable: a SIGKILLed or stopped daemon would keep the VIPs until their kernel lifetime ends", zap.Error(err))
		return nil
	}
	return err
}

func (a vipAction) Promote(ctx context.Context, s election.State) error {
	if err := a.hold(s.ValidUntil); err != nil {
		return err
	}
	return a.m.Acquire(ctx, s.ValidUntil)
}

func (a vipAction) Renew(ctx context.Context, s election.State) error {
	if err := a.hold(s.ValidUntil); err != nil {
		return err
	}
	return a.m.Extend(ctx, s.ValidUntil)
}

func (a vipAction) Demote(ctx context.Context, _ election.State) error {
	err := a.m.Release(ctx)
	if a.guard != nil && err == nil {
		if gerr := a.guard.Release(); gerr != nil {
			a.log.Warn("telling the fence guard", zap.Error(gerr))
		}
	}
	return err
}

func (a vipAction) Reassert(context.Context, election.State) error {
	a.m.Reannounce("contact with the store regained")
	return nil
}

func (a vipAction) String() string { return "vip " + a.dev }

// ipvsAction programs the IPVS table before the VIPs are bound and withdraws it (when
// program_on_backup is off) after they are released.
type ipvsAction struct{ r *ipvs.Reconciler }

func (a ipvsAction) Promote(ctx context.Context, _ election.State) error { return a.r.Promote(ctx) }
func (a ipvsAction) Demote(ctx context.Context, _ election.State) error  { return a.r.Demote(ctx) }
func (a ipvsAction) String() string                                      { return "ipvs" }

// Roles hooks are told of.
const (
	roleMaster = "master"
	roleBackup = "backup"
	roleFault  = "fault"
	roleStop   = "stop"
)

// hooks runs an instance's programs: the fence hook on the promote path, and the notify hooks off
// it, each through a fencing.Notifier of its own (one at a time, in order, never delaying a
// failover). notify hears master and backup; notify_master, notify_backup, notify_fault and
// notify_stop hear their role only (keepalived's notify_*).
type hooks struct {
	group, node string
	fence       *fencing.Hook
	notify      *fencing.Notifier            // nil: none
	byRole      map[string]*fencing.Notifier // role -> notify_<role>
	lastRole    election.Role                // what watch last saw (the Coordinator's loop only)
}

// newHooks builds the hooks of hp for group and node: a Notifier (not started) per notify hook.
func newHooks(hp hookPlan, group, node string, log *zap.Logger) (*hooks, error) {
	h := &hooks{group: group, node: node, byRole: map[string]*fencing.Notifier{}}
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

// tell queues role's event for notify (master and backup only) and for notify_<role>.
func (h *hooks) tell(role string, st election.State) {
	if h.notify != nil && (role == roleMaster || role == roleBackup) {
		h.notify.Notify(h.event(role, st))
	}
	if n := h.byRole[role]; n != nil {
		n.Notify(h.event(role, st))
	}
}

// watch hears every Status change from the Coordinator: entering Fault tells notify_fault.
func (h *hooks) watch(cs election.Status) {
	r := cs.State.Role
	if r == election.Fault && h.lastRole != election.Fault {
		h.tell(roleFault, cs.State)
	}
	h.lastRole = r
}

// actions returns the instance's promote chain: fence hook -> IPVS -> VIPs (one action per device)
// -> notify.
func (h *hooks) actions(vms []vipAction, ipv *ipvs.Reconciler, withIPVS bool) []election.Action {
	var out []election.Action
	if h.fence != nil {
		out = append(out, election.ActionFunc{
			Name: "fence-hook",
			PromoteFunc: func(ctx context.Context, st election.State) error {
				return h.fence.Run(ctx, h.event(roleMaster, st))
			},
		})
	}
	if withIPVS {
		out = append(out, ipvsAction{ipv})
	}
	for _, vm := range vms {
		out = append(out, vm)
	}
	if h.notify != nil || h.byRole[roleMaster] != nil || h.byRole[roleBackup] != nil {
		out = append(out, election.ActionFunc{
			Name:        "notify-hook",
			PromoteFunc: func(_ context.Context, st election.State) error { h.tell(roleMaster, st); return nil },
			DemoteFunc:  func(_ context.Context, st election.State) error { h.tell(roleBackup, st); return nil },
		})
	}
	return out
}
