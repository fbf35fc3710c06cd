package zk_test

import (
	"context"
	"slices"
	"testing"
	"time"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// Planned moves on a 3-server ensemble where the leader matters: a and b are each pinned to a
// different follower (their proxies to the other servers blocked), so every write of a move goes
// follower -> leader -> quorum, and the watch that tells the next node fires on another follower.
// c, pinned to the leader, joins with a higher priority and takes over by a planned handover.
func TestPlannedMovesEnsemble(t *testing.T) {
	ens := startEnsemble(t)
	lead := ens.leader(t, nil)
	var li int
	var followers []int
	for i, s := range ens.servers {
		if s == lead {
			li = i
		} else {
			followers = append(followers, i)
		}
	}
	const group = "ensplanned"
	pinned := func(name string, to int, mods ...func(*zkb.Config)) *node {
		e, c := ens.candidate(t, group, name, mods...)
		for i, p := range c.px {
			if i != to {
				p.Block()
			}
		}
		t.Cleanup(func() { c.block(false) }) // before the proxies close, so Run returns promptly
		return runNode(t, name, e)
	}
	a := pinned("a", followers[0])
	ma := a.waitMaster(t)
	b := pinned("b", followers[1])
	b.rec.waitFor(t, "b follows a", leads("a"))

	if err := a.e.Resign(context.Background()); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	mb := b.waitMaster(t)
	if mb.Term <= ma.Term || !mb.Handover {
		t.Errorf("b after a resigned: %+v, want a handover with a higher term than %d", mb.State, ma.Term)
	}
	t.Logf("resign across followers: b master %v after a's demote", handover(t, a, mb))
	a.rec.waitFor(t, "a follows b", leads("b"))

	if err := b.e.Transfer(context.Background(), "a", 10*time.Second); err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	ma2 := a.waitMaster(t)
	if ma2.Term <= mb.Term || !ma2.Handover {
		t.Errorf("a after the transfer: %+v", ma2.State)
	}
	t.Logf("transfer across followers: a master %v after b's demote", handover(t, b, ma2))
	b.rec.waitFor(t, "b follows a", leads("a"))

	c := pinned("c", li, func(c *zkb.Config) { c.Priority = 200 })
	mc := c.waitMaster(t)
	if mc.Term <= ma2.Term || !mc.Handover {
		t.Errorf("c after joining with priority 200: %+v", mc.State)
	}
	t.Logf("preemption by a node on the leader: c master %v after a's demote", handover(t, a, mc))
	if got := holders(t, a, b, c); !slices.Equal(got, []string{"a", "b", "a", "c"}) {
		t.Errorf("masters in order %v, want [a b a c]", got)
	}
	for _, n := range []*node{a, b, c} {
		for _, s := range n.rec.all() {
			if s.Role == election.Fault {
				t.Errorf("%s reported Fault during planned moves: %+v", n.name, s)
			}
		}
	}
}
