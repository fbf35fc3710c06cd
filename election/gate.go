package election

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"go.uber.org/zap"
)

// A Prioritizer is an Elector whose advertised priority can change at run time (VRRP adverts; the
// etcd and ZooKeeper candidate value, election.Candidate). Safe to call from any goroutine.
type Prioritizer interface {
	SetPriority(p int)
}

// Check is one input of a Gate: a track script or a tracked interface, as keepalived's
// vrrp_script / track_interface.
type Check struct {
	// Name identifies the check in Gate.Set and in logs. Unique within a Gate.
	Name string
	// Weight only matters for a Prioritizer (VRRP, and the quorum backends that publish a
	// priority): a positive weight is added to the priority while the check passes, a negative one
	// is added while it fails, and 0 (the default) makes a failing check take the node out of the
	// election (keepalived's FAULT state). For a backend that is no Prioritizer every failing check
	// withdraws the candidacy, whatever its weight.
	Weight int
	// Up is the state before the first report.
	Up bool
}

// Gate turns node health into candidacy (keepalived's vrrp_script / track_interface idea). It calls
// SetEligible on an Elector that implements Eligibility, and SetPriority on one that implements
// Prioritizer, whenever the outcome changes. Set is safe from any goroutine; the Elector's methods
// are called with the Gate's lock held, and must not block (the backends' only post a note to
// their own loop).
type Gate struct {
	elector  Elector
	base     int
	prioritz Prioritizer
	elig     Eligibility
	log      *zap.Logger

	mu       sync.Mutex
	checks   map[string]Check
	eligible bool
	priority int
	onChange []func()
}

// OnChange registers f to be called after every change of a verdict (Set) and of the checks
// (SetChecks), synchronously and with the Gate's lock held: f must be quick, must not block and
// must not call back into the Gate. The daemon's status file hears of health changes this way
// instead of looking for them on a timer. Safe from any goroutine; f hears of no change made
// before it was registered.
func (g *Gate) OnChange(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.onChange = append(g.onChange, f)
}

// changedLocked calls the OnChange functions.
func (g *Gate) changedLocked() {
	for _, f := range g.onChange {
		f()
	}
}

// NewGate returns a Gate for elector over checks, and applies the initial states at once. base is
// the configured priority (used with a Prioritizer; ignored otherwise). An Elector that is neither an Eligibility nor a
// Prioritizer cannot be gated: that is an error when there are checks.
func NewGate(elector Elector, base int, checks []Check, log *zap.Logger) (*Gate, error) {
	if log == nil {
		log = zap.NewNop()
	}
	g := &Gate{elector: elector, base: base, log: log, checks: map[string]Check{}, eligible: true, priority: base}
	g.elig, _ = elector.(Eligibility)
	g.prioritz, _ = elector.(Prioritizer)
	if len(checks) > 0 && g.elig == nil && g.prioritz == nil {
		return nil, errors.New("election: gate: this backend cannot be health-gated")
	}
	for _, c := range checks {
		if c.Name == "" {
			return nil, errors.New("election: gate: check with no name")
		}
		if _, dup := g.checks[c.Name]; dup {
			return nil, fmt.Errorf("election: gate: check %q listed twice", c.Name)
		}
		g.checks[c.Name] = c
	}
	g.mu.Lock()
	g.applyLocked()
	g.mu.Unlock()
	return g, nil
}

// Set records the state of check name and updates the candidacy. Unknown names are ignored.
func (g *Gate) Set(name string, up bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.checks[name]
	if !ok || c.Up == up {
		return
	}
	c.Up = up
	g.checks[name] = c
	if up {
		g.log.Info("health check passes", zap.String("check", name))
	} else {
		g.log.Warn("health check fails", zap.String("check", name))
	}
	g.applyLocked()
	g.changedLocked()
}

// Eligible reports whether the node is currently a candidate, and the priority it advertises.
func (g *Gate) Eligible() (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.eligible, g.priority
}

// outcome computes eligibility and priority from the checks.
func (g *Gate) outcome() (bool, int, []string) {
	eligible, prio := true, g.base
	var failing []string
	for _, c := range g.checks {
		if !c.Up {
			failing = append(failing, c.Name)
		}
		switch {
		case g.prioritz == nil || c.Weight == 0:
			if !c.Up {
				eligible = false
			}
		case c.Weight > 0 && c.Up, c.Weight < 0 && !c.Up:
			prio += c.Weight
		}
	}
	sort.Strings(failing)
	if g.base == 255 { // the address owner's priority is fixed (RFC 5798 §5.2.4); weights do not move it
		return eligible, 255, failing
	}
	return eligible, max(1, min(prio, 254)), failing // weights move a priority within 1-254
}

// applyLocked tells the Elector what changed since the last call; NewGate starts from eligible at
// the base priority, which is also where the Elector starts.
func (g *Gate) applyLocked() {
	eligible, prio, failing := g.outcome()
	if g.prioritz != nil && prio != g.priority {
		g.prioritz.SetPriority(prio)
		g.log.Info("priority changed", zap.Int("priority", prio), zap.Int("base", g.base), zap.Strings("failing", failing))
	}
	if g.elig != nil && eligible != g.eligible {
		g.elig.SetEligible(eligible)
		if eligible {
			g.log.Info("healthy again: candidate", zap.Strings("failing", failing))
		} else {
			g.log.Warn("unhealthy: withdrawing candidacy", zap.Strings("failing", failing))
		}
	}
	g.eligible, g.priority = eligible, prio
}
