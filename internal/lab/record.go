package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

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

// LeaderRecord reads the master record the daemons publish, the way a client would: it runs
// `hacoord watch --once` in the client namespace.
func (l *Lab) LeaderRecord(ctx context.Context) (election.Record, error) {
	cmd := l.Client.Command(ctx, l.opts.HacoordBin, "watch", "--once", "--backend", l.Store.Backend(),
		"--endpoints", strings.Join(l.Store.Endpoints(), ","), "--group", Group)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return election.Record{}, fmt.Errorf("lab: hacoord watch --once: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	out = bytes.TrimSpace(out)
	if string(out) == "{}" {
		return election.Record{}, fmt.Errorf("%w under /hacoord/%s/leader", ErrNoRecord, Group)
	}
	return election.ParseRecord(out)
}
