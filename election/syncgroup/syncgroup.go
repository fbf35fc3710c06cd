// Package syncgroup ties the elections of several instances together, as keepalived's
// vrrp_sync_group does: the members of a group are master together or not at all.
//
// Semantics (keepalived's, where a quorum backend allows them):
//   - A member holds its VIPs (its Coordinator promotes) only while every member of the group is
//     master on this node. When any member stops being master — it became backup or fault, lost
//     its lease, or its deadline passed — every member demotes. The members share the earliest of
//     their self-fencing deadlines, so they also fence together.
//   - The first member leads. The others are candidates only while this node is master of the
//     leader, so the node that wins the leader wins the rest, and two nodes never split a group
//     between them (each holding some members, so that neither may hold any). With etcd or
//     ZooKeeper the followers campaign only then; with VRRP they stay in FAULT, sending no adverts,
//     until then. A follower's takeover therefore comes after the leader's: a store round trip,
//     or one VRRP Master_Down_Interval.
//   - Health: a failing check of any member, whatever its weight, withdraws the candidacy of every
//     member (keepalived's default, without sync_group_tracking_weight): the whole group resigns or
//     goes to FAULT, and another node takes it over. Weights do not move a member's VRRP priority.
//   - When a Coordinator cannot promote a member (a VIP cannot be bound) it yields; the group then
//     yields its leader, so another node can take the whole group.
//
// Each member's Elector is wrapped (Member): its Coordinator sees the member's own States, turned
// into Backup while the group is not master as a whole. The wrapper keeps the Elector contract:
// a member's own State is acknowledged to its Elector only after the member's Coordinator has acted
// on what the group made of it, so "demote before resign" holds for every member.
package syncgroup

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

// Group is one sync group. New builds it; each Member is then run by its instance's Coordinator.
// A Group has no goroutine of its own: the members' Run calls share its state under a lock.
type Group struct {
	name string
	log  *zap.Logger

	mu      sync.Mutex
	members []*member
	master  bool // every member master, as last published
}

// member is the state of one member; the fields after el are guarded by Group.mu.
type member struct {
	g    *Group
	i    int
	name string
	el   election.Elector
	elig election.Eligibility
	ran  atomic.Bool

	out      *election.Outbox // the member's Coordinator's; nil until Run
	own      election.State   // the member Elector's last State
	healthy  bool             // its Gate's verdict
	eligible bool             // what its Elector was told last
}

// New returns a Group of the named electors; the first leads. Every Elector must be an
// election.Eligibility (every backend is). The followers are made ineligible at once: they wait
// for this node to become master of the leader. log (nil: none) is used as given.
func New(name string, names []string, electors []election.Elector, log *zap.Logger) (*Group, error) {
	if len(electors) < 2 || len(names) != len(electors) {
		return nil, fmt.Errorf("syncgroup %s: need at least two members, each named", name)
	}
	if log == nil {
		log = zap.NewNop()
	}
	g := &Group{name: name, log: log}
	for i, el := range electors {
		elig, ok := el.(election.Eligibility)
		if !ok {
			return nil, fmt.Errorf("syncgroup %s: member %s cannot be made ineligible", name, names[i])
		}
		g.members = append(g.members, &member{g: g, i: i, name: names[i], el: el, elig: elig, healthy: true, eligible: true})
	}
	g.mu.Lock()
	g.applyEligibilityLocked()
	g.mu.Unlock()
	return g, nil
}

// Member returns the Elector that stands for member i in its Coordinator. It implements
// election.Eligibility (for the member's Gate: its health) and election.Yielder; it is not an
// election.Prioritizer, so the Gate treats every failing check as a withdrawal.
func (g *Group) Member(i int) election.Elector { return g.members[i] }

// Master reports whether every member is master on this node (as last published).
func (g *Group) Master() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.master
}

// Run runs the member's Elector and hands its Coordinator the States the group makes of the
// Elector's; see the package comment. It returns what the Elector's Run returns.
func (m *member) Run(ctx context.Context, out *election.Outbox) error {
	if !m.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("syncgroup %s: member %s: Run called twice", m.g.name, m.name)
	}
	m.g.mu.Lock()
	m.out = out
	m.g.mu.Unlock()
	inner := election.NewOutbox()
	done := make(chan error, 1)
	go func() { done <- m.el.Run(ctx, inner) }()
	for {
		select {
		case <-inner.Ready():
			m.forward(ctx, inner)
		case err := <-done:
			m.forward(ctx, inner)
			m.g.stopped(m.i)
			return err
		}
	}
}

