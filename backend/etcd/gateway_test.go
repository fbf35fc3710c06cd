package etcd_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// leaseWithKey grants a lease and puts a key under it.
func leaseWithKey(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	g, err := cli.Grant(opCtx(t), 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(opCtx(t), key, "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	return g.ID
}

func keyGone(t *testing.T, cli *clientv3.Client, key string) bool {
	t.Helper()
	resp, err := cli.Get(opCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) == 0
}

// startGatewayServer starts etcd on a fixed client port: the embedded server's gateway dials the
// configured client address, so with port 0 (etcdtest's default) it could not reach its own gRPC.
func startGatewayServer(t *testing.T) *etcdtest.Server {
	t.Helper()
	addr := deadEndpoint(t)
	return etcdtest.Start(t, func(o *etcdtest.Options) { o.ClientURL = "http://" + addr })
}

// deadEndpoint is an address nothing listens on.
func deadEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// RevokeLease ends a lease through the JSON gateway (its keys go at once), moving past an endpoint
// that does not answer; a lease already gone counts as revoked.
func TestRevokeLeaseThroughTheGateway(t *testing.T) {
	srv := startGatewayServer(t)
	admin := adminClient(t, srv)
	id := leaseWithKey(t, admin, "gw/k")
	gc := etcd.GatewayConfig{Endpoints: append([]string{deadEndpoint(t)}, srv.Endpoints()...)}
	if err := etcd.RevokeLease(opCtx(t), gc, int64(id), testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if !keyGone(t, admin, "gw/k") {
		t.Fatal("the lease's key is still there after the revoke")
	}
	if err := etcd.RevokeLease(opCtx(t), gc, int64(id), testLogger(t)); err != nil {
		t.Fatalf("revoking a lease that is gone: %v, want nil", err)
	}
}

// With auth enabled the gateway revoke authenticates first; wrong credentials fail (until ctx is
// done) and leave the lease alone.
func TestRevokeLeaseThroughTheGatewayWithAuth(t *testing.T) {
	srv := startGatewayServer(t)
	admin := adminClient(t, srv)
	ctx := opCtx(t)
	if _, err := admin.UserAdd(ctx, "root", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	id := leaseWithKey(t, admin, "gw/auth")
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Username: "root", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	bad := etcd.GatewayConfig{Endpoints: srv.Endpoints(), Username: "root", Password: "wrong"}
	bctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = etcd.RevokeLease(bctx, bad, int64(id), testLogger(t))
	cancel()
	if err == nil || !strings.Contains(err.Error(), "authenticate") {
		t.Fatalf("revoke with a wrong password = %v, want an authentication error", err)
	}
	if keyGone(t, root, "gw/auth") {
		t.Fatal("the key went with a wrong password")
	}
	good := etcd.GatewayConfig{Endpoints: srv.Endpoints(), Username: "root", Password: "s3cret"}
	if err := etcd.RevokeLease(ctx, good, int64(id), testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if !keyGone(t, root, "gw/auth") {
		t.Fatal("the lease's key is still there after the revoke")
	}
}

// OnLease hears the lease of the election key before the node can be master, and 0 once the
// elector has revoked it on the way out.
func TestOnLeaseNamesTheCandidacy(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := adminClient(t, srv)
	el := newElector(t, srv.Endpoints()[0], "onlease", "a")
	var mu sync.Mutex
	var ids []int64
	el.OnLease(func(id int64) {
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
	})
	r := electiontest.Start(t, "a", candidate(el))
	r.Wait(t, settle, "Master", lastIs(election.Master))
	resp, err := admin.Get(opCtx(t), etcd.ElectionPrefix("onlease")+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election keys %v, %v; want one", resp, err)
	}
	mu.Lock()
	heard := append([]int64(nil), ids...)
	mu.Unlock()
	if len(heard) != 1 || heard[0] != resp.Kvs[0].Lease {
		t.Fatalf("OnLease heard %x, want the election key's lease %x", heard, resp.Kvs[0].Lease)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[1] != 0 {
		t.Fatalf("OnLease heard %x, want the lease then 0 after the revoke", ids)
	}
}
