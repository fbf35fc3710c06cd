package lab

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/testenv"
	"github.com/hacoord/hacoord/ipvs"
)

// The lab tests run the real daemon: TestMain builds cmd/hacoord and cmd/hacoord-lab once, unless
// HACOORD_BIN and HACOORD_LAB_BIN say otherwise.
var (
	hacoordBin, labBin string
	buildErr           error
)

const testTTL = 2 * time.Second

func TestMain(m *testing.M) {
	stop := CleanupOnInterrupt()
	code := func() int {
		flag.Parse()
		if os.Geteuid() == 0 && !testing.Short() {
			dir, err := os.MkdirTemp("", "hacoord-lab-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			labBin = os.Getenv("HACOORD_LAB_BIN")
			if labBin == "" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				hacoordBin, labBin, buildErr = Build(ctx, dir)
				cancel()
			} else {
				hacoordBin = os.Getenv("HACOORD_BIN")
			}
		}
		return m.Run()
	}()
	stop()
	os.Exit(code)
}

// backends are the stores every failover test runs against.
var backends = []string{"etcd", "zk"}

// newLab starts a 3-node lab over backend for a root test, skipping (failing under CI) without
// root, nft or (for zk) java. mod, if set, adjusts the options.
func newLab(t *testing.T, backend string, mod ...func(*Options)) *Lab {
	t.Helper()
	skipShort(t)
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft", "Debian package nftables")
	if backend == "zk" {
		testenv.RequireCommand(t, "java", "Debian package default-jre-headless, with zookeeper")
	}
	if buildErr != nil {
		t.Fatalf("building the lab binaries: %v", buildErr)
	}
	o := Options{Backend: backend, TTL: testTTL, HacoordBin: hacoordBin, LabBin: labBin, AdvertInt: 100 * time.Millisecond}
	for _, m := range mod {
		m(&o)
	}
	return NewTest(t, o)
}

// forBackends runs f as a subtest per backend.
func forBackends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab: skipped in -short mode (builds binaries, runs daemons in namespaces)")
	}
}

func steady(t *testing.T, l *Lab) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := l.WaitSteady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tookOver logs scenario name's result r and its timeline, fails the test unless another node took
// over, and returns r.
func tookOver(t *testing.T, name string, r Result) Result {
	t.Helper()
	t.Log(r.Summary())
	t.Logf("timeline:\n%s", FormatTimeline(r))
	if r.New == "" || r.New == r.Old {
		t.Fatalf("%s: no other node took over (old %s, new %q)", name, r.Old, r.New)
	}
	return r
}

