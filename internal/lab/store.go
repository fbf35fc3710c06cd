package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// StoreEnv is what a Store gets to start in: its own namespace (reachable from every node at Addr on
// the lab bridge), a directory for data and logs, and the lab binary (for `hacoord-lab etcd`).
type StoreEnv struct {
	NS     *netnstest.NS
	Addr   netip.Addr
	Dir    string
	LabBin string
	// Wrap turns a command line into one that runs inside NS (`ip netns exec NS ...`), for runners
	// such as zktest.Run that take a wrapper.
	Wrap func(argv []string) []string
	// Dial dials from inside NS, for readiness probes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// A Store is the coordination service the daemons elect through, run inside the lab's store
// namespace. Start blocks until the store serves (or ctx is done); Stop is idempotent. EtcdStore
// (backend "etcd") and ZKStore (backend "zk") implement it.
type Store interface {
	// Backend is the daemon's --backend value for this store.
	Backend() string
	Start(ctx context.Context, env StoreEnv) error
	// Endpoints is the daemon's --endpoints value list; valid after Start.
	Endpoints() []string
	Stop() error
	// Tail returns the last n lines of the store's log, for failure reports.
	Tail(n int) string
}

// EtcdStore runs `hacoord-lab etcd` (a single-member embedded etcd, fast profile: any TTL from 1s)
// in the store namespace, listening on Addr:2379.
type EtcdStore struct {
	proc     *Proc
	endpoint string
	dataDir  string
}

// Backend returns "etcd".
func (s *EtcdStore) Backend() string { return "etcd" }

// Start runs the server and waits for its "etcd serving" log line (printed once it is ready).
func (s *EtcdStore) Start(ctx context.Context, env StoreEnv) error {
	s.endpoint = "http://" + netip.AddrPortFrom(env.Addr, 2379).String()
	dir := filepath.Join(env.Dir, "etcd-data")
	s.dataDir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lab: etcd dir: %w", err)
	}
	p, err := startProc(env.NS, "store/etcd", filepath.Join(env.Dir, "etcd.log"), env.LabBin,
		"etcd", "--listen-client", s.endpoint, "--dir", dir)
	if err != nil {
		return err
	}
	s.proc = p
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.WaitLine(wctx, "etcd serving"); err != nil {
		p.Kill()
		return fmt.Errorf("lab: etcd not ready: %w\n%s", err, p.Tail(20))
	}
	return nil
}

// Endpoints returns the client URL.
func (s *EtcdStore) Endpoints() []string { return []string{s.endpoint} }

// Stop stops the server: SIGTERM, then SIGKILL after 1s (a graceful stop waits for streams of
// clients that a partition cut off), and removes its data (its WAL alone preallocates 128 MB); the
// log stays.
func (s *EtcdStore) Stop() error {
	if s.proc != nil {
		s.proc.Stop(time.Second)
	}
	if s.dataDir != "" {
		return os.RemoveAll(s.dataDir)
	}
	return nil
}

// Tail returns the end of the server's log.
func (s *EtcdStore) Tail(n int) string {
	if s.proc == nil {
		return ""
	}
	return s.proc.Tail(n)
}

// noStore is the "store" of backend vrrp: there is none, the nodes elect among themselves.
type noStore struct{}

func (noStore) Backend() string                       { return "vrrp" }
func (noStore) Start(context.Context, StoreEnv) error { return nil }
func (noStore) Endpoints() []string                   { return nil }
func (noStore) Stop() error                           { return nil }
func (noStore) Tail(int) string                       { return "" }
