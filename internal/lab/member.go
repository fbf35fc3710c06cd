package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// StoreMemberAddr returns the address of store member i (1-based): 10.77.0.1+i, so member 1 is at
// StoreAddr and a 3-member store takes 10.77.0.2-4 (nodes start at .11, the client is .50).
func StoreMemberAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 0, byte(1 + i)}) }

// MaxStoreMembers bounds Options.StoreMembers: the members' addresses stay below the nodes'.
const MaxStoreMembers = 7

// A MemberStore is a Store whose members the lab can fault one at a time (see StoreMember). Both
// built-in stores are MemberStores, with one member or several. Member indexes are 0-based, in
// the order of StoreEnv.Members. The methods are safe for concurrent use on different members.
type MemberStore interface {
	Store
	// KillMember SIGKILLs member i and waits for it to exit. Its data stays.
	KillMember(i int) error
	// StopMember stops member i gracefully (SIGTERM, then SIGKILL after a grace) and waits.
	StopMember(i int) error
	// StartMember starts a stopped member i again on its data and waits, bounded by ctx, until it
	// serves clients: a member of a cluster has then rejoined a quorum (so when a quorum is gone,
	// start the members that restore it concurrently).
	StartMember(ctx context.Context, i int) error
	// MemberStatus asks member i, from inside its namespace, what it is.
	MemberStatus(ctx context.Context, i int) (MemberStatus, error)
}

// MemberStatus is what a store member says of itself.
type MemberStatus struct {
	Running bool   // its process is up
	Serving bool   // it answers clients (a member of a cluster: it is part of a quorum with a leader)
	Leader  bool   // it is the leader (a single member always is, once serving)
	Term    uint64 // the raft term (etcd) or the leader's epoch (ZooKeeper): rises with every election
}

// StoreMember is one member of the lab's store, in its own namespace on the lab bridge: "store"
// (alone, at StoreAddr) or s1, s2, ... (at StoreMemberAddr(i)). Its faults — Kill, Stop, Cut —
// hit the store, never a node. Its methods are safe for concurrent use.
type StoreMember struct {
	Name string
	Addr netip.Addr
	NS   *netnstest.NS
	// Peer is the member's veth end in the bridge namespace.
	Peer string

	lab *Lab
	i   int // index in the store (0-based)

	net netFaults // nftables faults in NS

	mu   sync.Mutex
	down bool // killed or stopped by a fault, until Start
}

func (m *StoreMember) store() (MemberStore, error) {
	ms, ok := m.lab.Store.(MemberStore)
	if !ok {
		return nil, fmt.Errorf("lab: store %s (%T) cannot fault single members", m.lab.Store.Backend(), m.lab.Store)
	}
	return ms, nil
}

// Kill SIGKILLs the member (a crash: its data stays, Start brings it back).
func (m *StoreMember) Kill() error {
	ms, err := m.store()
	if err != nil {
		return err
	}
	m.setDown(true)
	if err := ms.KillMember(m.i); err != nil {
		return fmt.Errorf("lab: kill store member %s: %w", m.Name, err)
	}
	return nil
}

// Stop stops the member gracefully.
func (m *StoreMember) Stop() error {
	ms, err := m.store()
	if err != nil {
		return err
	}
	m.setDown(true)
	if err := ms.StopMember(m.i); err != nil {
		return fmt.Errorf("lab: stop store member %s: %w", m.Name, err)
	}
	return nil
}

// Start starts a killed or stopped member on its data and waits until it serves again.
func (m *StoreMember) Start(ctx context.Context) error {
	ms, err := m.store()
	if err != nil {
		return err
	}
	if err := ms.StartMember(ctx, m.i); err != nil {
		return fmt.Errorf("lab: start store member %s: %w", m.Name, err)
	}
	m.setDown(false)
	return nil
}

func (m *StoreMember) setDown(d bool) {
	m.mu.Lock()
	m.down = d
	m.mu.Unlock()
}

// Down reports whether the member was killed or stopped and not started since.
func (m *StoreMember) Down() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down
}

// Cut drops every packet the member sends or receives on the bridge (the partition rules of
// Node.Partition, in the member's namespace): its peers and the daemons lose it, its process runs
// on. Heal undoes it.
func (m *StoreMember) Cut(ctx context.Context) error {
	return m.net.add(ctx, faultPartition, partitionRules)
}

