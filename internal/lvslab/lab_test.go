package lvslab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
	"github.com/hacoord/hacoord/ipvs"
)

// The lab's addresses. The front network holds the client, the store, the directors' eth0 and, in
// DR mode, the real servers; in NAT mode the real servers sit on the back network behind the
// directors' eth1 and route through the floating gateway.
var (
	VIP       = netip.MustParseAddr("10.10.0.100")
	GatewayIP = netip.MustParseAddr("10.20.0.254")
	clientIP  = netip.MustParseAddr("10.10.0.10")
	storeIP   = netip.MustParseAddr("10.10.0.5")
)

// Mode is how the directors forward.
type Mode string

const (
	DR  Mode = "DR"
	NAT Mode = "NAT"
	// NATSync is NAT with the VIP and the gateway in two instances of a sync group.
	NATSync Mode = "NAT, sync group"
	// Plain runs no IPVS: each director answers for the VIP itself (the host's baseline).
	Plain Mode = "plain"
)

// nat reports whether the real servers sit behind the directors, routing through the gateway.
func (m Mode) nat() bool { return m == NAT || m == NATSync }

// Timing of the directors: the etcd lease, and the real servers' TCP_CHECK.
const (
	// leaseTTL is 5s, not the 2-3s of the host's lab: a guest stalled for seconds (TCG on a
	// loaded host) must not lose its master's lease in the middle of a count.
	leaseTTL     = 5 * time.Second
	delayLoop    = 500 * time.Millisecond
	checkTimeout = 500 * time.Millisecond
	fall         = 2
)

// Lab is one lab of namespaces. Everything it starts is stopped, and every namespace deleted, in
// t.Cleanup.
type Lab struct {
	t      testing.TB
	mode   Mode
	dir    string
	bin    string
	sw     *netnstest.NS // holds the bridges
	Client *netnstest.NS
	Store  *netnstest.NS
	D      [2]*Director
	Reals  []*Server
	Sorry  *Server
	nss    []*netnstest.NS // every namespace, deleted last by cleanup
	// services is the directors' `virtual_servers:` list (YAML; empty in Plain mode).
	services string
	// programOnBackup is the directors' program_on_backup (not in NATSync mode: default true).
	programOnBackup bool
}

// Director is one director: its namespace, its links on the switch, its daemon.
type Director struct {
	Name  string
	NS    *netnstest.NS
	lab   *Lab
	peers []string // the switch-side veth names
	conf  string
	log   string
	self  *Server // Plain mode: the director's own answer for the VIP
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	ipvs  *ipvs.Kernel  // a netlink socket opened inside NS: the director's own table
}

// Server is an HTTP server answering every request with its name, on the ports it was started
// on, inside a namespace; the client counts the names it gets.
type Server struct {
	Name string
	NS   *netnstest.NS
	Addr netip.Addr
	mu   sync.Mutex
	srv  map[uint16]*http.Server
}

func hostPrefix(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }

func front(i byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 10, 0, i}) }
func back(i byte) netip.Addr  { return netip.AddrFrom4([4]byte{10, 20, 0, i}) }

// NewLab builds the lab for mode with the virtual servers services (YAML list items, indented
// for `virtual_servers:`), starts the store, the real servers on ports, then director d1 (which
// becomes master) and d2.
func NewLab(t testing.TB, mode Mode, services string, ports ...uint16) *Lab {
	t.Helper()
	return newLab(t, mode, services, true, ports...)
}

