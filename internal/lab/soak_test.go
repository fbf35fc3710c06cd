package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A short soak of the fast profile, one CPU burner: the figures are counted (the sampler and the
// prober ran throughout) and the VIP is never on two nodes. The 10-minute soak is `make
// soak` (hacoord-lab soak), not part of the tests.
func TestSoakFastProfileShort(t *testing.T) { forBackends(t, testSoakShort) }

func testSoakShort(t *testing.T, backend string) {
	o, err := SoakProfile(backend, ProfileFast)
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t, backend, func(lo *Options) { lo.Store, lo.TTL = o.Store, o.TTL })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := l.Soak(ctx, SoakOptions{Duration: 5 * time.Second, Burners: 1, Every: time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s\n%s", backend, rep, FormatSoakChanges(rep))
	if rep.Probes < 200 {
		t.Errorf("%d client probes in 5s: the prober did not run", rep.Probes)
	}
	if rep.TwoHolders != 0 {
		t.Errorf("two holders for %v", rep.TwoHolders)
	}
	// Spurious failovers and drops are the soak's figures (goal 0), not asserted in 5s of a shared
	// machine: a 300ms ZooKeeper session leaves a master 50ms of validity (session/2 - margin).
	if rep.Failovers != 0 || rep.Drops != 0 {
		t.Logf("%d spurious failovers and %d drops with nothing injected", rep.Failovers, rep.Drops)
	}
	// The counters count: a SIGKILLed master a second into a soak is one failover.
	var killed string
	rep, err = l.Soak(ctx, SoakOptions{Duration: 3 * time.Second, Burners: -1, Every: time.Second, Logf: func(format string, args ...any) {
		t.Logf(format, args...)
		if killed == "" && strings.HasPrefix(format, "soak: +") {
			// The fast profile may drop the VIP for a moment on a loaded machine: kill the holder
			// once there is one.
			hh, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 })
			if err != nil {
				t.Error(err)
				return
			}
			h := l.Node(hh[0])
			killed = h.Name
			if err := h.Kill(); err != nil {
				t.Error(err)
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with %s killed: %s\n%s", killed, rep, FormatSoakChanges(rep))
	// At least the kill's failover (a drop on the loaded machine may add one: the figures above).
	if rep.Failovers < 1 || rep.TwoHolders != 0 {
		t.Errorf("a soak with the master killed: %d failovers, two holders %v; want at least 1, and 0", rep.Failovers, rep.TwoHolders)
	}
	if _, err := SoakProfile("vrrp", ProfileFast); err == nil {
		t.Error("a vrrp soak profile: want an error")
	}
}
