package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/syncgroup"
	"github.com/hacoord/hacoord/internal/exepages"
)

// runDaemon runs every instance of p until ctx is done (SIGINT/SIGTERM), then lets go of the VIPs,
// resigns and returns nil. An instance whose Elector or VIP watch gives up stops the daemon: every
// instance lets go, and the error is returned. Start-up problems that are the operator's to fix
// come back as configError. SIGHUP reloads: reread gives the configuration as the command line
// gives it now, and the daemon applies it without a failover, or refuses it and runs on (reload.go).
func runDaemon(ctx context.Context, p *plan, stderr io.Writer, reread func() (*plan, error)) error {
	hup, stopHUP := notifyReload() // from the start: SIGHUP's default action kills
	defer stopHUP()
	log, level, err := newLeveledLogger(p.log, stderr)
	if err != nil {
		return configError{err}
	}
	defer func() { _ = log.Sync() }()
	mx, err := listenMetrics(p.metrics, p, log.Named("metrics"))
	if err != nil {
		return err
	}
	defer mx.close()
	var fg *guard // one fence guard for every instance
	if p.fenceGuard {
		if fg, err = startGuard(p.log, stderr, log.Named("guard")); err != nil {
			return err
		}
		defer fg.Close() // after the instances: once nothing is held
	}
	stores := newStoreClients(log) // one etcd client per endpoint set, for every instance
	defer stores.close()           // after the instances
	insts, err := openInstances(ctx, p, fg, stores, log)
	defer func() {
		for _, in := range insts {
			in.close() // after every run has returned
		}
	}()
	if err != nil {
		return err
	}
	if err := wireInstances(p, insts, log); err != nil {
		return err
	}
	wireAlarms(insts)
	mx.watch(insts)
	switch ctl, err := listenControl(p, insts, log); {
	case errors.Is(err, errControlInUse):
		log.Error("no control socket", zap.Error(err))
	case err != nil:
		return err
	default:
		defer ctl.Close()
	}
	names := make([]string, len(insts))
	for i, in := range insts {
		names[i] = in.plan.name
		logStart(in)
	}
	log.Info("starting", zap.String("node", p.node), zap.Strings("instances", names), zap.String("version", version))
	g, gctx := errgroup.WithContext(ctx)
	rl := &reloader{reread: mx.instrumented(reread), cur: p, insts: insts, level: level, log: log}
	g.Go(func() error { rl.watch(gctx, hup); return nil })
	startSdNotify(gctx, g, insts, log.Named("systemd"))
	g.Go(func() error { exepages.Run(gctx, exepages.StartupDone, exepages.Every, logReleased(log)); return nil })
	for _, in := range insts {
		g.Go(func() error { return in.run(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped: VIPs released and candidacies resigned")
	return nil
}

// openInstances opens every instance; on error it returns those it opened, for the caller to close.
func openInstances(ctx context.Context, p *plan, g *guard, stores *storeClients, log *zap.Logger) ([]*instance, error) {
	var insts []*instance
	for _, ip := range p.instances {
		in, err := openInstance(ctx, p, ip, g, stores, log)
		if err != nil {
			return insts, err
		}
		insts = append(insts, in)
	}
	return insts, nil
}

// wireInstances gives every instance its Coordinator: over its own Elector, or, for a member of a
// sync group, over the group's stand-in for it.
func wireInstances(p *plan, insts []*instance, log *zap.Logger) error {
	els := make([]election.Elector, len(insts))
	for i, in := range insts {
		els[i] = in.el
	}
	for _, sg := range p.syncGroups {
		names := make([]string, len(sg.members))
		members := make([]election.Elector, len(sg.members))
		for k, i := range sg.members {
			names[k], members[k] = insts[i].plan.name, insts[i].el
			if hasWeights(insts[i].plan) {
				insts[i].log.Warn("track weights are ignored in a sync group: a failing check takes the whole group out (keepalived's default)",
					zap.String("sync-group", sg.name))
			}
		}
		g, err := syncgroup.New(sg.name, names, members, log.Named("sync").With(zap.String("sync-group", sg.name)))
		if err != nil {
			return configError{err}
		}
		for k, i := range sg.members {
			els[i] = g.Member(k)
		}
	}
	for i, in := range insts {
		if err := in.wire(els[i]); err != nil {
			return err
		}
	}
	return nil
}

// hasWeights reports whether any of the instance's checks has a weight.
func hasWeights(ip *instancePlan) bool {
	for _, s := range ip.health.Scripts {
		if s.Weight != 0 {
			return true
		}
	}
	for _, t := range ip.health.Interfaces {
		if t.Weight != 0 {
			return true
		}
	}
	return false
}

// logStart says what the instance runs, and warns where VRRP cannot keep one master.
func logStart(in *instance) {
	ip := in.plan
	in.log.Info("instance starting", zap.String("backend", ip.backend), zap.String("group", ip.group),
		zap.String("interface", ip.iface), zap.Stringers("vips", ip.vips))
	if ip.backend != backendVRRP {
		return
	}
	in.log.Warn("VRRP mode has no quorum: if the path between nodes is cut, more than one node becomes master")
	if n := linkPaths(ip.iface); n < 2 {
		in.log.Warn("VRRP adverts travel on a single interface path: one cut link or switch port gives two masters; "+
			"bond two links under the interface, or use --backend etcd or zk", zap.String("interface", ip.iface), zap.Int("paths", n))
	}
}

func newLogger(ls LogSettings, w io.Writer) (*zap.Logger, error) {
	l, _, err := newLeveledLogger(ls, w)
	return l, err
}

// newLeveledLogger is newLogger, with the level a reload sets.
func newLeveledLogger(ls LogSettings, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(ls.Level)); err != nil {
		return nil, zap.AtomicLevel{}, fmt.Errorf("--log-level %q: %w", ls.Level, err)
	}
	al := zap.NewAtomicLevelAt(lvl)
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
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), al)), al, nil
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

// logReleased logs what exepages.Release gave back: the binary's pages only start-up touched,
// which were most of the daemon's resident memory (issue 14).
func logReleased(log *zap.Logger) func([]exepages.Mapping, error) {
	return func(ms []exepages.Mapping, err error) {
		if err != nil {
			log.Warn("releasing start-up pages of the binary", zap.Error(err))
			return
		}
		var n uintptr
		for _, m := range ms {
			n += m.End - m.Start
		}
		log.Debug("released start-up pages of the binary", zap.Int("mappings", len(ms)), zap.Uint64("bytes", uint64(n)))
	}
}
