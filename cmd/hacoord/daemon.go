package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// runDaemon runs one node until ctx is done (SIGINT/SIGTERM), then lets go of the VIPs, resigns
// and returns nil. Start-up problems that are the operator's to fix come back as configError.
func runDaemon(ctx context.Context, s Settings, stderr io.Writer) error {
	log, err := newLogger(s.Log, stderr)
	if err != nil {
		return configError{err}
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("group", s.Group), zap.String("node", s.Name))

	vips, _ := s.vipPrefixes() // validated
	vm, err := vip.New(vipConfig(s, vips), log.Named("vip"))
	if err != nil {
		return configError{err}
	}
	defer vm.Close() // runs last: after the helpers (vm.Run among them) have returned
	addr, err := nodeAddress(s)
	if err != nil {
		return configError{err}
	}
	rec := election.Record{Group: s.Group, Node: s.Name, Address: addr, VIPs: vips}
	el, err := newElector(s, rec, log)
	if err != nil {
		return configError{err}
	}

	// Start-up: a VIP on our interface now is a leftover (a crash, a SIGKILL): we are not master yet.
	if err := vm.Cleanup(ctx); err != nil {
		return fmt.Errorf("remove leftover VIPs: %w", err)
	}

	ipv, err := ipvs.New(s.IPVS, log.Named("ipvs"))
	switch {
	case errors.Is(err, ipvs.ErrUnavailable):
		// Said once; the VIPs are managed regardless and status reports IPVS as unavailable.
		log.Warn("IPVS unavailable: virtual servers will not be programmed", zap.Error(err))
	case err != nil:
		return configError{err}
	}
	defer ipv.Close()

	var g *guard
	if s.FenceGuard {
		if g, err = startGuard(s, stderr, log); err != nil {
			return err
		}
		defer g.Close()
	}
	actions, notifier, err := buildActions(s, vm, ipv, g, log)
	if err != nil {
		return configError{err}
	}
	checkers, checks, err := healthCheckers(s, log.Named("health"))
	if err != nil {
		return err
	}
	gate, err := election.NewGate(el, s.VRRP.Priority, checks, log.Named("health"))
	if err != nil {
		return configError{err}
	}
	co, err := election.NewCoordinator(el, actions, log.Named("coordinator"))
	if err != nil {
		return err
	}
	log.Info("starting", zap.String("backend", s.Backend), zap.String("interface", s.Interface),
		zap.Stringers("vips", vips), zap.String("version", version))
	if s.Backend == "vrrp" {
		log.Warn("VRRP mode has no quorum: if the path between nodes is cut, more than one node becomes master")
		if n := linkPaths(s.Interface); n < 2 {
			log.Warn("VRRP adverts travel on a single interface path: one cut link or switch port gives two masters; "+
				"bond two links under the interface, or use --backend etcd or zk", zap.String("interface", s.Interface), zap.Int("paths", n))
		}
	}

	// The helpers (address/link watch and announce schedule, IPVS checkers, health checks, notifier,
	// status file) outlive the coordinator: they are stopped only after it has demoted.
	aux, stopAux := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAux()
	cctx, stopCo := context.WithCancelCause(ctx)
	defer stopCo(nil)
	var helpers errgroup.Group
	helpers.Go(func() error {
		err := vm.Run(aux)
		if err != nil && aux.Err() == nil {
			stopCo(fmt.Errorf("vip watch stopped: %w", err))
		}
		return ignoreCanceled(err)
	})
	if notifier != nil {
		helpers.Go(func() error { return ignoreCanceled(notifier.Run(aux)) })
	}
	helpers.Go(func() error { return ignoreCanceled(ipv.Run(aux)) })
	helpers.Go(func() error { return ignoreCanceled(runHealth(aux, checkers, gate)) })
	st := &statusWriter{path: s.StatusFile, s: s, co: co, vm: vm, ipvs: ipv, gate: gate, log: log.Named("status")}
	if st.prepare() {
		co.OnChange(func(cs election.Status) { st.write(st.snapshotOf(cs)) })
		helpers.Go(func() error { st.run(aux); return nil })
	}

	err = co.Run(cctx)
	stopAux()
	herr := helpers.Wait()
	if cause := context.Cause(cctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	if err == nil {
		err = herr
	}
	if err != nil {
		return err
	}
	log.Info("stopped: VIPs released and candidacy resigned")
	return nil
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func vipConfig(s Settings, vips []netip.Prefix) vip.Config {
	c := vip.DefaultConfig()
	c.Interface = s.Interface
	c.VIPs = vips
	c.Label = s.VIPLabel
	if s.VIPLifetime != nil {
		c.Lifetime = *s.VIPLifetime
	}
	c.Announce.Count = s.Announce.Count
	c.Announce.Repeat = s.Announce.Repeat
	c.Announce.RepeatInterval = time.Duration(s.Announce.Interval)
	c.Announce.Refresh = time.Duration(s.Announce.Refresh)
	return c
}

// vipAction binds the VIPs on promote (with the deadline, which also sets their kernel lifetime),
// renews the lifetime on every lease renewal and unbinds them on demote.
// With a fence guard, the guard hears of the hold (and its deadline) before anything is bound, of
// every renewal before the kernel lifetime moves, and of the release after the VIPs are gone.
type vipAction struct {
	m     *vip.Manager
	guard *guard // nil: no fence guard
	log   *zap.Logger
}

func (a vipAction) hold(until time.Time) error {
	if a.guard == nil {
		return nil
	}
	err := a.guard.Hold(until)
	if err != nil && !errors.Is(err, fencing.ErrGuardDeadline) {
		// The daemon still fences itself and the kernel lifetime still backs it up.
		a.log.Error("fence guard unreachable: a SIGKILLed or stopped daemon would keep the VIPs until their kernel lifetime ends", zap.Error(err))
		return nil
	}
	return err
}

func (a vipAction) Promote(ctx context.Context, s election.State) error {
	if err := a.hold(s.ValidUntil); err != nil {
		return err
	}
	return a.m.Acquire(ctx, s.ValidUntil)
}

func (a vipAction) Renew(ctx context.Context, s election.State) error {
	if err := a.hold(s.ValidUntil); err != nil {
		return err
	}
	return a.m.Extend(ctx, s.ValidUntil)
}

func (a vipAction) Demote(ctx context.Context, _ election.State) error {
	err := a.m.Release(ctx)
	if a.guard != nil && err == nil {
		if gerr := a.guard.Release(); gerr != nil {
			a.log.Warn("telling the fence guard", zap.Error(gerr))
		}
	}
	return err
}

func (a vipAction) Reassert(context.Context, election.State) error {
	a.m.Reannounce("contact with the store regained")
	return nil
}

func (a vipAction) String() string { return "vip" }

// ipvsAction programs the IPVS table before the VIPs are bound and withdraws it (when
// program_on_backup is off) after they are released.
type ipvsAction struct{ r *ipvs.Reconciler }

func (a ipvsAction) Promote(ctx context.Context, _ election.State) error { return a.r.Promote(ctx) }
func (a ipvsAction) Demote(ctx context.Context, _ election.State) error  { return a.r.Demote(ctx) }
func (a ipvsAction) String() string                                      { return "ipvs" }

// buildActions returns the promote chain (fence hook -> IPVS -> VIPs -> notify) and the notifier
// to run.
func buildActions(s Settings, vm *vip.Manager, ipv *ipvs.Reconciler, g *guard, log *zap.Logger) ([]election.Action, *fencing.Notifier, error) {
	event := func(role string, st election.State, reason string) fencing.Event {
		return fencing.Event{Group: s.Group, Node: s.Name, Role: role, Term: st.Term, Leader: st.Leader.Node, Reason: reason}
	}
	var actions []election.Action
	if s.Hooks.Fence != "" {
		h := fencing.Hook{Path: s.Hooks.Fence, Timeout: time.Duration(s.Hooks.Timeout)}
		actions = append(actions, election.ActionFunc{
			Name: "fence-hook",
			PromoteFunc: func(ctx context.Context, st election.State) error {
				return h.Run(ctx, event("master", st, st.Reason))
			},
		})
	}
	if len(s.IPVS.VirtualServers) > 0 {
		actions = append(actions, ipvsAction{ipv})
	}
	actions = append(actions, vipAction{m: vm, guard: g, log: log.Named("vip")})
	var n *fencing.Notifier
	if s.Hooks.Notify != "" {
		var err error
		n, err = fencing.NewNotifier(fencing.Hook{Path: s.Hooks.Notify, Timeout: time.Duration(s.Hooks.Timeout)}, log.Named("notify"))
		if err != nil {
			return nil, nil, err
		}
		actions = append(actions, election.ActionFunc{
			Name: "notify-hook",
			PromoteFunc: func(_ context.Context, st election.State) error {
				n.Notify(event("master", st, st.Reason))
				return nil
			},
			DemoteFunc: func(_ context.Context, st election.State) error {
				n.Notify(event("backup", st, st.Reason))
				return nil
			},
		})
	}
	return actions, n, nil
}

// nodeAddress is the address published in the master record: --address, or the interface's first
// global address (IPv4 preferred).
func nodeAddress(s Settings) (netip.Addr, error) {
	if s.Address != "" {
		return netip.ParseAddr(s.Address)
	}
	ifi, err := net.InterfaceByName(s.Interface)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--interface %s: %w", s.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--interface %s: addresses: %w", s.Interface, err)
	}
	vips, _ := s.vipPrefixes()
	isVIP := func(a netip.Addr) bool {
		for _, v := range vips {
			if v.Addr() == a {
				return true
			}
		}
		return false
	}
	var v6 netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.IsGlobalUnicast() || isVIP(ip.Unmap()) {
			continue
		}
		ip = ip.Unmap()
		if ip.Is4() {
			return ip, nil
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	return v6, nil // may be the zero Addr: the record then carries no address
}

func newLogger(ls LogSettings, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(ls.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", ls.Level, err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.TimeKey = "ts"
	var enc zapcore.Encoder
	if ls.Format == "json" {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

// linkPaths counts the physical paths under an interface: the slaves of a bond or team that are up,
// else 1.
func linkPaths(ifname string) int {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 1
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 1
	}
	return countPaths(l, links)
}

// countPaths counts the paths under l among links: the slaves of a bond or team that are up; any
// other link is one path.
func countPaths(l netlink.Link, links []netlink.Link) int {
	if t := l.Type(); t != "bond" && t != "team" {
		return 1
	}
	n := 0
	for _, o := range links {
		if o.Attrs().MasterIndex == l.Attrs().Index && o.Attrs().OperState == netlink.OperUp {
			n++
		}
	}
	return n
}
