package zk_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/zktest"
)

// SetRecordVIPs on a master rewrites its leader znode in the same term: an observer sees the new
// VIPs with the term unchanged, and the master stays master.
func TestSetRecordVIPsRewritesTheRecord(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	a, b := netip.MustParsePrefix("10.0.0.100/24"), netip.MustParsePrefix("10.0.0.5/24")
	cfg := config(srv.Addr(), "rv", "a")
	cfg.Record.VIPs = []netip.Prefix{a}
	obs := startObserver(t, config(srv.Addr(), "rv", ""))
	n := startNode(t, cfg, nil)
	m := n.waitMaster(t)
	obs.waitFor(t, "a's record", func(r election.Record) bool { return r.Node == "a" && slices.Equal(r.VIPs, []netip.Prefix{a}) })
	n.e.SetRecordVIPs([]netip.Prefix{a, b})
	rec := obs.waitFor(t, "a's record with the new VIPs", func(r election.Record) bool { return slices.Equal(r.VIPs, []netip.Prefix{a, b}) })
	if rec.Term != m.Term || rec.Node != "a" {
		t.Fatalf("record after SetRecordVIPs %+v, want a's in term %d", rec, m.Term)
	}
	for _, s := range n.rec.all() {
		if s.Role != election.Master && s.At.After(m.At) {
			t.Fatalf("a left Master after SetRecordVIPs: %+v", s)
		}
	}
}
