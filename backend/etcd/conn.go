package etcd

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcKeepaliveMin is the shortest gRPC keepalive ping interval grpc-go allows (it raises anything
// shorter to this); etcd servers by default refuse pings more frequent than every 5s.
const grpcKeepaliveMin = 10 * time.Second

// grpcWindow is the gRPC stream and connection flow-control window (see clientConfig): 1 MiB, 16
// times gRPC's initial 64 KiB, so a large range read is not slowed by it.
const grpcWindow = 1 << 20

// conn is an etcd client that talks to one endpoint at a time and moves on to the next when the
// current one fails: a request to it failed for want of a working member (timed out, unavailable,
// no leader), or its connection broke (connection refused: the member is dead).
//
// Why not gRPC's round robin over all endpoints, clientv3's default: a member that goes silent (cut
// off, frozen) keeps its connection READY until gRPC's keepalive notices, at least 10s later; until
// then round robin keeps sending it every third request, and every watch opened there hangs. Here
// the first request that fails moves every request, and every watch (they are tied to the endpoint's
// epoch), to the next member.
//
// Safe for concurrent use.
type conn struct {
	cli    *clientv3.Client
	owned  bool // Close closes cli
	shared bool // a Client's: its users' Close does nothing, the Client's Close closes
	eps    []string
	dwell  time.Duration // connection trouble moves on no sooner than this after the last move
	log    *zap.Logger

	mu    sync.Mutex
	cur   int
	since time.Time          // when cur became current
	moves uint64             // how often c moved: names the epoch
	epoch context.Context    // done when cur stops being current
	end   context.CancelFunc // ends epoch
}

// dial returns a conn to cfg's endpoints, starting with the first: cfg.Client's, shared, when
// it is set. It does not wait for a connection: requests do, each bounded by its own timeout.
func dial(cfg Config, log *zap.Logger) (*conn, error) {
	if cfg.Client != nil {
		return cfg.Client.c, nil
	}
	return open(cfg, log)
}

// Client is an etcd client that several Electors and Observers share (Config.Client): the
// instances of one daemon on the same endpoints, over one set of gRPC connections, moving from one
// member to the next together (see conn). Each Elector keeps its own lease, session and election.
// Dial opens it; Close closes it, once every user has returned. Safe for concurrent use.
type Client struct {
	c *conn
}

// Dial returns a Client for cfg's endpoints, TLS, credentials and timing (cfg's other fields do
// not matter). Like an Elector, it does not wait for a connection.
func Dial(cfg Config, log *zap.Logger) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: client: no endpoints")
	}
	if log == nil {
		log = zap.NewNop()
	}
	c, err := open(cfg, log)
	if err != nil {
		return nil, err
	}
	c.shared = true
	return &Client{c: c}, nil
}

// Close closes the client. Call it after every Elector and Observer using it has returned.
func (c *Client) Close() {
	c.c.closeNow()
}

// open returns a conn of its own to cfg's endpoints.
func open(cfg Config, log *zap.Logger) (*conn, error) {
	cc := clientConfig(cfg, log)
	cc.Endpoints = cfg.Endpoints[:1]
	cli, err := clientv3.New(cc)
	if err != nil {
		// With credentials, New authenticates: a refusal is final, and a timeout may hide a
		// refused certificate.
		if cerr := credentialsError(err); cerr != nil {
			return nil, cerr
		}
		if cerr := probeTLS(context.Background(), cfg); cerr != nil {
			return nil, cerr
		}
		if cc.Username == "" || cc.Password == "" {
			return nil, err
		}
		// The store did not answer (down, unreachable): open the client without waiting, and let
		// the first request that reaches it authenticate, as without credentials.
		if cli, err = lazyAuth(cc); err != nil {
			return nil, err
		}
		log.Warn("etcd did not answer the authentication; the first request that reaches it authenticates",
			zap.Strings("endpoints", cfg.Endpoints))
	}
	c := wrap(cli, max(cfg.withDefaults().KeepaliveInterval, cfg.RetryMin), log)
	c.owned, c.eps = true, append([]string(nil), cfg.Endpoints...)
	return c, nil
}

// wrap returns a conn over an existing client, which it never moves and never closes.
func wrap(cli *clientv3.Client, dwell time.Duration, log *zap.Logger) *conn {
	c := &conn{cli: cli, eps: cli.Endpoints(), dwell: dwell, log: log, since: time.Now()}
	c.epoch, c.end = context.WithCancel(context.Background())
	return c
}

