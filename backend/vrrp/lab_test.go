package vrrp

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// lab is a bridge namespace with one veth to each node namespace; node i has eth0 with 192.0.2.i/24.
type lab struct {
	nodes []*netnstest.NS
}

func labAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}) }

func newLab(t testing.TB, n int) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	br := netnstest.New(t, "br")
	bridge, err := netnstest.Bridge(br, "br0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{}
	for i := range n {
		ns := netnstest.New(t, fmt.Sprintf("n%d", i+1))
		port := fmt.Sprintf("p%d", i+1)
		if _, _, err := netnstest.Veth(br, port, netip.Prefix{}, ns, "eth0", netip.PrefixFrom(labAddr(i), 24)); err != nil {
			t.Fatal(err)
		}
		if err := netnstest.Attach(br, port, bridge); err != nil {
			t.Fatal(err)
		}
		l.nodes = append(l.nodes, ns)
	}
	return l
}

// listen opens a RawConn on eth0 inside node i's namespace.
func (l *lab) listen(t testing.TB, i int, unicast bool) *RawConn {
	t.Helper()
	var c *RawConn
	err := l.nodes[i].Do(func() (err error) {
		c, err = Listen(ListenConfig{Interface: "eth0", Unicast: unicast})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hacoord runs an Elector in node i and stops it when the test ends.
func (l *lab) hacoord(t *testing.T, i int, cfg Config) *node {
	t.Helper()
	cfg.Interface = "eth0"
	nd := runNode(t, l.listen(t, i, len(cfg.UnicastPeers) > 0), cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(fmt.Sprintf("n%d", i+1)))
	t.Cleanup(func() { nd.stop(t) })
	return nd
}

// waitFor waits until cond holds, re-checking whenever nd reports a State, or fails t after d.
func (nd *node) waitFor(t testing.TB, d time.Duration, what string, cond func(election.State) bool) time.Duration {
	t.Helper()
	start := time.Now()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		if cond(nd.last()) {
			return time.Since(start)
		}
		select {
		case <-nd.changed:
		case <-tm.C:
			t.Fatalf("%s: not within %s; last state %+v, stats %+v", what, d, nd.last(), nd.e.Stats())
		}
	}
}

func isRole(r election.Role) func(election.State) bool {
	return func(s election.State) bool { return s.Role == r }
}

func followsMaster(a netip.Addr) func(election.State) bool {
	return func(s election.State) bool { return s.Role == election.Backup && s.Leader.Address == a }
}

// keepalived is one keepalived daemon in a namespace, run in the foreground in its own process group.
type keepalived struct {
	t    *testing.T
	ns   *netnstest.NS
	dir  string
	proc *os.Process
	exit chan error
	log  *lockedBuffer
	vip  *vipWatch
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// keepalivedConf is one vrrp_instance on eth0.
type keepalivedConf struct {
	Version      int
	VRID         int
	Priority     int
	AdvertInt    string // keepalived syntax: "1", "0.1"
	NoPreempt    bool
	PreemptDelay int
	AuthPass     string
	VIPs         []netip.Prefix
	UnicastPeers []netip.Addr
}

func (c keepalivedConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id hct\n  vrrp_garp_master_repeat 1\n  vrrp_garp_master_refresh 0\n}\n")
	fmt.Fprintf(&b, "vrrp_instance VI {\n  state BACKUP\n  interface eth0\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n  version %d\n",
		c.VRID, c.Priority, c.AdvertInt, c.Version)
	if c.NoPreempt {
		b.WriteString("  nopreempt\n")
	}
	if c.PreemptDelay > 0 {
		fmt.Fprintf(&b, "  preempt_delay %d\n", c.PreemptDelay)
	}
	if c.AuthPass != "" {
		fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", c.AuthPass)
	}
	if len(c.UnicastPeers) > 0 {
		b.WriteString("  unicast_peer {\n")
		for _, p := range c.UnicastPeers {
			fmt.Fprintf(&b, "    %s\n", p)
		}
		b.WriteString("  }\n")
	}
	b.WriteString("  virtual_ipaddress {\n")
	for _, p := range c.VIPs {
		fmt.Fprintf(&b, "    %s dev eth0\n", p)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// startKeepalived runs keepalived (VRRP only, foreground, logging to the console) in node i with
// conf, and watches its first VIP on eth0: keepalived binds it exactly while MASTER. It is killed
// when the test ends, also on failure, and its log is printed if the test failed.
func (l *lab) keepalived(t *testing.T, i int, conf keepalivedConf) *keepalived {
	t.Helper()
	testenv.RequireCommand(t, "keepalived", "Debian package keepalived")
	ns := l.nodes[i]
	k := &keepalived{t: t, ns: ns, dir: t.TempDir(), exit: make(chan error, 1), log: &lockedBuffer{}}
	k.vip = watchVIP(t, ns, conf.VIPs[0].Addr())
	cf := filepath.Join(k.dir, "keepalived.conf")
	if err := os.WriteFile(cf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(context.Background(), "keepalived", "--dont-fork", "--log-console", "--log-detail",
		"--no-syslog", "--vrrp", "--dont-respawn", "--use-file", cf,
		"--pid", filepath.Join(k.dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(k.dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(k.dir, "checkers.pid"), "--bfd_pid", filepath.Join(k.dir, "bfd.pid"))
	cmd.Stdout, cmd.Stderr = k.log, k.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start keepalived: %v", err)
	}
	k.proc = cmd.Process
	go func() { k.exit <- cmd.Wait() }()
	t.Cleanup(func() {
		k.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("keepalived in %s, config:\n%s\nlog:\n%s", ns.Name, conf, k.log)
		}
	})
	return k
}

// stop signals keepalived's process group with sig and waits for the daemon to exit; after 5s it
// kills the group. Idempotent.
func (k *keepalived) stop(sig syscall.Signal) {
	if k.proc == nil {
		return
	}
	pgid := k.proc.Pid // Setpgid: the group is the daemon's own; `ip netns exec` execs keepalived
	_ = syscall.Kill(-pgid, sig)
	tm := time.NewTimer(5 * time.Second)
	defer tm.Stop()
	select {
	case <-k.exit:
	case <-tm.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-k.exit
	}
	// The VRRP child may outlive the parent by a moment; make sure the whole group is gone.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	k.proc = nil
}

// vipWatch follows whether an address is on eth0 of a namespace, from netlink address events.
type vipWatch struct {
	mu      sync.Mutex
	has     bool
	changed chan struct{}
}

func watchVIP(t *testing.T, ns *netnstest.NS, vip netip.Addr) *vipWatch {
	t.Helper()
	w := &vipWatch{changed: make(chan struct{}, 1)}
	ch := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		Namespace: &ns.Handle, ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case <-done: // the subscription's socket closing
			default:
				t.Errorf("vip watch in %s: %v", ns.Name, err)
			}
		},
	})
	if err != nil {
		t.Fatalf("subscribe to addresses in %s: %v", ns.Name, err)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for u := range ch {
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok || a.Unmap() != vip {
				continue
			}
			w.mu.Lock()
			w.has = u.NewAddr
			w.mu.Unlock()
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		for range ch { // drain until the subscription closes ch
		}
		<-ended
	})
	return w
}

func (w *vipWatch) get() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.has
}

