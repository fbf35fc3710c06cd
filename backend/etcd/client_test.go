package etcd_test

import (
	"testing"
	"time"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// Two Electors of different groups on one shared Client: each becomes master with a lease and term
// of its own; when one stops (and resigns), the other stays master and renews past its lease TTL,
// so the stopped one did not close the shared client; the Client's Close ends it.
func TestElectorsShareAClient(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(testConfig(srv.Endpoints()[0], "x", "n1"), testLogger(t).Named("client"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	els := map[string]*etcd.Elector{}
	for _, g := range []string{"a", "b"} {
		c := testConfig(srv.Endpoints()[0], g, "n1")
		c.Client = cli
		el, err := etcd.New(c, testLogger(t).Named(g))
		if err != nil {
			t.Fatal(err)
		}
		els[g] = el
	}
	a, b := electiontest.Start(t, "a", candidate(els["a"])), electiontest.Start(t, "b", candidate(els["b"]))
	a.Wait(t, settle, "a master", lastIs(election.Master))
	b.Wait(t, settle, "b master", lastIs(election.Master))
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	since := len(b.States())
	deadline := time.Now().Add(2 * testTTL)
	b.Wait(t, settle, "b renews past a TTL after a stopped", func(st []electiontest.Stamped) bool {
		return len(st) > since && st[len(st)-1].Role == election.Master && st[len(st)-1].At.After(deadline)
	})
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
}
