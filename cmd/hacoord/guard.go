package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/vip"
)

// guard is the daemon's side of a fence guard process (`hacoord fence-guard`, see fencing.Guard):
// fencing.Supervisor starts it, tells it when the VIPs are held and until when, and restarts it if
// it dies.
type guard = fencing.Supervisor

// guardReady is the line the guard prints on stdout once it is watching.
const guardReady = fencing.GuardReady

// startGuard starts a fence guard for s's interface and VIPs, logging as the daemon does.
func startGuard(s Settings, stderr io.Writer, log *zap.Logger) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	argv := []string{exe, "fence-guard", "--interface", s.Interface, "--log-format", s.Log.Format, "--log-level", s.Log.Level}
	for _, v := range s.VIPs {
		argv = append(argv, "--vip", v)
	}
	return fencing.StartSupervisor(argv, stderr, log)
}

func newFenceGuardCommand(stderr io.Writer) *cobra.Command {
	var (
		ifname string
		vips   []string
		ls     = LogSettings{Format: "console", Level: "info"}
	)
	cmd := &cobra.Command{
		Use:    "fence-guard",
		Short:  "The daemon's watchdog process (started by the daemon; not for direct use)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(*cobra.Command, []string) error {
			// The daemon handles SIGINT/SIGTERM and releases in order; the guard goes on until its
			// stdin closes, which happens however the daemon ends. SIGPIPE too: if the daemon is
			// already dead, writing "ready" (or a log line to a dead log reader) must not kill the
			// guard before it has released.
			signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
			// The guard's log never blocks it: a reader that stopped reading (the daemon's stderr is
			// a full pipe) must not keep the guard from its next release.
			sink := newLogSink(stderr)
			defer sink.Close()
			log, err := newLogger(ls, sink)
			if err != nil {
				return configError{err}
			}
			defer func() { _ = log.Sync() }()
			s := Settings{VIPs: vips}
			pfx, err := s.vipPrefixes()
			if err != nil {
				return err
			}
			c := vip.DefaultConfig()
			c.Interface, c.VIPs, c.Lifetime = ifname, pfx, false
			c.Announce.Count, c.Announce.Repeat, c.Announce.Refresh = 0, 0, 0 // the guard only ever removes
			m, err := vip.New(c, nil)
			if err != nil {
				return err
			}
			defer m.Close()
			// Every configured VIP is deleted without listing first (a delete of an absent address is
			// no error); fencing.Guard retries a release that fails.
			release := func(string) (bool, error) {
				removed, err := m.Remove(context.Background())
				return len(removed) > 0, err
			}
			// A failed write means the daemon is gone: Guard then reads EOF and releases.
			_, _ = fmt.Println(guardReady)
			glog := log.Named("fence-guard")
			return fencing.Guard(context.Background(), os.Stdin, fencing.GuardActions{
				Release:      release,
				EndCandidacy: func(ctx context.Context, text string) error { return endCandidacy(ctx, text, glog) },
			}, glog)
		},
	}
	cmd.Flags().StringVar(&ifname, "interface", "", "interface carrying the VIPs")
	cmd.Flags().StringArrayVar(&vips, "vip", nil, "VIP (repeat)")
	cmd.Flags().StringVar(&ls.Format, "log-format", ls.Format, "console or json")
	cmd.Flags().StringVar(&ls.Level, "log-level", ls.Level, "log level")
	return cmd
}

