// Package ipvs programs the kernel's IPVS (LVS) table from keepalived-style virtual_server
// configuration: it computes the desired table from the configuration and the real servers' health
// checks (package check), diffs it against the kernel's table and applies the minimal change.
//
// The package is a leaf: it imports nothing of hacoord but its own check subpackage. cmd adapts a
// Reconciler into the election's Action (Promote programs the table before the VIP is bound,
// Demote after it is released).
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	cipvs "github.com/cloudflare/ipvs"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/ipvs/check"
)

// ErrUnavailable means the kernel offers no IPVS (no ip_vs module: the generic netlink family
// "IPVS" is missing) or hacoord may not use it. hacoord goes on managing VIPs without it.
var ErrUnavailable = errors.New("ipvs: unavailable")

// Kernel is a Client talking to the running kernel over generic netlink.
type Kernel struct {
	cipvs.Client
}

// Close closes the netlink socket.
func (k *Kernel) Close() error {
	if c, ok := k.Client.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Open connects to the kernel's IPVS and checks the table can be read. Every failure wraps
// ErrUnavailable, with the reason.
func Open() (*Kernel, error) {
	c, err := cipvs.New()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: the kernel has no IPVS (generic netlink family \"IPVS\" not found; load it with `modprobe ip_vs`)", ErrUnavailable)
		}
		return nil, fmt.Errorf("%w: connect: %v", ErrUnavailable, err)
	}
	k := &Kernel{Client: c}
	if _, err := c.Services(); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = k.Close()
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: reading the table needs CAP_NET_ADMIN: %v", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("%w: list services: %v", ErrUnavailable, err)
	}
	return k, nil
}

// State is what a Reconciler does with the kernel table.
type State string

const (
	// StateDisabled: no virtual servers are configured; the kernel is never touched.
	StateDisabled State = "disabled"
	// StateUnavailable: the kernel has no usable IPVS; the Reconciler does nothing.
	StateUnavailable State = "unavailable"
	// StateStandby: the table is not programmed (a backup with program_on_backup false, or withdrawn).
	StateStandby State = "standby"
	// StateActive: the table is programmed and kept in step with the checkers.
	StateActive State = "active"
)

// Status is a snapshot of a Reconciler.
type Status struct {
	State State `json:"state"`
	// Reason says why the state is unavailable.
	Reason string `json:"reason,omitempty"`
	// Error is the last failure to apply the table, empty once an apply succeeds.
	Error    string          `json:"error,omitempty"`
	Services []ServiceStatus `json:"services"`
}

// QuorumChange reports that a virtual service lost or regained its quorum.
type QuorumChange struct {
	Name        string
	Service     string
	Quorum      bool
	AliveWeight uint32
}

// Option adjusts New.
type Option func(*Reconciler)

// withOpen replaces Open, for tests of a kernel without IPVS on one that has it.
func withOpen(f func() (*Kernel, error)) Option { return func(r *Reconciler) { r.open = f } }

// WithClient makes the Reconciler use c instead of opening the kernel (tests, or a shared client).
// The Reconciler does not close it.
func WithClient(c Client) Option { return func(r *Reconciler) { r.client = c } }

// WithQuorumFunc calls f whenever a service's quorum state changes (keepalived's quorum_up /
// quorum_down), so the caller can, for example, lower its election priority. f is called with the
// Reconciler's lock held and must not block or call back into the Reconciler.
func WithQuorumFunc(f func(QuorumChange)) Option { return func(r *Reconciler) { r.onQuorum = f } }

type destKey struct {
	svc  ServiceKey
	dest netip.AddrPort
}

