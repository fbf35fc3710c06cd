package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/netnstest"
)

// StoreEnv is what a Store gets to start in: one namespace per member (Options.StoreMembers), each
// reachable from every node on the lab bridge, a directory for data and logs, and the lab binary
// (for `hacoord-lab etcd`).
type StoreEnv struct {
	Members []MemberEnv
	Dir     string
	LabBin  string
}

// MemberEnv is where one store member runs.
type MemberEnv struct {
	// Name is "store" for a store of one member, else s1, s2, ...: a member's files carry it.
	Name string
	NS   *netnstest.NS
	Addr netip.Addr
	// Wrap turns a command line into one that runs inside NS (`ip netns exec NS ...`), for runners
	// such as zktest.Run that take a wrapper.
	Wrap func(argv []string) []string
	// Dial dials from inside NS, for readiness and status probes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// A Store is the coordination service the daemons elect through, run inside the lab's store
// namespaces. Start blocks until the store serves (or ctx is done); Stop is idempotent. EtcdStore
// (backend "etcd") and ZKStore (backend "zk") implement it, and MemberStore too.
type Store interface {
	// Backend is the daemon's --backend value for this store.
	Backend() string
	Start(ctx context.Context, env StoreEnv) error
	// Endpoints is the daemon's --endpoints value list (every member); valid after Start.
	Endpoints() []string
	Stop() error
	// Tail returns the last n lines of the store's logs, for failure reports.
	Tail(n int) string
}

// memberStopGrace is how long a member stopped gracefully gets before SIGKILL: etcd first waits
// up to its request timeout (5s + 2 election timeouts) for its clients' streams to end.
const memberStopGrace = 10 * time.Second

// Ports of the lab's etcd members.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// EtcdStore runs `hacoord-lab etcd` in each member's namespace, clients on Addr:2379, peers on
// Addr:2380. A single member runs the fast profile (heartbeat 20ms, election 200ms: any TTL from
// 1s); a cluster runs etcd's default timing (heartbeat 100ms, election 1s, randomised up to 2s: a
// dead leader is replaced 1-2s after its last heartbeat, and leases start at 2s) unless TickMs and
// ElectionMs say otherwise.
type EtcdStore struct {
	// TickMs and ElectionMs are the members' raft heartbeat and election timeout (ms); 0 takes the
	// defaults above (etcdtest.FastTickMs/FastElectionMs alone, etcdtest.DefaultTickMs and
	// DefaultElectionMs in a cluster).
	TickMs, ElectionMs uint

	members []*etcdMember
	labBin  string // for restarts
}

// etcdMember is one `hacoord-lab etcd` process: its command line stays the same across restarts.
type etcdMember struct {
	env      MemberEnv
	endpoint string
	dataDir  string
	logPath  string
	args     []string
	http     *http.Client // dials from inside the member's namespace

	mu   sync.Mutex
	proc *Proc
}

// Backend returns "etcd".
func (s *EtcdStore) Backend() string { return "etcd" }

// Start runs every member at once and waits for each one's "etcd serving" log line (printed once
// it is ready: for a cluster, once it has joined a quorum with a leader).
func (s *EtcdStore) Start(ctx context.Context, env StoreEnv) error {
	single := len(env.Members) == 1
	s.labBin = env.LabBin
	var cluster []string
	for _, m := range env.Members {
		cluster = append(cluster, m.Name+"="+etcdURL(m.Addr, EtcdPeerPort))
	}
	for _, m := range env.Members {
		em := &etcdMember{env: m, endpoint: etcdURL(m.Addr, EtcdClientPort)}
		tick, election := s.TickMs, s.ElectionMs
		if single { // as it always was
			em.dataDir, em.logPath = filepath.Join(env.Dir, "etcd-data"), filepath.Join(env.Dir, "etcd.log")
			em.args = []string{"etcd", "--listen-client", em.endpoint, "--dir", em.dataDir}
		} else {
			em.dataDir = filepath.Join(env.Dir, "etcd-"+m.Name+"-data")
			em.logPath = filepath.Join(env.Dir, "etcd-"+m.Name+".log")
			tick, election = cmp.Or(tick, etcdtest.DefaultTickMs), cmp.Or(election, etcdtest.DefaultElectionMs)
			em.args = []string{"etcd", "--name", m.Name, "--listen-client", em.endpoint, "--dir", em.dataDir,
				"--listen-peer", etcdURL(m.Addr, EtcdPeerPort), "--initial-cluster", strings.Join(cluster, ","),
				"--initial-cluster-state", "new"}
		}
		if tick != 0 {
			em.args = append(em.args, "--heartbeat-ms", strconv.FormatUint(uint64(tick), 10))
		}
		if election != 0 {
			em.args = append(em.args, "--election-ms", strconv.FormatUint(uint64(election), 10))
		}
		if err := os.MkdirAll(em.dataDir, 0o700); err != nil {
			return fmt.Errorf("lab: etcd dir: %w", err)
		}
		em.http = &http.Client{Transport: &http.Transport{DialContext: m.Dial, DisableKeepAlives: true}}
		s.members = append(s.members, em)
	}
	for i := range s.members {
		if err := s.launch(i); err != nil {
			return err
		}
	}
	for i := range s.members {
		if err := s.waitServing(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func etcdURL(a netip.Addr, port uint16) string {
	return "http://" + netip.AddrPortFrom(a, port).String()
}

// launch starts member i's process.
func (s *EtcdStore) launch(i int) error {
	m := s.members[i]
	p, err := startProc(m.env.NS, "store/etcd-"+m.env.Name, m.logPath, s.labBin, m.args...)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.proc = p
	m.mu.Unlock()
	return nil
}

func (m *etcdMember) current() *Proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// waitServing waits (at most 30s) for member i's "etcd serving" line.
func (s *EtcdStore) waitServing(ctx context.Context, i int) error {
	m := s.members[i]
	p := m.current()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.WaitLine(wctx, "etcd serving"); err != nil {
		p.Kill()
		return fmt.Errorf("lab: etcd %s not ready: %w\n%s", m.env.Name, err, p.Tail(20))
	}
	return nil
}

// Endpoints returns the members' client URLs.
func (s *EtcdStore) Endpoints() []string {
	var eps []string
	for _, m := range s.members {
		eps = append(eps, m.endpoint)
	}
	return eps
}

// KillMember SIGKILLs member i.
func (s *EtcdStore) KillMember(i int) error {
	if p := s.members[i].current(); p != nil {
		p.Kill()
	}
	return nil
}

// StopMember stops member i gracefully: SIGTERM, then SIGKILL after memberStopGrace (etcd ends
// its clients' streams before it exits; a second is not always enough).
func (s *EtcdStore) StopMember(i int) error {
	if p := s.members[i].current(); p != nil {
		p.Stop(memberStopGrace)
	}
	return nil
}

// StartMember starts member i again with the same command line and data, and waits for it to
// serve.
func (s *EtcdStore) StartMember(ctx context.Context, i int) error {
	if p := s.members[i].current(); p != nil && !p.Exited() {
		return fmt.Errorf("etcd %s is running", s.members[i].env.Name)
	}
	if err := s.launch(i); err != nil {
		return err
	}
	return s.waitServing(ctx, i)
}

// etcdStatus is the grpc-gateway's JSON of a maintenance StatusResponse (64-bit integers as strings).
type etcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
		RaftTerm string `json:"raft_term"`
	} `json:"header"`
	Leader string `json:"leader"`
}

// MemberStatus asks member i for its maintenance status (POST /v3/maintenance/status through the
// gRPC gateway on its client port, from inside its namespace).
func (s *EtcdStore) MemberStatus(ctx context.Context, i int) (MemberStatus, error) {
	m := s.members[i]
	p := m.current()
	if p == nil || p.Exited() {
		return MemberStatus{}, nil
	}
	st := MemberStatus{Running: true}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.endpoint+"/v3/maintenance/status", strings.NewReader("{}"))
	if err != nil {
		return st, err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return st, fmt.Errorf("lab: etcd %s status: %w", m.env.Name, err)
	}
	defer resp.Body.Close()
	var es etcdStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&es); err != nil {
		return st, fmt.Errorf("lab: etcd %s status (%s): %w", m.env.Name, resp.Status, err)
	}
	st.Serving = es.Leader != "" && es.Leader != "0"
	st.Leader = st.Serving && es.Leader == es.Header.MemberID
	st.Term, _ = strconv.ParseUint(es.Header.RaftTerm, 10, 64)
	return st, nil
}

// Stop stops every member at once: SIGTERM, then SIGKILL after 1s (a graceful stop waits for streams of
// clients that a partition cut off), and removes their data (a WAL alone preallocates 64 MB); the
// logs stay.
func (s *EtcdStore) Stop() error {
	errs := make([]error, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p := m.current(); p != nil {
				p.Stop(time.Second)
			}
			errs[i] = os.RemoveAll(m.dataDir)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Tail returns the end of every member's log.
func (s *EtcdStore) Tail(n int) string {
	var b strings.Builder
	for _, m := range s.members {
		if p := m.current(); p != nil {
			if len(s.members) > 1 {
				fmt.Fprintf(&b, "-- %s --\n", m.env.Name)
			}
			b.WriteString(p.Tail(n))
			b.WriteString("\n")
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// noStore is the "store" of backend vrrp: there is none, the nodes elect among themselves.
type noStore struct{}

func (noStore) Backend() string                       { return "vrrp" }
func (noStore) Start(context.Context, StoreEnv) error { return nil }
func (noStore) Endpoints() []string                   { return nil }
func (noStore) Stop() error                           { return nil }
func (noStore) Tail(int) string                       { return "" }
