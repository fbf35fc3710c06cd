package etcd

import (
	"context"
	"errors"
	"fmt"
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
// with backoff. Values that are not master records are sent as a zero Record and logged at warn.
func (o *Observer) Observe(ctx context.Context, out chan<- election.Record) error {
	cli, err := clientv3.New(clientConfig(o.cfg, o.log))
	if err != nil {
		return fmt.Errorf("etcd: connect to %v: %w", o.cfg.Endpoints, err)
	}
	defer cli.Close()
	return observe(ctx, cli, o.cfg, o.log, out)
}

// Observe is Observer.Observe over an existing client (not closed). log may be nil.
func Observe(ctx context.Context, cli *clientv3.Client, group string, out chan<- election.Record, log *zap.Logger) error {
	cfg := DefaultConfig()
	cfg.Endpoints, cfg.Group = cli.Endpoints(), group
	if err := cfg.validateObserver(); err != nil {
		return err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return observe(ctx, cli, cfg, log.Named("etcd-observer").With(zap.String("group", group)), out)
}

func observe(ctx context.Context, cli *clientv3.Client, cfg Config, log *zap.Logger, out chan<- election.Record) error {
	var last *election.Record
	observeLeader(ctx, cli, LeaderKey(cfg.Group), cfg, log, func(r election.Record) {
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
// change, in revision order, until ctx is done. It re-reads the key after any watch failure, backing
// off between failed attempts. fn runs on the calling goroutine.
func observeLeader(ctx context.Context, cli *clientv3.Client, key string, cfg Config, log *zap.Logger, fn func(election.Record)) {
	backoff := cfg.RetryMin
	failing := false
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		resp, err := cli.Get(gctx, key)
		cancel()
		if err == nil {
			if failing {
				log.Info("reading master record recovered")
				failing = false
			}
			backoff = cfg.RetryMin
			var r election.Record
			if len(resp.Kvs) > 0 {
				r = parse(log, resp.Kvs[0])
			}
			fn(r)
			err = watchLeader(ctx, cli, key, resp.Header.Revision+1, log, fn)
		}
		if ctx.Err() != nil {
			return
		}
		if !failing {
			log.Warn("following master record failed, retrying", zap.String("key", key), zap.Error(err))
			failing = true
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, cfg.RetryMax)
	}
}

// watchLeader applies the events on key from rev until the watch fails or ctx is done.
func watchLeader(ctx context.Context, cli *clientv3.Client, key string, rev int64, log *zap.Logger, fn func(election.Record)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(rev)) {
		if err := wr.Err(); err != nil {
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
	return errors.New("etcd: watch " + key + " closed")
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
