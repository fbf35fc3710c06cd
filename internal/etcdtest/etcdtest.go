// Package etcdtest runs etcd in-process (go.etcd.io/etcd/server/v3/embed): Start for tests (a
// single member, temporary directory, loopback, ports picked by the kernel, closed in t.Cleanup) and
// Run for the lab process that serves etcd inside a network namespace (cmd/hacoord-lab etcd), alone
// or as one member of a cluster (Options.InitialCluster).
//
// # Clusters
//
// A member of a cluster is named (Options.Name), listens for peers on Options.PeerURL and is told
// the whole membership up front (Options.InitialCluster, "name=peerURL,..."), as etcd's
// --initial-cluster. A member restarted on the same data directory rejoins with the membership
// recorded in its WAL; the initial cluster is then ignored. Run reports "etcd serving" only once the
// member has published itself through raft, that is, once the cluster has a quorum and a leader:
// start the members of a new cluster (or two members of a cluster that lost its quorum) at the same
// time, not one after the other.
//
// # Lease TTLs
//
// etcd grants a lease max(requested TTL, minimum TTL), where the minimum is
// ceil(1.5 * election timeout) rounded up to whole seconds
// (etcdserver: minTTL = (3*ElectionTicks/2) * heartbeat). The fast profile used by default
// (heartbeat FastTickMs, election timeout FastElectionMs) gives a minimum of 1s, so every whole-second
// TTL from 1s up is granted as requested. WithTimeouts(50, 700) gives a minimum of 2s
// (1.05s rounded up), which tests use to provoke a granted TTL above the requested one.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Fast profile: etcd requires ElectionMs >= 5*TickMs; these give a minimum lease TTL of 1s.
const (
	FastTickMs     = 20
	FastElectionMs = 200
)

// etcd's own defaults (--heartbeat-interval, --election-timeout), which the lab's clusters run with:
// a follower starts an election 1-2s (randomised in [ElectionMs, 2*ElectionMs)) after its leader's
// last heartbeat, and the minimum lease TTL is 2s (1.5s rounded up).
const (
	DefaultTickMs     = 100
	DefaultElectionMs = 1000
)

// readyTimeout bounds how long Start and Run wait for the server to become ready.
const readyTimeout = 30 * time.Second

// Options configures Run.
type Options struct {
	// Dir is the data directory (required). It is created if missing.
	Dir string
	// Name is the member name; default "hacoord-lab".
	Name string
	// ClientURL is the URL clients reach the server at, and that it listens on, for example
	// http://10.0.0.1:2379 (required). Port 0 asks the kernel for a free port.
	ClientURL string
	// PeerURL is the URL this member listens on and advertises to its peers; default
	// http://127.0.0.1:0 (a single member: no peers). A member of a cluster needs a fixed port.
	PeerURL string
	// InitialCluster is the membership of a new cluster, "name=peerURL,..." (etcd's
	// --initial-cluster), naming this member with its PeerURL; empty: this member alone.
	InitialCluster string
	// InitialClusterState is "new" (default: the members start together) or "existing" (a member
	// added to a running cluster).
	InitialClusterState string
	// Logger receives etcd's logs; nil discards them.
	Logger *zap.Logger
	// TickMs and ElectionMs are the heartbeat interval and election timeout; 0 takes the fast
	// profile (FastTickMs, FastElectionMs): minimum lease TTL 1s.
	TickMs, ElectionMs uint
	// ClientTLS, when it names a certificate, serves clients over TLS (ClientURL https://); see
	// NewPKI and WithClientTLS.
	ClientTLS transport.TLSInfo
}

