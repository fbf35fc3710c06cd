package etcd_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/faultnet"
)

// testTTL is the lease TTL of the fast profile: the smallest etcd grants with etcdtest's defaults.
const testTTL = time.Second

// testConfig returns the fast test profile: TTL 1s, Margin 100ms, keepalives every 250ms.
func testConfig(endpoint, group, name string) etcd.Config {
	cfg := etcd.DefaultConfig()
	cfg.Endpoints = []string{endpoint}
	cfg.DialTimeout = time.Second
	cfg.Group = group
	cfg.Name = name
	cfg.TTL = testTTL
	cfg.RetryMin = 50 * time.Millisecond
	cfg.RetryMax = 500 * time.Millisecond
	return cfg
}

func testLogger(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

func adminClient(t *testing.T, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func proxy(t *testing.T, srv *etcdtest.Server) *faultnet.Proxy {
	t.Helper()
	p := faultnet.Start(t, srv.Endpoints()[0])
	return p
}

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// revokeCandidate revokes, from outside, the lease of name's election key in group.
func revokeCandidate(t *testing.T, admin *clientv3.Client, group, name string) {
	t.Helper()
	ctx := opCtx(t)
	resp, err := admin.Get(ctx, etcd.ElectionPrefix(group)+"/", clientv3.WithPrefix())
	if err != nil {
		t.Errorf("list candidates: %v", err)
		return
	}
	for _, kv := range resp.Kvs {
		if isCandidate(kv.Value, name) {
			if _, err := admin.Revoke(ctx, clientv3.LeaseID(kv.Lease)); err != nil {
				t.Errorf("revoke %s's lease: %v", name, err)
			}
			return
		}
	}
	t.Errorf("no election key of %s to revoke", name)
}

type harness struct {
	srv   *etcdtest.Server
	admin *clientv3.Client
}

func (h *harness) TTL() time.Duration { return testTTL }

func (h *harness) NewCandidate(t *testing.T, group, name string) electiontest.Candidate {
	p := proxy(t, h.srv)
	el, err := etcd.New(testConfig(p.Addr(), group, name), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	return electiontest.Candidate{
		Elector: el,
		Kill:    func() { revokeCandidate(t, h.admin, group, name) },
		Partition: func(cut bool) {
			if cut {
				p.Block()
			} else {
				p.Unblock()
			}
		},
	}
}

func (h *harness) NewObserver(t *testing.T, group string) election.Observer {
	o, err := etcd.NewObserver(testConfig(h.srv.Endpoints()[0], group, ""), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	electiontest.Run(t, &harness{srv: srv, admin: adminClient(t, srv)})
}
