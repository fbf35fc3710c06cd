package lab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/internal/zktest"
)

// ZKPort is where the lab's ZooKeeper servers listen for clients.
const ZKPort = 2181

// ZKStore runs ZooKeeper (internal/zktest, Debian's zookeeper jars and java) in the store
// namespaces, each server listening on its Addr:2181: a standalone server for a store of one
// member, else an ensemble with one server per member (quorum port 2888, election port 3888) and
// zktest's ensemble timing: tickTime 100ms, initLimit 10 ticks, syncLimit 5 ticks, so that a dead
// or cut-off leader is replaced in well under a second and a 2s session survives it (the zktest
// package comment gives the reasons). Backend "zk".
type ZKStore struct {
	// TickTime is the servers' tick; 0 takes zktest.FastTick (session timeouts from 2 ticks).
	TickTime time.Duration

	mu      sync.Mutex
	servers []*zktest.Server
	addrs   []netip.AddrPort
}

// Backend returns "zk".
func (s *ZKStore) Backend() string { return "zk" }

// Start launches every server at once and waits until each answers: "ruok" for a standalone
// server, and for an ensemble "srvr" saying it is a leader or a follower.
func (s *ZKStore) Start(ctx context.Context, env StoreEnv) error {
	var peers []zktest.Peer
	for i, m := range env.Members {
		s.addrs = append(s.addrs, netip.AddrPortFrom(m.Addr, ZKPort))
		peers = append(peers, zktest.Peer{ID: i + 1, Addr: m.Addr})
	}
	s.servers = make([]*zktest.Server, len(env.Members))
	var g errgroup.Group
	for i, m := range env.Members {
		o := zktest.Options{
			Dir:        filepath.Join(env.Dir, "zookeeper"),
			ClientAddr: s.addrs[i],
			TickTime:   s.TickTime,
			Wrap:       zktest.WrapArgv(m.Wrap),
			Dial:       m.Dial,
		}
		if len(env.Members) > 1 {
			o.Dir = filepath.Join(env.Dir, "zookeeper-"+m.Name)
			o.Ensemble, o.MyID = peers, i+1
		}
		g.Go(func() error {
			srv, err := zktest.Launch(ctx, o)
			if err != nil {
				return fmt.Errorf("lab: zookeeper %s: %w", m.Name, err)
			}
			s.mu.Lock()
			s.servers[i] = srv
			s.mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(env.Members) == 1 {
		return nil
	}
	for i := range s.servers {
		if err := s.waitServing(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func (s *ZKStore) server(i int) *zktest.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i >= len(s.servers) {
		return nil
	}
	return s.servers[i]
}

// waitServing waits (at most 30s) until server i serves.
func (s *ZKStore) waitServing(ctx context.Context, i int) error {
	srv := s.server(i)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := srv.WaitServing(wctx); err != nil {
		return fmt.Errorf("lab: %w\n%s", err, srv.Tail(20))
	}
	return nil
}

// Endpoints returns host:port of every server.
func (s *ZKStore) Endpoints() []string {
	var eps []string
	for _, a := range s.addrs {
		eps = append(eps, a.String())
	}
	return eps
}

// KillMember SIGKILLs server i.
func (s *ZKStore) KillMember(i int) error {
	s.server(i).Kill()
	return nil
}

// StopMember stops server i (SIGTERM, SIGKILL after 5s).
func (s *ZKStore) StopMember(i int) error {
	s.server(i).Stop()
	return nil
}

// StartMember starts server i again on its data directory and waits until it serves.
func (s *ZKStore) StartMember(ctx context.Context, i int) error {
	srv := s.server(i)
	if srv.Running() {
		return fmt.Errorf("zookeeper on %s is running", srv.Addr())
	}
	if err := srv.Restart(ctx); err != nil {
		return err
	}
	return s.waitServing(ctx, i)
}

// MemberStatus asks server i "srvr". A standalone server counts as the leader.
func (s *ZKStore) MemberStatus(ctx context.Context, i int) (MemberStatus, error) {
	srv := s.server(i)
	if srv == nil || !srv.Running() {
		return MemberStatus{}, nil
	}
	st, err := srv.Status(ctx)
	if err != nil {
		return MemberStatus{Running: true}, err
	}
	return MemberStatus{Running: true, Serving: st.Serving(), Leader: st.Mode == "leader" || st.Mode == "standalone",
		Term: uint64(st.Epoch())}, nil
}

// Stop kills every server at once (the lab throws their data away). Idempotent.
func (s *ZKStore) Stop() error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range servers {
		if srv != nil {
			wg.Add(1)
			go func() { defer wg.Done(); srv.Kill() }()
		}
	}
	wg.Wait()
	return nil
}

// Tail returns the end of every server's log.
func (s *ZKStore) Tail(n int) string {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	var parts []string
	for i, srv := range servers {
		if srv == nil {
			continue
		}
		t := srv.Tail(n)
		if len(servers) > 1 {
			t = fmt.Sprintf("-- server %d (%s) --\n%s", i+1, srv.Addr(), t)
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, "\n")
}
