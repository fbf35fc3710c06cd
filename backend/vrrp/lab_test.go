package vrrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

// lab is a bridge namespace with one veth to each node namespace; node i has eth0 with 192.0.2.i/24
// and the IPv6 link-local address fe80::i/64 as its only one (no duplicate address detection, so
// it is usable at once). The bridge does no multicast snooping: 224.0.0.18 and ff02::12 reach
// every port whatever the MLD reports.
type lab struct {
	nodes []*netnstest.NS
}

func labAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}) }

// labAddr6 is node i's link-local address, the source of its IPv6 adverts.
func labAddr6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 15: byte(i + 1)})
}

func newLab(t testing.TB, n int) *lab {
	t.Helper()
	testenv.RequireRoot(t)
	br := netnstest.New(t, "br")
	bridge, err := netnstest.Bridge(br, "br0")
	if err != nil {
		t.Fatal(err)
	}
	// EOPNOTSUPP: a kernel without CONFIG_BRIDGE_IGMP_SNOOPING, which floods multicast anyway.
	if err := br.Netlink.BridgeSetMcastSnoop(bridge, false); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("multicast snooping off on br0: %v", err)
	}
	l := &lab{}
	for i := range n {
		ns := netnstest.New(t, fmt.Sprintf("n%d", i+1))
		// Before eth0 exists: it inherits "default". No DAD (addresses usable at once), and no
		// generated link-local address: fe80::i is the only one.
		setSysctls(t, ns, map[string]string{
			"net/ipv6/conf/all/accept_dad":        "0",
			"net/ipv6/conf/default/accept_dad":    "0",
			"net/ipv6/conf/default/addr_gen_mode": "1",
		})
		port := fmt.Sprintf("p%d", i+1)
		_, eth0, err := netnstest.Veth(br, port, netip.Prefix{}, ns, "eth0", netip.PrefixFrom(labAddr(i), 24))
		if err != nil {
			t.Fatal(err)
		}
		ll := &netlink.Addr{IPNet: &net.IPNet{IP: labAddr6(i).AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := ns.Netlink.AddrAdd(eth0, ll); err != nil {
			t.Fatalf("add %s to eth0 in %s: %v", labAddr6(i), ns.Name, err)
		}
		if err := netnstest.Attach(br, port, bridge); err != nil {
			t.Fatal(err)
		}
		l.nodes = append(l.nodes, ns)
	}
	return l
}

// setSysctls writes /proc/sys entries inside ns (a thread switched into it sees its own net sysctls).
func setSysctls(t testing.TB, ns *netnstest.NS, kv map[string]string) {
	t.Helper()
	err := ns.Do(func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("in %s: %v", ns.Name, err)
	}
}

// listen opens an IPv4 RawConn on eth0 inside node i's namespace.
func (l *lab) listen(t testing.TB, i int, unicast bool) *RawConn {
	t.Helper()
	return l.listenWith(t, i, ListenConfig{Interface: "eth0", Unicast: unicast})
}

// listenWith opens a RawConn with lc inside node i's namespace.
func (l *lab) listenWith(t testing.TB, i int, lc ListenConfig) *RawConn {
	t.Helper()
	var c *RawConn
	err := l.nodes[i].Do(func() (err error) {
		c, err = Listen(lc)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hacoord runs an Elector in node i, logging to t, and stops it when the test ends.
func (l *lab) hacoord(t *testing.T, i int, cfg Config) *node {
	t.Helper()
	return l.hacoordLogged(t, i, cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(fmt.Sprintf("n%d", i+1)))
}

// hacoordLogged is hacoord with the Elector logging to log.
func (l *lab) hacoordLogged(t *testing.T, i int, cfg Config, log *zap.Logger) *node {
	t.Helper()
	cfg.Interface = "eth0"
	lc := ListenConfig{Interface: "eth0", IPv6: cfg.ipv6(), Unicast: len(cfg.UnicastPeers) > 0, Exclude: cfg.addresses()}
	nd := runNode(t, l.listenWith(t, i, lc), cfg, log)
	t.Cleanup(func() { nd.stop(t) })
	return nd
}

// waitFor waits until cond holds, re-checking whenever nd reports a State, or fails t after d.
func (nd *node) waitFor(t testing.TB, d time.Duration, what string, cond func(election.State) bool) time.Duration {
	t.Helper()
	return nd.waitSince(t, time.Now(), d, what, cond)
}

// waitSince waits until a State satisfying cond has been recorded since start (an event before
// the call: a kill, a stop), and fails t if that was more than d after start, or has not happened
// by then. It returns how long after start cond held, from the time the State was recorded, so a
// call made late (after a slow stop) still measures the event.
func (nd *node) waitSince(t testing.TB, start time.Time, d time.Duration, what string, cond func(election.State) bool) time.Duration {
	t.Helper()
	tm := time.NewTimer(time.Until(start.Add(d)))
	defer tm.Stop()
	for {
		if at, ok := nd.firstSince(start, cond); ok {
			if took := at.Sub(start); took > d {
				t.Fatalf("%s: after %s, not within %s; last state %+v", what, took, d, nd.last())
			}
			return at.Sub(start)
		}
		select {
		case <-nd.changed:
		case <-tm.C:
			t.Fatalf("%s: not within %s (%s); last state %+v, stats %+v", what, d, nd.lateBy(start, cond, time.Second), nd.last(), nd.e.Stats())
		}
	}
}

// lateBy waits up to extra more for a State that missed its window, only to say in the failure how
// late it came.
func (nd *node) lateBy(start time.Time, cond func(election.State) bool, extra time.Duration) string {
	tm := time.NewTimer(extra)
	defer tm.Stop()
	for {
		if at, ok := nd.firstSince(start, cond); ok {
			return fmt.Sprintf("it came after %s", at.Sub(start))
		}
		select {
		case <-nd.changed:
		case <-tm.C:
			return fmt.Sprintf("not even %s later", extra)
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
	Version      int // 0: keepalived's default (2)
	VRID         int
	Priority     int
	AdvertInt    string // keepalived syntax: "1", "0.1"
	NoPreempt    bool
	PreemptDelay int
	AuthPass     string
	VIPs         []netip.Prefix
	UnicastPeers []netip.Addr
	NativeIPv6   bool // keepalived's native_ipv6: an IPv6 instance
}

func (c keepalivedConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id hct\n  vrrp_garp_master_repeat 1\n  vrrp_garp_master_refresh 0\n}\n")
	fmt.Fprintf(&b, "vrrp_instance VI {\n  state BACKUP\n  interface eth0\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
		c.VRID, c.Priority, c.AdvertInt)
	if c.Version != 0 {
		fmt.Fprintf(&b, "  version %d\n", c.Version)
	}
	if c.NoPreempt {
		b.WriteString("  nopreempt\n")
	}
	if c.NativeIPv6 {
		b.WriteString("  native_ipv6\n")
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
	history []vipChange
	changed chan struct{}
}

// vipChange is one netlink event for the watched address, with when it was read.
type vipChange struct {
	at  time.Time
	has bool
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
			w.history = append(w.history, vipChange{time.Now(), u.NewAddr})
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

// firstSince returns when, from start on, the address was first present (want) or absent: start
// itself if it already was then.
func (w *vipWatch) firstSince(start time.Time, want bool) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, c := range w.history {
		current := i+1 == len(w.history) || w.history[i+1].at.After(start)
		if !current || c.has != want {
			continue
		}
		if c.at.After(start) {
			return c.at, true
		}
		return start, true
	}
	if len(w.history) == 0 && !want {
		return start, true // never there
	}
	return time.Time{}, false
}

// lateBy waits up to extra more for the change that missed its window, only to say in the failure
// how late it came: just late, or as late as a protocol timer that should not have been involved.
func (w *vipWatch) lateBy(start time.Time, want bool, extra time.Duration) string {
	tm := time.NewTimer(extra)
	defer tm.Stop()
	for {
		if at, ok := w.firstSince(start, want); ok {
			return fmt.Sprintf("it came after %s", at.Sub(start))
		}
		select {
		case <-w.changed:
		case <-tm.C:
			return fmt.Sprintf("not even %s later", extra)
		}
	}
}

func (w *vipWatch) get() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.has
}

// waitMaster waits until keepalived holds (want) or released (!want) its VIP.
func (k *keepalived) waitMaster(want bool, d time.Duration) time.Duration {
	k.t.Helper()
	return k.waitMasterSince(want, time.Now(), d)
}

// waitMasterSince is waitMaster with d counted from start (an event before the call), measured at
// the netlink event: it returns how long after start keepalived got there, and fails if that was
// more than d.
func (k *keepalived) waitMasterSince(want bool, start time.Time, d time.Duration) time.Duration {
	k.t.Helper()
	tm := time.NewTimer(time.Until(start.Add(d)))
	defer tm.Stop()
	for {
		if at, ok := k.vip.firstSince(start, want); ok {
			if took := at.Sub(start); took > d {
				k.t.Fatalf("keepalived in %s: master=%v after %s, not within %s", k.ns.Name, want, took, d)
			}
			return at.Sub(start)
		}
		select {
		case <-k.vip.changed:
		case <-tm.C:
			k.t.Fatalf("keepalived in %s: master=%v not within %s (%s)", k.ns.Name, want, d, k.vip.lateBy(start, want, time.Second))
		}
	}
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
