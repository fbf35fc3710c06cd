// Package lab builds a network-namespace lab for hacoord: real daemons in node namespaces on one
// bridge, a store (embedded etcd or ZooKeeper, one member or a cluster of several, pluggable), a
// client namespace, observers that record who holds the VIP and what a client sees, and named
// fault scenarios: crash, kill, term, pause, partition hit the VIP holder; store-leader-kill,
// store-leader-cut, store-member-restart, store-quorum-loss hit the store; and a nemesis (Chaos)
// that mixes such faults on a seeded schedule. Tests in this package, `hacoord-lab demo`, `bench`
// and `chaos` use it.
//
// # Topology (IPv4, exists only inside the lab)
//
//	bridge ns:  br0 (no address), with the peers n1..nN, store (or s1..sM), client enslaved
//	store ns:   eth0 10.77.0.2/24    store (etcd on :2379, ZooKeeper on :2181)
//	member j:   eth0 10.77.0.1+j/24  with Options.StoreMembers > 1: one member per namespace
//	                                  (s1 at .2, s2 at .3, s3 at .4; etcd peers on :2380, ZooKeeper
//	                                  quorum :2888 and election :3888)
//	node ns i:  eth0 10.77.0.1i/24   hacoord daemon + `hacoord-lab serve --listen :8080`
//	client ns:  eth0 10.77.0.50/24   prober, neighbour entry and ARP watch
//	VIP:        10.77.0.100/24
//
// No namespace has a default route and nothing is routed out; the bridge lives in its own namespace;
// the root namespace's interfaces are never touched.
//
// # Lifetime
//
// New builds everything and starts the observers; Close (idempotent) kills every process and deletes
// every namespace, also after a failure. New first sweeps what labs of dead processes left behind
// (Sweep). A SIGKILLed lab's children die with it (Pdeathsig). Tests call CleanupOnInterrupt in
// TestMain so Ctrl-C closes open labs; the hacoord-lab commands cancel their context and Close.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// Addresses of the lab.
var (
	Subnet     = netip.MustParsePrefix("10.77.0.0/24")
	StoreAddr  = netip.MustParseAddr("10.77.0.2")
	ClientAddr = netip.MustParseAddr("10.77.0.50")
	VIP        = netip.MustParsePrefix("10.77.0.100/24")
)

// ServicePort is where every node's `hacoord-lab serve` listens (on all addresses, so on the VIP too).
const ServicePort = 8080

// NodeAddr returns the address of node i (1-based): 10.77.0.10+i.
func NodeAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(10 + i)}) }

