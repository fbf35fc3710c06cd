package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/internal/netnstest"
)

// Group is the daemons' group (hacoord's default): the master record is under /hacoord/<Group>/leader.
const Group = "default"

// ErrNoRecord is returned by LeaderRecord when no master record is published.
var ErrNoRecord = errors.New("lab: no master record")

// DialContext dials addr from inside the client namespace (the socket is created on a thread in
// it), for clients the lab runs in its own process, such as the etcd client of LeaderRecord.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn(ctx, l.Client, network, addr)
}

// dialIn dials addr with a socket created inside ns.
func dialIn(ctx context.Context, ns *netnstest.NS, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// LeaderRecord reads the master record the daemons publish (etcd stores only), through an etcd
// client whose connections are made from the client namespace.
func (l *Lab) LeaderRecord(ctx context.Context) (election.Record, error) {
	if l.Store.Backend() != "etcd" {
		return election.Record{}, fmt.Errorf("lab: LeaderRecord: backend %s: only etcd", l.Store.Backend())
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   l.Store.Endpoints(),
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return l.DialContext(ctx, "tcp", addr)
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return election.Record{}, fmt.Errorf("lab: etcd client: %w", err)
	}
	defer cli.Close()
	key := "/hacoord/" + Group + "/leader"
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return election.Record{}, fmt.Errorf("lab: get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return election.Record{}, fmt.Errorf("%w under %s", ErrNoRecord, key)
	}
	return election.ParseRecord(resp.Kvs[0].Value)
}
