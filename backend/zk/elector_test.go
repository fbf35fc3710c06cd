package zk_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// The tests share one ZooKeeper (tick 100ms) where they can; each uses its own group. Sessions are
// 1s (LocalConfig): margin 100ms, liveness round trip every 250ms.
func TestElector(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	addr := srv.Addr()

	t.Run("OneMasterOfThree", func(t *testing.T) { testOneMaster(t, addr) })
	t.Run("PredecessorOnlyWatch", func(t *testing.T) { testPredecessorOnly(t, addr) })
	t.Run("YieldHandsOverImmediately", func(t *testing.T) { testYield(t, addr) })
	t.Run("StopHandsOverAndLeavesNothing", func(t *testing.T) { testStop(t, addr) })
	t.Run("Eligibility", func(t *testing.T) { testEligibility(t, addr) })
	t.Run("Chroot", func(t *testing.T) { testChroot(t, addr) })
	t.Run("DigestACL", func(t *testing.T) { testACL(t, addr) })
	t.Run("GarbageLeaderRecord", func(t *testing.T) { testGarbage(t, addr) })
	t.Run("ForeignLeaderSession", func(t *testing.T) { testForeignLeader(t, addr) })
	t.Run("PartitionSelfFenceAndTakeover", func(t *testing.T) { testPartition(t, addr) })
	t.Run("UnreachableAtStart", func(t *testing.T) { testUnreachable(t, addr) })
	t.Run("StopWhileCutOff", func(t *testing.T) { testStopCutOff(t, addr) })
	t.Run("LostCreateReplyNotDuplicated", func(t *testing.T) { testLostCreateReply(t, addr) })
	t.Run("FailedReleaseRetried", func(t *testing.T) { testFailedRelease(t, addr) })
	t.Run("TimingLogged", func(t *testing.T) { testTimingLogged(t, addr) })
	t.Run("DirectAnchorOnStandalone", func(t *testing.T) { testDirectAnchor(t, addr) })
	t.Run("NoRedundantPings", func(t *testing.T) { testNoRedundantPings(t, addr) })
	t.Run("CandidateWatch", func(t *testing.T) { testCandidateWatch(t, addr) })
}

// A master that withdraws (SetEligible(false)) but whose deletes fail, its session alive, keeps
// trying until they succeed: its candidate, still first in the queue, would otherwise keep every
// other node from becoming master for as long as its session lives. It creates no new candidate
// meanwhile.
func testFailedRelease(t *testing.T, addr string) {
	const group = "release"
	e, err := zkb.New(config(addr, group, "a"), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	a := runNode(t, "a", e)
	a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	const failures = 4
	f.failDeletes.Store(failures)
	withdrawn := time.Now()
	a.e.SetEligible(false)
	mb := b.waitMaster(t)
	if n := f.deletes.Load(); n <= failures {
		t.Errorf("%d delete calls, want more than the %d that failed", n, failures)
	}
	c := raw(t, addr, "")
	if cands := candidates(t, c, "/hacoord/"+group+"/election"); len(cands) != 1 {
		t.Errorf("candidates %v, want b's alone", cands)
	}
	t.Logf("b master %v after a withdrew, through %d failed deletes", mb.At.Sub(withdrawn), failures)
}

// At start-up the elector logs the session's timing; a server that does not allow the conf word
// leaves the ensemble's side unknown, and says so.
func testTimingLogged(t *testing.T, addr string) {
	core, logs := observer.New(zapcore.InfoLevel)
	a := startNode(t, config(addr, "timing", "a"), zap.New(core))
	a.waitMaster(t)
	entries := logs.FilterMessageSnippet("ZooKeeper timing").All()
	if len(entries) != 1 {
		t.Fatalf("%d timing log lines, want 1; logs: %v", len(entries), logs.All())
	}
	f := entries[0].ContextMap()
	if f["session-timeout"] != time.Second || f["renewal"] != 250*time.Millisecond || f["worst-validity"] != 400*time.Millisecond {
		t.Errorf("timing fields %v", f)
	}
	if !strings.Contains(entries[0].Message, "unknown") || !strings.Contains(fmt.Sprint(f["error"]), "whitelist") {
		t.Errorf("conf is not whitelisted on the test server, but the log says %q %v", entries[0].Message, f)
	}
}

// A node cut off from ZooKeeper still stops promptly: its requests cannot hold up Run's return.
func testStopCutOff(t *testing.T, addr string) {
	px := faultnet.Start(t, addr)
	a := startNode(t, config(px.Addr(), "cutstop", "a"), nil)
	a.waitMaster(t)
	px.Block()
	start := time.Now()
	if err := a.stop(t); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	// ResignTimeout (1s) for the resign, then up to ~1s for go-zookeeper's close.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to return while cut off", d)
	}
	if s, _ := a.rec.last(); s.Role == election.Master {
		t.Errorf("last state %+v", s)
	}
}