// Options configures New. The zero value is not usable: HacoordBin and LabBin must resolve.
type Options struct {
	// Nodes is the number of nodes, 1..9; default 3.
	Nodes int
	// Backend selects the store when Store is nil: "etcd" (default), "zk", or "vrrp" (no store:
	// the nodes elect with native VRRP on the lab bridge).
	Backend string
	// Impl is what runs on the nodes: "hacoord" (default) or, with backend vrrp, "keepalived"
	// (Debian's keepalived with the same VRID, priorities and advert interval), for comparison.
	Impl string
	// NodeImpl, if set, overrides Impl per node (a mixed hacoord/keepalived VRRP group).
	NodeImpl func(node string) string
	// AdvertInt is the VRRP advert interval (backend vrrp); default 1s. Node i gets priority
	// 100+10*(Nodes-i), so n1 is the preferred master.
	AdvertInt time.Duration
	// Store overrides Backend with a store of the caller's (the ZooKeeper store, for one).
	Store Store
	// StoreMembers is the number of store members (etcd members, ZooKeeper servers), each in its
	// own namespace: 1 (default) or an odd number up to MaxStoreMembers. The daemons get every
	// member's endpoint.
	StoreMembers int
	// TTL is the daemons' --lease-ttl; default 2s.
	TTL time.Duration
	// ExtraArgs are appended to every daemon's command line.
	ExtraArgs []string
	// NodeArgs, if set, returns more arguments for the daemon of the named node.
	NodeArgs func(node string) []string
	// Config makes every daemon read --config Node.ConfigPath (written by Node.WriteConfig, which
	// a test calls before Node.Start: use NoStart) instead of getting --vip: the file lists the
	// VIPs, so that a reload (Node.Reload) can change them.
	Config bool
	// HacoordBin is the daemon binary; default $HACOORD_BIN.
	HacoordBin string
	// LabBin is the hacoord-lab binary (etcd, serve); default $HACOORD_LAB_BIN, else this executable
	// when it is hacoord-lab.
	LabBin string
	// Dir receives logs and store data; default a new temporary directory (kept after Close so the
	// logs can be read; Dir() says where).
	Dir string
	// NoStart leaves the nodes stopped (call Node.Start).
	NoStart bool
	// SampleEvery is the address sampler's period; default 5ms.
	SampleEvery time.Duration
	// ProbeEvery and ProbeTimeout pace the client prober; defaults 10ms and 100ms.
	ProbeEvery, ProbeTimeout time.Duration
	// Jitter, when positive, makes RunScenario wait a uniformly random time in [0, Jitter) between
	// the steady state and the fault, so repeated runs hit every phase of the keepalive cycle
	// (bench uses TTL/2; otherwise the phase is fixed by the previous run's timing).
	Jitter time.Duration
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() error {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return fmt.Errorf("lab: options: Nodes %d not in 1..9", o.Nodes)
	}
	if o.Backend == "" {
		o.Backend = "etcd"
	}
	if o.Store == nil {
		switch o.Backend {
		case "etcd":
			o.Store = &EtcdStore{}
		case "zk":
			o.Store = &ZKStore{}
		case "vrrp":
			o.Store = noStore{}
		default:
			return fmt.Errorf("lab: options: backend %q has no built-in store (set Options.Store)", o.Backend)
		}
	}
	if o.StoreMembers == 0 {
		o.StoreMembers = 1
	}
	if o.StoreMembers < 1 || o.StoreMembers > MaxStoreMembers || o.StoreMembers%2 == 0 {
		return fmt.Errorf("lab: options: StoreMembers %d: want an odd number in 1..%d", o.StoreMembers, MaxStoreMembers)
	}
	if o.StoreMembers > 1 && o.Store.Backend() == "vrrp" {
		return fmt.Errorf("lab: options: StoreMembers %d with backend vrrp, which has no store", o.StoreMembers)
	}
	if o.TTL == 0 {
		o.TTL = 2 * time.Second
	}
	if o.AdvertInt == 0 {
		o.AdvertInt = time.Second
	}
	switch o.Impl {
	case "":
		o.Impl = ImplHacoord
	case ImplHacoord:
	case ImplKeepalived:
	default:
		return fmt.Errorf("lab: options: impl %q: want %s or %s", o.Impl, ImplHacoord, ImplKeepalived)
	}
	if (o.Impl == ImplKeepalived || o.NodeImpl != nil) && o.Store.Backend() != "vrrp" {
		return fmt.Errorf("lab: options: keepalived nodes need backend vrrp, not %q", o.Store.Backend())
	}
	if o.HacoordBin == "" {
		o.HacoordBin = os.Getenv("HACOORD_BIN")
	}
	if o.LabBin == "" {
		o.LabBin = os.Getenv("HACOORD_LAB_BIN")
	}
	if o.LabBin == "" {
		if exe, err := os.Executable(); err == nil && filepath.Base(exe) == "hacoord-lab" {
			o.LabBin = exe
		}
	}
	if o.LabBin == "" {
		return errors.New("lab: options: no hacoord-lab binary (LabBin or $HACOORD_LAB_BIN)")
	}
	if o.HacoordBin == "" {
		return errors.New("lab: options: no hacoord binary (HacoordBin or $HACOORD_BIN)")
	}
	for _, p := range []*string{&o.LabBin, &o.HacoordBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("lab: options: %s: %w", *p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("lab: options: %w", err)
		}
		*p = abs
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = 5 * time.Millisecond
	}
	if o.ProbeEvery == 0 {
		o.ProbeEvery = 10 * time.Millisecond
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 100 * time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

// Lab is a running lab. Its methods are safe for concurrent use unless they say otherwise.
type Lab struct {
	opts   Options
	dir    string
	Bridge *netnstest.NS
	Store  Store
	// StoreMembers are the store's members (one for a single-member store); StoreNS is the first
	// one's namespace, Client the client's.
	StoreMembers    []*StoreMember
	StoreNS, Client *netnstest.NS
	Nodes           []*Node
	// Start is when the lab was built: the zero of timelines.
	Start time.Time

	Sampler *Sampler
	Prober  *Prober
	ARP     *ARPWatch

	br        netlink.Link
	clientEth int // client eth0 index, for neighbour lookups

	obsCancel context.CancelFunc
	obsDone   sync.WaitGroup

	closeOnce sync.Once
	nsMu      sync.Mutex
	all       []*netnstest.NS
}

// Node is one lab node: its namespace, eth0 MAC and the two processes it runs.
type Node struct {
	Name  string // n1, n2, ...
	Index int    // 1-based
	Addr  netip.Addr
	NS    *netnstest.NS
	MAC   net.HardwareAddr
	// Peer is the node's veth end in the bridge namespace (named like the node).
	Peer string

	lab     *Lab
	eth0    int // ifindex of eth0 in NS
	mu      sync.Mutex
	daemon  *Proc
	service *Proc
	dead    atomic.Bool // crashed: excluded from holder sets until Restore
	cut     bool
	net     netFaults // nftables faults in NS
	paused  bool
	starts  int
}

// New builds a lab, starts the store, the observers and (unless NoStart) every node, and returns it.
// On error everything built so far is removed.
func New(ctx context.Context, o Options) (l *Lab, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if removed, err := Sweep(); err != nil {
		o.Logf("sweep: %v", err)
	} else if len(removed) > 0 {
		o.Logf("swept %d namespaces left by a dead lab: %s", len(removed), strings.Join(removed, " "))
	}
	built := &Lab{opts: o, Store: o.Store, Start: time.Now()}
	l = built
	register(built)
	defer func() {
		if err != nil {
			// Every error return has set l to nil already: close what was built through built.
			built.Close()
			l = nil
		}
	}()
	l.dir = o.Dir
	if l.dir == "" {
		if l.dir, err = os.MkdirTemp("", "hacoord-lab-"); err != nil {
			return nil, fmt.Errorf("lab: %w", err)
		}
	} else if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: log directory: %w", err)
	}
	if err := l.build(); err != nil {
		return nil, err
	}
	o.Logf("topology up: bridge %s, %d nodes, logs in %s", l.Bridge.Name, len(l.Nodes), l.dir)
	env := StoreEnv{Dir: l.dir, LabBin: o.LabBin}
	for _, m := range l.StoreMembers {
		env.Members = append(env.Members, MemberEnv{Name: m.Name, NS: m.NS, Addr: m.Addr, Wrap: func(argv []string) []string {
			return append([]string{"ip", "netns", "exec", m.NS.Name}, argv...)
		}, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, m.NS, network, addr)
		}})
	}
	if err := l.Store.Start(ctx, env); err != nil {
		return nil, err
	}
	o.Logf("%s store serving at %s", l.Store.Backend(), strings.Join(l.Store.Endpoints(), ","))
	if err := l.startObservers(); err != nil {
		return nil, err
	}
	if !o.NoStart {
		for _, n := range l.Nodes {
			if err := n.Start(ctx); err != nil {
				return nil, err
			}
		}
		if err := l.waitPreferred(ctx); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// NewTest is New for tests: it fails t on error, closes the lab in t.Cleanup and, when t has
// failed, logs the tail of every process's log first and keeps the lab's directory (it says
// where); after a passing test the directory is removed, unless Options.Dir named it.
func NewTest(t testing.TB, o Options) *Lab {
	t.Helper()
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keep := o.Dir != ""
	if !keep {
		dir, err := os.MkdirTemp("", "hacoord-lab-")
		if err != nil {
			t.Fatal(err)
		}
		o.Dir = dir
	}
	l, err := New(ctx, o)
	if err != nil {
		t.Fatalf("%v (lab logs kept in %s)", err, o.Dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(l.Tails(40))
		}
		l.Close()
		switch {
		case t.Failed():
			t.Logf("lab logs kept in %s", l.Dir())
		case !keep:
			os.RemoveAll(l.Dir())
		}
	})
	return l
}