func (o Options) config() (*embed.Config, error) {
	if o.Dir == "" {
		return nil, errors.New("etcdtest: options: Dir is required")
	}
	if o.ClientURL == "" {
		return nil, errors.New("etcdtest: options: ClientURL is required")
	}
	if o.Name == "" {
		o.Name = "hacoord-lab"
	}
	if o.PeerURL == "" {
		o.PeerURL = "http://127.0.0.1:0"
	}
	if o.TickMs == 0 {
		o.TickMs = FastTickMs
	}
	if o.ElectionMs == 0 {
		o.ElectionMs = FastElectionMs
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	cu, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client URL %q: %w", o.ClientURL, err)
	}
	pu, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: peer URL %q: %w", o.PeerURL, err)
	}

	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.Dir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if o.InitialCluster != "" {
		if pu.Port() == "" || pu.Port() == "0" {
			return nil, fmt.Errorf("etcdtest: member %s of cluster %q: peer URL %q needs a fixed port", o.Name, o.InitialCluster, o.PeerURL)
		}
		cfg.InitialCluster = o.InitialCluster
	}
	switch o.InitialClusterState {
	case "", embed.ClusterStateFlagNew:
		cfg.ClusterState = embed.ClusterStateFlagNew
	case embed.ClusterStateFlagExisting:
		cfg.ClusterState = embed.ClusterStateFlagExisting
	default:
		return nil, fmt.Errorf("etcdtest: initial cluster state %q: want %s or %s", o.InitialClusterState,
			embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	}
	cfg.TickMs = o.TickMs
	cfg.ClientTLSInfo = o.ClientTLS
	cfg.ElectionMs = o.ElectionMs
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(o.Logger)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true // test and lab data is thrown away
	cfg.ListenMetricsUrls = nil
	return cfg, nil
}

// start starts etcd and waits, at most until ctx is done, for it to serve.
func start(ctx context.Context, o Options) (*embed.Etcd, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start etcd in %s: %w", o.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdtest: etcd in %s failed while starting: %w", o.Dir, err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("etcdtest: etcd in %s not ready: %w", o.Dir, context.Cause(ctx))
	}
}

// Run serves etcd (a single member, or one member of the cluster Options.InitialCluster names) until ctx is done, then closes it and returns nil. It returns an
// error when the server cannot start (within 30s) or fails while serving. Only for the lab: the data
// is written without fsync.
func Run(ctx context.Context, o Options) error {
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	e, err := start(rctx, o)
	cancel()
	if err != nil {
		return err
	}
	defer e.Close()
	if o.Logger != nil {
		o.Logger.Info("etcd serving", zap.String("listen", e.Clients[0].Addr().String()))
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcdtest: etcd in %s: %w", o.Dir, err)
	}
}

// Server is an etcd started by Start. It is closed in t.Cleanup.
type Server struct {
	e         *embed.Etcd
	endpoints []string
	once      sync.Once
}

// Option adjusts Start.
type Option func(*Options)

// WithTimeouts sets the heartbeat interval and election timeout (milliseconds), which fix the
// minimum lease TTL (see the package comment).
func WithTimeouts(tickMs, electionMs uint) Option {
	return func(o *Options) { o.TickMs, o.ElectionMs = tickMs, electionMs }
}

// WithLogger sends etcd's logs to l.
func WithLogger(l *zap.Logger) Option {
	return func(o *Options) { o.Logger = l }
}

// Start starts an etcd on 127.0.0.1 with kernel-chosen ports in a t.TempDir, waits (at most 30s) for
// it to serve, and closes it in t.Cleanup. The fast profile grants any TTL of 1s or more.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := Options{
		Dir:       t.TempDir(),
		Name:      "etcdtest",
		ClientURL: "http://127.0.0.1:0",
		PeerURL:   "http://127.0.0.1:0",
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	e, err := start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{e: e}
	t.Cleanup(s.Close)
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, l.Addr().String())
	}
	return s
}

// Endpoints returns the client endpoints (host:port on 127.0.0.1) for clientv3.Config.Endpoints.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Close stops the server early; it is also called by t.Cleanup (Close is idempotent).
func (s *Server) Close() { s.once.Do(s.e.Close) }
