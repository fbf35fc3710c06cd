package vrrp

import (
	"context"
	"fmt"
	"time"

	"github.com/hacoord/hacoord/election"
)

// Planned moves over VRRP (`hacoord resign`, `hacoord maintenance`). There is no store to leave a
// transfer record in, and keepalived peers could not read one: Transfer is not supported.

var (
	_ election.Resigner   = (*Elector)(nil)
	_ election.Transferer = (*Elector)(nil)
	_ election.Maintainer = (*Elector)(nil)
)

// SetMaintenance takes the router out of the election (On) or back (keepalived has no such
// state; it is its FAULT): a master demotes, then sends a priority-0 advert so that a backup takes
// over after its Skew_Time; the router stays in Fault, following who is master, until maintenance
// is off and, independently, its checks pass (SetEligible).
type SetMaintenance struct{ On bool }

func (SetMaintenance) event() {}

// setMaintenance applies SetMaintenance: the router is eligible when healthy and not in
// maintenance. A transition it causes names maintenance as its reason.
func (m *Machine) setMaintenance(now time.Time, on bool, out []Output) []Output {
	if on == m.maint {
		return out
	}
	m.maint = on
	n := len(out)
	out = m.setEligible(now, !on && !m.unhealthy, out)
	if on {
		for i := n; i < len(out); i++ {
			if t, ok := out[i].(Transition); ok && t.To == Fault {
				t.Reason = "maintenance"
				out[i] = t
			}
		}
	}
	return out
}

// Resign makes a master step down as Yield does, and says whether it did: the consumer demotes
// (the VIPs go) before the priority-0 advert goes out, so a backup takes over after its
// Skew_Time; this router then does not preempt the new master (whatever its priority) until it
// has been master again, and becomes master again only if no other router does within
// Master_Down_Interval. It returns once the advert is sent, ErrNotMaster on a backup. It must not be called from the goroutine
// that acts on the Elector's States (the demote it waits for is that goroutine's).
func (e *Elector) Resign(ctx context.Context) error {
	if e.State().Role != election.Master {
		return fmt.Errorf("vrrp: resign: %w", election.ErrNotMaster)
	}
	q := resignReq{done: make(chan error, 1)}
	e.post(q)
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Transfer is not supported over VRRP: the other routers, keepalived among them, elect by
// priority alone, and cannot be told to hold back for one named router.
func (e *Elector) Transfer(ctx context.Context, to string, timeout time.Duration) error {
	return fmt.Errorf("vrrp: transfer to %q: VRRP routers (keepalived among them) elect by priority alone and cannot be told to hold back for a named router; use resign, or raise %s's priority: %w",
		to, to, election.ErrUnsupported)
}

// SetMaintenance(true) takes the router out of the election until SetMaintenance(false): a master
// demotes first and then sends a priority-0 advert; the router reports Fault meanwhile. It is
// independent of SetEligible (health): the router is a candidate when both allow it. Call it before
// Run to start in maintenance. Safe from any goroutine; it does not block.
func (e *Elector) SetMaintenance(on bool) { e.post(SetMaintenance{On: on}) }

// resignReq is a Resign handed to Run's loop, which answers on done.
type resignReq struct{ done chan error }

func (resignReq) event() {}

// resign steps a master down (Yield) on Run's goroutine.
func (r *runner) resign() error {
	if r.m.State() != Master {
		return fmt.Errorf("vrrp: resign: %w", election.ErrNotMaster)
	}
	r.step(Yield{})
	return nil
}