func testOneMaster(t *testing.T, addr string) {
	const group = "one"
	ob := startObserver(t, config(addr, group, ""))
	ob.waitFor(t, "no master yet", election.Record.IsZero)

	var nodes []*node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, config(addr, group, name), nil))
	}
	// Exactly one master; the others follow it.
	var master *node
	for _, n := range nodes {
		s := n.rec.waitFor(t, n.name+" settled", func(s election.State) bool {
			return s.Role == election.Master || (s.Role == election.Backup && !s.Leader.IsZero())
		})
		if s.Role == election.Master {
			if master != nil {
				t.Fatalf("two masters: %s and %s", master.name, n.name)
			}
			master = n
		}
	}
	if master == nil {
		n, _ := nodes[0].rec.last()
		master = map[string]*node{"a": nodes[0], "b": nodes[1], "c": nodes[2]}[n.Leader.Node]
	}
	ms := master.waitMaster(t)
	for _, n := range nodes {
		if n == master {
			continue
		}
		s := n.rec.waitFor(t, n.name+" follows "+master.name, func(s election.State) bool {
			return s.Role == election.Backup && s.Leader.Node == master.name
		})
		if s.Term != ms.Term {
			t.Errorf("%s: term %d, master's %d", n.name, s.Term, ms.Term)
		}
		for _, h := range n.rec.all() {
			if h.Role == election.Master {
				t.Errorf("%s reported Master while %s is master", n.name, master.name)
			}
		}
	}
	if ms.Leader.Node != master.name || ms.Leader.Group != group || ms.Leader.Term != ms.Term ||
		ms.Leader.Address.String() != "192.0.2.10" || len(ms.Leader.VIPs) != 1 || ms.Leader.Since.IsZero() {
		t.Errorf("master record %+v", ms.Leader)
	}
	if !ms.ValidUntil.After(ms.At) || ms.ValidUntil.Sub(ms.At) > time.Second {
		t.Errorf("ValidUntil %v is not within the 1s session from %v", ms.ValidUntil, ms.At)
	}

	// The term is the czxid of the master's candidate znode, and the record is what observers see.
	c := raw(t, addr, "")
	rec := ob.waitFor(t, "observer sees the master", func(r election.Record) bool { return r.Node == master.name })
	if rec.Term != ms.Term {
		t.Errorf("observer term %d, master's %d", rec.Term, ms.Term)
	}
	data, st, err := c.Get("/hacoord/" + group + "/leader")
	if err != nil {
		t.Fatal(err)
	}
	if st.EphemeralOwner == 0 {
		t.Error("leader znode is not ephemeral")
	}
	if r, err := election.ParseRecord(data); err != nil || r.Node != master.name {
		t.Errorf("leader znode %q: %v", data, err)
	}
	var czxids []int64
	for _, ch := range candidates(t, c, "/hacoord/"+group+"/election") {
		if !strings.HasPrefix(ch, "_c_") {
			t.Errorf("candidate %q not in the protected form", ch)
		}
		_, st, err := c.Exists("/hacoord/" + group + "/election/" + ch)
		if err != nil {
			t.Fatal(err)
		}
		czxids = append(czxids, st.Czxid)
	}
	if len(czxids) != 3 || uint64(slices.Min(czxids)) != ms.Term {
		t.Errorf("candidates' czxids %v; master term %d", czxids, ms.Term)
	}
}

