package zk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

var _ election.Lister = (*Observer)(nil)

// NewLister returns a Lister of cfg.Group's queue (the Observer is one), for `hacoord status` from
// any machine; cfg needs what NewObserver needs.
func NewLister(cfg Config, log *zap.Logger) (*Observer, error) { return NewObserver(cfg, log) }

// Candidates reads the group's queue in one short session of its own, without taking part: the
// candidates in the queue's order (the head first; a value of an older hacoord, its bare node name,
// at the default priority), then the nodes in maintenance (Maintenance set), and the active transfer
// record, if any. A group that does not exist has no candidates.
func (o *Observer) Candidates(ctx context.Context) ([]election.Candidate, *election.Transfer, error) {
	s, err := dial(ctx, o.cfg, o.servers, o.log, false)
	if err != nil {
		return nil, nil, err
	}
	stop := closeOnDone(ctx, s, 0, o.log)
	defer func() {
		stop()
		s.close()
	}()
	return listGroup(s.conn, o.paths, o.log)
}

// listGroup reads the queue, the maintenance znodes and the transfer record through c. The reads of
// the values are issued at once (go-zookeeper pipelines them).
func listGroup(c conn, ps paths, log *zap.Logger) ([]election.Candidate, *election.Transfer, error) {
	children, _, err := c.Children(ps.election)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, nil, fmt.Errorf("zk: list candidates in %s: %w", ps.election, err)
	}
	type entry struct {
		name string
		seq  int64
	}
	var queue []entry
	for _, ch := range children {
		if seq, ok := parseSeq(ch); ok {
			queue = append(queue, entry{ch, seq})
		}
	}
	slices.SortFunc(queue, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	maint, _, err := c.Children(ps.maint)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return nil, nil, fmt.Errorf("zk: list %s: %w", ps.maint, err)
	}
	slices.Sort(maint)
	paths := make([]string, 0, len(queue)+len(maint)+1)
	for _, q := range queue {
		paths = append(paths, ps.election+"/"+q.name)
	}
	for _, m := range maint {
		paths = append(paths, ps.maint+"/"+m)
	}
	paths = append(paths, ps.transfer)
	data := make([][]byte, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() { data[i], _, errs[i] = c.Get(p) })
	}
	wg.Wait()
	var out []election.Candidate
	for i, p := range paths[:len(paths)-1] {
		switch {
		case errors.Is(errs[i], zk.ErrNoNode):
			continue // gone meanwhile
		case errs[i] != nil:
			return nil, nil, fmt.Errorf("zk: read %s: %w", p, errs[i])
		}
		v, perr := election.ParseCandidate(data[i])
		if perr != nil {
			log.Warn("candidate value does not parse", zap.String("path", p), zap.ByteString("found", clip(data[i])), zap.Error(perr))
			v = election.Candidate{Priority: election.DefaultPriority}
		}
		if i >= len(queue) {
			v.Maintenance = true
			if v.Node == "" {
				v.Node = maint[i-len(queue)]
			}
		}
		out = append(out, v)
	}
	var tr *election.Transfer
	switch last := len(paths) - 1; {
	case errors.Is(errs[last], zk.ErrNoNode):
	case errs[last] != nil:
		return nil, nil, fmt.Errorf("zk: read %s: %w", ps.transfer, errs[last])
	default:
		t, perr := election.ParseTransfer(data[last])
		if perr == nil && t.Active(time.Now()) {
			tr = &t
		}
	}
	return out, tr, nil
}
