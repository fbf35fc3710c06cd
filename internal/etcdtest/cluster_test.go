package etcdtest

import (
	"context"
	"testing"
	"time"
)

// A 3-member cluster elects one leader. A killed leader is replaced by another member, its client
// connections end at once, and it rejoins on its data (what was written meanwhile reaches it); a cut
// member loses the leadership too and comes back when healed.
func TestClusterKillRestartCut(t *testing.T) {
	c := StartCluster(t, 3)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	l := c.WaitLeader()
	start := time.Now()
	c.Kill(l)
	t.Logf("kill of leader m%d took %v", l, time.Since(start))
	n := c.WaitLeader(l)
	t.Logf("new leader m%d %v after the kill", n, time.Since(start))
	if _, err := cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatalf("put with one member down: %v", err)
	}
	c.Restart(l)
	st, err := cli.Status(ctx, c.members[l].plug.addr())
	if err != nil {
		t.Fatalf("status of the restarted member: %v", err)
	}
	if st.Leader != uint64(c.members[n].e.Server.MemberID()) {
		t.Errorf("restarted member follows %x, want m%d", st.Leader, n)
	}

	start = time.Now()
	c.Cut(n)
	m := c.WaitLeader(n)
	t.Logf("leader m%d %v after cutting leader m%d", m, time.Since(start), n)
	c.Heal(n)
	if rev := c.Compact(cli); rev < 3 {
		t.Errorf("compacted to revision %d, want the current one (at least 3)", rev)
	}
}

// A killed member's clients see their connections end at once, not after a timeout.
func TestClusterKillEndsConnections(t *testing.T) {
	c := StartCluster(t, 1)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wch := cli.Watch(ctx, "w")
	if _, err := cli.Put(ctx, "w", "1"); err != nil {
		t.Fatal(err)
	}
	<-wch
	start := time.Now()
	c.Kill(0)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("kill of a member with an open watch took %v, want it at once", took)
	}
	c.Restart(0)
}
