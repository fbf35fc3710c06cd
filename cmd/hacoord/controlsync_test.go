package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/testenv"
)

// ctl runs `hacoord <args> --control-socket <n's socket>` in-process, as an operator would, and
// returns its exit code, stdout and stderr.
func ctl(t *testing.T, n *node, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var out, errb syncBuffer
	code := run(ctx, append(args, "--control-socket", filepath.Join(n.dir, "ctl.sock")), &out, &errb)
	return code, out.String(), errb.String()
}

const aloneConfig = `backend: {{backend}}
name: %[1]s
endpoints: [%[2]s]
{{store}}
fence_guard: false
log: {format: json, level: info}
interface: eth0
announce: {count: 1, repeat: 0, refresh: 0s}
control_socket: %[3]s/ctl.sock
state_dir: %[3]s
group: web
vips: [192.0.2.101/24]
status_file: %[3]s/web.json
`

// `hacoord resign` on a master alone in its group is refused with a message that says nothing was
// done and names the way out; the master keeps its VIP and its term (no re-election). With a
// second node running, the same command hands over.
func TestResignAloneRefused(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "web")
		body := strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines).Replace(aloneConfig)
		a, b := twoNodes(t)
		n1 := startNode(t, a, "n1", st.endpoint, body)
		eventually(t, "n1 master of web, holding its VIP", func() bool {
			return st.leader("web").Node == "n1" && n1.has(t, "192.0.2.101")
		}, n1)
		term := st.leader("web").Term

		asked := time.Now()
		code, out, errs := ctl(t, n1, "resign")
		t.Logf("%s: resign refused in %v", backend, time.Since(asked).Round(10*time.Microsecond))
		const want = "no other candidate could take over: nothing done; use `hacoord maintenance on` to take the node out anyway"
		if code == exitOK || !strings.Contains(errs, want) {
			t.Fatalf("resign alone: exit %d, stdout %q, stderr %q; want a failure saying %q", code, out, errs, want)
		}
		if r := st.leader("web"); r.Node != "n1" || r.Term != term || !n1.has(t, "192.0.2.101") {
			t.Fatalf("after a refused resign: record %+v (want n1, term %d), n1's VIPs %v", r, term, n1.vips(t))
		}
		if s := n1.status(t, "web"); s.Role != "master" || !s.Promoted || s.Term != term {
			t.Fatalf("n1's status after a refused resign: %+v, want master, promoted, term %d", s, term)
		}

		n2 := startNode(t, b, "n2", st.endpoint, body)
		eventually(t, "n2 a backup", func() bool { return n2.status(t, "web").Role == "backup" }, n2)
		if code, _, errs := ctl(t, n1, "resign"); code != exitOK {
			t.Fatalf("resign with n2 running: exit %d: %s", code, errs)
		}
		eventually(t, "web on n2", func() bool {
			return st.leader("web").Node == "n2" && n2.has(t, "192.0.2.101") && !n1.has(t, "192.0.2.101")
		}, n1, n2)
	})
}

const syncControl = twoInstances + `control_socket: %[3]s/ctl.sock
state_dir: %[3]s
sync_groups:
  - {name: G, instances: [A, B]}
`

// holdsGroup reports whether n is master of A and B in the store and binds both VIPs, and other
// binds neither.
func holdsGroup(t *testing.T, st *store, n, other *node) bool {
	return st.leader("A").Node == n.name && st.leader("B").Node == n.name &&
		n.has(t, "192.0.2.101") && n.has(t, "192.0.2.102") && len(other.vips(t)) == 0
}