// newLab is NewLab with program_on_backup (false: a backup's table stays empty and a new master
// programs it inside the failover window).
func newLab(t testing.TB, mode Mode, services string, programOnBackup bool, ports ...uint16) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	bin := os.Getenv("HACOORD_BIN")
	if bin == "" {
		testenv.Unavailable(t, "HACOORD_BIN not set (make build; the VM runner puts it in /bin/hacoord)")
	}
	l := &Lab{t: t, mode: mode, dir: t.TempDir(), bin: bin, services: services, programOnBackup: programOnBackup}
	t.Cleanup(l.cleanup)
	l.sw = l.newNS("sw")
	brF, err := netnstest.Bridge(l.sw, "brf")
	must(t, err)
	var brB netlink.Link
	if mode.nat() {
		brB, err = netnstest.Bridge(l.sw, "brb")
		must(t, err)
	}
	attach := func(ns *netnstest.NS, ifname, peer string, addr netip.Prefix, br netlink.Link) {
		t.Helper()
		_, _, err := netnstest.Veth(ns, ifname, addr, l.sw, peer, netip.Prefix{})
		must(t, err)
		must(t, netnstest.Attach(l.sw, peer, br))
	}
	l.Client = l.newNS("cli")
	attach(l.Client, "eth0", "cli", hostPrefix(clientIP, 24), brF)
	l.Store = l.newNS("etcd")
	attach(l.Store, "eth0", "etcd", hostPrefix(storeIP, 24), brF)
	for i := range l.D {
		name := fmt.Sprintf("d%d", i+1)
		d := &Director{Name: name, NS: l.newNS(name), lab: l}
		attach(d.NS, "eth0", name+"f", hostPrefix(front(byte(i+1)), 24), brF)
		d.peers = append(d.peers, name+"f")
		// As the LVS guides advise: a connection entry whose real server left the table expires at
		// its next packet instead of forwarding there. In DR the director sees only the client's
		// half, so a closed connection's entry stays in FIN_WAIT for two minutes, and a new
		// connection that happens to reuse its source port (among the few hundred a test makes)
		// would otherwise be sent to the real server its check had just removed.
		if mode != Plain { // Plain runs on a host without IPVS
			must(t, d.NS.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/vs/expire_nodest_conn", []byte("1"), 0o644) }))
		}
		if mode.nat() {
			attach(d.NS, "eth1", name+"b", hostPrefix(back(byte(i+1)), 24), brB)
			d.peers = append(d.peers, name+"b")
			must(t, d.NS.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }))
		}
		l.D[i] = d
	}
	addServer := func(name string, host byte) *Server {
		s := &Server{Name: name, NS: l.newNS(name)}
		if mode.nat() {
			s.Addr = back(host)
			attach(s.NS, "eth0", name, hostPrefix(s.Addr, 24), brB)
			must(t, s.NS.Netlink.RouteAdd(&netlink.Route{Gw: GatewayIP.AsSlice()}))
		} else {
			s.Addr = front(host)
			attach(s.NS, "eth0", name, hostPrefix(s.Addr, 24), brF)
		}
		return s
	}
	if mode != Plain {
		for i := range 3 {
			l.Reals = append(l.Reals, addServer(fmt.Sprintf("rs%d", i+1), byte(11+i)))
		}
		l.Sorry = addServer("sorry", 20)
		for _, s := range append(slices.Clone(l.Reals), l.Sorry) {
			if mode == DR {
				l.realserver(s)
			}
			for _, p := range ports {
				must(t, s.Start(p))
			}
		}
	}
	l.startStore()
	for i, d := range l.D {
		d.writeConfig()
		if mode == Plain {
			d.self = &Server{Name: d.Name, NS: d.NS}
		}
		must(t, d.Start())
		if i == 0 {
			l.waitFor("d1 holds the VIP", 30*time.Second, func() bool { return d.HasVIP() && (mode == Plain || d.Programmed(80)) })
		}
	}
	if mode != Plain { // d2 is up once its checkers programmed its (idle) table
		l.waitFor("d2 up as a backup (its table programmed if program_on_backup)", 30*time.Second, func() bool {
			return l.D[1].Backup() && l.D[1].Programmed(80) == programOnBackup
		})
	}
	return l
}

