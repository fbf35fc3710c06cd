package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/guardproc"
	"github.com/hacoord/hacoord/ipvs"
)

// guard is the daemon's side of its one fence guard process (`hacoord fence-guard`, see
// fencing.Guard), which watches every instance: fencing.Supervisor starts it, tells it what each
// instance holds (its VIPs by device, the IPVS services it created), when and until when, and what
// ends its candidacy, and restarts it if it dies. Its methods are safe from any goroutine.
type guard struct {
	s *fencing.Supervisor
}

// guardReady is the line the guard prints on stdout once it is watching.
const guardReady = fencing.GuardReady

// startGuard starts the daemon's fence guard, the hacoord-guard program (guardBinary), logging as
// the daemon does.
func startGuard(ls LogSettings, stderr io.Writer, log *zap.Logger) (*guard, error) {
	bin, err := guardBinary()
	if err != nil {
		return nil, err
	}
	s, err := fencing.StartSupervisor([]string{bin, "--log-format", ls.Format, "--log-level", ls.Level}, stderr, log)
	if err != nil {
		return nil, err
	}
	return &guard{s: s}, nil
}

// SetVIPs tells the guard the VIPs instance has on device dev (none: nothing there), so that it
// removes them should the daemon die or pass the instance's deadline. Call it before the first
// hold, and whenever the list changes at run time: it is safe while the instance is master, in
// whatever order the new VIPs are then bound and the old ones removed, because until the
// instance's next release the guard goes on removing the VIPs it was told before too
// (fencing.Supervisor.VIPs): it may remove too much (an absent address is no error), never too
// little.
func (g *guard) SetVIPs(instance, dev string, vips []netip.Prefix) error {
	return g.s.VIPs(instance, dev, vips)
}

// Hold tells the guard instance holds its VIPs until until (zero: no deadline).
func (g *guard) Hold(instance string, until time.Time) error { return g.s.Hold(instance, until) }

// Release tells the guard instance has let go of its VIPs.
func (g *guard) Release(instance string) error { return g.s.Release(instance) }

// Candidacy tells the guard what ends instance's candidacy (a guardCandidacy's JSON, "": none).
func (g *guard) Candidacy(instance, text string) error { return g.s.Candidacy(instance, text) }

// IPVS tells the guard the IPVS services and real servers instance created (ipvs.Owned), which
// it withdraws should the daemon die or pass the instance's deadline.
func (g *guard) IPVS(instance string, o ipvs.Owned) error { return g.s.IPVS(instance, o.Words()) }

// Close ends the guard process once nothing is held (its stdin closes).
func (g *guard) Close() { g.s.Close() }

// newFenceGuardCommand is `hacoord fence-guard`, the guard run from the daemon's binary: the same
// code as the hacoord-guard program the daemon starts (guardproc.Main), kept so that an older
// daemon's argv and the tests that drive a guard by hand still work.
func newFenceGuardCommand(stderr io.Writer) *cobra.Command {
	ls := LogSettings{Format: "console", Level: "info"}
	cmd := &cobra.Command{
		Use:    "fence-guard",
		Short:  "The daemon's watchdog process, as hacoord-guard (started by the daemon; not for direct use)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			switch guardproc.Main([]string{"--log-format", ls.Format, "--log-level", ls.Level}, os.Stdin, os.Stdout, stderr) {
			case 0:
				return nil
			case 2:
				return configError{errors.New("fence guard: bad --log-format or --log-level")}
			}
			return errors.New("fence guard failed")
		},
	}
	cmd.Flags().StringVar(&ls.Format, "log-format", ls.Format, "console or json")
	cmd.Flags().StringVar(&ls.Level, "log-level", ls.Level, "log level")
	return cmd
}

// guardCandidacy is what a fence guard needs to end its dead daemon's candidacy in the store: the
// JSON text of a `candidacy` line (guardproc.Candidacy).
type guardCandidacy = guardproc.Candidacy

// relayCandidacy tells the daemon's fence guard of every lease or session the instance's Elector
// opens, so that the guard ends the candidacy once the daemon has died and the instance's VIPs
// are gone (on every device: the one guard removes them all first), and the next candidate takes
// over at once (fencing.GuardActions.EndCandidacy). files are the etcd TLS files and credentials
// (the etcd.Config holds them parsed).
func (in *instance) relayCandidacy(g *guard, files etcdKeys) {
	ip, log := in.plan, in.log.Named("guard")
	tell := func(c *guardCandidacy) {
		text := ""
		if c != nil {
			b, err := json.Marshal(c)
			if err != nil {
				log.Error("fence guard: encoding the candidacy", zap.Error(err))
				return
			}
			text = string(b)
		}
		if err := g.Candidacy(ip.name, text); err != nil {
			log.Warn("fence guard not told of the candidacy: a killed daemon's takeover waits for the store", zap.Error(err))
		}
	}
	switch el := in.el.(type) {
	case *etcd.Elector:
		el.OnLease(func(id int64) {
			if id == 0 {
				tell(nil)
				return
			}
			tell(&guardCandidacy{Store: backendEtcd, Endpoints: ip.etcd.Endpoints, Within: ip.etcd.TTL,
				Lease:  strconv.FormatInt(id, 16),
				CACert: files.CACert, Cert: files.Cert, Key: files.Key,
				User: ip.etcd.Username, Password: ip.etcd.Password})
		})
	case *zk.Elector:
		el.OnSession(func(id int64, passwd []byte) {
			tell(&guardCandidacy{Store: backendZK, Endpoints: ip.zk.Servers, Within: 2 * ip.zk.SessionTimeout,
				Session: strconv.FormatInt(id, 16), Passwd: hex.EncodeToString(passwd)})
		})
	}
}

// endCandidacy ends the candidacy text names (guardproc.EndCandidacy: the etcd lease through the
// store's JSON gateway, or the ZooKeeper session).
func endCandidacy(ctx context.Context, text string, log *zap.Logger) error {
	return guardproc.EndCandidacy(ctx, text, log)
}
