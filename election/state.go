// Package election holds the backend-neutral vocabulary of hacoord (Role, State, Record), the small
// interfaces that join the parts (Elector, Action, Observer) and the Coordinator that turns the
// State changes an Elector reports into Promote and Demote calls.
//
// It imports nothing of backend/, vip/, ipvs/ or fencing/: backends depend on it, and cmd adapts the
// leaf packages into Actions.
package election

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Role is a node's part in the election.
type Role int

const (
	// Init is the zero Role: the node has not yet heard from its backend.
	Init Role = iota
	// Backup is a candidate that is not master.
	Backup
	// Master holds the election: it may bind the VIPs until State.ValidUntil.
	Master
	// Fault is a node that cannot take part: no session with the store, or unhealthy.
	Fault
)

// String returns the lower-case name used in logs and records.
func (r Role) String() string {
	switch r {
	case Init:
		return "init"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Record is who is master of a group: the JSON value published under the group's master key
// (/hacoord/<group>/leader) that clients watch. The schema is documented in README.md; fields are
// only ever added.
type Record struct {
	Group   string         `json:"group"`
	Node    string         `json:"node"`
	Address netip.Addr     `json:"address,omitzero"`
	VIPs    []netip.Prefix `json:"vips"`
	// Term rises with every new master. It is the fencing token: the etcd revision that created the
	// master's election key, or the ZooKeeper czxid of its candidate znode.
	Term  uint64    `json:"term"`
	Since time.Time `json:"since"`
}

// IsZero reports whether r names no master.
func (r Record) IsZero() bool { return r.Node == "" }

// ErrBadRecord is returned by ParseRecord for a value that is not a master record; a store holding one
// was written by someone else, and callers treat the group as having no known master.
var ErrBadRecord = errors.New("not a hacoord master record")

// ParseRecord decodes a master record and checks that it names a node and a term.
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if r.Node == "" || r.Term == 0 {
		return Record{}, fmt.Errorf("%w: missing node or term", ErrBadRecord)
	}
	return r, nil
}

// Marshal encodes r as the JSON published under the master key.
func (r Record) Marshal() []byte {
	b, err := json.Marshal(r)
	if err != nil { // only plain fields: cannot fail
		panic(fmt.Sprintf("election: marshal record: %v", err))
	}
	return b
}

// State is what an Elector knows of its own standing. An Elector sends a new State on every change of
// role, term or leader, and, while Master, every time its lease is renewed (ValidUntil moves on).
type State struct {
	Role Role
	// Term is the current master's term (0 when unknown). While Role is Master it is this node's
	// fencing token.
	Term uint64
	// Leader is the current master, this node or another; zero when unknown.
	Leader Record
	// ValidUntil, for a Master, is the self-fencing deadline on the monotonic clock (a time.Time from
	// time.Now, plus a duration): the node must have let go of the VIPs by then, because the store may
	// elect another master soon after. VRRP, which has no store, derives it from the last advert
	// sent: a backup declares the master down three advert intervals after it last heard one. Zero
	// means the backend gives no deadline.
	ValidUntil time.Time
	// Contact counts, within a master's term, the times it lost and regained contact with the store
	// (a lease keepalive failed and a later one succeeded; ZooKeeper reconnected within the
	// session). Whenever it rises, the Coordinator has the VIPs announced again: clients and
	// switches may have moved on while the master was unreachable. It only ever rises within a term,
	// so a State that supersedes another before it is read loses nothing.
	Contact uint64
	// Reason says why the State changed, for logs ("elected", "lease lost", "resigned", ...).
	Reason string
	// Handover, for a Master, says that the previous master gave up on purpose after it had demoted
	// (a planned move: resign, transfer, maintenance, preemption), as the store recorded in the same
	// write that ended its term, and that no master came between: no VIP of the group lingers on
	// the previous holder, so the VIP action may skip the conflict probe (vip.Manager.Acquire's
	// 3 x 20 ms). False whenever the backend cannot tell (a lease expiry, a crash, VRRP).
	Handover bool
}

// Valid reports whether s still entitles the node to act as master at instant now.
func (s State) Valid(now time.Time) bool {
	if s.Role != Master {
		return false
	}
	return s.ValidUntil.IsZero() || now.Before(s.ValidUntil)
}

// Same reports whether s and o tell a consumer the same thing: role, term, leader, deadline, contact
// count and reason.
func (s State) Same(o State) bool {
	return s.Role == o.Role && s.Term == o.Term && s.Reason == o.Reason && s.Contact == o.Contact && s.Handover == o.Handover &&
		s.ValidUntil.Equal(o.ValidUntil) && s.Leader.Same(o.Leader)
}

// Same reports whether r and o name the same master with the same details.
func (r Record) Same(o Record) bool {
	return r.Group == o.Group && r.Node == o.Node && r.Address == o.Address && r.Term == o.Term &&
		r.Since.Equal(o.Since) && slices.Equal(r.VIPs, o.VIPs)
}
