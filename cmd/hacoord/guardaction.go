package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// guardAction tells the daemon's fence guard when an instance holds its VIPs and until when. It
// comes before the IPVS and VIP actions in the promote chain, so the guard hears of the hold (and
// its deadline) before anything is programmed or bound, and of every renewal before the kernel
// lifetime moves; demoted last, it tells the guard of the release once every device's VIPs are
// gone.
type guardAction struct {
	g    *guard
	inst string
	vms  []*vip.Manager // the instance's, one per device
	log  *zap.Logger
}

func (a guardAction) hold(until time.Time) error {
	err := a.g.Hold(a.inst, until)
	if err != nil && !errors.Is(err, fencing.ErrGuardDeadline) {
		// The daemon still fences itself and the kernel lifetime still backs it up.
		a.log.Error("fence guard unreachable: a SIGKILLed or stopped daemon would keep the VIPs until their kernel lifetime ends", zap.Error(err))
		return nil
	}
	return err
}

func (a guardAction) Promote(_ context.Context, s election.State) error { return a.hold(s.ValidUntil) }
func (a guardAction) Renew(_ context.Context, s election.State) error   { return a.hold(s.ValidUntil) }

// Demote tells the guard of the release, unless a VIP is still bound (a Release that failed): then
// the guard goes on watching the deadline and removes it then.
func (a guardAction) Demote(context.Context, election.State) error {
	for _, m := range a.vms {
		bound, err := m.Bound()
		if err != nil || len(bound) > 0 {
			a.log.Warn("VIPs may still be bound: the fence guard keeps the deadline and removes them then", zap.Stringers("vips", bound), zap.Error(err))
			return nil
		}
	}
	if err := a.g.Release(a.inst); err != nil {
		a.log.Warn("telling the fence guard", zap.Error(err))
	}
	return nil
}

func (a guardAction) String() string { return "fence-guard" }

// ipvsReporter tells the fence guard what IPVS services and real servers an instance's Reconciler
// created (ipvs.Owned), each time that changes, so that the guard withdraws them should the daemon
// die or pass the instance's deadline. Only for program_on_backup false: with it true, a backup
// keeps its table, and so does a dead daemon's node (a restarted daemon takes it over,
// ipvs.Reconciler.Cleanup). The guard hears of a service once it is in the kernel (before the VIPs
// are bound, on promote): one created in the instant before the daemon died is left, for the
// restarted daemon's Cleanup; without the VIP, it forwards nothing.
type ipvsReporter struct {
	g       *guard
	inst    string
	r       *ipvs.Reconciler
	log     *zap.Logger
	changed chan struct{} // 1-buffered: the Reconciler's WithOwnedChange pokes it

	mu   sync.Mutex
	last []string // the words the guard has
}

func newIPVSReporter(g *guard, inst string, log *zap.Logger) *ipvsReporter {
	return &ipvsReporter{g: g, inst: inst, log: log, changed: make(chan struct{}, 1)}
}

// poke is the Reconciler's WithOwnedChange: it must not block.
func (p *ipvsReporter) poke() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// report tells the guard what the Reconciler owns now, if that is news. Each report reads the
// Reconciler under p.mu, so the guard's last line is the latest reading.
func (p *ipvsReporter) report() {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.r.Owned()
	words := o.Words()
	if slices.Equal(words, p.last) {
		return
	}
	if err := p.g.IPVS(p.inst, o); err != nil {
		p.log.Warn("fence guard not told of the IPVS services: a killed daemon's would stay until it restarts", zap.Error(err))
		return
	}
	p.last = words
}

// run reports every change until ctx is done.
func (p *ipvsReporter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
			p.report()
		}
	}
}
