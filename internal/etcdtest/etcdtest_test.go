package etcdtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestStartServesAndGrantsOneSecondLeases(t *testing.T) {
	s := Start(t)
	cli := client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	l, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if l.TTL != 1 {
		t.Fatalf("granted TTL %ds, want 1s with the fast profile", l.TTL)
	}
}

func TestWithTimeoutsRaisesMinimumTTL(t *testing.T) {
	s := Start(t, WithTimeouts(50, 700))
	cli := client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	if l.TTL != 2 {
		t.Fatalf("granted TTL %ds, want the 2s minimum", l.TTL)
	}
}

func TestRunServesUntilContextDone(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Dir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Logger: zap.New(core)})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancel")
		}
	})

	// Run logs the address it listens on once it serves.
	deadline := time.Now().Add(30 * time.Second)
	var addr string
	for addr == "" {
		for _, e := range logs.FilterMessage("etcd serving").All() {
			addr = e.ContextMap()["listen"].(string)
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before cancel: %v", err)
		case <-time.After(20 * time.Millisecond): // poll the log, bounded by deadline
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not serve within 30s")
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if _, err := cli.Put(pctx, "k", "v"); err != nil {
		t.Fatalf("put via %s: %v", addr, err)
	}

	cancel()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancel")
	}
}

func TestRunRejectsMissingDir(t *testing.T) {
	if err := Run(context.Background(), Options{ClientURL: "http://127.0.0.1:0"}); err == nil {
		t.Fatal("Run without Dir: want error")
	}
}

// Three members started together form one cluster: each reports "etcd serving" and they agree on
// one leader.
func TestRunThreeMemberCluster(t *testing.T) {
	// Ports the kernel picked, released just before the members bind them (the race zktest
	// documents: a port taken in between fails the test with "address already in use").
	var ports []int
	for range 6 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	var cluster, clients []string
	for i := range 3 {
		cluster = append(cluster, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[3+i]))
		clients = append(clients, fmt.Sprintf("http://127.0.0.1:%d", ports[i]))
	}
	var opts []Options
	serving := make(chan string, 3)
	for i := range 3 {
		client := clients[i]
		opts = append(opts, Options{Dir: t.TempDir(), Name: fmt.Sprintf("m%d", i), ClientURL: client,
			PeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[3+i]), InitialCluster: strings.Join(cluster, ","),
			Logger: zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel), zap.Hooks(func(e zapcore.Entry) error {
				if e.Message == "etcd serving" {
					serving <- client
				}
				return nil
			}))})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	for _, o := range opts {
		go func() { done <- Run(ctx, o) }()
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for range 3 {
		select {
		case <-serving:
		case err := <-done:
			done <- err
			t.Fatalf("a member stopped before serving: %v", err)
		case <-deadline.C:
			t.Fatal("the cluster did not serve within 30s")
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: clients, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	leaders := map[uint64]bool{}
	for _, ep := range clients {
		st, err := cli.Status(rctx, ep)
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		t.Errorf("members name %d different leaders: %v", len(leaders), leaders)
	}
}

func TestClusterNeedsFixedPeerPort(t *testing.T) {
	err := Run(context.Background(), Options{Dir: t.TempDir(), Name: "a", ClientURL: "http://127.0.0.1:0",
		InitialCluster: "a=http://127.0.0.1:0,b=http://127.0.0.1:2"})
	if err == nil || !strings.Contains(err.Error(), "fixed port") {
		t.Fatalf("Run = %v, want a fixed-port error", err)
	}
}