// Reconciler keeps the kernel's IPVS table in step with the configuration and the checkers. It
// owns only what it created: Withdraw removes the services it added and the destinations it added
// to services it did not create, never anything someone else configured. A service the
// configuration names that already exists is adopted: its scheduler, persistence and destinations
// are made to match the configuration, but Withdraw leaves the service and the destinations it
// found in place. Ownership lives in memory: after a restart, what a previous run created is
// adopted, not owned, unless Cleanup (called at start) withdraws it or takes it over. Owned says
// what is owned, for the fence guard that withdraws it should the daemon die.
//
// New allocates; Run runs the checkers and applies their results; Promote, Demote, Withdraw and
// Status may be called from any goroutine, also before and after Run.
type Reconciler struct {
	cfg      Config
	log      *zap.Logger
	onQuorum func(QuorumChange)
	onOwned  func()                  // WithOwnedChange
	open     func() (*Kernel, error) // nil: Open
	checkers []*check.Checker
	index    map[string][2]int // checker name -> virtual server, real server
	closer   io.Closer

	mu         sync.Mutex
	client     Client // nil when disabled or unavailable
	state      State
	reason     string
	active     bool
	health     [][]check.Status
	quorum     []bool
	services   []ServiceStatus
	lastErr    error
	ownedSvcs  map[ServiceKey]bool
	ownedDests map[destKey]bool
	rl         reloadState // SetConfig's (reload.go)
	ownedGen   uint64      // counts changes to ownedSvcs and ownedDests
	ownedTold  uint64      // ownedGen when onOwned last heard
}

// New validates cfg and builds the checkers; it starts nothing. Unless WithClient is given it
// opens the kernel's IPVS. When the kernel has none, New returns a Reconciler that does nothing
// (state "unavailable") together with an error wrapping ErrUnavailable: the caller says so once
// and carries on with the Reconciler. Any other error means cfg is invalid.
func New(cfg Config, log *zap.Logger, opts ...Option) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	r := &Reconciler{
		cfg:        cfg,
		log:        log,
		index:      map[string][2]int{},
		state:      StateStandby,
		ownedSvcs:  map[ServiceKey]bool{},
		ownedDests: map[destKey]bool{},
	}
	for _, o := range opts {
		o(r)
	}
	var err error
	if r.checkers, r.index, r.health, err = buildCheckers(cfg, 0, log); err != nil {
		return nil, err
	}
	_, r.services = desiredTable(cfg, r.health, nil)
	r.quorum = make([]bool, len(r.services))
	for i, s := range r.services {
		r.quorum[i] = s.Quorum
	}
	switch {
	case len(cfg.VirtualServers) == 0:
		r.state, r.client = StateDisabled, nil
	case r.client == nil:
		open := Open
		if r.open != nil {
			open = r.open
		}
		k, err := open()
		if err != nil {
			r.state, r.reason = StateUnavailable, err.Error()
			return r, err
		}
		r.client, r.closer = k, k
	}
	return r, nil
}

// applyTiming returns c with its checker's zero timing fields filled from d.
func applyTiming(c check.Config, d check.Timing) check.Config {
	switch {
	case c.TCP != nil:
		v := *c.TCP
		v.Timing = v.Timing.WithDefaults(d)
		c.TCP = &v
	case c.HTTP != nil:
		v := *c.HTTP
		v.Timing = v.Timing.WithDefaults(d)
		c.HTTP = &v
	case c.Script != nil:
		v := *c.Script
		v.Timing = v.Timing.WithDefaults(d)
		c.Script = &v
	}
	return c
}

// Close releases the kernel connection New opened. It is idempotent; it does not withdraw the
// table (Run does that when it returns).
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

// Run runs the checkers and applies their results until ctx is done, repairing drift every
// resync_interval. With program_on_backup (the default) it programs the table at once; otherwise
// only after Promote. When ctx ends it withdraws what it created (with a fresh 5s deadline, as the
// parent context is gone) and returns. Disabled or unavailable, it just waits for ctx.
func (r *Reconciler) Run(ctx context.Context) error {
	r.mu.Lock()
	client := r.client
	r.mu.Unlock()
	if client == nil {
		<-ctx.Done()
		return nil
	}
	results := make(chan check.Status)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.runCheckers(gctx, results) })
	g.Go(func() error { return r.loop(gctx, results) })
	err := g.Wait()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return errors.Join(err, r.Withdraw(cctx))
}