// clientConfig returns the clientv3 configuration for c:
//   - gRPC keepalive as a backstop for idle watch streams on a silent member (10s, the shortest gRPC
//     allows; the elector's own request timeouts find a silent member within one keepalive
//     interval);
//   - reconnection backoff capped at one keepalive interval (gRPC's default grows to 120s), so that
//     a member that restarted is used again within an interval, not after the lease expired;
//   - fixed flow-control windows of grpcWindow, which turn off gRPC's bandwidth-delay estimation: it
//     answered every message received with a PING of its own (and a window update), whose
//     acknowledgement woke the client again; an idle daemon's few small messages a second need no
//     window tuning.
func clientConfig(c Config, log *zap.Logger) clientv3.Config {
	d := c.withDefaults()
	reconnect := grpc.ConnectParams{
		Backoff: grpcbackoff.Config{BaseDelay: c.RetryMin, Multiplier: 1.6, Jitter: 0.2,
			MaxDelay: max(d.KeepaliveInterval, c.RetryMin)},
		MinConnectTimeout: c.DialTimeout,
	}
	return clientv3.Config{
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(reconnect),
			grpc.WithInitialWindowSize(grpcWindow), grpc.WithInitialConnWindowSize(grpcWindow)},
		Endpoints:            c.Endpoints,
		DialTimeout:          c.DialTimeout,
		DialKeepAliveTime:    grpcKeepaliveMin,
		DialKeepAliveTimeout: max(c.DialTimeout, c.TTL),
		TLS:                  c.TLS,
		Username:             c.Username,
		Password:             c.Password,
		// The client retries on its own and warns about each attempt; we log what matters.
		Logger: log.Named("client").WithOptions(zap.IncreaseLevel(zap.ErrorLevel)),
	}
}

// Close closes the client if the conn owns it; a shared conn is the Client's to close.
func (c *conn) Close() {
	if c.shared {
		return
	}
	c.closeNow()
}

func (c *conn) closeNow() {
	c.mu.Lock()
	c.end()
	c.mu.Unlock()
	if c.owned {
		_ = c.cli.Close()
	}
}

// current returns the endpoint requests go to and its epoch, a context that is done once requests
// go elsewhere: a watch started under it ends at the move and is started again on the next member.
func (c *conn) current() (string, context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eps[c.cur], c.epoch
}

// failed tells c that a request to ep failed with err. If err means the member could not serve it
// and ep is still current, c moves on.
func (c *conn) failed(ep string, err error) {
	if memberTrouble(err) {
		c.move(ep, err, 0)
	}
}

// move makes the endpoint after from current, if from is still current and has been for at least
// dwell. It reports whether it moved.
func (c *conn) move(from string, why error, dwell time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.eps) < 2 || c.eps[c.cur] != from || time.Since(c.since) < dwell {
		return false
	}
	c.cur = (c.cur + 1) % len(c.eps)
	c.since = time.Now()
	c.moves++
	c.end()
	c.epoch, c.end = context.WithCancel(context.Background())
	c.cli.SetEndpoints(c.eps[c.cur])
	c.log.Info("moving to the next etcd endpoint", zap.String("from", from), zap.String("to", c.eps[c.cur]),
		zap.NamedError("reason", why))
	return true
}

// watchState moves on when the connection to the current endpoint fails (TRANSIENT_FAILURE: refused
// or broken, the member is down) without waiting for a request to time out, at most once per dwell.
// It returns when ctx is done.
func (c *conn) watchState(ctx context.Context) {
	if len(c.eps) < 2 {
		return
	}
	cc := c.cli.ActiveConnection()
	for {
		st := cc.GetState()
		if st == connectivity.TransientFailure {
			ep, _ := c.current()
			if !c.move(ep, errors.New("connection failed"), c.dwell) {
				t := time.NewTimer(c.dwell)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
		}
		if !cc.WaitForStateChange(ctx, st) {
			return // ctx done
		}
	}
}

// watch watches key (with opts) on the current endpoint, requiring the member to have a leader (a
// member without one for three election timeouts ends it with ErrNoLeader). The channel closes when
// ctx is done or c moves to another endpoint; stop releases the watch. It returns the endpoint, for
// failed.
//
// clientv3 multiplexes watches whose contexts carry the same metadata onto one gRPC stream, and a new
// watch joins a stream that is still open even if it runs to a member that went silent. So every
// epoch gets a metadata value of its own: after a move, new watches open a new stream, to the new
// endpoint, and the old stream closes once its watches (all of the old epoch) are cancelled.
func (c *conn) watch(ctx context.Context, key string, opts ...clientv3.OpOption) (string, clientv3.WatchChan, func()) {
	c.mu.Lock()
	ep, epoch, n := c.eps[c.cur], c.epoch, c.moves
	c.mu.Unlock()
	wctx := metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "hacoord-epoch", strconv.FormatUint(n, 10))
	wctx, cancel := context.WithCancel(wctx)
	unhook := context.AfterFunc(epoch, cancel)
	return ep, c.cli.Watch(wctx, key, opts...), func() { unhook(); cancel() }
}

// do runs f with a context bounded by timeout against the current endpoint, and moves on if it
// failed for want of a working member.
func (c *conn) do(ctx context.Context, timeout time.Duration, f func(ctx context.Context, cli *clientv3.Client) error) error {
	ep, _ := c.current()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := f(rctx, c.cli)
	if err != nil && ctx.Err() == nil {
		c.failed(ep, err)
	}
	return err
}

// memberTrouble reports whether err means the member could not serve the request (timed out,
// unavailable, without a leader, stopping), as opposed to an answer from the store (lease not found,
// compacted, permission denied) or the caller's own cancellation.
func memberTrouble(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable || ee.Code() == codes.DeadlineExceeded
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	// A leader that lost its quorum refuses lease renewals until it steps down.
	return st.Message() == errNotPrimary
}

// errNotPrimary is the message of the etcd server's lease.ErrNotPrimary, which reaches clients with
// code Unknown.
const errNotPrimary = "lease: not primary"