// Control requests naming one member of a sync group move the whole group: resign of the
// follower B moves A and B; maintenance on for B takes the node out of both (persisted for both);
// a resign with the only other node in maintenance is refused and leaves the group where it is
// (same terms); transfer naming B hands A and B to the target.
func TestSyncGroupControlMovesTheGroup(t *testing.T) {
	testenv.RequireRoot(t)
	forStores(t, func(t *testing.T, backend string) {
		st := startStore(t, backend, "A", "B")
		n1, n2 := startPair(t, st, syncControl)

		if code, out, errs := ctl(t, n1, "resign", "--instance", "B"); code != exitOK || !strings.Contains(out, "sync group G") {
			t.Fatalf("resign --instance B: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		eventually(t, "A and B on n2 after n1 resigned B", func() bool { return holdsGroup(t, st, n2, n1) }, n1, n2)

		if code, _, errs := ctl(t, n2, "maintenance", "on", "--instance", "B"); code != exitOK {
			t.Fatalf("maintenance on --instance B: exit %d: %s", code, errs)
		}
		if len(n2.vips(t)) != 0 {
			t.Errorf("maintenance on answered while n2 still holds %v", n2.vips(t))
		}
		eventually(t, "A and B on n1 after n2 went into maintenance", func() bool { return holdsGroup(t, st, n1, n2) }, n1, n2)
		for _, in := range []string{"A", "B"} {
			if _, err := os.Stat(filepath.Join(n2.dir, in+".n2.maintenance")); err != nil {
				t.Errorf("maintenance flag of member %s: %v", in, err)
			}
		}

		termA, termB := st.leader("A").Term, st.leader("B").Term
		code, _, errs := ctl(t, n1, "resign", "--group", "A")
		if code == exitOK || !strings.Contains(errs, "stays master of sync group G") || !strings.Contains(errs, "hacoord maintenance on") {
			t.Fatalf("resign with n2 in maintenance: exit %d, stderr %q; want a refusal", code, errs)
		}
		if st.leader("A").Term != termA || st.leader("B").Term != termB || !holdsGroup(t, st, n1, n2) {
			t.Fatalf("a refused resign moved the group: A %+v, B %+v (terms were %d, %d)", st.leader("A"), st.leader("B"), termA, termB)
		}

		if code, _, errs := ctl(t, n2, "maintenance", "off", "--group", "B"); code != exitOK {
			t.Fatalf("maintenance off: exit %d: %s", code, errs)
		}
		ls := st.observer(t, "A").(election.Lister)
		eventually(t, "n2 queued for A again", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cs, _, err := ls.Candidates(ctx)
			return err == nil && slices.ContainsFunc(cs, func(c election.Candidate) bool { return c.Node == "n2" && !c.Maintenance })
		}, n2)
		if code, out, errs := ctl(t, n1, "transfer", "--to", "n2", "--instance", "B"); code != exitOK || !strings.Contains(out, "sync group G") {
			t.Fatalf("transfer --instance B --to n2: exit %d, stdout %q, stderr %q", code, out, errs)
		}
		eventually(t, "A and B on n2 after the transfer", func() bool { return holdsGroup(t, st, n2, n1) }, n1, n2)
	})
}

// A VRRP master cannot know whether a backup is there: its resign goes ahead, and the answer says
// what happens when none is.
func TestControlResignVRRPSaysWhatAloneMeans(t *testing.T) {
	el := &fakePlanned{master: true}
	p, insts := controlFixture(t, el)
	insts[0].plan.backend = backendVRRP
	listen(t, p, insts)
	msg, err := call(t, p.control, controlRequest{Op: "resign"})
	if err != nil || el.resigned != 1 || !strings.Contains(msg, "VRRP cannot know its backups: with none, this node is master again") {
		t.Fatalf("resign over VRRP: %q, %v (resigned %d)", msg, err, el.resigned)
	}
}

// plainElector has no planned moves at all.
type plainElector struct{}

func (plainElector) Run(ctx context.Context, _ *election.Outbox) error { <-ctx.Done(); return nil }

// In a sync group, maintenance is the group's: on for one member puts every member in and
// persists it for each; a flag left for one member only (an older daemon's) keeps the whole
// group out at the next start; a group with a member that has no maintenance mode is refused,
// with nothing persisted.
func TestControlSyncGroupMaintenance(t *testing.T) {
	web, db := &fakePlanned{}, &fakePlanned{}
	p, insts := controlFixture(t, web, db)
	p.syncGroups = []syncGroupPlan{{name: "G", members: []int{0, 1}}}
	s := listen(t, p, insts)
	msg, err := call(t, p.control, controlRequest{Op: "maintenance", Instance: "db", On: true})
	if err != nil || !slices.Equal(web.maint, []bool{true}) || !slices.Equal(db.maint, []bool{true}) {
		t.Fatalf("maintenance on for db: %q, %v; SetMaintenance web %v, db %v; want [true] for both", msg, err, web.maint, db.maint)
	}
	if !strings.Contains(msg, "sync group G (instances web, db)") {
		t.Errorf("answer %q does not name the group", msg)
	}
	for _, f := range []string{"web.h1.maintenance", "db.h1.maintenance"} {
		if _, err := os.Stat(filepath.Join(p.stateDir, f)); err != nil {
			t.Errorf("flag of the group's member: %v", err)
		}
	}
	s.Close()

	// Only the follower's flag left: the restarted daemon keeps both members out.
	if err := os.Remove(filepath.Join(p.stateDir, "web.h1.maintenance")); err != nil {
		t.Fatal(err)
	}
	web2, db2 := &fakePlanned{}, &fakePlanned{}
	p2, insts2 := controlFixture(t, web2, db2)
	p2.stateDir, p2.control, p2.syncGroups = p.stateDir, p.control, p.syncGroups
	listen(t, p2, insts2)
	if !slices.Equal(web2.maint, []bool{true}) || !slices.Equal(db2.maint, []bool{true}) {
		t.Fatalf("restart with db's flag only: SetMaintenance web %v, db %v; want [true] for both", web2.maint, db2.maint)
	}
	if _, err := call(t, p2.control, controlRequest{Op: "maintenance", Group: "web", On: false}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(p.stateDir); len(ents) != 0 || !slices.Equal(web2.maint, []bool{true, false}) || !slices.Equal(db2.maint, []bool{true, false}) {
		t.Errorf("maintenance off: state dir %v, SetMaintenance web %v, db %v", ents, web2.maint, db2.maint)
	}

	// A member without a maintenance mode: refused, nothing changed.
	lead := &fakePlanned{}
	p3, insts3 := controlFixture(t, lead, lead)
	insts3[1].el = plainElector{}
	p3.syncGroups = p.syncGroups
	listen(t, p3, insts3)
	_, err = call(t, p3.control, controlRequest{Op: "maintenance", Instance: "web", On: true})
	if err == nil || !strings.Contains(err.Error(), "member db has no maintenance mode") || len(lead.maint) != 0 {
		t.Fatalf("maintenance with a member that has none: %v (leader's SetMaintenance %v)", err, lead.maint)
	}
	if ents, _ := os.ReadDir(p3.stateDir); len(ents) != 0 {
		t.Errorf("a refused maintenance persisted %v", ents)
	}
}