// forward takes every State the member's Elector offered, publishes what the group makes of it and
// acknowledges it to the Elector once the member's Coordinator has acted on the result. When ctx
// is done the Coordinator has already demoted (it cancels its Elector only after demoting), so the
// acknowledgement does not wait.
func (m *member) forward(ctx context.Context, inner *election.Outbox) {
	for {
		s, seq, ok := inner.Take()
		if !ok {
			return
		}
		_ = m.out.WaitActed(ctx, m.g.update(m.i, s))
		inner.Acted(seq)
	}
}

// SetEligible records the member's health (its Gate's verdict); the group's candidacy follows.
func (m *member) SetEligible(ok bool) {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	m.healthy = ok
	m.g.applyEligibilityLocked()
}

// Yield yields the group's leader, so that another node can take the whole group.
func (m *member) Yield() {
	if y, ok := m.g.members[0].el.(election.Yielder); ok {
		y.Yield()
	}
}

// update records member i's own State, applies the candidacy rules and publishes to every member;
// it returns the version published to member i.
func (g *Group) update(i int, s election.State) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members[i].own = s
	g.applyEligibilityLocked()
	return g.publishLocked(i)
}

// stopped records that member i's Elector has returned: it is master no more.
func (g *Group) stopped(i int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.members[i]
	if m.own.Role == election.Master {
		m.own = election.State{Role: election.Backup, Term: m.own.Term, Leader: m.own.Leader, Reason: "stopped"}
	}
	g.publishLocked(i)
}

// applyEligibilityLocked makes every member a candidate while all are healthy, the followers only
// while this node is master of the leader.
func (g *Group) applyEligibilityLocked() {
	healthy := true
	for _, m := range g.members {
		healthy = healthy && m.healthy
	}
	leads := g.members[0].own.Valid(time.Now())
	for i, m := range g.members {
		want := healthy && (i == 0 || leads)
		if want == m.eligible {
			continue
		}
		m.eligible = want
		m.elig.SetEligible(want)
		g.log.Debug("sync group member candidacy", zap.String("member", m.name), zap.Bool("candidate", want),
			zap.Bool("healthy", healthy), zap.Bool("leader-held", leads))
	}
}

// publishLocked offers every running member the State the group makes of its own: its own State
// with the group's earliest deadline while every member is master, else its own State with a
// Master role turned into Backup. It returns the version offered to member i (0 if not running).
func (g *Group) publishLocked(i int) uint64 {
	all, until, why := g.masterLocked(time.Now())
	if all != g.master {
		g.master = all
		if all {
			g.log.Info("sync group master: every member is master", zap.Time("valid-until", until))
		} else {
			g.log.Info("sync group not master", zap.String("reason", why))
		}
	}
	var seq uint64
	for j, m := range g.members {
		if m.out == nil {
			continue
		}
		d := m.own
		switch {
		case all:
			d.ValidUntil = until
		case d.Role == election.Master:
			d.Role, d.ValidUntil = election.Backup, time.Time{}
			d.Reason = fmt.Sprintf("sync group %s: %s", g.name, why)
		}
		if k := m.out.Set(d); j == i {
			seq = k
		}
	}
	return seq
}

// masterLocked reports whether every member is running and master at now, the earliest of their
// deadlines (zero: none has one), and otherwise why not.
func (g *Group) masterLocked(now time.Time) (bool, time.Time, string) {
	var until time.Time
	for _, m := range g.members {
		switch {
		case m.out == nil:
			return false, time.Time{}, m.name + " is not running"
		case m.own.Role == election.Master && !m.own.Valid(now):
			return false, time.Time{}, m.name + "'s deadline has passed"
		case m.own.Role != election.Master:
			why := fmt.Sprintf("%s is %s", m.name, m.own.Role)
			if m.own.Reason != "" {
				why += " (" + m.own.Reason + ")"
			}
			return false, time.Time{}, why
		}
		if v := m.own.ValidUntil; !v.IsZero() && (until.IsZero() || v.Before(until)) {
			until = v
		}
	}
	return true, until, ""
}
