package vrrp

import (
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// BenchmarkFailover measures, between two hacoord Electors in network namespaces (version 3, 100ms
// adverts, priorities 200 and 100), the time from the master going away to the backup reporting
// Master, as the metric failover-ms:
//
//   - crash: the master's socket is closed (silence, like a crashed process or a cut link); the
//     backup waits Master_Down_Interval (3*100ms + 61ms skew).
//   - shutdown: the master's ctx is cancelled; its priority-0 advert lets the backup take over after
//     Skew_Time (61ms).
//
// Run with: go test ./backend/vrrp -run '^$' -bench Failover -benchtime 5x (root).
func BenchmarkFailover(b *testing.B) {
	for _, mode := range []string{"crash", "shutdown"} {
		b.Run(mode, func(b *testing.B) {
			l := newLab(b, 2)
			var total time.Duration
			for b.Loop() {
				total += failoverOnce(b, l, mode == "crash")
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "failover-ms")
		})
	}
}

// failoverOnce runs one master/backup pair and returns how long the backup took to take over.
func failoverOnce(b *testing.B, l *lab, crash bool) time.Duration {
	b.Helper()
	cfgA, cfgB := LocalConfig(), LocalConfig()
	cfgA.Interface, cfgA.VRID, cfgA.Priority, cfgA.VIPs = "eth0", 8, 200, labVIPs
	cfgB.Interface, cfgB.VRID, cfgB.Priority, cfgB.VIPs = "eth0", 8, 100, labVIPs
	connA := l.listen(b, 0, false)
	a := runNode(b, connA, cfgA, nil)
	bn := runNode(b, l.listen(b, 1, false), cfgB, nil)
	defer bn.stop(b)
	defer a.stop(b)
	a.waitFor(b, 5*time.Second, "A master", isRole(election.Master))
	bn.waitFor(b, 5*time.Second, "B follows A", followsMaster(labAddr(0)))
	start := time.Now()
	if crash {
		connA.Close()
	} else {
		a.stop(b)
	}
	bn.waitFor(b, 5*time.Second, "B master", isRole(election.Master))
	return time.Since(start)
}