func testPredecessorOnly(t *testing.T, addr string) {
	const group = "pred"
	prefix := "/hacoord/" + group + "/election/"
	a := startNode(t, config(addr, group, "a"), nil)
	ma := a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b backup", isRole(election.Backup))
	cn := startNode(t, config(addr, group, "c"), nil)
	cn.rec.waitFor(t, "c follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	c := raw(t, addr, "")
	cands := candidates(t, c, "/hacoord/"+group+"/election")
	if len(cands) != 3 {
		t.Fatalf("candidates %v", cands)
	}
	slices.SortFunc(cands, func(x, y string) int { return strings.Compare(x[len(x)-10:], y[len(y)-10:]) })
	// Each candidate but the last is watched by exactly one backup (its successor); the last by
	// none. The master also watches the others' values (the priority rules: a priority re-published
	// by SetData), which puts no herd on its own candidate: leave its session out.
	_, mst, err := c.Exists(prefix + cands[0])
	if err != nil {
		t.Fatal(err)
	}
	masterSession := fmt.Sprintf("%#x", mst.EphemeralOwner)
	backups := func(w map[string][]string, cand string) int {
		return len(slices.DeleteFunc(slices.Clone(w[prefix+cand]), func(s string) bool { return s == masterSession }))
	}
	w := watchers(t, addr, prefix)
	for i, cand := range cands {
		want := 1
		if i == len(cands)-1 {
			want = 0
		}
		if got := backups(w, cand); got != want {
			t.Errorf("candidate %d (%s) watched by %d sessions, want %d (all watches: %v)", i, cand, got, want, w)
		}
	}

	// Kill the middle candidate: c now watches a, and nobody else reacts.
	nA := len(a.rec.all())
	if err := b.stop(t); err != nil {
		t.Fatal(err)
	}
	// c's re-watch shows only in the server's view: poll it, with a deadline.
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		w = watchers(t, addr, prefix)
		if backups(w, cands[0]) == 1 && backups(w, cands[1]) == 0 {
			break
		}
		select {
		case <-deadline.C:
			t.Fatalf("c does not watch a after b left: %v", w)
		case <-poll.C:
		}
	}
	for _, s := range a.rec.all()[nA:] {
		if s.Role != election.Master || s.Term != ma.Term {
			t.Errorf("master a changed when a backup left: %+v", s)
		}
	}
	for _, s := range cn.rec.all() {
		if s.Role == election.Master {
			t.Errorf("c became master: %+v", s)
		}
	}
}

func testYield(t *testing.T, addr string) {
	const group = "yield"
	a := startNode(t, config(addr, group, "a"), nil)
	ma := a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	terms := []uint64{ma.Term}
	cur, next := a, b
	for i := 0; i < 3; i++ {
		start := time.Now()
		cur.e.Yield()
		ms := next.rec.waitFor(t, next.name+" master after yield", isRole(election.Master))
		// Handover needs no session timeout to pass: a few round trips on loopback.
		if d := ms.At.Sub(start); d > 500*time.Millisecond {
			t.Errorf("handover %d took %v, want well under the 1s session timeout", i, d)
		}
		cur.rec.waitFor(t, cur.name+" not master", func(s election.State) bool { return s.Role != election.Master })
		if ms.Term <= terms[len(terms)-1] {
			t.Errorf("term %d after %v: not increasing", ms.Term, terms)
		}
		terms = append(terms, ms.Term)
		// The yielder comes back, after its hold-off, as a candidate following the new master.
		cur.rec.waitFor(t, cur.name+" follows "+next.name, func(s election.State) bool {
			return s.Role == election.Backup && s.Leader.Node == next.name && s.Reason == "following"
		})
		cur, next = next, cur
	}
	// Yield on a backup changes nothing.
	next.e.Yield()
	if s, _ := cur.rec.last(); s.Role != election.Master {
		t.Errorf("a backup's Yield disturbed the master: %+v", s)
	}
}

