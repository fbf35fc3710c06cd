package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Candidate is what a quorum backend (etcd, ZooKeeper) publishes for one node taking part in a
// group: the value of its candidate key or znode. It lets every node, and `hacoord status` from
// anywhere, apply keepalived's priority rules over consensus:
//
//   - a candidate that reaches the head of the queue becomes master only if no other candidate in
//     the queue has a higher Priority, and no Transfer names another node; otherwise it defers (it
//     gives up its place and rejoins at the back, one store round trip);
//   - a master hands over by a planned move (demote, then resign) to a candidate with a higher
//     Priority whose Preempt is set, once that candidate has been in the queue for its PreemptDelay.
//
// Terms still rise with every new master: deferring and handing over only change who may take the
// head, never how mastership is decided. A value that is not JSON is a candidate of an older
// hacoord, which wrote its bare node name: ParseCandidate reads it with DefaultPriority.
type Candidate struct {
	Node    string     `json:"node"`
	Address netip.Addr `json:"address,omitzero"`
	// Priority is the effective priority: the configured one moved by track-check weights (1-254,
	// higher wins; equal priorities keep the store's order).
	Priority int  `json:"priority"`
	Preempt  bool `json:"preempt"`
	// PreemptDelay is how long the candidate must have been queued before a lower-priority master
	// hands over to it (keepalived's preempt_delay).
	PreemptDelay time.Duration `json:"preempt_delay,omitzero"`
	// Since is when the candidate joined the queue (its own clock, for status and PreemptDelay).
	Since time.Time `json:"since,omitzero"`
	// Healthy is the node's own health verdict when it publishes one (nil: not published).
	Healthy *bool `json:"healthy,omitempty"`
	// Maintenance marks a node that an operator took out (`hacoord maintenance on`). Such a node is
	// not in the queue: the backend publishes it under its own maintenance key (bound to its lease
	// or session), and a Lister returns it after the queued candidates.
	Maintenance bool `json:"maintenance,omitempty"`
	// Validity is how long after sending a renewal the candidate's own deadline falls at the latest
	// (its TTL), published when the store's lease lasts longer (etcd: the lease has a second of
	// headroom, which lets the backup first in line end a dead master's lease early). 0: not
	// published, the lease's own TTL.
	Validity time.Duration `json:"validity,omitzero"`
}

// DefaultPriority is the priority of a candidate that published none (keepalived's default).
const DefaultPriority = 100

// ParseCandidate decodes a candidate value; a value that is not a JSON object is an older
// hacoord's bare node name.
func ParseCandidate(b []byte) (Candidate, error) {
	if len(b) == 0 || b[0] != '{' {
		if len(b) == 0 {
			return Candidate{}, errors.New("election: empty candidate value")
		}
		return Candidate{Node: string(b), Priority: DefaultPriority, Preempt: true}, nil
	}
	var c Candidate
	if err := json.Unmarshal(b, &c); err != nil {
		return Candidate{}, fmt.Errorf("election: candidate value: %w", err)
	}
	if c.Node == "" {
		return Candidate{}, errors.New("election: candidate value names no node")
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	return c, nil
}

// Marshal encodes c as the JSON published under the candidate key.
func (c Candidate) Marshal() []byte {
	b, err := json.Marshal(c)
	if err != nil { // only plain fields: cannot fail
		panic(fmt.Sprintf("election: marshal candidate: %v", err))
	}
	return b
}

// Transfer is the record a master leaves under the group's transfer key before it resigns for
// `hacoord transfer --to NODE`, or for a preemption: until Until (wall clock, generous: clocks of
// nodes differ) only To may take over; every other candidate that reaches the head defers. The
// record is removed by To once it is master, and ignored by everyone once Until has passed, so a
// target that never comes only delays a normal election by the timeout.
type Transfer struct {
	From  string    `json:"from"`
	To    string    `json:"to"`
	Until time.Time `json:"until"`
}

// ParseTransfer decodes a transfer record.
func ParseTransfer(b []byte) (Transfer, error) {
	var t Transfer
	if err := json.Unmarshal(b, &t); err != nil {
		return Transfer{}, fmt.Errorf("election: transfer record: %w", err)
	}
	if t.To == "" {
		return Transfer{}, errors.New("election: transfer record names no target")
	}
	return t, nil
}

// Marshal encodes t.
func (t Transfer) Marshal() []byte {
	b, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("election: marshal transfer: %v", err))
	}
	return b
}

