package vip

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// After a planned handover the VIPs are bound at once, without the probe's 60 ms, even though a
// host answers for one of them (Acquire would have probed and fenced: TestConflictBind*).
func TestAcquireAfterHandoverSkipsTheProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, k, _, stop := startConflict(t, ConflictBind)
		defer stop()
		start := time.Now()
		if err := m.AcquireAfterHandover(context.Background(), start.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 || len(k.probes) != 0 {
			t.Fatalf("bound after %v with %d probes, want at once with none", d, len(k.probes))
		}
		if b := k.boundCopy(); len(b) != 2 {
			t.Fatalf("bound %v, want both VIPs", b)
		}
	})
}