func (r *Reconciler) loop(ctx context.Context, results <-chan check.Status) error {
	if r.cfg.ProgramOnBackup {
		r.mu.Lock()
		r.active = true
		r.logApply(r.applyLocked())
		r.mu.Unlock()
	}
	var tick <-chan time.Time
	if r.cfg.ResyncInterval > 0 {
		t := time.NewTicker(r.cfg.ResyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-results:
			r.logApply(r.setHealthOf(s))
		case <-tick:
			r.mu.Lock()
			r.logApply(r.applyLocked())
			r.mu.Unlock()
		}
	}
}

// setHealth records real server j of virtual server i as s and applies the result.
func (r *Reconciler) setHealth(i, j int, s check.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.health[i][j] = s
	return r.applyLocked()
}

// logApply logs a failed background apply; it is not returned to anyone.
func (r *Reconciler) logApply(err error) {
	if err != nil {
		r.log.Warn("apply IPVS table", zap.Error(err))
	}
}

// Promote programs the table (idempotent) and returns once it is in the kernel, so the caller can
// bind the VIP next. Disabled or unavailable, it does nothing and returns nil.
func (r *Reconciler) Promote(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		return nil
	}
	r.active = true
	return r.applyLocked()
}

// Demote withdraws the table when program_on_backup is false and leaves it otherwise (then a
// backup keeps forwarding nothing, as it holds no VIP). Call it after the VIP is released.
func (r *Reconciler) Demote(ctx context.Context) error {
	if r.cfg.ProgramOnBackup {
		return nil
	}
	return r.Withdraw(ctx)
}

// Withdraw removes every service and destination this Reconciler created, and nothing else, and
// stops programming until the next Promote. It is idempotent.
func (r *Reconciler) Withdraw(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		return nil
	}
	r.active = false
	var errs []error
	for k := range r.ownedSvcs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		err := r.client.RemoveService(toIPVSService(Service{ServiceKey: k}))
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("ipvs: remove service %s: %w", k, err))
			continue
		}
		r.forgetService(k)
		r.log.Info("withdrew service", zap.String("service", k.String()))
	}
	for dk := range r.ownedDests {
		if r.ownedSvcs[dk.svc] {
			continue // removal failed above; its destinations go with it
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		d := Destination{Address: dk.dest.Addr(), Port: dk.dest.Port()}
		err := r.client.RemoveDestination(toIPVSService(Service{ServiceKey: dk.svc}), toIPVSDest(d))
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("ipvs: remove real server %s from %s: %w", dk.dest, dk.svc, err))
			continue
		}
		delete(r.ownedDests, dk)
		r.ownedGen++
	}
	err := errors.Join(errs...)
	r.lastErr = err
	r.ownedChanged()
	return err
}

// forgetService drops k and its destinations from what this Reconciler owns.
func (r *Reconciler) forgetService(k ServiceKey) {
	r.ownedGen++
	delete(r.ownedSvcs, k)
	for dk := range r.ownedDests {
		if dk.svc == k {
			delete(r.ownedDests, dk)
		}
	}
}

// Status returns a snapshot: the state, the last apply error and every service's quorum and real
// servers.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{State: r.state, Reason: r.reason, Services: make([]ServiceStatus, len(r.services))}
	if r.client != nil {
		st.State = StateStandby
		if r.active {
			st.State = StateActive
		}
	}
	if r.lastErr != nil {
		st.Error = r.lastErr.Error()
	}
	for i, s := range r.services {
		s.RealServers = append([]RealServerStatus(nil), s.RealServers...)
		st.Services[i] = s
	}
	return st
}

// Table reads the kernel's whole table (not only this Reconciler's services).
func (r *Reconciler) Table() (Table, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		if r.state == StateUnavailable {
			return Table{}, fmt.Errorf("%w: %s", ErrUnavailable, r.reason)
		}
		return Table{}, nil
	}
	return ReadTable(r.client)
}