func runScenario(t *testing.T, l *Lab, name string) Result {
	t.Helper()
	r, err := l.RunScenario(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return tookOver(t, name, r)
}

func TestSteadyStateOneHolderAndClientReachesIt(t *testing.T) { forBackends(t, testSteadyState) }

func testSteadyState(t *testing.T, backend string) {
	l := newLab(t, backend)
	h := steady(t, l)
	from := time.Now()
	// Watch for a second: nothing should change.
	timer := time.NewTimer(time.Second)
	<-timer.C
	to := time.Now()
	for _, c := range l.Sampler.HolderHistory() {
		if c.At.After(from) {
			t.Errorf("holder set changed in steady state at +%v: %v", c.At.Sub(from), c.Holders)
		}
	}
	if got := l.Sampler.Holders(); len(got) != 1 || got[0] != h.Name {
		t.Errorf("holders = %v, want [%s]", got, h.Name)
	}
	probes := l.Prober.Probes(from, to)
	ok := 0
	for _, p := range probes {
		if p.Node != "" && p.Node != h.Name {
			t.Errorf("client reached %s, holder is %s", p.Node, h.Name)
		}
		if p.Node == h.Name {
			ok++
		}
	}
	if len(probes) < 20 || ok < len(probes)*9/10 {
		t.Errorf("%d of %d probes answered by %s", ok, len(probes), h.Name)
	}
	if mac := l.Sampler.NeighMAC(); mac != h.MAC.String() {
		t.Errorf("client neighbour entry %s, holder's MAC %s", mac, h.MAC)
	}
	// A connection of our own from the client namespace.
	var got string
	err := l.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(VIP.Addr(), ServicePort).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		got = strings.TrimSpace(string(b))
		return err
	})
	if err != nil || got != h.Name {
		t.Errorf("client connection to the VIP: answered by %q (%v), want %s", got, err, h.Name)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rec, err := l.LeaderRecord(rctx); err != nil || rec.Node != h.Name {
		t.Errorf("master record: %+v, %v; want node %s", rec, err, h.Name)
	} else {
		t.Logf("master record: %s", rec.Marshal())
	}
	// The daemons' status files (hacoord status) agree with the kernel. The status is written as the
	// Coordinator changes, so once the holder has logged "became master" its file says so.
	if _, err := h.Daemon().WaitLine(rctx, "became master"); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		out, err := exec.Command(hacoordBin, "status", "--status-file", filepath.Join(l.Dir(), n.Name+".status.json")).Output()
		var st struct {
			Role      string   `json:"role"`
			Promoted  bool     `json:"promoted"`
			BoundVIPs []string `json:"bound_vips"`
			IPVS      struct {
				State string `json:"state"`
			} `json:"ipvs"`
		}
		if err != nil || json.Unmarshal(out, &st) != nil {
			t.Errorf("%s: hacoord status: %v: %s", n.Name, err, out)
			continue
		}
		holds := n == h
		if (st.Role == "master") != holds || st.Promoted != holds || (len(st.BoundVIPs) == 1) != holds || st.IPVS.State != "disabled" {
			t.Errorf("%s: status %+v, holder %v", n.Name, st, holds)
		}
	}
	if n, err := l.Sampler.Errors(); n > 0 {
		t.Logf("sampler: %d rounds with netlink errors, last: %v", n, err)
	}
}

func TestCrashFailover(t *testing.T) { forBackends(t, testCrashFailover) }

func testCrashFailover(t *testing.T, backend string) {
	l := newLab(t, backend)
	r := runScenario(t, l, Crash)
	nn := l.Node(r.New)
	if r.NeighSwitched < 0 || l.Sampler.NeighMAC() != nn.MAC.String() {
		t.Errorf("client neighbour entry for the VIP is %s, want the new holder's %s (%s)", l.Sampler.NeighMAC(), nn.MAC, r.New)
	}
	if r.TwoHolders != 0 {
		t.Errorf("two holders for %v after a crash", r.TwoHolders)
	}
}

func TestTermFastHandover(t *testing.T) { forBackends(t, testTermFastHandover) }

func testTermFastHandover(t *testing.T, backend string) { testCleanStop(t, backend, Term) }

// SIGINT (Ctrl-C) stops the daemon exactly as SIGTERM does.
func TestInterruptCleanStop(t *testing.T) {
	forBackends(t, func(t *testing.T, backend string) { testCleanStop(t, backend, Interrupt) })
}

// testCleanStop: a signalled master hands over within a store round trip or two (far below the
// TTL, which a node that never resigned would take), never with two holders, and exits 0.
func testCleanStop(t *testing.T, backend, scenario string) {
	l := newLab(t, backend)
	r := runScenario(t, l, scenario)
	if !r.Exited || r.ExitErr != nil {
		t.Errorf("daemon after %s: waited %v, exit %v; want exit status 0", scenario, r.Exited, r.ExitErr)
	}
	if limit := testTTL / 2; r.Takeover > limit || r.Outage > limit {
		t.Errorf("SIGTERM handover: takeover %v, client outage %v; want both under %v (TTL %v)", r.Takeover, r.Outage, limit, testTTL)
	}
	if r.TwoHolders != 0 {
		t.Errorf("two holders for %v on a graceful handover", r.TwoHolders)
	}
}

func TestPartitionFencesBeforeTakeover(t *testing.T) {
	forBackends(t, testPartitionFencesBeforeTakeover)
}

