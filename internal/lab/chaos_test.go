package lab

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The nemesis, short: a seeded schedule of node and store faults over 3 nodes and a 3-member store,
// about 75s per backend (HACOORD_CHAOS_DURATION overrides it; HACOORD_CHAOS_SEED picks another
// schedule than the fixed default). Must hold: the VIP is never on two nodes, and the lab always
// finds a steady state again after a fault. Everything else is reported.
func TestChaosNeverTwoHolders(t *testing.T) {
	d := 75 * time.Second
	if s := os.Getenv("HACOORD_CHAOS_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("HACOORD_CHAOS_DURATION: %v", err)
		}
	}
	seed := uint64(20260901)
	if s := os.Getenv("HACOORD_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HACOORD_CHAOS_SEED: %v", err)
		}
	}
	forBackends(t, func(t *testing.T, backend string) {
		l := newLab(t, backend, func(o *Options) { o.StoreMembers = 3 })
		ctx, cancel := context.WithTimeout(context.Background(), d+5*time.Minute)
		defer cancel()
		rep, err := l.Chaos(ctx, ChaosOptions{Seed: seed, Duration: d})
		for _, f := range rep.Faults {
			t.Log(f.Line(rep.Start))
		}
		t.Logf("\n%s", rep)
		if err != nil {
			t.Fatalf("%v (replay: %s)", err, rep.ReplayCommand())
		}
		for _, f := range rep.Faults {
			if f.TwoHolders > 0 {
				t.Errorf("fault #%d %s on %s: the VIP was on two nodes for %v (replay: %s)", f.Seq, f.Kind, f.Target, f.TwoHolders, rep.ReplayCommand())
			}
		}
	})
}

// The schedule is a function of the seed alone: every cycle has each kind once, and a seed gives
// the same plans again.
func TestChaosScheduleReplays(t *testing.T) {
	a, b := newChaosSchedule(7, ChaosKinds, 2*time.Second), newChaosSchedule(7, ChaosKinds, 2*time.Second)
	var kinds []string
	for range len(ChaosKinds) {
		pa, pb := a.next(), b.next()
		if pa != pb {
			t.Fatalf("seed 7 gave %+v, then %+v", pa, pb)
		}
		lo, hi := chaosHold(pa.kind, 2*time.Second)
		if pa.hold < lo || pa.hold > hi || pa.pct < 10 || pa.pct > 50 || pa.gap < 0 || pa.gap >= 2*time.Second {
			t.Errorf("plan %+v out of range (hold %v..%v)", pa, lo, hi)
		}
		kinds = append(kinds, pa.kind)
	}
	slices.Sort(kinds)
	want := slices.Sorted(slices.Values(ChaosKinds))
	if !slices.Equal(kinds, want) {
		t.Errorf("one cycle gave %v, want each kind once", kinds)
	}
	if c := newChaosSchedule(8, ChaosKinds, 2*time.Second).next(); c == newChaosSchedule(7, ChaosKinds, 2*time.Second).next() {
		t.Errorf("seeds 7 and 8 gave the same first plan %+v", c)
	}
}