// realserver prepares s for LVS-DR with the real `hacoord realserver`: the VIP on lo, ARP sysctls.
func (l *Lab) realserver(s *Server) {
	l.t.Helper()
	cmd := exec.Command(l.bin, "realserver", "--vip", VIP.String(), "--state-file", filepath.Join(l.dir, s.Name+".realserver.json"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := s.NS.Do(cmd.Start); err != nil {
		l.t.Fatalf("%s: hacoord realserver: %v", s.Name, err)
	}
	if err := cmd.Wait(); err != nil {
		l.t.Fatalf("%s: hacoord realserver: %v\n%s", s.Name, err, out.String())
	}
}

// startStore runs etcd in the store's namespace: this test binary again, as the etcd helper.
func (l *Lab) startStore() {
	l.t.Helper()
	exe, err := os.Executable()
	must(l.t, err)
	logf, err := os.Create(filepath.Join(l.dir, "etcd.log"))
	must(l.t, err)
	defer logf.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "LVSLAB_ETCD_DIR="+filepath.Join(l.dir, "etcd"), "LVSLAB_ETCD_URL="+l.endpoint())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(l.t, l.Store.Do(cmd.Start))
	go func() { _ = cmd.Wait() }()
	l.waitFor("etcd serving", 30*time.Second, func() bool {
		return l.Store.Do(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(storeIP, 2379).String(), 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})
}

func (l *Lab) endpoint() string { return "http://" + netip.AddrPortFrom(storeIP, 2379).String() }

// etcdHelper serves etcd when the test binary runs as the lab's store (startStore).
func etcdHelper() {
	dir := os.Getenv("LVSLAB_ETCD_DIR")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := etcdtest.Run(ctx, etcdtest.Options{Dir: dir, ClientURL: os.Getenv("LVSLAB_ETCD_URL")})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "lvslab etcd:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestMain(m *testing.M) {
	if os.Getenv("LVSLAB_ETCD_DIR") != "" {
		etcdHelper()
	}
	os.Exit(m.Run())
}

func (d *Director) writeConfig() {
	l := d.lab
	status := filepath.Join(l.dir, d.Name+".status.json")
	yml := fmt.Sprintf(`backend: etcd
name: %s
endpoints: [%s]
lease_ttl: %s
log: {format: json}
check_defaults: {delay_loop: %s, connect_timeout: %s, retry: 0, fall: %d, rise: 1}
`, d.Name, l.endpoint(), leaseTTL, delayLoop, checkTimeout, fall)
	switch l.mode {
	case NATSync: // the front instance leads the group and holds the table; status() reads its file
		yml += fmt.Sprintf(`instances:
  - name: front
    interface: eth0
    vips: [%s]
    status_file: %s
    virtual_servers:
%s  - name: back
    interface: eth1
    vips: [%s]
    status_file: %s
sync_groups:
  - {name: lvs, instances: [front, back]}
`, hostPrefix(VIP, 24), status, indent(l.services, "    "), hostPrefix(GatewayIP, 24), filepath.Join(l.dir, d.Name+".back.status.json"))
	default:
		vips := "[" + hostPrefix(VIP, 24).String() + "]"
		if l.mode == NAT {
			vips = fmt.Sprintf("[%s, {address: %s, dev: eth1}]", hostPrefix(VIP, 24), hostPrefix(GatewayIP, 24))
		}
		yml += fmt.Sprintf("interface: eth0\nvips: %s\nstatus_file: %s\n", vips, status)
		if l.mode != Plain {
			yml += fmt.Sprintf("program_on_backup: %t\nvirtual_servers:\n", l.programOnBackup) + l.services
		}
	}
	d.conf = filepath.Join(l.dir, d.Name+".yaml")
	d.log = filepath.Join(l.dir, d.Name+".log")
	must(l.t, os.WriteFile(d.conf, []byte(yml), 0o644))
}

// indent prefixes every line of s with p.
func indent(s, p string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, ln := range lines {
		if ln != "" {
			lines[i] = p + ln
		}
	}
	return strings.Join(lines, "")
}

// Start starts the director's daemon (and, in Plain mode, its own server).
func (d *Director) Start() error {
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(d.lab.bin, "--config", d.conf, "--name", d.Name)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.NS.Do(cmd.Start); err != nil {
		return fmt.Errorf("%s: start hacoord: %w", d.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.mu.Unlock()
	if d.self != nil {
		return d.self.Start(80)
	}
	return nil
}

// HasVIP reports whether the VIP is bound on the director's eth0.
func (d *Director) HasVIP() bool {
	link, err := d.NS.Netlink.LinkByName("eth0")
	if err != nil {
		return false
	}
	addrs, err := d.NS.Netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == VIP {
			return true
		}
	}
	return false
}

// Crash kills the director as a machine dies: its links are cut first (the switch-side veths go
// down), then every process in its namespace (the daemon and its fence guard) gets SIGKILL. It
// returns the instant the links were cut: from then on nothing reaches the director.
func (d *Director) Crash() (cut time.Time) {
	d.lab.t.Helper()
	d.setLinks(false)
	cut = time.Now()
	defer killNS(d.lab.t, d.NS)
	if d.self != nil {
		d.self.Stop(80)
	}
	return cut
}

// Revive brings the crashed director's links back and starts its daemon.
func (d *Director) Revive() {
	d.lab.t.Helper()
	d.setLinks(true)
	must(d.lab.t, d.Start())
}

func (d *Director) setLinks(up bool) {
	for _, p := range d.peers {
		link, err := d.lab.sw.Netlink.LinkByName(p)
		if err == nil {
			if up {
				err = d.lab.sw.Netlink.LinkSetUp(link)
			} else {
				err = d.lab.sw.Netlink.LinkSetDown(link)
			}
		}
		must(d.lab.t, err)
	}
}

// Stop sends SIGTERM to the daemon and waits for it to exit.
func (d *Director) Stop(timeout time.Duration) error {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("%s: daemon still running %v after SIGTERM", d.Name, timeout)
	}
}

// daemonStatus is what the lab reads of a daemon's status file.
type daemonStatus struct {
	PID      int       `json:"pid"`
	Role     string    `json:"role"`
	Leader   string    `json:"leader"`
	Promoted bool      `json:"promoted"`
	Since    time.Time `json:"since"`
}

// status reads the running daemon's status file; ok is false before that daemon wrote one.
func (d *Director) status() (st daemonStatus, ok bool) {
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(d.lab.dir, d.Name+".status.json"))
	if err != nil || cmd == nil {
		return st, false
	}
	return st, json.Unmarshal(b, &st) == nil && st.PID == cmd.Process.Pid
}

// Backup reports whether the running daemon's status file says it is a backup that sees a
// leader (it is a candidate, waiting its turn).
func (d *Director) Backup() bool {
	st, ok := d.status()
	return ok && st.Role == "backup" && st.Leader != "" && st.Leader != d.Name
}

// Table reads the director's IPVS table (IPVS is per network namespace).
func (d *Director) Table() (ipvs.Table, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ipvs == nil {
		if err := d.NS.Do(func() error {
			k, err := ipvs.Open()
			d.ipvs = k
			return err
		}); err != nil {
			return ipvs.Table{}, fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	return ipvs.ReadTable(d.ipvs)
}

// Dests returns the destinations of the director's service VIP:port, with their weights; ok is
// false when the service is not in the table.
func (d *Director) Dests(port uint16) (dests map[netip.Addr]uint32, ok bool) {
	tab, err := d.Table()
	if err != nil {
		return nil, false
	}
	for _, s := range tab.Services {
		if s.Address == VIP && s.Port == port {
			dests = map[netip.Addr]uint32{}
			for _, dst := range s.Destinations {
				dests[dst.Address] = dst.Weight
			}
			return dests, true
		}
	}
	return nil, false
}

// Programmed reports whether the director's table has the service VIP:port with a destination.
func (d *Director) Programmed(port uint16) bool {
	dests, ok := d.Dests(port)
	return ok && len(dests) > 0
}

// TableEmpty reports whether the director's IPVS table has no service at all.
func (d *Director) TableEmpty() bool {
	tab, err := d.Table()
	return err == nil && len(tab.Services) == 0
}

// SetLink cuts (false) or restores (true) the server's link on the switch: its machine is gone
// from the network, so a probe's SYN goes unanswered instead of being refused.
func (l *Lab) SetLink(s *Server, up bool) {
	l.t.Helper()
	link, err := l.sw.Netlink.LinkByName(s.Name)
	if err == nil {
		if up {
			err = l.sw.Netlink.LinkSetUp(link)
		} else {
			err = l.sw.Netlink.LinkSetDown(link)
		}
	}
	must(l.t, err)
}

// Start serves HTTP on port in the server's namespace (all its addresses, the VIP on lo too).
func (s *Server) Start(port uint16) error {
	var ln net.Listener
	if err := s.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(int(port)))
		return err
	}); err != nil {
		return fmt.Errorf("%s: listen :%d: %w", s.Name, port, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, s.Name)
	}), ReadHeaderTimeout: 5 * time.Second}
	srv.SetKeepAlivesEnabled(false)
	s.mu.Lock()
	if s.srv == nil {
		s.srv = map[uint16]*http.Server{}
	}
	s.srv[port] = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Stop closes the server on port: new connections are refused.