func testStop(t *testing.T, addr string) {
	const group = "stop"
	c := raw(t, addr, "")
	a := startNode(t, config(addr, group, "a"), nil)
	ma := a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b backup", isRole(election.Backup))
	cn := startNode(t, config(addr, group, "c"), nil)
	cn.rec.waitFor(t, "c backup", isRole(election.Backup))

	start := time.Now()
	if err := a.stop(t); err != nil {
		t.Fatalf("Run returned %v on cancel", err)
	}
	if last, _ := a.rec.last(); last.Role == election.Master {
		t.Errorf("a's last state is %+v, want non-master", last)
	}
	mb := b.waitMaster(t)
	// A resign hands over in a few round trips (a's delete, b's watch event, b's reads and its
	// create): milliseconds on loopback. A quarter of the session leaves room for a loaded machine
	// and stays far below what a node that did not resign costs: the server expires its session one
	// session timeout after its last contact.
	bound := zkb.LocalConfig().SessionTimeout / 4
	t.Logf("handover on stop: %v", mb.At.Sub(start))
	if d := mb.At.Sub(start); d > bound {
		t.Errorf("handover on stop took %v, want at most %v: a resign must not wait for the session to end", d, bound)
	}
	if mb.Term <= ma.Term {
		t.Errorf("term %d after %d", mb.Term, ma.Term)
	}
	for _, n := range []*node{b, cn} {
		if err := n.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing left: no candidates, no master record.
	if ch := candidates(t, c, "/hacoord/"+group+"/election"); len(ch) != 0 {
		t.Errorf("candidates left after clean stop: %v", ch)
	}
	if ok, _, err := c.Exists("/hacoord/" + group + "/leader"); err != nil || ok {
		t.Errorf("leader znode left after clean stop (exists=%v, err=%v)", ok, err)
	}
}

func testEligibility(t *testing.T, addr string) {
	const group = "elig"
	a := startNode(t, config(addr, group, "a"), nil)
	a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b backup", isRole(election.Backup))

	a.e.SetEligible(false)
	a.rec.waitFor(t, "a resigned (ineligible)", func(s election.State) bool { return s.Role == election.Backup && s.Reason == "ineligible" })
	b.waitMaster(t)
	a.rec.waitFor(t, "a sees b", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "b" })

	b.e.SetEligible(false) // no candidate left: no master
	b.rec.waitFor(t, "b resigned", func(s election.State) bool { return s.Role == election.Backup && s.Reason == "ineligible" })
	a.rec.waitFor(t, "a sees no master", func(s election.State) bool { return s.Role == election.Backup && s.Leader.IsZero() })
	c := raw(t, addr, "")
	if ch := candidates(t, c, "/hacoord/"+group+"/election"); len(ch) != 0 {
		t.Errorf("ineligible nodes left candidates: %v", ch)
	}
	a.e.SetEligible(true)
	a.waitMaster(t)
	b.e.SetEligible(true)
	b.rec.waitFor(t, "b backup", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })
}

func testChroot(t *testing.T, addr string) {
	const group = "chroot"
	cfg := config(addr, group, "a")
	cfg.Servers = []string{addr + "/tenant/ha"}
	a := startNode(t, cfg, nil)
	a.waitMaster(t)
	ob := startObserver(t, cfg)
	ob.waitFor(t, "observer in chroot sees a", func(r election.Record) bool { return r.Node == "a" })

	c := raw(t, addr, "")
	if ok, _, err := c.Exists("/tenant/ha/hacoord/" + group + "/leader"); err != nil || !ok {
		t.Errorf("leader znode not under the chroot (exists=%v, err=%v)", ok, err)
	}
	if ok, _, _ := c.Exists("/hacoord/" + group); ok {
		t.Error("group created outside the chroot")
	}
}

