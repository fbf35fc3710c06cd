package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/etcdtest"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// What the fence guard does with the candidacy the daemon named (guardCandidacy, as relayCandidacy
// encodes it): revoke the etcd lease through the gateway, close the ZooKeeper session. The guard
// process itself, killed daemon and all, runs in the lab (internal/lab/kill_test.go).
func TestEndCandidacy(t *testing.T) {
	text := func(c guardCandidacy) string {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("etcd", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0") // a fixed port: the gateway dials the configured one
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		srv := etcdtest.Start(t, func(o *etcdtest.Options) { o.ClientURL = "http://" + addr })
		cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		g, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, "/hacoord/g/election/x", "dead", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
		c := guardCandidacy{Store: backendEtcd, Endpoints: []string{"http://" + addr}, Within: time.Second,
			Lease: strconv.FormatInt(int64(g.ID), 16)}
		if err := endCandidacy(ctx, text(c), zaptest.NewLogger(t)); err != nil {
			t.Fatal(err)
		}
		if ttl, err := cli.TimeToLive(ctx, g.ID); err != nil || ttl.TTL != -1 {
			t.Fatalf("lease after endCandidacy: %v, %v; want gone", ttl, err)
		}
	})

	t.Run("zk", func(t *testing.T) {
		srv := zktest.Start(t, zktest.Options{})
		px, err := faultnet.New(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer px.Close()
		cfg := zk.LocalConfig()
		cfg.Servers, cfg.Group, cfg.Name = []string{px.Addr()}, "g", "dead"
		e, err := zk.New(cfg, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		sessions := make(chan guardCandidacy, 4)
		e.OnSession(func(id int64, passwd []byte) {
			sessions <- guardCandidacy{Store: backendZK, Endpoints: []string{srv.Addr()}, Within: time.Second,
				Session: strconv.FormatInt(id, 16), Passwd: hex.EncodeToString(passwd)}
		})
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		out := election.NewOutbox()
		done := make(chan error, 1)
		go func() { done <- e.Run(rctx, out) }()
		defer func() { stop(); <-done }()
		for s, _, err := out.Next(ctx); s.Role != election.Master; s, _, err = out.Next(ctx) {
			if err != nil {
				t.Fatal(err)
			}
		}
		px.Block() // the daemon is dead: it cannot take its session back
		c := <-sessions
		if err := endCandidacy(ctx, text(c), zaptest.NewLogger(t)); err != nil {
			t.Fatal(err)
		}
		// The session is closed: closing it again finds it gone.
		id, _ := strconv.ParseUint(c.Session, 16, 64)
		pw, _ := hex.DecodeString(c.Passwd)
		if err := zk.CloseSession(ctx, []string{srv.Addr()}, int64(id), pw, 0); err == nil {
			t.Fatal("the session is still there after endCandidacy")
		}
		if err := endCandidacy(ctx, text(c), zaptest.NewLogger(t)); err != nil {
			t.Fatalf("ending a candidacy whose session is gone: %v, want nil", err)
		}
		px.Unblock()
	})
}
