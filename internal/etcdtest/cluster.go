package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/internal/faultnet"
)

// The cluster profile, the default of StartCluster: heartbeat 50ms, election timeout 500ms. Three
// members on a loaded two-core machine keep their leader with it (the 20ms fast profile of a single
// member can miss heartbeats there), a leader change takes 0.5-1s, and the minimum lease TTL is 1s
// ((3*10/2) ticks of 50ms = 750ms, rounded up).
const (
	ClusterTickMs     = 50
	ClusterElectionMs = 500
)

// Cluster is a multi-member etcd started by StartCluster, every member in-process on 127.0.0.1 with
// its own data directory. Clients reach member i at Endpoints()[i]: a faultnet proxy, through which
// a test cuts the member off silently (Cut), in front of a plug that Kill pulls (the member's client
// connections close at once, as a killed process's sockets do) and Restart puts back on the
// restarted member. Methods may be called from the test goroutine only; the Cluster is closed in
// t.Cleanup.
type Cluster struct {
	t       testing.TB
	opts    Options // timing and logger shared by all members
	members []*member
	initial string // the initial cluster, "name=peerURL,..."
}

// member is one etcd of a Cluster: its addresses, its proxy and plug and, while it runs, its server.
type member struct {
	name, dir string
	peerURL   string // fixed port, chosen by the kernel once: the membership names it
	plug      *plug  // fixed address in front of the member's client port (a new one every start)
	proxy     *faultnet.Proxy
	e         *embed.Etcd // nil while killed
	cut       bool
}

// StartCluster starts an n-member etcd (n >= 1) with the cluster profile (ClusterTickMs,
// ClusterElectionMs; WithTimeouts overrides it, WithLogger receives every member's logs), waits at
// most 30s until every member serves, and closes it all in t.Cleanup.
//
// Peer ports are chosen by the kernel (bind 127.0.0.1:0, note the port, close) and kept across
// restarts: another process could take one in between, and the start then fails saying so.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("etcdtest: cluster of %d members", n)
	}
	o := Options{TickMs: ClusterTickMs, ElectionMs: ClusterElectionMs}
	for _, f := range opts {
		f(&o)
	}
	ports, err := freePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: o}
	t.Cleanup(c.close)
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: t.TempDir(), peerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[i])}
		c.members = append(c.members, m)
		if m.plug, err = newPlug(); err != nil {
			t.Fatal(err)
		}
		if m.proxy, err = faultnet.New(m.plug.addr()); err != nil {
			t.Fatal(err)
		}
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.initial = strings.Join(initial, ",")
	if err := c.start(embed.ClusterStateFlagNew, all(n)...); err != nil {
		t.Fatal(err)
	}
	return c
}

func all(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: pick a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// start starts the members idx together (a member waits for a quorum before it serves), waits until
// each serves and plugs it in.
func (c *Cluster) start(state string, idx ...int) error {
	for _, i := range idx {
		m := c.members[i]
		if m.e != nil {
			return fmt.Errorf("etcdtest: start member %s: already running", m.name)
		}
		o := c.opts
		o.Dir, o.Name, o.ClientURL, o.PeerURL = m.dir, m.name, "http://127.0.0.1:0", m.peerURL
		o.InitialCluster, o.InitialClusterState = c.initial, state
		cfg, err := o.config()
		if err != nil {
			return err
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("etcdtest: start member %s: its peer port was taken meanwhile: %w", m.name, err)
			}
			return fmt.Errorf("etcdtest: start member %s in %s: %w", m.name, m.dir, err)
		}
		m.e = e
	}
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	for _, i := range idx {
		m := c.members[i]
		select {
		case <-m.e.Server.ReadyNotify():
		case err := <-m.e.Err():
			return fmt.Errorf("etcdtest: member %s failed while starting: %w", m.name, err)
		case <-deadline.C:
			return fmt.Errorf("etcdtest: member %s not serving within %v", m.name, readyTimeout)
		}
		m.plug.connect(m.e.Clients[0].Addr().String())
	}
	return nil
}

// N returns the number of members.
func (c *Cluster) N() int { return len(c.members) }

// Endpoints returns the members' client endpoints (host:port of their proxies), in member order.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.proxy.Addr()
	}
	return eps
}

// Client returns a client of every member that bypasses the proxies (it still reaches a cut
// member), closed in t.Cleanup: for the test's own reads, writes, compactions and revokes.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.plug.addr())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("etcdtest: admin client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the index of the member a quorum of members follows as leader (counting only
// members that run and are not cut: a cut leader may still believe it leads), or -1 when there is
// none.
func (c *Cluster) Leader() int {
	votes := map[uint64]int{}
	for _, m := range c.members {
		if m.e != nil && !m.cut {
			votes[m.e.Server.Lead()]++
		}
	}
	for i, m := range c.members {
		if m.e != nil && !m.cut && votes[uint64(m.e.Server.MemberID())] > len(c.members)/2 {
			return i
		}
	}
	return -1
}