func testACL(t *testing.T, addr string) {
	const group = "acl"
	cfg := config(addr, group, "a")
	cfg.Auth = "hacoord:s3cret"
	a := startNode(t, cfg, nil)
	ma := a.waitMaster(t)

	// Another identity (and no identity) can read but not change or delete.
	base := "/hacoord/" + group
	for _, auth := range []string{"mallory:guess", ""} {
		m := raw(t, addr, auth)
		data, _, err := m.Get(base + "/leader")
		if err != nil {
			t.Fatalf("%q cannot read the master record: %v", auth, err)
		}
		if r, err := election.ParseRecord(data); err != nil || r.Node != "a" {
			t.Errorf("record %q (%v)", data, err)
		}
		cands := candidates(t, m, base+"/election")
		if len(cands) != 1 {
			t.Fatalf("candidates %v", cands)
		}
		for _, op := range []struct {
			name string
			err  error
		}{
			{"delete leader", m.Delete(base+"/leader", -1)},
			{"delete candidate", m.Delete(base+"/election/"+cands[0], -1)},
			{"set leader", func() error { _, err := m.Set(base+"/leader", []byte("x"), -1); return err }()},
			{"create candidate", func() error {
				_, err := m.Create(base+"/election/x-0000000000", nil, gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll))
				return err
			}()},
			{"set election ACL", func() error { _, err := m.SetACL(base+"/election", gozk.WorldACL(gozk.PermAll), -1); return err }()},
		} {
			if !errors.Is(op.err, gozk.ErrNoAuth) {
				t.Errorf("identity %q: %s: got %v, want NoAuth", auth, op.name, op.err)
			}
		}
	}

	// An elector with the wrong password gives up with an error that says what to check.
	wrong := config(addr, group, "b")
	wrong.Auth = "hacoord:wrong"
	b := startNode(t, wrong, nil)
	var err error
	select {
	case err = <-b.done:
		b.once.Do(func() { b.err = err })
	case <-time.After(waitLimit):
		t.Fatal("elector with a wrong password keeps running")
	}
	if !errors.Is(err, gozk.ErrNoAuth) || !strings.Contains(err.Error(), "--zk-auth") || !strings.Contains(err.Error(), `"hacoord"`) {
		t.Errorf("wrong password: Run returned %v", err)
	}
	for _, s := range b.rec.all() {
		if s.Role == election.Master {
			t.Errorf("wrong-password node reported Master: %+v", s)
		}
	}
	if s, _ := a.rec.last(); s.Role != election.Master || s.Term != ma.Term {
		t.Errorf("a disturbed: %+v", s)
	}
}

func testGarbage(t *testing.T, addr string) {
	const group = "garbage"
	c := raw(t, addr, "")
	base := "/hacoord/" + group
	for _, p := range []string{"/hacoord", base} {
		if _, err := c.Create(p, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	// Someone else wrote a persistent, non-JSON "record".
	if _, err := c.Create(base+"/leader", []byte("not json"), 0, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	ob := startObserver(t, config(addr, group, ""))
	ob.waitFor(t, "zero record for garbage", election.Record.IsZero)

	core, logs := observer.New(zapcore.WarnLevel)
	a := startNode(t, config(addr, group, "a"), zap.New(core))
	a.waitMaster(t)
	ob.waitFor(t, "a's record", func(r election.Record) bool { return r.Node == "a" })
	if logs.FilterMessageSnippet("persistent znode").Len() == 0 {
		t.Errorf("replacing the foreign znode was not logged; logs: %v", logs.All())
	}
	_, st, err := c.Get(base + "/leader")
	if err != nil || st.EphemeralOwner == 0 {
		t.Fatalf("leader znode not replaced by an ephemeral one: %v", err)
	}

	// Someone overwrites the live record: backups and observers see no master, the master restores it.
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Leader.Node == "a" })
	st, err = c.Set(base+"/leader", []byte(`{"node":""}`), -1)
	if err != nil {
		t.Fatal(err)
	}
	// Wait, on a watch, for the master to put its record back.
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		data, cur, w, err := c.GetW(base + "/leader")
		if err != nil {
			t.Fatal(err)
		}
		if r, err := election.ParseRecord(data); err == nil && r.Node == "a" && cur.Version > st.Version {
			break
		}
		select {
		case <-w:
		case <-deadline.C:
			t.Fatalf("master did not restore its record; found %q", data)
		}
	}
	ob.waitFor(t, "a's record restored", func(r election.Record) bool { return r.Node == "a" })
	b.rec.waitFor(t, "b follows a again", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })
	if logs.FilterMessageSnippet("changed by someone else").Len() == 0 {
		t.Errorf("the rewrite was not logged; logs: %v", logs.All())
	}
}