func (s *Server) Stop(port uint16) {
	s.mu.Lock()
	srv := s.srv[port]
	delete(s.srv, port)
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (s *Server) stopAll() {
	s.mu.Lock()
	var ports []uint16
	for p := range s.srv {
		ports = append(ports, p)
	}
	s.mu.Unlock()
	for _, p := range ports {
		s.Stop(p)
	}
}

// Get sends one request to VIP:port from the client, on a new connection, and returns who
// answered.
func (l *Lab) Get(port uint16, timeout time.Duration) (string, error) {
	var conn net.Conn
	err := l.Client.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(VIP, port).String(), timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// Count sends n requests to VIP:port one after the other and counts who answered ("error"
// counts failures). It gives up after three failures in a row (a broken lab fails fast): the
// requests not sent are missing from the counts.
func (l *Lab) Count(port uint16, n int) map[string]int {
	got := map[string]int{}
	inARow := 0
	for range n {
		name, err := l.Get(port, 2*time.Second)
		if err != nil {
			name = "error"
			if inARow++; inARow == 3 {
				got[name]++
				break
			}
		} else {
			inARow = 0
		}
		got[name]++
	}
	return got
}

// Probe records the outcomes of the client's requests to VIP:port, one started every interval
// whether or not the earlier ones have ended (so an outage is resolved to the interval, not to
// the timeout of a request lost in it).
type Probe struct {
	mu      sync.Mutex
	results []probeResult
	wg      sync.WaitGroup
}

type probeResult struct {
	start, end time.Time
	name       string
	err        error
}

// StartProbe starts the client's probe; the function it returns stops it and waits for the
// requests in flight.
func (l *Lab) StartProbe(port uint16, interval, timeout time.Duration) (*Probe, func()) {
	p := &Probe{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				start := time.Now()
				name, err := l.Get(port, timeout)
				p.mu.Lock()
				p.results = append(p.results, probeResult{start, time.Now(), name, err})
				p.mu.Unlock()
			}()
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	return p, func() { close(stop); <-done; p.wg.Wait() }
}

// RecoveredAfter returns the request started at or after t0 that succeeded first, if any.
func (p *Probe) RecoveredAfter(t0 time.Time) (probeResult, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var first probeResult
	ok := false
	for _, r := range p.results {
		if !r.start.Before(t0) && r.err == nil && (!ok || r.end.Before(first.end)) {
			first, ok = r, true
		}
	}
	return first, ok
}

// Failover is what a director crash looked like.
type Failover struct {
	// To is the director that took over.
	To *Director
	// Outage runs from the instant the crashed director's links were cut to the end of the first
	// request, started after that, that succeeded.
	Outage time.Duration
	// Promoted runs from the cut to the instant the new master's status file says it finished
	// promoting (IPVS, VIPs bound, announced): the election's part of the outage.
	Promoted time.Duration
}

// Failover crashes the master and waits for the client to be answered again and for the other
// director to hold the VIP.
func (l *Lab) Failover(master *Director) Failover {
	l.t.Helper()
	other := l.D[0]
	if other == master {
		other = l.D[1]
	}
	l.RequireMaster(master)
	probe, stop := l.StartProbe(80, 50*time.Millisecond, time.Second)
	defer stop()
	l.waitFor("the probe's first answer", 10*time.Second, func() bool { _, ok := probe.RecoveredAfter(time.Time{}); return ok })
	t0 := master.Crash()
	var r probeResult
	l.waitFor("a client request answered after the crash", 30*time.Second, func() bool {
		var ok bool
		r, ok = probe.RecoveredAfter(t0)
		return ok
	})
	if r.name == master.Name {
		l.t.Fatalf("a request started after %s's links were cut was answered by %s", master.Name, master.Name)
	}
	if !other.HasVIP() {
		l.t.Fatalf("the client was answered (%s) after %s crashed, but %s does not hold the VIP", r.name, master.Name, other.Name)
	}
	var st daemonStatus
	l.waitFor(other.Name+"'s status: promoted", 10*time.Second, func() bool {
		var ok bool
		st, ok = other.status()
		return ok && st.Role == "master" && st.Promoted
	})
	return Failover{To: other, Outage: r.end.Sub(t0), Promoted: st.Since.Sub(t0.Round(0))}
}

// RequireMaster fails the test unless d holds the VIP and the other director does not: a master
// that lost the VIP without a crash (a guest stalled past the lease) makes every later figure
// meaningless.
func (l *Lab) RequireMaster(d *Director) {
	l.t.Helper()
	for _, o := range l.D {
		if has := o.HasVIP(); has != (o == d) {
			l.dumpLogs()
			l.t.Fatalf("%s should be the only director holding the VIP, but %s holds it: %v", d.Name, o.Name, has)
		}
	}
}

// waitFor polls cond every tick until it holds, failing the test after timeout.
func (l *Lab) waitFor(what string, timeout time.Duration, cond func() bool) {
	l.t.Helper()
	if !poll(timeout, cond) {
		l.dumpLogs()
		l.t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		waitTick()
	}
}

// waitTick is the polling period of waitFor: the lab samples state, as internal/lab does.
func waitTick() {
	t := time.NewTimer(20 * time.Millisecond)
	<-t.C
}

func (l *Lab) dumpLogs() {
	for _, d := range l.D {
		if d == nil {
			continue
		}
		b, _ := os.ReadFile(d.log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		l.t.Logf("--- %s log (tail) ---\n%s", d.Name, strings.Join(lines, "\n"))
	}
}

// cleanup stops everything the lab started and deletes its namespaces (netnstest's own cleanups
// run after this one). A daemon that is still running gets SIGTERM first, so it removes its VIPs
// and its IPVS services.
func (l *Lab) cleanup() {
	if l.t.Failed() {
		l.dumpLogs()
	}
	for _, d := range l.D {
		if d != nil {
			_ = d.Stop(10 * time.Second)
			if d.self != nil {
				d.self.stopAll()
			}
		}
	}
	for _, s := range append(slices.Clone(l.Reals), l.Sorry) {
		if s != nil {
			s.stopAll()
		}
	}
	for _, ns := range l.nss {
		killNS(l.t, ns)
	}
	for _, d := range l.D {
		if d != nil && d.ipvs != nil {
			d.ipvs.Close()
		}
	}
	for _, ns := range l.nss {
		ns.Close()
		if _, err := os.Stat(filepath.Join("/run/netns", ns.Name)); err == nil {
			l.t.Errorf("namespace %s left behind", ns.Name)
		}
	}
}

// newNS creates a namespace that cleanup deletes once everything in it is stopped.
func (l *Lab) newNS(tag string) *netnstest.NS {
	l.t.Helper()
	ns, err := netnstest.Create(netnstest.UniqueName(tag))
	must(l.t, err)
	l.nss = append(l.nss, ns)
	return ns
}

// killNS sends SIGKILL to every process whose network namespace is ns and waits until none is
// left.
func killNS(t testing.TB, ns *netnstest.NS) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Handle), &st); err != nil {
		t.Errorf("%s: fstat: %v", ns.Name, err)
		return
	}
	find := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var ps unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &ps) == nil && ps.Ino == st.Ino && ps.Dev == st.Dev {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	ok := poll(10*time.Second, func() bool {
		pids := find()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(pids) == 0
	})
	if !ok {
		t.Errorf("%s: processes still running after SIGKILL: %v", ns.Name, find())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// stats returns min/median/max of ds.
func stats(ds []time.Duration) (lo, med, hi time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)/2], s[len(s)-1]
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// figure prints one line of the bench's output, which `make bench-lvs` greps.
func figure(t testing.TB, format string, a ...any) {
	t.Helper()
	fmt.Println("LVSLAB-FIGURE " + fmt.Sprintf(format, a...))
}

// runs is the number of repetitions the bench asks for (LVSLAB_RUNS), 0 when not benchmarking.
func runs() int {
	n, _ := strconv.Atoi(os.Getenv("LVSLAB_RUNS"))
	return n
}

// benchFailover crashes the master n times (the crashed director revived as a backup before the
// next run) and prints the client-visible outages, and the election's part of them.
func benchFailover(t *testing.T, l *Lab, label string, n int) []time.Duration {
	master := l.D[0]
	var outs, proms, gaps []time.Duration
	for i := range n {
		f := l.Failover(master)
		t.Logf("%s run %d: %s crashed, %s promoted after %v, answers after %v", label, i+1, master.Name, f.To.Name, f.Promoted, f.Outage)
		outs, proms, gaps = append(outs, f.Outage), append(proms, f.Promoted), append(gaps, f.Outage-f.Promoted)
		master.Revive()
		l.waitFor(master.Name+" back as a backup", 60*time.Second, func() bool {
			return master.Backup() && (l.mode == Plain || master.Programmed(80) == l.programOnBackup)
		})
		master = f.To
	}
	lo, med, hi := stats(outs)
	figure(t, "%s director-crash outage ms min/median/max %d/%d/%d over %d runs (lease_ttl %v)", label, ms(lo), ms(med), ms(hi), n, leaseTTL)
	lo, med, hi = stats(proms)
	figure(t, "%s director-crash to new master promoted ms min/median/max %d/%d/%d", label, ms(lo), ms(med), ms(hi))
	lo, med, hi = stats(gaps)
	figure(t, "%s new master promoted to client answered ms min/median/max %d/%d/%d (negative: answered before the status file recorded the promotion)", label, ms(lo), ms(med), ms(hi))
	return outs
}
