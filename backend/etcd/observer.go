package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// Observer follows the master record of a group without campaigning (hacoord watch). It implements
// election.Observer.
type Observer struct {
	cfg Config
	log *zap.Logger
}

// NewObserver validates cfg (Endpoints, Group, DialTimeout, retry backoff; Name is not needed) and
// returns an Observer. It starts nothing. log may be nil.
func NewObserver(cfg Config, log *zap.Logger) (*Observer, error) {
	if err := cfg.validateObserver(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Observer{cfg: cfg, log: log.Named("etcd-observer").With(zap.String("group", cfg.Group))}, nil
}

// Observe connects to etcd and sends the group's master record (zero when there is none) and then
// every change on out until ctx is done; it returns nil then. While etcd is unreachable it retries
// with backoff, moving to the next endpoint when one fails. Values that are not master records are
// sent as a zero Record and logged at warn.
func (o *Observer) Observe(ctx context.Context, out chan<- election.Record) error {
	c, err := dial(o.cfg, o.log)
	if err != nil {
		return fmt.Errorf("etcd: connect to %v: %w", o.cfg.Endpoints, err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	wctx, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); c.watchState(wctx) }()
	defer wg.Wait()
	defer stop()
	return observe(ctx, c, o.cfg, o.log, out)
}

// Observe is Observer.Observe over an existing client (not closed, never moved to another endpoint).
// log may be nil.
func Observe(ctx context.Context, cli *clientv3.Client, group string, out chan<- election.Record, log *zap.Logger) error {
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Group = cli.Endpoints(), group
	if err := cfg.validateObserver(); err != nil {
		return err
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("etcd-observer").With(zap.String("group", group))
	return observe(ctx, wrap(cli, cfg.RetryMin, log), cfg, log, out)
}

func observe(ctx context.Context, c *conn, cfg Config, log *zap.Logger, out chan<- election.Record) error {
	var last *election.Record
	observeLeader(ctx, c, LeaderKey(cfg.Group), cfg.DialTimeout, cfg, log, func(r election.Record) {
		if last != nil && last.Same(r) {
			return
		}
		select {
		case out <- r:
			last = &r
		case <-ctx.Done():
		}
	})
	return nil
}

// observeLeader calls fn with the record under key (zero if none or garbage) and then with every
// change, in revision order, until ctx is done. After a watch breaks (an error, compaction, a move
// to another endpoint) it reads the key again and watches from that read's revision, backing off
// between failed attempts; each read is bounded by timeout. fn runs on the calling goroutine.
func observeLeader(ctx context.Context, c *conn, key string, timeout time.Duration, cfg Config, log *zap.Logger, fn func(election.Record)) {
	failures := 0
	for ctx.Err() == nil {
		var resp *clientv3.GetResponse
		err := c.do(ctx, timeout, func(ctx context.Context, cli *clientv3.Client) (err error) {
			resp, err = cli.Get(ctx, key)
			return err
		})
		if err == nil {
			if failures > 0 {
				log.Info("reading master record recovered")
				failures = 0
			}
			var r election.Record
			if len(resp.Kvs) > 0 {
				r = parse(log, resp.Kvs[0])
			}
			fn(r)
			err = watchLeader(ctx, c, key, resp.Header.Revision+1, log, fn)
			if err == nil {
				continue // moved to another endpoint: read there at once
			}
		}
		if ctx.Err() != nil {
			return
		}
		if failures == 0 {
			log.Warn("following master record failed, retrying", zap.String("key", key), zap.Error(err))
		}
		failures++
		if !sleep(ctx, backoff(cfg, failures)) {
			return
		}
	}
}

// watchLeader applies the events on key from rev until the watch breaks (its error), c moves to
// another endpoint or ctx is done (nil).
func watchLeader(ctx context.Context, c *conn, key string, rev int64, log *zap.Logger, fn func(election.Record)) error {
	ep, wch, stop := c.watch(ctx, key, clientv3.WithRev(rev))
	defer stop()
	for wr := range wch {
		if err := wr.Err(); err != nil {
			c.failed(ep, err)
			return fmt.Errorf("etcd: watch %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			switch ev.Type {
			case mvccpb.PUT:
				fn(parse(log, ev.Kv))
			case mvccpb.DELETE:
				fn(election.Record{})
			}
		}
	}
	return nil
}

func parse(log *zap.Logger, kv *mvccpb.KeyValue) election.Record {
	r, err := election.ParseRecord(kv.Value)
	if err != nil {
		log.Warn("ignoring master record that does not parse", zap.String("key", string(kv.Key)),
			zap.Int64("mod-revision", kv.ModRevision), zap.Error(err))
		return election.Record{}
	}
	return r
}
