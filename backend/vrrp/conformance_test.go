package vrrp

import (
	"hash/fnv"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
)

// conformance runs the backend-neutral suite over native VRRP between network namespaces, where
// VRRP's semantics allow: one master, immediate handover on resign (priority-0 advert), yield and
// eligibility. Each subtest gets a lab of its own; candidates take its nodes in order, with
// priorities 250, 150, 50, so Skew_Time differences (~40ms at 100ms adverts) order the start-up.
type conformance struct {
	mu   sync.Mutex
	labs map[*testing.T]*lab
	next map[*testing.T]int
}

// TTL is what the suite scales its waits by: the Master_Down_Interval at 100ms adverts.
func (h *conformance) TTL() time.Duration { return 400 * time.Millisecond }

// Handover bounds a resign's handover: the priority-0 advert makes the next router (priority 150,
// or 50 if that one was stopped) take over after its Skew_Time, (256-50)/256 x 100ms = 80ms at
// worst, where a router that never sent it is replaced only after Master_Down_Interval (380ms).
// The 40ms on top cover scheduling on a loaded machine.
func (h *conformance) Handover() time.Duration {
	return (256-50)*100*time.Millisecond/256 + 40*time.Millisecond
}

// Lacks names what VRRP, by design, does not give.
func (h *conformance) Lacks() map[string]string {
	return map[string]string{
		"TakeoverOnKill":         "VRRP has no session: a master that stops being heard is replaced, but does not learn it",
		"ObserverSeesMaster":     "VRRP publishes no master record",
		"SelfFenceOnPartition":   "VRRP has no quorum: a cut-off master stays master (split brain)",
		"TermRises":              "VRRP adverts carry no term: each node counts its own",
		electiontest.GlobalTerms: "VRRP adverts carry no term: each node counts its own",
	}
}

func (h *conformance) NewCandidate(t *testing.T, group, name string) electiontest.Candidate {
	h.mu.Lock()
	l, ok := h.labs[t]
	if !ok {
		l = newLab(t, 3)
		h.labs[t] = l
	}
	i := h.next[t]
	h.next[t]++
	h.mu.Unlock()
	if i >= len(l.nodes) {
		t.Fatalf("conformance: more than %d candidates", len(l.nodes))
	}
	f := fnv.New32a()
	f.Write([]byte(group))
	cfg := LocalConfig()
	cfg.Interface = "eth0"
	cfg.VRID = int(f.Sum32()%255) + 1
	cfg.Priority = 250 - 100*i
	cfg.Group, cfg.Node = group, name
	cfg.VIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.100/24")}
	el, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(name), WithConn(l.listen(t, i, false)))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Candidate{Elector: el}
}

func (h *conformance) NewObserver(*testing.T, string) election.Observer { return nil }

func TestConformance(t *testing.T) {
	electiontest.Run(t, &conformance{labs: map[*testing.T]*lab{}, next: map[*testing.T]int{}})
}