// Active reports whether t still binds the candidates at wall-clock instant now.
func (t Transfer) Active(now time.Time) bool { return t.To != "" && now.Before(t.Until) }

// ErrNotMaster is returned by Resign and Transfer on a node that is not master.
var ErrNotMaster = errors.New("this node is not master")

// ErrNoSuchCandidate is returned by Transfer when the target is not a candidate of the group.
var ErrNoSuchCandidate = errors.New("no such candidate in the group")

// ErrNoOtherCandidate is returned by Resign on a master that is alone in its group: no other
// eligible candidate is queued (the others are down, unhealthy or in maintenance), so resigning would
// only cost an outage and re-elect this node. Nothing is done: the node stays master, its VIPs bound.
var ErrNoOtherCandidate = errors.New("no other candidate could take over")

// ErrUnsupported is returned by an optional operation a backend cannot carry out (VRRP cannot make
// its keepalived peers hold back for a transfer).
var ErrUnsupported = errors.New("not supported by this backend")

// A Resigner is an Elector whose master can step down on an operator's request (`hacoord resign`).
// Resign demotes first (Outbox.WaitActed: the VIPs are gone), then gives up its place so the next
// candidate takes over at once, and rejoins the election as a backup. It returns once the
// candidacy has been given up (not once another node is master), ErrNotMaster on a backup, or
// ctx's error. The node that resigned does not preempt back: until it has been master again it
// rejoins as if with nopreempt (VRRP's yielded router; the quorum backends publish Preempt false),
// so a preferred node's resign is not undone by its own priority a moment later.
//
// A master with no other eligible candidate queued refuses with ErrNoOtherCandidate before it
// demotes: it stays master in the same term, with no outage. The check reads the queue just before
// the resign; a candidate that leaves between the two (a race of one store round trip) turns the
// resign into a normal re-election: the node gives up, finds itself alone at the head, and is master
// again in a new term after an outage (etcd: a store round trip; ZooKeeper, whose resign names the
// candidate it hands over to: once that hand-over record runs out, its TransferTimeout). A backend
// that cannot see its peers (VRRP: it does not know its backups) resigns without the check; alone,
// it is master again after Master_Down_Interval.
type Resigner interface {
	Resign(ctx context.Context) error
}

// A Transferer is an Elector that can hand mastership to one named node (`hacoord transfer`):
// it publishes a Transfer{To: to, Until: now+timeout}, then resigns as Resign does. It returns
// ErrNotMaster on a backup, ErrNoSuchCandidate when `to` is not queued, ErrUnsupported where the
// backend cannot do it.
type Transferer interface {
	Transfer(ctx context.Context, to string, timeout time.Duration) error
}

// A Maintainer is an Elector that an operator can take out of the election and back
// (`hacoord maintenance on|off`), independently of health gating: with SetMaintenance(true) a
// master hands over first (demote before resign) and the node stops campaigning; false campaigns
// again if the node is eligible. The daemon persists the flag across restarts and applies it
// before Run. Safe to call from any goroutine; it must not block.
type Maintainer interface {
	SetMaintenance(on bool)
}

// A Lister reads a group's queue from the store without taking part (`hacoord status` from any
// machine): the candidates in the store's order (the head first), and the active transfer record,
// if any.
type Lister interface {
	Candidates(ctx context.Context) ([]Candidate, *Transfer, error)
}
