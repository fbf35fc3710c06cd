package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/ipvs"
)

// syncAction runs the master IPVS sync daemon (lvs_sync_daemon) while the instance is master: it
// starts it after the table is programmed and before the VIPs are bound, and stops it after they
// are released; the backup daemon runs from start-up to exit (openSync, closeSync). A sync
// daemon that fails to start costs only the persistence of the next failover, not this
// takeover: the failure is logged and the promotion goes on.
type syncAction struct {
	s   *ipvs.Syncer
	log *zap.Logger
}

func (a syncAction) Promote(ctx context.Context, _ election.State) error {
	if err := a.s.Promote(ctx); err != nil {
		a.log.Warn("the master sync daemon did not start: the backups will not learn this director's connections", zap.Error(err))
	}
	return nil
}

func (a syncAction) Demote(ctx context.Context, _ election.State) error {
	if err := a.s.Demote(ctx); err != nil {
		a.log.Warn("the master sync daemon did not stop", zap.Error(err))
	}
	return nil
}

func (a syncAction) String() string { return "lvs-sync-daemon" }

// openSync starts the backup sync daemon of an instance with lvs_sync_daemon (after stopping those
// a killed run left behind). Without IPVS it warns, as the Reconciler does, and runs without.
func (in *instance) openSync(ctx context.Context) error {
	cfg := in.plan.ipvs.SyncDaemon
	if cfg == nil {
		return nil
	}
	s, err := ipvs.NewSyncer(*cfg, in.log.Named("ipvs-sync"))
	switch {
	case errors.Is(err, ipvs.ErrUnavailable):
		in.log.Warn("IPVS unavailable: no lvs_sync_daemon", zap.Error(err))
		return nil
	case err != nil:
		return configError{fmt.Errorf("instance %s: %w", in.plan.name, err)}
	}
	in.sync = s
	if err := s.Start(ctx); err != nil {
		return configError{fmt.Errorf("instance %s: %w", in.plan.name, err)}
	}
	return nil
}

// withSync puts the instance's syncAction into acts before its nVIP VIP actions (the last ones).
func (in *instance) withSync(acts []election.Action, nVIP int) []election.Action {
	if in.sync == nil {
		return acts
	}
	i := len(acts) - nVIP
	return slices.Insert(acts, i, election.Action(syncAction{s: in.sync, log: in.log.Named("ipvs-sync")}))
}

// closeSync stops the daemons openSync and the master started.
func (in *instance) closeSync() {
	if in.sync != nil {
		if err := in.sync.Close(); err != nil {
			in.log.Warn("stopping the IPVS sync daemons", zap.Error(err))
		}
	}
}

// checkSyncDaemon refuses lvs_sync_daemon on more than one instance: a network namespace runs one
// master and one backup sync daemon.
func (b *planner) checkSyncDaemon(p *plan) {
	var with []string
	for _, ip := range p.instances {
		if ip.ipvs.SyncDaemon != nil {
			with = append(with, ip.name)
		}
	}
	if len(with) > 1 {
		b.fail("lvs_sync_daemon", "set for instances %s: the kernel runs one master and one backup sync daemon; set it on the instance that holds the virtual servers' VIPs only",
			strings.Join(with, ", "))
	}
}

// printSyncDaemons is `hacoord ipvs --daemon`.
func printSyncDaemons(stdout io.Writer) error {
	c, err := ipvs.OpenSync()
	if err != nil {
		return err
	}
	defer c.Close()
	ds, err := c.Daemons()
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, ipvs.FormatDaemons(ds))
	return err
}