func (l *Lab) newNS(role string) (*netnstest.NS, error) {
	ns, err := netnstest.Create(netnstest.UniqueName(nsTag(role)))
	if err != nil {
		return nil, err
	}
	l.nsMu.Lock()
	l.all = append(l.all, ns)
	l.nsMu.Unlock()
	return ns, nil
}

// attach creates ns's eth0 with addr, its peer (named peer) in the bridge namespace, enslaved to br0.
func (l *Lab) attach(ns *netnstest.NS, peer string, addr netip.Addr) (netlink.Link, error) {
	in, _, err := netnstest.Veth(ns, "eth0", netip.PrefixFrom(addr, Subnet.Bits()), l.Bridge, peer, netip.Prefix{})
	if err != nil {
		return nil, err
	}
	if err := netnstest.Attach(l.Bridge, peer, l.br); err != nil {
		return nil, err
	}
	return in, nil
}

func (l *Lab) build() error {
	var err error
	if l.Bridge, err = l.newNS("br"); err != nil {
		return err
	}
	if l.br, err = netnstest.Bridge(l.Bridge, "br0"); err != nil {
		return err
	}
	for i := 1; i <= l.opts.StoreMembers; i++ {
		name := "store"
		if l.opts.StoreMembers > 1 {
			name = "s" + strconv.Itoa(i)
		}
		ns, err := l.newNS(name)
		if err != nil {
			return err
		}
		if _, err := l.attach(ns, name, StoreMemberAddr(i)); err != nil {
			return err
		}
		l.StoreMembers = append(l.StoreMembers, &StoreMember{Name: name, Addr: StoreMemberAddr(i), NS: ns, Peer: name, lab: l, i: i - 1,
			net: netFaults{ns: ns, who: "store member " + name}})
	}
	l.StoreNS = l.StoreMembers[0].NS
	if l.Client, err = l.newNS("client"); err != nil {
		return err
	}
	ce, err := l.attach(l.Client, "client", ClientAddr)
	if err != nil {
		return err
	}
	l.clientEth = ce.Attrs().Index
	for i := 1; i <= l.opts.Nodes; i++ {
		name := "n" + strconv.Itoa(i)
		ns, err := l.newNS(name)
		if err != nil {
			return err
		}
		eth, err := l.attach(ns, name, NodeAddr(i))
		if err != nil {
			return err
		}
		l.Nodes = append(l.Nodes, &Node{Name: name, Index: i, Addr: NodeAddr(i), NS: ns, MAC: eth.Attrs().HardwareAddr,
			Peer: name, lab: l, eth0: eth.Attrs().Index, net: netFaults{ns: ns, who: name}})
	}
	return nil
}

