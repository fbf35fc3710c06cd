package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/hacoord/hacoord/internal/lab"
)

// median is the median client outage of r's runs, and whether it has any.
func (r row) median() (time.Duration, bool) {
	var v []time.Duration
	for _, res := range r.results {
		v = append(v, res.Outage)
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
	}
	return v[len(v)/2], true
}

// twoMax is the longest time two nodes held the VIP in r's runs, '+' when the old holder never let
// go within a run's window.
func (r row) twoMax() string {
	var m time.Duration
	plus := ""
	for _, res := range r.results {
		m = max(m, res.TwoHolders)
		if res.OldReleased < 0 {
			plus = "+"
		}
	}
	return fmt.Sprintf("%.0f%s", float64(m.Microseconds())/1000, plus)
}

// ratioTable prints, for every hacoord row of a scenario keepalived shares (sharedScenarios), its
// median client outage beside keepalived's in the same run at each advert interval measured, and
// the ratio hacoord/keepalived: below 1, hacoord's clients wait less. Beside each outage is the
// longest time with two holders: a killed or paused keepalived leaves its VIP in the kernel, so its
// clients see almost no outage while the VIP is on two nodes.
func ratioTable(out io.Writer, rows []row) {
	keep := map[time.Duration]map[string]row{} // advert -> scenario -> keepalived's row
	var adverts []time.Duration
	for _, r := range rows {
		if r.setup.impl != lab.ImplKeepalived {
			continue
		}
		if keep[r.setup.advert] == nil {
			keep[r.setup.advert] = map[string]row{}
			adverts = append(adverts, r.setup.advert)
		}
		keep[r.setup.advert][r.scenario] = r
	}
	if len(adverts) == 0 {
		return
	}
	slices.Sort(adverts)
	slices.Reverse(adverts) // 1s first: keepalived's default
	fmt.Fprintln(out, "hacoord against keepalived in the same run: median client outage (ms), the longest time with two holders (2h, ms; '+': the old holder kept the VIP), and the ratio of the outages hacoord/keepalived (below 1: hacoord is faster):")
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	head := "setup\tscenario\thacoord\t2h\t"
	for _, a := range adverts {
		head += fmt.Sprintf("keepalived %v\t2h\tratio\t", a)
	}
	fmt.Fprintln(tw, head)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }
	for _, r := range rows {
		if r.setup.impl != lab.ImplHacoord || !slices.Contains(sharedScenarios, r.scenario) {
			continue
		}
		h, ok := r.median()
		if !ok {
			continue
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t", r.setup, r.scenario, ms(h), r.twoMax())
		for _, a := range adverts {
			kr := keep[a][r.scenario]
			k, ok := kr.median()
			if !ok || k <= 0 {
				line += "-\t-\t-\t"
				continue
			}
			line += fmt.Sprintf("%s\t%s\t%.2f\t", ms(k), kr.twoMax(), float64(h)/float64(k))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(out)
}