func testPartitionFencesBeforeTakeover(t *testing.T, backend string) {
	l := newLab(t, backend)
	r := runScenario(t, l, Partition)
	if r.TwoHolders != 0 {
		t.Errorf("partitioned master still held the VIP while %s had it: two holders for %v", r.New, r.TwoHolders)
	}
	if r.OldReleased < 0 || r.OldReleased > r.Takeover {
		t.Errorf("old holder released at %v, new holder bound at %v: want release first", r.OldReleased, r.Takeover)
	}
}

func TestPauseNoReannounce(t *testing.T) { forBackends(t, testPauseNoReannounce) }

func testPauseNoReannounce(t *testing.T, backend string) {
	l := newLab(t, backend)
	r := runScenario(t, l, Pause)
	if len(r.StaleARP) > 0 {
		t.Errorf("resumed %s announced the VIP %d times after SIGCONT, first at +%v", r.Old, len(r.StaleARP), r.StaleARP[0].At.Sub(r.Resumed))
	}
	if !r.NeighStayed {
		t.Errorf("client neighbour entry left %s after %s resumed (now %s)", r.New, r.Old, l.Sampler.NeighMAC())
	}
	// A stopped daemon cannot fence itself: its fence guard releases at the deadline, which falls
	// at most TTL - margin after the pause (the last acknowledged renewal was sent before it), and
	// always before another node can bind. A guard that ignored its deadline shows as two holders.
	if r.TwoHolders != 0 {
		t.Errorf("paused %s and %s both held the VIP for %v: the guard did not release by the deadline", r.Old, r.New, r.TwoHolders)
	}
	if r.OldReleased < 0 || r.OldReleased > l.TTL() {
		t.Errorf("paused %s released the VIP %v after the pause, want by its deadline (< TTL %v)", r.Old, r.OldReleased, l.TTL())
	}
}

// SIGKILL of the master's daemon: its fence guard removes the VIP at once, so the VIP is never on
// two nodes; the new master binds it once the lease expires.
func TestKillFenceGuardReleases(t *testing.T) { forBackends(t, testKillFenceGuard) }

func testKillFenceGuard(t *testing.T, backend string) {
	l := newLab(t, backend)
	r := runScenario(t, l, Kill)
	if r.OldReleased < 0 || r.OldReleased > 500*time.Millisecond {
		t.Errorf("SIGKILLed %s kept the VIP %v after the kill: the fence guard did not act", r.Old, r.OldReleased)
	}
	if r.TwoHolders != 0 {
		t.Errorf("two holders for %v after a SIGKILL", r.TwoHolders)
	}
	if old := l.Node(r.Old); old.starts != 1 {
		t.Errorf("%s daemon started %d times, want no restart", r.Old, old.starts)
	}
}

// Without the fence guard, the kernel lifetime the daemon puts on the VIP is the backstop: the
// kernel removes the killed node's VIP by its fencing deadline. The vip package gives a lifetime
// only to a deadline at least about 2.39s away (a kernel counts lifetimes in whole seconds and
// checks them late), so this runs a lease TTL of 4s: at 2s the VIP is bound without one.
func TestKillLifetimeBackstop(t *testing.T) {
	l := newLab(t, "etcd", func(o *Options) {
		o.TTL = 4 * time.Second
		o.ExtraArgs = append(o.ExtraArgs, "--fence-guard=false")
	})
	r := runScenario(t, l, Kill)
	old := l.Node(r.Old)
	if r.OldReleased < 0 {
		t.Fatalf("SIGKILLed %s kept the VIP for the whole window (%v): no lifetime backstop", r.Old, r.End.Sub(r.Fault))
	}
	if has, err := old.HasVIP(); err != nil || has {
		t.Errorf("%s HasVIP = %v, %v after the backstop", r.Old, has, err)
	}
	if r.TwoHolders != 0 || r.OldReleased > r.Takeover {
		t.Errorf("kill without guard: two holders for %v (VIP left the killed node %v after SIGKILL, new holder bound it after %v): the lifetime must end first",
			r.TwoHolders, r.OldReleased, r.Takeover)
	}
}

