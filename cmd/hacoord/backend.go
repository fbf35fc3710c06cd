package main

import (
	"crypto/tls"
	"net/netip"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// newElector builds the Elector of the configured backend. rec is the master record template
// (address and VIPs). It opens nothing: connecting is the Elector's Run.
func newElector(s Settings, rec election.Record, log *zap.Logger) (election.Elector, error) {
	switch s.Backend {
	case "etcd":
		c, err := etcdConfig(s, rec)
		if err != nil {
			return nil, err
		}
		return etcd.New(c, log)
	case "zk":
		return zk.New(zkConfig(s, rec), log.Named("zk"))
	case "vrrp":
		c, err := vrrpConfig(s)
		if err != nil {
			return nil, err
		}
		return vrrp.New(c, log)
	}
	return nil, configErrorf("--backend %q: want etcd, zk or vrrp", s.Backend)
}

// newObserver builds the Observer of the configured backend, for hacoord watch.
func newObserver(s Settings, log *zap.Logger) (election.Observer, error) {
	switch s.Backend {
	case "etcd":
		c, err := etcdConfig(s, election.Record{})
		if err != nil {
			return nil, err
		}
		return etcd.NewObserver(c, log)
	case "zk":
		return zk.NewObserver(zkConfig(s, election.Record{}), log.Named("zk"))
	}
	return nil, configErrorf("--backend %q: watch needs etcd or zk (VRRP publishes no master record)", s.Backend)
}

// checkBackendConfig validates the settings the way the backend's constructor will, without
// connecting or opening a socket.
func checkBackendConfig(s Settings) error {
	vips, err := s.vipPrefixes()
	if err != nil {
		return err
	}
	rec := election.Record{Group: s.Group, Node: s.Name, VIPs: vips}
	switch s.Backend {
	case "etcd":
		c, err := etcdConfig(s, rec)
		if err != nil {
			return err
		}
		return c.Validate()
	case "zk":
		c := zkConfig(s, rec)
		_, err := zk.New(c, nil) // validates; starts nothing
		return err
	case "vrrp":
		c, err := vrrpConfig(s)
		if err != nil {
			return err
		}
		return c.Validate()
	}
	return configErrorf("--backend %q: want etcd, zk or vrrp", s.Backend)
}

func etcdConfig(s Settings, rec election.Record) (etcd.Config, error) {
	c := etcd.DefaultConfig()
	c.Endpoints = s.Endpoints
	c.Group, c.Name = s.Group, s.Name
	c.Record = rec
	c.TTL = time.Duration(s.LeaseTTL)
	c.Margin = time.Duration(s.FenceMargin)
	c.Username, c.Password = s.Etcd.User, s.Etcd.Password
	tc, err := etcdTLS(s)
	if err != nil {
		return etcd.Config{}, err
	}
	c.TLS = tc
	return c, nil
}

// etcdTLS builds the client TLS configuration from --cacert/--cert/--key, as etcdctl does; nil when
// none is given (an https:// endpoint then uses the system roots).
func etcdTLS(s Settings) (*tls.Config, error) {
	e := s.Etcd
	if e.CACert == "" && e.Cert == "" && e.Key == "" {
		return nil, nil
	}
	info := transport.TLSInfo{CertFile: e.Cert, KeyFile: e.Key, TrustedCAFile: e.CACert}
	tc, err := info.ClientConfig()
	if err != nil {
		return nil, configErrorf("--cacert/--cert/--key: %v", err)
	}
	return tc, nil
}

func zkConfig(s Settings, rec election.Record) zk.Config {
	c := zk.DefaultConfig()
	c.Servers = s.Endpoints
	c.SessionTimeout = time.Duration(s.ZK.SessionTimeout)
	c.ConnectTimeout = c.SessionTimeout
	c.Auth = s.ZK.Auth
	c.Group, c.Name = s.Group, s.Name
	c.Record = rec
	c.Margin = time.Duration(s.FenceMargin)
	return c
}

func vrrpConfig(s Settings) (vrrp.Config, error) {
	c := vrrp.DefaultConfig()
	c.Interface = s.Interface
	c.VRID = s.VRRP.VRID
	c.Priority = s.VRRP.Priority
	c.AdvertInt = time.Duration(s.VRRP.AdvertInt)
	c.Preempt = !s.VRRP.NoPreempt
	c.PreemptDelay = time.Duration(s.VRRP.PreemptDelay)
	c.Version = s.VRRP.Version
	c.AuthPass = s.VRRP.AuthPass
	c.Group, c.Node = s.Group, s.Name
	vips, err := s.vipPrefixes()
	if err != nil {
		return vrrp.Config{}, err
	}
	c.VIPs = vips
	for _, p := range s.VRRP.UnicastPeers {
		a, err := netip.ParseAddr(p)
		if err != nil {
			return vrrp.Config{}, configErrorf("--unicast-peer %q: not an IP address", p)
		}
		c.UnicastPeers = append(c.UnicastPeers, a)
	}
	if err := c.Validate(); err != nil {
		return vrrp.Config{}, configError{err}
	}
	return c, nil
}
