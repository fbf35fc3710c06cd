package main

import (
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
)

// storeClients are a daemon's store clients: one etcd client per distinct set of endpoints and
// credentials, which every etcd instance on them shares (each keeps its own lease and election).
// ZooKeeper instances share nothing: a ZooKeeper session is the candidacy itself (its ephemeral
// znodes end with it), so a shared session would let one instance's end (a resign, a fence
// guard closing the dead daemon's session once that instance's VIPs are gone) end every other
// instance's candidacy, before their VIPs are gone (docs/config.md, "Store connections").
type storeClients struct {
	log  *zap.Logger
	mu   sync.Mutex
	etcd map[string]*etcd.Client
}

func newStoreClients(log *zap.Logger) *storeClients {
	return &storeClients{log: log, etcd: map[string]*etcd.Client{}}
}

// etcdFor returns the client that instance ip shares with the others on its endpoints, opening
// it the first time (it does not wait for a connection).
func (s *storeClients) etcdFor(ip *instancePlan) (*etcd.Client, error) {
	c := ip.etcd
	key := strings.Join(c.Endpoints, ",") + "\x00" + c.Username + "\x00" + c.Password
	s.mu.Lock()
	defer s.mu.Unlock()
	if cli := s.etcd[key]; cli != nil {
		return cli, nil
	}
	cli, err := etcd.Dial(c, s.log.Named("etcd"))
	if err != nil {
		return nil, err
	}
	s.etcd[key] = cli
	return cli, nil
}

// close closes every client; the daemon calls it once every instance has stopped.
func (s *storeClients) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, cli := range s.etcd {
		cli.Close()
		delete(s.etcd, k)
	}
}