// Loss drops pct percent (1..99) of the member's IP packets each way, at random, until Heal.
func (m *StoreMember) Loss(ctx context.Context, pct int) error {
	if pct < 1 || pct > 99 {
		return fmt.Errorf("lab: store member %s: loss of %d%%: want 1..99", m.Name, pct)
	}
	return m.net.add(ctx, faultLoss, lossRules(pct))
}

// Heal removes every network fault of the member (Cut, Loss).
func (m *StoreMember) Heal(ctx context.Context) error { return m.net.clear(ctx) }

// IsCut reports whether the member is cut off.
func (m *StoreMember) IsCut() bool { return m.net.has(faultPartition) }

// Status asks the member (from inside its namespace, so a cut member answers too) what it is.
func (m *StoreMember) Status(ctx context.Context) (MemberStatus, error) {
	ms, err := m.store()
	if err != nil {
		return MemberStatus{}, err
	}
	return ms.MemberStatus(ctx, m.i)
}

// IsLeader reports whether the member says it is the store's leader.
func (m *StoreMember) IsLeader(ctx context.Context) (bool, error) {
	st, err := m.Status(ctx)
	return st.Leader, err
}

// Restore heals the member and starts it if it is down, waiting until it serves.
func (m *StoreMember) Restore(ctx context.Context) error {
	if err := m.Heal(ctx); err != nil {
		return err
	}
	if m.Down() {
		return m.Start(ctx)
	}
	return nil
}

// ErrNoStoreLeader is returned by StoreLeader while no member says it leads.
var ErrNoStoreLeader = errors.New("lab: the store has no leader")

// statusTimeout bounds one member's status query.
const statusTimeout = time.Second

// StoreLeader asks every member (concurrently, each at most statusTimeout) and returns the one that
// says it is the leader; while a cut-off leader has not yet noticed that the others elected a new
// one, two members say so, and the one with the higher term wins.
func (l *Lab) StoreLeader(ctx context.Context) (*StoreMember, error) {
	sts := make([]MemberStatus, len(l.StoreMembers))
	var g errgroup.Group
	for i, m := range l.StoreMembers {
		g.Go(func() error {
			sctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			st, err := m.Status(sctx)
			if err == nil {
				sts[i] = st
			}
			return nil // a member that does not answer leads nothing
		})
	}
	_ = g.Wait()
	var best *StoreMember
	var term uint64
	for i, st := range sts {
		if st.Leader && st.Serving && (best == nil || st.Term > term) {
			best, term = l.StoreMembers[i], st.Term
		}
	}
	if best == nil {
		return nil, ErrNoStoreLeader
	}
	return best, nil
}

// storePoll is how often WaitStoreLeader asks the members.
const storePoll = 50 * time.Millisecond

// WaitStoreLeader polls StoreLeader every storePoll until it names a member ok accepts (nil
// accepts any), and returns it with the time it was seen.
func (l *Lab) WaitStoreLeader(ctx context.Context, ok func(*StoreMember) bool) (*StoreMember, time.Time, error) {
	t := time.NewTicker(storePoll)
	defer t.Stop()
	for {
		m, err := l.StoreLeader(ctx)
		if err == nil && (ok == nil || ok(m)) {
			return m, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			last := "none"
			if m != nil {
				last = m.Name
			}
			return nil, time.Time{}, fmt.Errorf("lab: waiting for a store leader (last: %s): %w", last, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// StoreMember returns the member with the given name, or nil.
func (l *Lab) StoreMember(name string) *StoreMember {
	for _, m := range l.StoreMembers {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// StoreFollowers returns the members other than leader, in order.
func (l *Lab) StoreFollowers(leader *StoreMember) []*StoreMember {
	return slices.DeleteFunc(slices.Clone(l.StoreMembers), func(m *StoreMember) bool { return m == leader })
}

// restoreStore heals every cut member and starts every member that is down, concurrently (two
// members restarting after a quorum loss need each other to serve), then waits for a leader.
func (l *Lab) restoreStore(ctx context.Context) error {
	if _, ok := l.Store.(MemberStore); !ok {
		return nil
	}
	var g errgroup.Group
	for _, m := range l.StoreMembers {
		g.Go(func() error { return m.Restore(ctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	_, _, err := l.WaitStoreLeader(ctx, nil)
	return err
}

// memberNames joins the members' names with commas.
func memberNames(ms []*StoreMember) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, ",")
}
