package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Soak profiles (issue 14): the store timing and the daemons' TTL a soak runs.
const (
	// ProfileFast is the sub-second profile: ZooKeeper tickTime 100ms with a 300ms session; etcd
	// with a 500ms election timeout (heartbeat 50ms) and a 1s lease TTL.
	ProfileFast = "fast"
	// ProfileDefault is the stores' and hacoord's defaults: ZooKeeper tickTime 2s with hacoord's
	// 4s session; etcd heartbeat 100ms, election timeout 1s, TTL 2s.
	ProfileDefault = "default"
)

// SoakProfile returns the lab options of profile for backend (etcd or zk): the store and the TTL.
// The caller fills in the binaries and the rest.
func SoakProfile(backend, profile string) (Options, error) {
	o := Options{Backend: backend}
	switch backend + "/" + profile {
	case "zk/" + ProfileFast:
		o.Store, o.TTL = &ZKStore{TickTime: 100 * time.Millisecond}, 300*time.Millisecond
	case "zk/" + ProfileDefault:
		o.Store, o.TTL = &ZKStore{TickTime: 2 * time.Second}, 4*time.Second
	case "etcd/" + ProfileFast:
		o.Store, o.TTL = &EtcdStore{TickMs: 50, ElectionMs: 500}, time.Second
	case "etcd/" + ProfileDefault:
		o.Store, o.TTL = &EtcdStore{TickMs: 100, ElectionMs: 1000}, 2*time.Second
	default:
		return o, fmt.Errorf("lab: soak: no profile %q for backend %q (want %s or %s, backend etcd or zk)", profile, backend, ProfileFast, ProfileDefault)
	}
	return o, nil
}

// SoakOptions configures Lab.Soak.
type SoakOptions struct {
	// Duration is how long the soak runs once the lab is steady.
	Duration time.Duration
	// Burners is the number of CPU-bound processes run meanwhile (0: one per CPU; -1: none).
	Burners int
	// Every is the period of progress lines (0: a minute).
	Every time.Duration
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// SoakReport is what a soak measured. Nothing is injected, so every change of holder is spurious.
type SoakReport struct {
	Start, End time.Time
	Burners    int
	// Holder is the node holding the VIP when the soak started.
	Holder string
	// Failovers counts the times another node took the VIP; Drops the times the VIP was on no node
	// (a master that let go at its deadline and took the VIP back counts as a drop, not a failover).
	Failovers, Drops int
	// TwoHolders and NoHolder integrate the holder history over the soak.
	TwoHolders, NoHolder time.Duration
	// Probes and FailedProbes count the client's probes; LongestOutage is the longest time without a
	// reply that a failed probe fell into.
	Probes, FailedProbes int
	LongestOutage        time.Duration
	// Changes are the holder changes during the soak.
	Changes []HolderChange
}

// String is the report's summary.
func (r SoakReport) String() string {
	return fmt.Sprintf("soak %v with %d CPU burners: spurious failovers %d, VIP drops %d, two holders %v, no holder %v, client probes %d failed of %d, longest outage %v",
		r.End.Sub(r.Start).Round(time.Second), r.Burners, r.Failovers, r.Drops, r.TwoHolders, r.NoHolder.Round(time.Millisecond),
		r.FailedProbes, r.Probes, r.LongestOutage.Round(time.Millisecond))
}

// Soak waits for a steady state, then runs o.Burners CPU-bound processes (sh busy loops, in the
// client namespace; killed at the end, and with the lab's process if it dies) for o.Duration while
// the observers record, and reports what changed: with no fault injected, any failover is spurious.
func (l *Lab) Soak(ctx context.Context, o SoakOptions) (SoakReport, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	every := o.Every
	if every <= 0 {
		every = time.Minute
	}
	burners := o.Burners
	if burners == 0 {
		burners = runtime.NumCPU()
	}
	burners = max(burners, 0)
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	h, err := l.WaitSteady(sctx)
	cancel()
	if err != nil {
		return SoakReport{}, err
	}
	rep := SoakReport{Burners: burners, Holder: h.Name}
	var procs []*Proc
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	for i := range burners {
		p, err := startProc(l.Client, fmt.Sprintf("burn%d", i), filepath.Join(l.dir, "burn.log"), "sh", "-c", "while :; do :; done")
		if err != nil {
			return rep, err
		}
		procs = append(procs, p)
	}
	rep.Start = time.Now()
	end := time.NewTimer(o.Duration)
	defer end.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	logf("soak: %s holds the VIP; %d CPU burners for %v", h.Name, burners, o.Duration)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-end.C:
			done = true
		case <-tick.C:
			now := time.Now()
			r := l.soakFigures(rep, now)
			logf("soak: +%v: holders %v, failovers %d, drops %d, two holders %v", now.Sub(rep.Start).Round(time.Second),
				l.Sampler.Holders(), r.Failovers, r.Drops, r.TwoHolders)
		}
	}
	return l.soakFigures(rep, time.Now()), nil
}

// soakFigures fills in rep's figures for [rep.Start, to).
func (l *Lab) soakFigures(rep SoakReport, to time.Time) SoakReport {
	rep.End = to
	rep.Failovers, rep.Drops, rep.Changes = 0, 0, nil
	last := rep.Holder
	for _, c := range l.Sampler.HolderHistory() {
		if !c.At.After(rep.Start) || !c.At.Before(to) {
			continue
		}
		rep.Changes = append(rep.Changes, c)
		switch {
		case len(c.Holders) == 0:
			rep.Drops++
		case len(c.Holders) == 1 && c.Holders[0] != last:
			rep.Failovers++
			last = c.Holders[0]
		}
	}
	rep.TwoHolders, rep.NoHolder = l.Sampler.HolderTimes(rep.Start, to)
	probes := l.Prober.Probes(rep.Start, to)
	rep.Probes = len(probes)
	rep.LongestOutage, rep.FailedProbes = longestGap(probes, rep.Start, to)
	rep.FailedProbes = 0
	for _, p := range probes {
		if p.Node == "" {
			rep.FailedProbes++
		}
	}
	return rep
}

// FormatSoakChanges lists the holder changes of a soak, relative to its start.
func FormatSoakChanges(r SoakReport) string {
	var b strings.Builder
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "  +%v holders %v\n", c.At.Sub(r.Start).Round(time.Millisecond), c.Holders)
	}
	return b.String()
}
