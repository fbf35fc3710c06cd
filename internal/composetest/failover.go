package composetest

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Failover is a fault of the master as the lab's client saw it.
type Failover struct {
	Action string    // what was done, "docker kill hacoord-lab_node1_1"
	Fault  time.Time // when it was done
	// Old is the node that answered before the fault (the master it hit); New is the first other
	// node that answered a call started after it.
	Old, New string
	// LastOld is the last call Old answered before New's first; First is New's first. LastOld is
	// the zero Call when Old answered nothing before the fault.
	LastOld, First Call
	// Failed are the calls that ended between LastOld and First.
	Failed []Call
	// Outage is the client-visible outage, First.End() - LastOld.End() (as the namespace lab's
	// figures count it): at most the real outage plus one call interval.
	Outage time.Duration
	// After are the calls started after First within the window the timeline was read for:
	// failures among them are a second outage (a flapping failover).
	After []Call
}

// ErrNoFailover is returned by Analyze when no other node answered after the fault.
var ErrNoFailover = errors.New("no other node answered after the fault")

// Analyze reads the failover out of calls (sorted by start, as ParseCalls returns them): old is
// the master the fault at fault hit.
func Analyze(calls []Call, action string, fault time.Time, old string) (Failover, error) {
	f := Failover{Action: action, Fault: fault, Old: old}
	first := -1
	for i, c := range calls {
		if !c.Start.Before(fault) && c.OK() && c.Node() != "" && c.Node() != old {
			first = i
			break
		}
	}
	if first < 0 {
		return f, fmt.Errorf("composetest: %s: %w (%d calls read)", action, ErrNoFailover, len(calls))
	}
	f.First, f.New = calls[first], calls[first].Node()
	lastOld := fault
	for _, c := range calls[:first] {
		if c.OK() && c.Node() == old && c.End().Before(f.First.End()) {
			f.LastOld, lastOld = c, c.End()
		}
	}
	for _, c := range calls {
		if !c.OK() && c.End().After(lastOld) && c.End().Before(f.First.End()) {
			f.Failed = append(f.Failed, c)
		}
	}
	f.Outage = f.First.End().Sub(lastOld)
	f.After = append(f.After, calls[first+1:]...)
	return f, nil
}

// FailuresAfter counts the calls after First that failed.
func (f Failover) FailuresAfter() int {
	n := 0
	for _, c := range f.After {
		if !c.OK() {
			n++
		}
	}
	return n
}

// Timeline formats the failover as the client saw it, one line per event, times relative to the
// fault: Old's last answer, the fault, the first and last failed calls with a tally of the errors,
// New's first answer, and a summary line.
func (f Failover) Timeline() string {
	type event struct {
		at   time.Time
		what string
	}
	ev := []event{{f.Fault, f.Action}}
	if !f.LastOld.Start.IsZero() {
		ev = append(ev, event{f.LastOld.End(), fmt.Sprintf("last answer:  %s (call of %dms)", f.LastOld.Reply, f.LastOld.Duration.Milliseconds())})
	}
	if n := len(f.Failed); n > 0 {
		ev = append(ev, event{f.Failed[0].End(), "first failed call: " + f.Failed[0].Err})
		if n > 1 {
			ev = append(ev, event{f.Failed[n-1].End(), "last failed call:  " + f.Failed[n-1].Err})
		}
	}
	ev = append(ev, event{f.First.End(), fmt.Sprintf("first answer: %s (call of %dms)", f.First.Reply, f.First.Duration.Milliseconds())})
	// The fault takes effect some time after it was issued: an answer may come after t=0.
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at.Before(ev[j].at) })
	var b strings.Builder
	for _, e := range ev {
		fmt.Fprintf(&b, "  %+8.3fs  %s  %s\n", e.at.Sub(f.Fault).Seconds(), e.at.UTC().Format("15:04:05.000"), e.what)
	}
	fmt.Fprintf(&b, "  %s -> %s: outage %dms as the client saw it (last answer to first answer), %d failed calls%s\n",
		f.Old, f.New, f.Outage.Milliseconds(), len(f.Failed), tally(f.Failed))
	if n := f.FailuresAfter(); n > 0 {
		fmt.Fprintf(&b, "  then %d more failed calls out of %d%s\n", n, len(f.After), tally(f.After))
	} else if len(f.After) > 0 {
		d := f.After[len(f.After)-1].End().Sub(f.First.End())
		fmt.Fprintf(&b, "  then %d calls in %.1fs, all answered (by %s)\n", len(f.After), d.Seconds(), nodes(f.After))
	}
	return b.String()
}

// tally counts the errors of the failed calls among calls by kind: " (12 i/o timeout, 3 ...)".
func tally(calls []Call) string {
	count := map[string]int{}
	for _, c := range calls {
		if !c.OK() {
			count[errorKind(c.Err)]++
		}
	}
	if len(count) == 0 {
		return ""
	}
	kinds := make([]string, 0, len(count))
	for k := range count {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		return count[kinds[i]] > count[kinds[j]] || count[kinds[i]] == count[kinds[j]] && kinds[i] < kinds[j]
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s", count[k], k)
	}
	return ": " + strings.Join(parts, ", ")
}

// errorKind is the last clause of an error, "i/o timeout" for "dial tcp 1.2.3.4:80: i/o timeout".
func errorKind(err string) string {
	if i := strings.LastIndex(err, ": "); i >= 0 {
		return err[i+2:]
	}
	return err
}

// nodes lists the distinct nodes that answered calls, in order of first answer.
func nodes(calls []Call) string {
	var seen []string
	for _, c := range calls {
		if n := c.Node(); n != "" && !slices.Contains(seen, n) {
			seen = append(seen, n)
		}
	}
	return strings.Join(seen, ", ")
}
