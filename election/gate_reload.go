package election

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Verdicts returns every check's current verdict, by name (what a reload carries over). Safe from
// any goroutine.
func (g *Gate) Verdicts() map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]bool, len(g.checks))
	for n, c := range g.checks {
		out[n] = c.Up
	}
	return out
}

// SetChecks replaces the Gate's checks at run time (a reload): checks holds every check with its
// name, weight and current verdict (Up). The candidacy and priority are recomputed at once and the
// Elector told of a change, as Set does. It refuses, changing nothing, a list with a nameless or
// duplicate check, or checks for an Elector that cannot be gated. Safe from any goroutine; a Set
// for a name no longer listed is ignored from now on. It returns the names added and removed.
func (g *Gate) SetChecks(checks []Check) (added, removed []string, err error) {
	next := map[string]Check{}
	for _, c := range checks {
		if c.Name == "" {
			return nil, nil, errors.New("election: gate: check with no name")
		}
		if _, dup := next[c.Name]; dup {
			return nil, nil, fmt.Errorf("election: gate: check %q listed twice", c.Name)
		}
		next[c.Name] = c
	}
	if len(next) > 0 && g.elig == nil && g.prioritz == nil {
		return nil, nil, errors.New("election: gate: this backend cannot be health-gated")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for n := range next {
		if _, ok := g.checks[n]; !ok {
			added = append(added, n)
		}
	}
	for n := range g.checks {
		if _, ok := next[n]; !ok {
			removed = append(removed, n)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	g.checks = maps.Clone(next)
	g.applyLocked()
	g.changedLocked()
	return added, removed, nil
}