func testForeignLeader(t *testing.T, addr string) {
	const group = "foreign"
	c := raw(t, addr, "")
	base := "/hacoord/" + group
	for _, p := range []string{"/hacoord", base} {
		if _, err := c.Create(p, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil && !errors.Is(err, gozk.ErrNodeExists) {
			t.Fatal(err)
		}
	}
	// Another live session holds the record (a stale master that has not noticed yet).
	stale := election.Record{Group: group, Node: "old", Term: 1}
	if _, err := c.Create(base+"/leader", stale.Marshal(), gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, config(addr, group, "a"), nil)
	// a waits (as a backup that knows of "old") rather than overwrite a live session's record...
	a.rec.waitFor(t, "a waits", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "old" })
	// ...and takes over once that session is gone.
	start := time.Now()
	c.Close()
	ms := a.waitMaster(t)
	// The close deletes the record at once and fires a's watch: a few round trips.
	if d, bound := ms.At.Sub(start), zkb.LocalConfig().SessionTimeout/4; d > bound {
		t.Errorf("took %v after the stale session closed, want at most %v", d, bound)
	}

	// A record held by a session that never lets go is replaced after one session timeout.
	const group2 = "foreign2"
	c2 := raw(t, addr, "")
	base2 := "/hacoord/" + group2
	if _, err := c2.Create(base2, nil, 0, gozk.WorldACL(gozk.PermAll)); err != nil && !errors.Is(err, gozk.ErrNodeExists) {
		t.Fatal(err)
	}
	if _, err := c2.Create(base2+"/leader", []byte("stuck"), gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	b := startNode(t, config(addr, group2, "b"), nil)
	mb := b.waitMaster(t)
	if d := mb.At.Sub(start); d < time.Second {
		t.Errorf("replaced a live session's record after %v, before one session timeout", d)
	}
}

func testPartition(t *testing.T, addr string) {
	const group = "partition"
	px := faultnet.Start(t, addr)

	a := startNode(t, config(px.Addr(), group, "a"), nil)
	a.waitMaster(t)
	b := startNode(t, config(addr, group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	nA := len(a.rec.all())
	px.Block()
	cut := time.Now()
	mb := b.waitMaster(t) // a's session expires on the server
	fa := a.rec.waitFor(t, "a let go", func(s election.State) bool { return s.Role != election.Master })

	// a's last promise ran out before b became master, and a said so by then.
	var lastValid time.Time
	for _, s := range a.rec.all()[:nA] {
		if s.Role == election.Master {
			lastValid = s.ValidUntil
		}
	}
	for _, s := range a.rec.all()[nA:] {
		if s.Role == election.Master && s.ValidUntil.After(lastValid) {
			lastValid = s.ValidUntil
		}
	}
	if !lastValid.Before(mb.At) {
		t.Errorf("split brain: a valid until %v, b master at %v", lastValid, mb.At)
	}
	if fa.At.After(mb.At) {
		t.Errorf("a reported %v at %v, after b became master at %v", fa.Role, fa.At, mb.At)
	}
	if d := lastValid.Sub(cut); d > time.Second {
		t.Errorf("a stayed valid %v after the cut, more than the session timeout", d)
	}
	t.Logf("cut -> a fault %v, a valid until +%v, b master +%v", fa.At.Sub(cut), lastValid.Sub(cut), mb.At.Sub(cut))

	// The partition heals: a learns its session expired and rejoins as a backup.
	px.Unblock()
	a.rec.waitFor(t, "a follows b", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "b" })
	if s, _ := b.rec.last(); s.Role != election.Master || s.Term != mb.Term {
		t.Errorf("b disturbed by a's return: %+v", s)
	}
}

func testUnreachable(t *testing.T, addr string) {
	const group = "unreach"
	px := faultnet.Start(t, addr)
	px.Block()
	a := startNode(t, config(px.Addr(), group, "a"), nil)
	a.rec.waitFor(t, "a fault", isRole(election.Fault))
	px.Unblock()
	a.waitMaster(t)
	for _, s := range a.rec.all() {
		if s.Role == election.Master {
			break
		}
		if s.Role != election.Fault {
			t.Errorf("state before the first session: %+v", s)
		}
	}
}

// A server that grants less than asked: the deadline follows the negotiated timeout, with a warning.
func TestClampedSessionTimeout(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{MaxSessionTimeout: 600 * time.Millisecond})
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := config(srv.Addr(), "clamp", "a")
	cfg.SessionTimeout = 3 * time.Second
	a := startNode(t, cfg, zap.New(core))
	ms := a.waitMaster(t)
	// 600ms negotiated, default margin 100ms: at most 500ms of validity from the send time.
	if d := ms.ValidUntil.Sub(ms.At); d > 500*time.Millisecond || d <= 0 {
		t.Errorf("ValidUntil %v after the Master state arrived; want (0, 500ms] for a 600ms session", d)
	}
	entries := logs.FilterMessageSnippet("clamped").All()
	if len(entries) == 0 {
		t.Fatalf("no warning about the clamped timeout; logs: %v", logs.All())
	}
	f := entries[0].ContextMap()
	if f["requested"] != 3*time.Second || f["negotiated"] != 600*time.Millisecond {
		t.Errorf("warning fields %v, want requested 3s, negotiated 600ms", f)
	}
}

func TestConfigValidate(t *testing.T) {
	good := config("127.0.0.1:2181", "g", "n")
	for _, tc := range []struct {
		name string
		mod  func(*zkb.Config)
		want string // substring of the error, "" for none
	}{
		{"good", func(*zkb.Config) {}, ""},
		{"chroot", func(c *zkb.Config) { c.Servers = []string{"h1:2181,h2:2181/ha/x"} }, ""},
		{"bare host", func(c *zkb.Config) { c.Servers = []string{"zk1"} }, ""},
		{"ipv6", func(c *zkb.Config) { c.Servers = []string{"[::1]:2181", "[::1]"} }, ""},
		{"no servers", func(c *zkb.Config) { c.Servers = nil }, "Servers"},
		{"chroot not last", func(c *zkb.Config) { c.Servers = []string{"h1:2181/x", "h2:2181"} }, "last"},
		{"chroot trailing slash", func(c *zkb.Config) { c.Servers = []string{"h1:2181/x/"} }, "chroot"},
		{"no group", func(c *zkb.Config) { c.Group = "" }, "Group"},
		{"group path", func(c *zkb.Config) { c.Group = "a/b" }, "Group"},
		{"no name", func(c *zkb.Config) { c.Name = "" }, "Name"},
		{"auth form", func(c *zkb.Config) { c.Auth = "nocolon" }, "user:password"},
		{"margin too big", func(c *zkb.Config) { c.Margin = c.SessionTimeout }, "margin"},
		{"record node", func(c *zkb.Config) { c.Record.Node = "other" }, "Record.Node"},
		{"negative timeout", func(c *zkb.Config) { c.SessionTimeout = -1 }, "SessionTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			_, err := zkb.New(c, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// A session closed from outside (zktest.CloseSession: what an expiry does, without the wait) hands
// over at once; the old master learns of it on its next reconnect, which is immediate, and rejoins
// as a backup.
func TestSessionClosedFromOutside(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	const group = "closed"
	px := faultnet.Start(t, srv.Addr())
	cfg := config(px.Addr(), group, "a")
	e, err := zkb.New(cfg, testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	a := runNode(t, "a", e)
	ma := a.waitMaster(t)
	b := startNode(t, config(srv.Addr(), group, "b"), nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	sid, pw := f.session()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	px.Block() // so that a cannot take its session back before the close arrives
	if err := zktest.CloseSession(ctx, srv.Addr(), sid, pw); err != nil {
		t.Fatal(err)
	}
	px.Unblock()
	mb := b.waitMaster(t)
	if d := mb.At.Sub(start); d > 500*time.Millisecond {
		t.Errorf("takeover took %v after the session was closed", d)
	}
	if mb.Term <= ma.Term {
		t.Errorf("term %d after %d", mb.Term, ma.Term)
	}
	fa := a.rec.waitFor(t, "a not master", func(s election.State) bool { return s.Role != election.Master })
	if d := fa.At.Sub(start); d > 500*time.Millisecond {
		t.Errorf("a reported %v only %v after its session was closed", fa.Role, d)
	}
	a.rec.waitFor(t, "a follows b", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "b" })
}

// A ZooKeeper restart shorter than the session timeout: sessions survive, the master keeps its term
// (after re-reading the election on reconnect), and the backup never takes over.
func TestServerRestartWithinSession(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	const group = "restart"
	cfgA, cfgB := config(srv.Addr(), group, "a"), config(srv.Addr(), group, "b")
	cfgA.SessionTimeout, cfgB.SessionTimeout = 6*time.Second, 6*time.Second
	a := startNode(t, cfgA, nil)
	ma := a.waitMaster(t)
	b := startNode(t, cfgB, nil)
	b.rec.waitFor(t, "b follows a", func(s election.State) bool { return s.Role == election.Backup && s.Leader.Node == "a" })

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	nA := len(a.rec.all())
	restarted := time.Now()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("server back after %v", time.Since(restarted))
	// a renews again (a Master State with a later deadline), with the same term.
	a.rec.waitFor(t, "a renewed after the restart", func(s election.State) bool {
		return s.Role == election.Master && s.ValidUntil.After(restarted.Add(time.Second))
	})
	for _, s := range a.rec.all()[nA:] {
		if s.Role == election.Master && s.Term != ma.Term {
			t.Errorf("a's term changed across the restart: %+v", s)
		}
	}
	for _, s := range b.rec.all() {
		if s.Role == election.Master {
			t.Errorf("b took over during a restart shorter than the session: %+v", s)
		}
	}
}

// A candidate create that the server applied but whose reply was lost is found again by its
// protected GUID and adopted, not created a second time: the node has exactly one candidate znode
// and becomes master with it.
func testLostCreateReply(t *testing.T, addr string) {
	const group = "lostreply"
	e, err := zkb.New(config(addr, group, "a"), testLogger(t).Named("a"))
	if err != nil {
		t.Fatal(err)
	}
	var f faults
	f.wrap(e)
	f.loseCreate.Store(true)
	a := runNode(t, "a", e)
	m := a.waitMaster(t)
	c := raw(t, addr, "")
	cands := candidates(t, c, "/hacoord/"+group+"/election")
	if len(cands) != 1 {
		t.Fatalf("candidates after a lost create reply: %v, want exactly one", cands)
	}
	_, st, err := c.Exists("/hacoord/" + group + "/election/" + cands[0])
	if err != nil {
		t.Fatal(err)
	}
	if uint64(st.Czxid) != m.Term {
		t.Errorf("master term %d, but its candidate's czxid is %d", m.Term, st.Czxid)
	}
}