// applyLocked recomputes the desired table and, while active, brings the kernel's in step.
func (r *Reconciler) applyLocked() error {
	desired, st := desiredTable(r.cfg, r.health, r.quorum)
	for i, s := range st {
		if s.Quorum != r.quorum[i] {
			r.quorum[i] = s.Quorum
			if s.Quorum {
				r.log.Info("quorum regained", zap.String("service", s.Name), zap.Uint32("alive-weight", s.AliveWeight))
			} else {
				r.log.Warn("quorum lost", zap.String("service", s.Name), zap.Uint32("alive-weight", s.AliveWeight), zap.Bool("sorry-server", s.Sorry))
			}
			if r.onQuorum != nil {
				r.onQuorum(QuorumChange{Name: s.Name, Service: s.Service, Quorum: s.Quorum, AliveWeight: s.AliveWeight})
			}
		}
	}
	r.services = st
	if !r.active {
		return nil
	}
	cur, err := ReadTable(r.client)
	if err != nil {
		r.lastErr = err
		return err
	}
	want := make(map[ServiceKey]bool, len(desired.Services))
	for _, s := range desired.Services {
		want[s.ServiceKey] = true
	}
	var managed Table
	for _, s := range cur.Services {
		if want[s.ServiceKey] || r.ownedSvcs[s.ServiceKey] {
			managed.Services = append(managed.Services, s)
		}
	}
	var errs []error
	for _, op := range Diff(managed, desired) {
		if err := r.do(op); err != nil {
			errs = append(errs, err)
		}
	}
	r.ownedChanged()
	r.lastErr = errors.Join(errs...)
	return r.lastErr
}

// do applies one Op, recording what it creates. A kernel that already has what an add creates, or
// lacks what an update changes, is met halfway (update, or create) rather than failing.
func (r *Reconciler) do(op Op) error {
	svc := toIPVSService(op.Service)
	dest := toIPVSDest(op.Destination)
	dk := destKey{svc: op.Service.ServiceKey, dest: netip.AddrPortFrom(op.Destination.Address, op.Destination.Port)}
	log := r.log.With(zap.String("service", op.Service.ServiceKey.String()))
	var err error
	switch op.Kind {
	case AddService:
		if err = r.client.CreateService(svc); err == nil {
			r.ownedSvcs[op.Service.ServiceKey] = true
			r.ownedGen++
		} else if errors.Is(err, syscall.EEXIST) {
			err = r.client.UpdateService(svc)
		}
	case UpdateService:
		if err = r.client.UpdateService(svc); errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
			if err = r.client.CreateService(svc); err == nil {
				r.ownedSvcs[op.Service.ServiceKey] = true
				r.ownedGen++
			}
		}
	case AddDestination:
		if err = r.client.CreateDestination(svc, dest); err == nil {
			r.ownedDests[dk] = true
			r.ownedGen++
		} else if errors.Is(err, syscall.EEXIST) {
			err = r.client.UpdateDestination(svc, dest)
		}
	case UpdateDestination:
		if err = r.client.UpdateDestination(svc, dest); errors.Is(err, syscall.ENOENT) {
			if err = r.client.CreateDestination(svc, dest); err == nil {
				r.ownedDests[dk] = true
				r.ownedGen++
			}
		}
	case RemoveDestination:
		if err = r.client.RemoveDestination(svc, dest); errors.Is(err, syscall.ENOENT) {
			err = nil
		}
		if err == nil && r.ownedDests[dk] {
			delete(r.ownedDests, dk)
			r.ownedGen++
		}
	case RemoveService:
		if err = r.client.RemoveService(svc); errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT) {
			err = nil
		}
		if err == nil {
			r.forgetService(op.Service.ServiceKey)
		}
	}
	if err != nil {
		return fmt.Errorf("ipvs: %s: %w", op, err)
	}
	if op.Kind == AddDestination || op.Kind == UpdateDestination || op.Kind == RemoveDestination {
		log = log.With(zap.String("real-server", dk.dest.String()))
	}
	log.Info(op.Kind.String(), zap.String("op", op.String()))
	return nil
}
