package zk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// Observer is an election.Observer of a group's master record (the leader znode), for
// `hacoord watch`. It takes no part in the election and creates nothing.
type Observer struct {
	cfg     Config
	log     *zap.Logger
	servers []string
	paths   paths
}

var _ election.Observer = (*Observer)(nil)

// NewObserver validates the connection part of cfg (Servers, SessionTimeout, Auth, Group; Name is
// not needed) and returns an Observer. It starts nothing. log may be nil.
func NewObserver(cfg Config, log *zap.Logger) (*Observer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validateConn(); err != nil {
		return nil, err
	}
	servers, chroot, _ := parseServers(cfg.Servers)
	if log == nil {
		log = zap.NewNop()
	}
	return &Observer{
		cfg:     cfg,
		log:     log.With(zap.String("group", cfg.Group)),
		servers: servers,
		paths:   newPaths(chroot, cfg.Group),
	}, nil
}

// Observe sends the current master record (a zero Record when there is none, or when the znode holds
// something that is not a master record, which is logged) and then every change, until ctx is done;
// it then returns nil. It reconnects, with backoff, when the session is lost; the last record sent
// stands meanwhile. It returns an error only for what retrying cannot fix: credentials rejected, or
// an ACL that does not let this identity read the record.
func (o *Observer) Observe(ctx context.Context, out chan<- election.Record) error {
	bo := newBackoff(o.cfg.Backoff)
	f := &follower{o: o, out: out}
	for {
		s, err := dial(ctx, o.cfg, o.servers, o.log, false)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isPermanent(err) {
				return err
			}
			o.log.Warn("no ZooKeeper session; retrying", zap.Strings("servers", o.servers), zap.Error(err))
			if !sleep(ctx, bo.next()) {
				return nil
			}
			continue
		}
		stopWatch := closeOnDone(ctx, s, 0, o.log)
		err = f.follow(ctx, s)
		stopWatch()
		s.close()
		if isPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		o.log.Warn("lost the ZooKeeper session; reconnecting", zap.Error(err))
		bo.reset()
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
}

// follower carries what was last sent across sessions.
type follower struct {
	o      *Observer
	out    chan<- election.Record
	sent   bool
	last   election.Record
	badZxd int64
}

// follow watches the leader znode within one session until ctx is done or the session is lost.
func (f *follower) follow(ctx context.Context, s *session) error {
	p := f.o.paths.leader
	var w <-chan zk.Event
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if w == nil {
			var err error
			if _, _, w, err = s.conn.ExistsW(p); err != nil {
				if sessionGone(err) || s.isLost() {
					return fmt.Errorf("zk: watch %s: %w", p, err)
				}
				w = nil
			}
		}
		rec, err := f.read(s)
		if errors.Is(err, zk.ErrNoAuth) {
			return noAuth("read", p, f.o.cfg.Auth)
		}
		if err != nil {
			f.o.log.Debug("read failed; retrying", zap.Error(err))
		}
		if err == nil {
			if err := f.send(ctx, rec); err != nil {
				return nil
			}
		}
		retry.Stop()
		if w == nil || err != nil { // try again after a short pause
			retry.Reset(f.o.cfg.Backoff.Initial)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.lost():
			return errors.New(s.ev.reason())
		case <-s.reconnected():
			w = nil // read again and watch afresh: the old watch may not have been re-registered
		case <-w:
			w = nil
		case <-retry.C:
		}
	}
}

func (f *follower) read(s *session) (election.Record, error) {
	p := f.o.paths.leader
	data, st, err := s.conn.Get(p)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return election.Record{}, nil
	case err != nil:
		return election.Record{}, fmt.Errorf("zk: read %s: %w", p, err)
	}
	rec, perr := election.ParseRecord(data)
	if perr != nil {
		if st.Mzxid != f.badZxd {
			f.badZxd = st.Mzxid
			f.o.log.Warn("master record is not a hacoord record; reporting no master",
				zap.String("path", p), zap.ByteString("found", clip(data)), zap.Error(perr))
		}
		return election.Record{}, nil
	}
	return rec, nil
}

func (f *follower) send(ctx context.Context, rec election.Record) error {
	if f.sent && bytes.Equal(rec.Marshal(), f.last.Marshal()) {
		return nil
	}
	select {
	case f.out <- rec:
		f.sent, f.last = true, rec
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