// WaitLeader waits (at most 30s, polling every heartbeat) until a quorum follows a leader that is
// not one of exclude, and returns its index.
func (c *Cluster) WaitLeader(exclude ...int) int {
	c.t.Helper()
	tick := time.NewTicker(time.Duration(c.opts.TickMs) * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	for {
		if l := c.Leader(); l >= 0 && !contains(exclude, l) {
			return l
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			c.t.Fatalf("etcdtest: no leader (other than %v) within %v", exclude, readyTimeout)
		}
	}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Kill crashes the members idx at the same instant: their raft stops at once (no leadership
// transfer), their client connections close and new ones are refused, as when the processes are
// killed. It returns once they are closed (about a second: etcd waits that long for its peers'
// connections); the data directories stay for Restart.
func (c *Cluster) Kill(idx ...int) {
	c.t.Helper()
	for _, i := range idx {
		if c.members[i].e == nil {
			c.t.Fatalf("etcdtest: kill member %s: not running", c.members[i].name)
		}
	}
	// HardStop and pull first, all of them: Close alone hands the leadership over gracefully, waits
	// for client streams to end, and takes a second during which the others could still elect a
	// leader among themselves.
	for _, i := range idx {
		c.members[i].e.Server.HardStop()
		c.members[i].plug.pull()
	}
	var wg sync.WaitGroup
	for _, i := range idx {
		e := c.members[i].e
		wg.Add(1)
		go func() { defer wg.Done(); e.Close() }()
	}
	wg.Wait()
	for _, i := range idx {
		c.members[i].e = nil
	}
}

// Restart starts the killed members idx again on their data directories, together (two members of
// a cluster that lost its quorum need each other to serve), and waits until each serves.
func (c *Cluster) Restart(idx ...int) {
	c.t.Helper()
	if err := c.start(embed.ClusterStateFlagExisting, idx...); err != nil {
		c.t.Fatal(err)
	}
}

// Cut isolates member i silently: its proxy holds every client byte (connections stay open, nothing
// arrives, like a partition) and its raft transport stops sending and drops what it receives, so
// its peers stop hearing from it too. It keeps running.
func (c *Cluster) Cut(i int) {
	m := c.members[i]
	m.proxy.Block()
	if m.e != nil {
		m.e.Server.PauseSending()
	}
	m.cut = true
}

// Heal undoes Cut: held client bytes are delivered and raft traffic flows again.
func (c *Cluster) Heal(i int) {
	m := c.members[i]
	if m.e != nil {
		m.e.Server.ResumeSending()
	}
	m.proxy.Unblock()
	m.cut = false
}

// Compact compacts the history of every member up to the current revision and returns it: a watch
// that resumes from an older revision then fails with ErrCompacted.
func (c *Cluster) Compact(cli *clientv3.Client) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		c.t.Fatalf("etcdtest: read the current revision: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		c.t.Fatalf("etcdtest: compact to %d: %v", rev, err)
	}
	return rev
}

// close stops every member, proxy and plug.
func (c *Cluster) close() {
	for _, m := range c.members {
		if m.e != nil {
			m.plug.pull()
			m.e.Close()
			m.e = nil
		}
		if m.proxy != nil {
			m.proxy.Close()
		}
		if m.plug != nil {
			m.plug.close()
		}
	}
}

// plug forwards the TCP connections it accepts on a fixed loopback address to a member's client
// port. Pulled, it closes every connection it forwards and closes new ones at once, as the sockets
// of a killed process are; connected, it forwards to the member's new port. Its accept loop and
// connection goroutines end in close, which waits for them.
type plug struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string // "" while pulled
	conns  map[net.Conn]struct{}
	closed bool
}

// newPlug listens on 127.0.0.1 (kernel-chosen port), pulled.
func newPlug() (*plug, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("etcdtest: plug listen: %w", err)
	}
	p := &plug{ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *plug) addr() string { return p.ln.Addr().String() }

// connect makes p forward new connections to target.
func (p *plug) connect(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
}

// pull closes every connection and refuses new ones until connect.
func (p *plug) pull() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = ""
	for c := range p.conns {
		c.Close()
	}
}

// close stops accepting, closes every connection and waits for p's goroutines.
func (p *plug) close() {
	p.mu.Lock()
	p.closed, p.target = true, ""
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *plug) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track registers conns to be closed by pull and close; with no target (or closed) it closes them
// and reports false.
func (p *plug) track(conns ...net.Conn) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.target == "" || p.closed {
		for _, c := range conns {
			c.Close()
		}
		return "", false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return p.target, true
}

func (p *plug) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		delete(p.conns, c)
		c.Close()
	}
}

// serve forwards c to the member until either side ends or p is pulled.
func (p *plug) serve(c net.Conn) {
	defer p.wg.Done()
	target, ok := p.track(c)
	if !ok {
		return
	}
	up, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		p.untrack(c)
		return
	}
	if _, ok := p.track(up); !ok {
		p.untrack(c)
		return
	}
	defer p.untrack(c, up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // one direction ended: close both, which ends the other
	c.Close()
	up.Close()
	<-done
}