// waitMaster waits until keepalived holds (want) or released (!want) its VIP.
func (k *keepalived) waitMaster(want bool, d time.Duration) time.Duration {
	k.t.Helper()
	start := time.Now()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for k.vip.get() != want {
		select {
		case <-k.vip.changed:
		case <-tm.C:
			k.t.Fatalf("keepalived in %s: master=%v not within %s", k.ns.Name, want, d)
		}
	}
	return time.Since(start)
}

// stayBackup checks that keepalived does not become master for d: a bounded wait for an event
// that must not happen (it would within one Master_Down_Interval if it ignored our adverts).
func (k *keepalived) stayBackup(d time.Duration) {
	k.t.Helper()
	k.stay(false, d)
}

// stay checks that keepalived's mastership stays as it is (master) for d.
func (k *keepalived) stay(master bool, d time.Duration) {
	k.t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		if k.vip.get() != master {
			k.t.Fatalf("keepalived in %s: master changed to %v", k.ns.Name, !master)
		}
		select {
		case <-k.vip.changed:
		case <-tm.C:
			return
		}
	}
}

// stayRole checks that nd reports no State other than role for d.
func (nd *node) stayRole(t testing.TB, role election.Role, d time.Duration) {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		if s := nd.last(); s.Role != role {
			t.Fatalf("left %s: %+v", role, s)
		}
		select {
		case <-nd.changed:
		case <-tm.C:
			return
		}
	}
}