func TestOwnerPID(t *testing.T) {
	for name, want := range map[string]int{
		"hct-lab123-n1-abcdef": 123,
		"hct-lab7-br-000000":   7,
		"hct-a-abcdef":         0,
		"hct-labx-n1-abcdef":   0,
		"other":                0,
	} {
		got, ok := ownerPID(name)
		if got != want || ok != (want != 0) {
			t.Errorf("ownerPID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

func TestHolderTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := &Sampler{holders: []HolderChange{
		{At: at(0), Holders: []string{"n1"}},
		{At: at(100), Holders: nil},
		{At: at(300), Holders: []string{"n2"}},
		{At: at(400), Holders: []string{"n1", "n2"}},
		{At: at(450), Holders: []string{"n2"}},
	}}
	two, none := s.HolderTimes(at(50), at(1000))
	if two != 50*time.Millisecond || none != 200*time.Millisecond {
		t.Errorf("HolderTimes = two %v, none %v; want 50ms, 200ms", two, none)
	}
}

func TestOutage(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pr := func(start int, node string) Probe { return Probe{Start: at(start), End: at(start + 1), Node: node} }
	l := &Lab{Prober: &Prober{probes: []Probe{
		pr(-20, "n1"), pr(-10, "n1"), pr(0, ""), pr(10, "n1"), pr(20, ""), pr(30, ""), pr(40, "n2"), pr(50, "n2"),
	}}}
	r := Result{Old: "n1", New: "n2", Fault: at(0), End: at(100)}
	l.outage(&r)
	if r.Outage != 30*time.Millisecond || r.FailedProbes != 2 {
		t.Errorf("outage %v with %d failed probes; want 30ms, 2", r.Outage, r.FailedProbes)
	}

	// A crash: the old holder's last reply came before the fault; the outage starts at the fault.
	l.Prober.probes = []Probe{pr(-20, "n1"), pr(-10, "n1"), pr(0, ""), pr(10, ""), pr(20, ""), pr(30, "n2")}
	r = Result{Old: "n1", New: "n2", Fault: at(-5), End: at(100)}
	l.outage(&r)
	if r.Outage != 36*time.Millisecond || r.FailedProbes != 3 {
		t.Errorf("crash: outage %v with %d failed probes; want 36ms (from the fault), 3", r.Outage, r.FailedProbes)
	}
}

// The prober's loops keep their slots a period apart and start each probe at a random point of the
// first ProbeEvery of the slot, so that the wait from a takeover (on the store's grid) to the next
// probe differs from run to run instead of being one fixed offset for the whole lab.
func TestNextProbe(t *testing.T) {
	const period, spread = 100 * time.Millisecond, 10 * time.Millisecond
	t0 := time.Unix(1000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	base := t0
	phases := map[time.Duration]bool{}
	for i := range 200 {
		slot, at := nextProbe(base, period, spread, base.Add(time.Millisecond), func(n time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(n))) })
		if want := t0.Add(time.Duration(i+1) * period); !slot.Equal(want) {
			t.Fatalf("probe %d: slot %v after t0, want %v", i, slot.Sub(t0), want.Sub(t0))
		}
		if d := at.Sub(slot); d < 0 || d >= spread {
			t.Fatalf("probe %d: starts %v into its slot, want within [0, %v)", i, d, spread)
		}
		// The phase against a 100ms grid (ZooKeeper's tick in the fast profile), to the millisecond.
		phases[at.Sub(t0)%period/time.Millisecond] = true
		base = slot
	}
	if len(phases) < 8 {
		t.Errorf("probes fall on %d phases of the 100ms grid in 200 slots; want them spread over the 10ms", len(phases))
	}
	// A loop that fell more than a period behind (a probe that hung) starts from now.
	now := t0.Add(3 * period)
	if slot, _ := nextProbe(t0, period, spread, now, func(time.Duration) time.Duration { return 0 }); !slot.Equal(now) {
		t.Errorf("lagging loop: slot %v after t0, want %v", slot.Sub(t0), now.Sub(t0))
	}
}

// A master whose track script starts failing withdraws its candidacy: another node takes the VIP,
// with no instant of two holders; once the script passes again the node is a candidate again.
func TestTrackScriptFailureHandsOver(t *testing.T) {
	forBackends(t, testTrackScript)
	t.Run("vrrp", func(t *testing.T) { testTrackScript(t, "vrrp") }) // weight 0: FAULT
}

func testTrackScript(t *testing.T, backend string) {
	dir := t.TempDir()
	l := newLab(t, backend, func(o *Options) {
		o.Nodes = 2
		o.NodeArgs = func(node string) []string {
			conf := filepath.Join(dir, node+".yaml")
			body := fmt.Sprintf("track_scripts:\n  - name: service\n    script: test ! -e %s\n    interval: 100ms\n    fall: 2\n",
				filepath.Join(dir, "fail-"+node))
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--config", conf}
		}
	})
	h := steady(t, l)
	fail := filepath.Join(dir, "fail-"+h.Name)
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	holders, at, err := l.Sampler.WaitHolders(ctx, func(hs []string) bool { return len(hs) == 1 && hs[0] != h.Name })
	if err != nil {
		t.Fatalf("no other node took over after %s's track script failed: %v", h.Name, err)
	}
	t.Logf("%s's track script failed; %s holds the VIP %v later", h.Name, holders[0], at.Sub(failed))
	// The check fails after fall x interval (200ms); the master then resigns (a store round trip, or
	// a priority-0 advert and the backup's Skew_Time). A master that only stopped renewing would be
	// replaced after its TTL (or Master_Down_Interval) at the earliest.
	if took := at.Sub(failed); took >= l.TTL() {
		t.Errorf("handover took %v after the track script failed, want well under the TTL %v: did the master resign?", took, l.TTL())
	}
	if two, _ := l.Sampler.HolderTimes(failed, time.Now()); two != 0 {
		t.Errorf("two holders for %v during a health handover", two)
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	// Healthy again, it campaigns again: stopping the other node hands the VIP back to it.
	if err := l.Node(holders[0]).Term(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Sampler.WaitHolders(ctx, func(hs []string) bool { return len(hs) == 1 && hs[0] == h.Name }); err != nil {
		t.Fatalf("%s did not take the VIP back after its script passed again and %s stopped: %v", h.Name, holders[0], err)
	}
}

// newVRRPLab starts a lab of native VRRP nodes with 100ms adverts; impl names what each node runs
// (nil: hacoord everywhere).
func newVRRPLab(t *testing.T, nodes int, impl func(string) string) *Lab {
	t.Helper()
	if impl != nil {
		testenv.RequireCommand(t, "keepalived", "Debian package keepalived")
	}
	return newLab(t, "vrrp", func(o *Options) {
		o.Nodes, o.AdvertInt, o.NodeImpl = nodes, 100*time.Millisecond, impl
	})
}

// VRRP mode, hacoord on every node: SIGKILL of the master's daemon leaves no VIP behind (the fence
// guard), SIGTERM hands over at once (priority-0 advert), and a paused master lets go before a
// backup declares it down (its deadline is 3 adverts from its last one), so none of them gives two
// holders — which keepalived gives for kill and pause.
// vrrpHandover bounds a VRRP handover on SIGTERM at 100ms adverts, from the protocol: the next
// router (priority 110-120) takes over a Skew_Time (53-57ms) after the priority-0 advert, then probes
// the VIP (vip's conflict probe, 3 x 20ms) and binds it; 130ms on top cover the stopping daemon's
// demote and a loaded machine. A router that never sent the priority-0 advert is replaced only after
// its Master_Down_Interval (353-357ms) plus the probe, over 410ms.
const vrrpHandover = 250 * time.Millisecond

func TestVRRPFailover(t *testing.T) {
	for _, sc := range []string{Kill, Term, Pause, Crash} {
		t.Run(sc, func(t *testing.T) {
			l := newVRRPLab(t, 3, nil)
			r := runScenario(t, l, sc)
			if r.TwoHolders != 0 {
				t.Errorf("two holders for %v", r.TwoHolders)
			}
			if sc == Term && r.Takeover > vrrpHandover {
				t.Errorf("SIGTERM takeover %v, want under %v: the priority-0 advert hands over after the next router's Skew_Time, not its Master_Down_Interval", r.Takeover, vrrpHandover)
			}
			if sc == Pause && len(r.StaleARP) > 0 {
				t.Logf("resumed master announced %d times (VRRP preempts back: expected)", len(r.StaleARP))
			}
		})
	}
}

// A group of keepalived (n1, preferred) and hacoord (n2): hacoord follows keepalived, takes over
// when keepalived is killed, and hands the VIP back when keepalived returns (preempt).
func TestVRRPMixedWithKeepalived(t *testing.T) {
	l := newVRRPLab(t, 2, func(node string) string {
		if node == "n1" {
			return ImplKeepalived
		}
		return ImplHacoord
	})
	if h := steady(t, l); h.Name != "n1" {
		t.Fatalf("steady holder %s, want keepalived on n1 (priority %d)", h.Name, l.Node("n1").Priority())
	}
	r := runScenario(t, l, Crash)
	if r.New != "n2" || r.TwoHolders != 0 {
		t.Fatalf("keepalived crashed: %s took over with two holders %v; want hacoord on n2, none", r.New, r.TwoHolders)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.RestoreAll(ctx); err != nil {
		t.Fatalf("keepalived did not take the VIP back from hacoord: %v", err)
	}
	r = runScenario(t, l, Term)
	if r.New != "n2" || r.Takeover > vrrpHandover {
		t.Errorf("keepalived SIGTERM: %s took over after %v; want hacoord within %v (Skew_Time after the priority-0 advert)", r.New, r.Takeover, vrrpHandover)
	}
}

// A partition shorter than the master's validity: it keeps the VIP and its term, and once its
// lease keepalives (or ZooKeeper session) get through again it sends a fresh announcement burst,
// since clients and switches may have moved on while it was unreachable.
func TestShortPartitionReannounces(t *testing.T) { forBackends(t, testShortPartition) }

func testShortPartition(t *testing.T, backend string) {
	l := newLab(t, backend, func(o *Options) {
		o.ExtraArgs = append(o.ExtraArgs, "--garp-repeat", "0", "--garp-refresh", "0") // only bursts
	})
	h := steady(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	parted := time.Now()
	if err := h.Partition(ctx); err != nil {
		t.Fatal(err)
	}
	// Shorter than the validity (TTL - margin = 1.8s) left after the last keepalive.
	select {
	case <-time.After(700 * time.Millisecond): // the fault's duration, not synchronisation
	case <-ctx.Done():
	}
	if err := h.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	actx, acancel := context.WithTimeout(ctx, 3*time.Second)
	defer acancel()
	_, err := l.ARP.Wait(actx, healed, func(ev []ARPEvent) bool {
		n := 0
		for _, e := range ev {
			if e.MAC == h.MAC.String() && e.Gratuitous {
				n++
			}
		}
		return n >= 2 // a round: both GARP forms
	})
	if err != nil {
		t.Fatalf("%s sent no announcement within 3s of the partition healing: %v", h.Name, err)
	}
	t.Logf("%s announced again %v after the partition healed", h.Name, time.Since(healed).Round(time.Millisecond))
	if hs := l.Sampler.Holders(); len(hs) != 1 || hs[0] != h.Name {
		t.Fatalf("holders %v after a short partition, want %s still", hs, h.Name)
	}
	for _, c := range l.Sampler.HolderHistory() {
		if c.At.After(parted) && (len(c.Holders) != 1 || c.Holders[0] != h.Name) {
			t.Errorf("holder set changed to %v around a short partition", c.Holders)
		}
	}
}

// With virtual servers configured on a kernel without IPVS (this one), the daemon says so, keeps
// managing the VIP, and its status reports IPVS as unavailable.
func TestIPVSUnavailableKeepsVIP(t *testing.T) {
	if k, err := ipvs.Open(); err == nil {
		k.Close()
		testenv.NotApplicable(t, "this kernel has IPVS; the test is about one without (make test-ipvs covers one with)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "ipvs.yaml")
	body := "virtual_servers:\n  - address: 10.77.0.100\n    port: 8080\n    lb_algo: rr\n    real_servers:\n      - address: 10.77.0.11\n      - address: 10.77.0.12\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLab(t, "etcd", func(o *Options) { o.Nodes = 2; o.ExtraArgs = append(o.ExtraArgs, "--config", conf) })
	h := steady(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	line, err := h.Daemon().WaitLine(ctx, "IPVS unavailable")
	if err != nil || !strings.Contains(line, "no IPVS") {
		t.Errorf("no clear 'IPVS unavailable' log line: %q, %v", line, err)
	}
	if _, err := h.Daemon().WaitLine(ctx, "became master"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(hacoordBin, "status", "--status-file", filepath.Join(l.Dir(), h.Name+".status.json")).Output()
	if err != nil {
		t.Fatalf("hacoord status: %v", err)
	}
	var st struct {
		Role string `json:"role"`
		IPVS struct {
			State  string `json:"state"`
			Reason string `json:"reason"`
		} `json:"ipvs"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Role != "master" || st.IPVS.State != "unavailable" || st.IPVS.Reason == "" {
		t.Fatalf("status %s (%v): want master with IPVS unavailable and a reason", out, err)
	}
}

// VRRP with a weighted track script (keepalived's vrrp_script weight): when it fails, the preferred
// node's priority drops below the other's, which preempts it; when it passes again, the preferred
// node preempts back.
func TestVRRPTrackScriptWeight(t *testing.T) {
	dir := t.TempDir()
	fail := filepath.Join(dir, "fail")
	l := newLab(t, "vrrp", func(o *Options) {
		o.Nodes = 2
		o.NodeArgs = func(node string) []string {
			if node != "n1" {
				return nil
			}
			conf := filepath.Join(dir, node+".yaml")
			body := fmt.Sprintf("track_scripts:\n  - name: service\n    script: test ! -e %s\n    interval: 100ms\n    weight: -50\n", fail)
			if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--config", conf}
		}
	})
	if h := steady(t, l); h.Name != "n1" {
		t.Fatalf("steady holder %s, want n1 (priority %d)", h.Name, l.Node("n1").Priority())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed := time.Now()
	if _, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 && h[0] == "n2" }); err != nil {
		t.Fatalf("n2 did not preempt n1 after n1's priority dropped by 50: %v", err)
	}
	if line, err := l.Node("n1").Daemon().WaitLine(ctx, "priority changed"); err != nil || !strings.Contains(line, `"priority":60`) {
		t.Errorf("n1 did not log its priority drop to 60: %q, %v", line, err)
	}
	t.Logf("n2 preempted %v after n1's script failed", time.Since(failed).Round(time.Millisecond))
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Sampler.WaitHolders(ctx, func(h []string) bool { return len(h) == 1 && h[0] == "n1" }); err != nil {
		t.Fatalf("n1 did not preempt back once its script passed: %v", err)
	}
	if two, _ := l.Sampler.HolderTimes(failed, time.Now()); two != 0 {
		t.Logf("two holders for %v during the preemptions (VRRP: the old master steps down on hearing the new one)", two)
	}
}

// If the fence guard dies, the daemon starts a new one at the next renewal; the new one does the
// job: SIGKILL of the daemon then still removes the VIP at once. And a guard whose daemon dies
// while it is still starting (its "ready" hits a closed pipe) still releases.
func TestFenceGuardRestarted(t *testing.T) {
	l := newLab(t, "etcd", func(o *Options) { o.Nodes = 2 })
	h := steady(t, l)
	guardPID := func() int { // the daemon's only child; any of its threads may have started it
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", h.Daemon().PID()))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			var pid int
			if _, err := fmt.Sscan(string(b), &pid); err == nil {
				return pid
			}
		}
		t.Fatal("no fence guard under the daemon")
		return 0
	}
	old := guardPID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := h.Daemon().WaitLine(ctx, "fence guard restarted"); err != nil {
		t.Fatal(err)
	}
	if np := guardPID(); np == old {
		t.Fatalf("guard pid still %d", np)
	}
	r := runScenario(t, l, Kill)
	if r.OldReleased < 0 || r.OldReleased > 500*time.Millisecond || r.TwoHolders != 0 {
		t.Errorf("with a restarted guard: VIP left the killed node after %v, two holders %v", r.OldReleased, r.TwoHolders)
	}
}