// Dir returns the directory holding the logs.
func (l *Lab) Dir() string { return l.dir }

// TTL returns the daemons' lease TTL.
func (l *Lab) TTL() time.Duration { return l.opts.TTL }

// Node returns the node with the given name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeByMAC returns the node whose eth0 has mac, or nil.
func (l *Lab) NodeByMAC(mac net.HardwareAddr) *Node {
	for _, n := range l.Nodes {
		if n.MAC.String() == mac.String() {
			return n
		}
	}
	return nil
}

// Since returns t relative to the lab's start, for timelines.
func (l *Lab) Since(t time.Time) time.Duration { return t.Sub(l.Start) }

// Tails returns the last n lines of every process's log, for a failure report.
func (l *Lab) Tails(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---- store (%s) ----\n%s\n", l.Store.Backend(), l.Store.Tail(n))
	for _, nd := range l.Nodes {
		nd.mu.Lock()
		d, s := nd.daemon, nd.service
		nd.mu.Unlock()
		if d != nil {
			fmt.Fprintf(&b, "---- %s (%s) ----\n%s\n", d.Name, d.LogPath, d.Tail(n))
		}
		if s != nil && s.Exited() {
			fmt.Fprintf(&b, "---- %s exited ----\n%s\n", s.Name, s.Tail(n))
		}
	}
	return b.String()
}

// Close stops the observers, kills every process and deletes every namespace. Idempotent; safe to
// call from a signal handler goroutine while other methods run (they then fail).
func (l *Lab) Close() {
	l.closeOnce.Do(func() {
		if l.obsCancel != nil {
			l.obsCancel()
			l.obsDone.Wait()
		}
		var wg sync.WaitGroup
		for _, n := range l.Nodes {
			n.mu.Lock()
			for _, p := range []*Proc{n.daemon, n.service} {
				if p != nil {
					wg.Add(1)
					go func() { defer wg.Done(); p.Kill() }()
				}
			}
			n.mu.Unlock()
		}
		wg.Wait()
		if l.Store != nil {
			_ = l.Store.Stop()
		}
		if l.Sampler != nil {
			l.Sampler.closeHandles()
		}
		l.nsMu.Lock()
		for i := len(l.all) - 1; i >= 0; i-- {
			l.all[i].Close()
		}
		l.all = nil
		l.nsMu.Unlock()
		unregister(l)
	})
}

var (
	liveMu sync.Mutex
	live   = map[*Lab]struct{}{}
)

func register(l *Lab) {
	liveMu.Lock()
	live[l] = struct{}{}
	liveMu.Unlock()
}

func unregister(l *Lab) {
	liveMu.Lock()
	delete(live, l)
	liveMu.Unlock()
}

// CloseAll closes every lab this process has open.
func CloseAll() {
	liveMu.Lock()
	labs := make([]*Lab, 0, len(live))
	for l := range live {
		labs = append(labs, l)
	}
	liveMu.Unlock()
	for _, l := range labs {
		l.Close()
	}
}

// CleanupOnInterrupt makes SIGINT, SIGTERM and SIGHUP close every open lab and then exit the process
// with status 130 (for TestMain: the testing package would otherwise die with the namespaces
// still there). The returned func undoes it.
func CleanupOnInterrupt() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	quit := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(os.Stderr, "lab: %v: closing open labs\n", sig)
			CloseAll()
			os.Exit(130)
		case <-quit:
		}
	}()
	return func() { signal.Stop(ch); close(quit) }
}