// guardCandidacy is what a fence guard needs to end its dead daemon's candidacy in the store: the
// JSON text of a `candidacy` line (fencing.GuardConn.Candidacy). It carries the etcd password,
// which is why it goes over the guard's stdin and never on its command line.
type guardCandidacy struct {
	Store     string        `json:"store"`              // backendEtcd or backendZK
	Endpoints []string      `json:"endpoints"`          // etcd client URLs, or ZooKeeper servers
	Within    time.Duration `json:"within"`             // try no longer: the store ends it by then
	Lease     string        `json:"lease,omitempty"`    // etcd: the lease ID, hex
	CACert    string        `json:"cacert,omitempty"`   // etcd TLS files, as --cacert --cert --key
	Cert      string        `json:"cert,omitempty"`     //
	Key       string        `json:"key,omitempty"`      //
	User      string        `json:"user,omitempty"`     // etcd auth
	Password  string        `json:"password,omitempty"` //
	Session   string        `json:"session,omitempty"`  // ZooKeeper: the session id, hex
	Passwd    string        `json:"passwd,omitempty"`   // ZooKeeper: the session password, hex
}

// relayCandidacy tells the instance's fence guard of every lease or session its Elector opens, so
// that the guard ends the candidacy once the daemon has died and the VIPs are gone, and the next
// candidate takes over at once (fencing.GuardActions.EndCandidacy). Only an instance with one
// guard does: with VIPs on several devices each guard removes only its own, and a guard that ended
// the candidacy after its own release would let the next master bind beside the others' VIPs.
// files are the etcd TLS files and credentials (the etcd.Config holds them parsed).
func (in *instance) relayCandidacy(files etcdKeys) {
	if len(in.guards) != 1 || in.guards[0] == nil {
		if len(in.guards) > 1 {
			in.log.Info("VIPs on several devices: a killed daemon's candidacy ends when its lease or session runs out, not when its fence guards have released")
		}
		return
	}
	g, ip, log := in.guards[0], in.plan, in.log.Named("guard")
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
		if err := g.Candidacy(text); err != nil {
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

// endCandidacy ends the candidacy text names (a guardCandidacy): it revokes the etcd lease through
// the store's JSON gateway, or closes the ZooKeeper session; the guard calls it once its dead
// daemon's VIPs are gone.
func endCandidacy(ctx context.Context, text string, log *zap.Logger) error {
	var c guardCandidacy
	if err := json.Unmarshal([]byte(text), &c); err != nil {
		return fmt.Errorf("fence guard: candidacy of %d bytes: %w", len(text), err) // it may hold a password
	}
	ctx, cancel := context.WithTimeout(ctx, max(c.Within, time.Second))
	defer cancel()
	switch c.Store {
	case backendEtcd:
		id, err := strconv.ParseUint(c.Lease, 16, 64)
		if err != nil {
			return fmt.Errorf("fence guard: etcd lease %q: %w", c.Lease, err)
		}
		gc := etcd.GatewayConfig{Endpoints: c.Endpoints, Username: c.User, Password: c.Password}
		if c.CACert != "" || c.Cert != "" || c.Key != "" {
			info := transport.TLSInfo{CertFile: c.Cert, KeyFile: c.Key, TrustedCAFile: c.CACert}
			if gc.TLS, err = info.ClientConfig(); err != nil {
				return fmt.Errorf("fence guard: etcd TLS files: %w", err)
			}
		}
		log.Info("fence guard: revoking the dead daemon's etcd lease", zap.String("lease", c.Lease))
		return etcd.RevokeLease(ctx, gc, int64(id), log)
	case backendZK:
		id, err := strconv.ParseUint(c.Session, 16, 64)
		if err != nil {
			return fmt.Errorf("fence guard: ZooKeeper session %q: %w", c.Session, err)
		}
		passwd, err := hex.DecodeString(c.Passwd)
		if err != nil {
			return fmt.Errorf("fence guard: ZooKeeper session password: %w", err)
		}
		log.Info("fence guard: closing the dead daemon's ZooKeeper session", zap.String("session", "0x"+c.Session))
		err = zk.CloseSession(ctx, c.Endpoints, int64(id), passwd, 0)
		if errors.Is(err, zk.ErrSessionGone) {
			return nil // expired or closed already
		}
		return err
	}
	return fmt.Errorf("fence guard: candidacy in store %q: not etcd or zk", c.Store)
}
