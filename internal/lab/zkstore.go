package lab

import (
	"context"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/hacoord/hacoord/internal/zktest"
)

// ZKPort is where the lab's ZooKeeper listens.
const ZKPort = 2181

// ZKStore runs a single ZooKeeper server (internal/zktest, Debian's zookeeper jars and java) in the
// store namespace, listening on Addr:2181. Backend "zk".
type ZKStore struct {
	// TickTime is the server's tick; 0 takes zktest.FastTick (session timeouts from 2 ticks).
	TickTime time.Duration
	srv      *zktest.Server
	addr     netip.AddrPort
}

// Backend returns "zk".
func (s *ZKStore) Backend() string { return "zk" }

// Start launches the server and waits until it answers "ruok" from inside the store namespace.
func (s *ZKStore) Start(ctx context.Context, env StoreEnv) error {
	s.addr = netip.AddrPortFrom(env.Addr, ZKPort)
	srv, err := zktest.Launch(ctx, zktest.Options{
		Dir:        filepath.Join(env.Dir, "zookeeper"),
		ClientAddr: s.addr,
		TickTime:   s.TickTime,
		Wrap:       zktest.WrapArgv(env.Wrap),
		Dial:       env.Dial,
	})
	if err != nil {
		return err
	}
	s.srv = srv
	return nil
}

// Endpoints returns host:port of the server.
func (s *ZKStore) Endpoints() []string { return []string{s.addr.String()} }

// Stop kills the server at once (the lab throws its data away). Idempotent.
func (s *ZKStore) Stop() error {
	if s.srv != nil {
		s.srv.Kill()
	}
	return nil
}

// Tail returns the end of the server's log.
func (s *ZKStore) Tail(n int) string {
	if s.srv == nil {
		return ""
	}
	return s.srv.Tail(n)
}
