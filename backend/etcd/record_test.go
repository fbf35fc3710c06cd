package etcd_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// SetRecordVIPs on a master rewrites its master record in the same term: an observer sees the new
// VIPs with the term unchanged, and the Master State carries them too.
func TestSetRecordVIPsRewritesTheRecord(t *testing.T) {
	srv := etcdtest.Start(t)
	next := observeRecords(t, srv.Endpoints()[0], "rv")
	a, b := netip.MustParsePrefix("10.0.0.100/24"), netip.MustParsePrefix("10.0.0.5/24")
	cfg := testConfig(srv.Endpoints()[0], "rv", "a")
	cfg.Record.VIPs = []netip.Prefix{a}
	el, err := etcd.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := electiontest.Start(t, "a", candidate(el))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	term := r.Last().Term
	next("a's record", func(rec election.Record) bool { return rec.Node == "a" && slices.Equal(rec.VIPs, []netip.Prefix{a}) })
	el.SetRecordVIPs([]netip.Prefix{a, b})
	rec := next("a's record with the new VIPs", func(rec election.Record) bool { return slices.Equal(rec.VIPs, []netip.Prefix{a, b}) })
	if rec.Term != term || rec.Node != "a" {
		t.Fatalf("record after SetRecordVIPs %+v, want a's in term %d", rec, term)
	}
	if l := r.Last(); l.Role != election.Master || l.Term != term {
		t.Fatalf("state after SetRecordVIPs %+v, want Master in term %d", l, term)
	}
}
