package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hacoord/hacoord/election"
)

// The stand-in is NOT hacoord: a minimal etcd-only daemon with hacoord's command line, so the lab's
// plumbing (topology, observers, scenarios) can be tested before and independently of the real
// daemon. It campaigns with its own lease, keeps it alive with KeepAliveOnce every TTL/4, and holds
// the VIP until ack-time + TTL - TTL/10; the VIP's kernel lifetime is that deadline plus 1s.
func newStandinCommand(stderr io.Writer) *cobra.Command {
	var (
		endpoints          []string
		backend, name, ifc string
		vipStr, group      string
		ttl                time.Duration
		logFormat          string
	)
	cmd := &cobra.Command{
		Use:    "standin",
		Short:  "A minimal etcd-only stand-in for the hacoord daemon (lab plumbing tests only)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if backend != "etcd" {
				return fmt.Errorf("standin: backend %q: only etcd", backend)
			}
			vip, err := netip.ParsePrefix(vipStr)
			if err != nil {
				return err
			}
			ec := zap.NewProductionEncoderConfig()
			ec.TimeKey = "ts"
			ec.EncodeTime = zapcore.ISO8601TimeEncoder
			var enc zapcore.Encoder = zapcore.NewJSONEncoder(ec)
			if logFormat != "json" {
				enc = zapcore.NewConsoleEncoder(ec)
			}
			log := zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(stderr)), zap.DebugLevel)).With(zap.String("node", name))
			s := &standin{log: log, name: name, ifname: ifc, vip: vip, ttl: ttl, pfx: "/hacoord/" + group + "/election/"}
			return s.run(cmd.Context(), endpoints)
		},
	}
	f := cmd.Flags()
	f.StringVar(&backend, "backend", "etcd", "")
	f.StringSliceVar(&endpoints, "endpoints", nil, "")
	f.StringVar(&name, "name", "", "")
	f.StringVar(&group, "group", "default", "")
	f.StringVar(&ifc, "interface", "eth0", "")
	f.StringVar(&vipStr, "vip", "", "")
	f.DurationVar(&ttl, "lease-ttl", 2*time.Second, "")
	f.StringVar(&logFormat, "log-format", "json", "")
	return cmd
}

type standin struct {
	log    *zap.Logger
	name   string
	ifname string
	vip    netip.Prefix
	ttl    time.Duration
	pfx    string
	link   netlink.Link
	bound  bool
}

func (s *standin) run(ctx context.Context, endpoints []string) error {
	link, err := netlink.LinkByName(s.ifname)
	if err != nil {
		return err
	}
	s.link = link
	s.release() // leftover from a kill
	s.log.Info("starting")
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	for ctx.Err() == nil {
		err := s.term(ctx, cli)
		s.release()
		if ctx.Err() != nil {
			break
		}
		s.log.Info("backup", zap.Error(err))
		t := time.NewTimer(100 * time.Millisecond) // retry pacing, not synchronisation
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	s.log.Info("stopped: VIPs released and candidacy resigned")
	return nil
}

// term campaigns once and holds mastership while the lease is acknowledged.
func (s *standin) term(ctx context.Context, cli *clientv3.Client) error {
	secs := int64(max(1, s.ttl/time.Second))
	gctx, cancel := context.WithTimeout(ctx, s.ttl)
	lease, err := cli.Grant(gctx, secs)
	cancel()
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	granted := time.Now()
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID))
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
		sess.Orphan()
	}()
	el := concurrency.NewElection(sess, s.pfx)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // stop campaigning when the lease dies
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	if err := el.Campaign(cctx, s.name); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	// Our deadline: from the last acknowledged keepalive (or the grant) on, TTL minus a margin.
	deadline := granted.Add(s.ttl - s.ttl/10)
	if ka, err := cli.KeepAliveOnce(cctx, lease.ID); err == nil {
		_ = ka
		deadline = time.Now().Add(s.ttl - s.ttl/10)
	}
	if !time.Now().Before(deadline) {
		return errors.New("elected too late")
	}
	if err := s.bind(deadline); err != nil {
		return err
	}
	rec := election.Record{Group: "default", Node: s.name, VIPs: []netip.Prefix{s.vip}, Term: uint64(el.Rev()), Since: time.Now()}
	if _, err := cli.Put(cctx, "/hacoord/default/leader", string(rec.Marshal()), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("publish record: %w", err)
	}
	s.log.Info("master", zap.Time("valid-until", deadline))
	// Keepalives run on their own goroutine so that a blocked call never delays the fence timer.
	acks := make(chan time.Time, 1)
	go func() {
		tick := time.NewTicker(s.ttl / 4)
		defer tick.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-tick.C:
			}
			sent := time.Now()
			kctx, c := context.WithTimeout(cctx, s.ttl)
			_, err := cli.KeepAliveOnce(kctx, lease.ID)
			c()
			if err == nil {
				select {
				case acks <- sent:
				case <-cctx.Done():
					return
				}
			}
		}
	}()
	for {
		fence := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			fence.Stop()
			s.release()
			rctx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = el.Resign(rctx)
			c()
			return ctx.Err()
		case <-fence.C:
			s.release() // before the deferred revoke, which may block
			return errors.New("self-fenced: lease deadline passed")
		case sent := <-acks:
			fence.Stop()
			if d := sent.Add(s.ttl - s.ttl/10); d.After(deadline) {
				deadline = d
			}
			if err := s.bind(deadline); err != nil {
				return err
			}
		}
	}
}

func (s *standin) addr(deadline time.Time) *netlink.Addr {
	lft := int((time.Until(deadline) + time.Second + time.Second - 1) / time.Second)
	return &netlink.Addr{IPNet: &net.IPNet{IP: s.vip.Addr().AsSlice(), Mask: net.CIDRMask(s.vip.Bits(), 32)},
		ValidLft: lft, PreferedLft: lft}
}

func (s *standin) bind(deadline time.Time) error {
	if err := netlink.AddrReplace(s.link, s.addr(deadline)); err != nil {
		return fmt.Errorf("bind %s: %w", s.vip, err)
	}
	if !s.bound {
		s.bound = true
		s.announce()
	}
	return nil
}

func (s *standin) release() {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: s.vip.Addr().AsSlice(), Mask: net.CIDRMask(s.vip.Bits(), 32)}}
	if err := netlink.AddrDel(s.link, a); err == nil {
		s.log.Info("released", zap.Stringer("vip", s.vip))
	}
	s.bound = false
}

func (s *standin) announce() {
	ifi, err := net.InterfaceByName(s.ifname)
	if err != nil {
		s.log.Warn("announce", zap.Error(err))
		return
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		s.log.Warn("announce", zap.Error(err))
		return
	}
	defer c.Close()
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, s.vip.Addr(), net.HardwareAddr{0, 0, 0, 0, 0, 0}, s.vip.Addr())
	if err == nil {
		err = c.WriteTo(p, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	if err != nil {
		s.log.Warn("announce", zap.Error(err))
	}
}
