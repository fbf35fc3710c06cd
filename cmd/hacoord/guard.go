package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
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

// startGuard starts the daemon's fence guard, logging as the daemon does.
func startGuard(ls LogSettings, stderr io.Writer, log *zap.Logger) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("fence guard: %w", err)
	}
	s, err := fencing.StartSupervisor([]string{exe, "fence-guard", "--log-format", ls.Format, "--log-level", ls.Level}, stderr, log)
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

func newFenceGuardCommand(stderr io.Writer) *cobra.Command {
	ls := LogSettings{Format: "console", Level: "info"}
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
			glog := log.Named("fence-guard")
			r := newGuardRemover(glog)
			defer r.close()
			// A failed write means the daemon is gone: Guard then reads EOF and releases.
			_, _ = fmt.Println(guardReady)
			return fencing.Guard(context.Background(), os.Stdin, fencing.GuardActions{
				Learn:   r.learn,
				Release: r.release,
				EndCandidacy: func(ctx context.Context, instance, text string) error {
					return endCandidacy(ctx, text, glog.With(zap.String("instance", instance)))
				},
			}, glog)
		},
	}
	cmd.Flags().StringVar(&ls.Format, "log-format", ls.Format, "console or json")
	cmd.Flags().StringVar(&ls.Level, "log-level", ls.Level, "log level")
	return cmd
}

// guardRemover is what the fence guard process removes with: a vip.Manager per instance and
// device (opened when the daemon names the VIPs, so that a release at a deadline does not wait
// for sockets to open) and, once an instance names IPVS services, the kernel's IPVS.
type guardRemover struct {
	log  *zap.Logger
	mu   sync.Mutex
	vms  map[[2]string]*guardVIPs // instance, device
	ipvs *ipvs.Kernel
}

// guardVIPs is a vip.Manager for one list of VIPs on one device.
type guardVIPs struct {
	vips []netip.Prefix
	m    *vip.Manager
}

func newGuardRemover(log *zap.Logger) *guardRemover {
	return &guardRemover{log: log, vms: map[[2]string]*guardVIPs{}}
}

// learn opens what a release of instance's holdings h needs (see fencing.GuardActions.Learn).
func (r *guardRemover) learn(instance string, h fencing.Holdings) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, gv := range r.vms {
		if key[0] == instance && !slices.Equal(h.VIPs[key[1]], gv.vips) {
			_ = gv.m.Close()
			delete(r.vms, key)
		}
	}
	for dev, vips := range h.VIPs {
		if _, err := r.managerLocked(instance, dev, vips); err != nil {
			r.log.Warn("fence guard: cannot watch the VIPs yet; trying again at the release", zap.String("instance", instance), zap.String("interface", dev), zap.Error(err))
		}
	}
	if len(h.IPVS) > 0 && r.ipvs == nil {
		if k, err := ipvs.Open(); err == nil {
			r.ipvs = k
		} else {
			r.log.Warn("fence guard: IPVS not open yet; trying again at the release", zap.String("instance", instance), zap.Error(err))
		}
	}
}

func (r *guardRemover) managerLocked(instance, dev string, vips []netip.Prefix) (*vip.Manager, error) {
	key := [2]string{instance, dev}
	if gv := r.vms[key]; gv != nil && slices.Equal(gv.vips, vips) {
		return gv.m, nil
	}
	c := vip.DefaultConfig()
	c.Interface, c.VIPs, c.Lifetime = dev, slices.Clone(vips), false
	// The guard only ever removes: no announcement, no probe (and so no packet socket).
	c.Announce.Count, c.Announce.Repeat, c.Announce.Refresh = 0, 0, 0
	c.Conflict.Policy = vip.ConflictOff
	m, err := vip.New(c, nil)
	if err != nil {
		return nil, err
	}
	r.vms[key] = &guardVIPs{vips: c.VIPs, m: m}
	return m, nil
}

// release removes instance's VIPs on every device, then withdraws its IPVS services; it tries
// everything and reports the failures joined (fencing.Guard retries).
func (r *guardRemover) release(instance string, h fencing.Holdings, _ string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	any := false
	var errs []error
	for _, dev := range slices.Sorted(maps.Keys(h.VIPs)) {
		m, err := r.managerLocked(instance, dev, h.VIPs[dev])
		if err != nil {
			var nf netlink.LinkNotFoundError
			if _, lerr := netlink.LinkByName(dev); errors.As(lerr, &nf) {
				continue // the device is gone, and its addresses with it
			}
			errs = append(errs, err)
			continue
		}
		// Every VIP is deleted without listing first (a delete of an absent address is no error).
		removed, err := m.Remove(context.Background())
		any = any || len(removed) > 0
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(h.IPVS) > 0 {
		removed, err := r.withdrawIPVS(instance, h.IPVS)
		any = any || removed
		if err != nil {
			errs = append(errs, err)
		}
	}
	return any, errors.Join(errs...)
}

// withdrawIPVS withdraws the IPVS services and real servers words names (ipvs.Owned.Words).
func (r *guardRemover) withdrawIPVS(instance string, words []string) (bool, error) {
	o, err := ipvs.ParseOwned(words)
	if err != nil {
		// Not something a retry mends (a daemon of another version?): said, and left.
		r.log.Error("fence guard: the daemon's IPVS services do not parse; not withdrawing them", zap.String("instance", instance), zap.Error(err))
		return false, nil
	}
	if r.ipvs == nil {
		k, err := ipvs.Open()
		if err != nil {
			return false, err
		}
		r.ipvs = k
	}
	removed, err := ipvs.WithdrawOwned(r.ipvs, o)
	if removed {
		r.log.Warn("fence guard withdrew the dead daemon's IPVS services", zap.String("instance", instance), zap.Strings("ipvs", words))
	}
	return removed, err
}

func (r *guardRemover) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, gv := range r.vms {
		_ = gv.m.Close()
	}
	if r.ipvs != nil {
		_ = r.ipvs.Close()
	}
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
