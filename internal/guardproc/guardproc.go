// Package guardproc is the fence guard process (fencing.Guard's caller): what it removes with (a
// vip.Manager per instance and device, the kernel's IPVS) and how it ends a dead daemon's
// candidacy (etcd's JSON gateway, ZooKeeper's close-session). It pulls in neither etcd's gRPC
// client nor Prometheus nor cobra, so that the guard binary (cmd/hacoord-guard) stays small: the
// guard must not carry the daemon's memory.
package guardproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
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

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hacoord/hacoord/backend/etcd/etcdgw"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/internal/exepages"
	"github.com/hacoord/hacoord/internal/logsink"
	"github.com/hacoord/hacoord/internal/oneproc"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// The stores a Candidacy names.
const (
	StoreEtcd = "etcd"
	StoreZK   = "zk"
)

// Main is the guard process: it parses args (--log-format console|json, --log-level), ignores
// the signals that must not end it before its release, logs to stderr through a sink that never
// blocks it, and runs until stdin closes (Run). It returns the exit status: 0, 1 when the guard
// failed, 2 for bad arguments.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hacoord-guard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("log-format", "console", "console or json")
	level := fs.String("log-level", "info", "log level")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: hacoord-guard [--log-format console|json] [--log-level LEVEL]\n\nThe hacoord daemon's fence guard: started by the daemon, reads its instructions on stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hacoord-guard: unexpected arguments %q\n", fs.Args())
		return 2
	}
	// One P is plenty for the guard's few goroutines and halves its idle CPU: every hold wakes it
	// (4 a second with a 1 s TTL), and with more Ps the runtime hands each wake-up between threads
	// (lab, etcd TTL 1 s master: 40-50 ms of CPU in 45 s instead of 100 ms).
	oneproc.Set()
	// The daemon handles SIGINT/SIGTERM and releases in order; the guard goes on until its stdin
	// closes, which happens however the daemon ends. SIGPIPE too: if the daemon is already dead,
	// writing "ready" (or a log line to a dead log reader) must not kill the guard before it has
	// released.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	// The guard's log never blocks it: a reader that stopped reading (the daemon's stderr is a full
	// pipe) must not keep the guard from its next release.
	sink := logsink.New(stderr)
	defer sink.Close()
	log, err := NewLogger(*format, *level, sink)
	if err != nil {
		fmt.Fprintf(stderr, "hacoord-guard: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	// Most of the guard's resident memory is pages of its binary that only start-up touched
	// (flag, zap and TLS initialisation): give them back once it runs (issue 14).
	go exepages.Run(context.Background(), exepages.StartupDone, exepages.Every, func(_ []exepages.Mapping, err error) {
		if err != nil {
			log.Warn("releasing start-up pages of the binary", zap.Error(err))
		}
	})
	if err := Run(context.Background(), stdin, stdout, log.Named("fence-guard")); err != nil {
		log.Error("fence guard failed", zap.Error(err))
		return 1
	}
	return 0
}

// NewLogger is the daemon's logger (ISO 8601 "ts", JSON or console with capital levels) on w.
func NewLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.TimeKey = "ts"
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

// Run prints fencing.GuardReady on out, then guards what the daemon tells it on in (fencing.Guard)
// until in closes and everything is released.
func Run(ctx context.Context, in io.Reader, out io.Writer, log *zap.Logger) error {
	r := NewRemover(log)
	defer r.Close()
	// A failed write means the daemon is gone: Guard then reads EOF and releases.
	_, _ = fmt.Fprintln(out, fencing.GuardReady)
	return fencing.Guard(ctx, in, fencing.GuardActions{
		Learn:   r.Learn,
		Release: r.Release,
		EndCandidacy: func(ctx context.Context, instance, text string) error {
			return EndCandidacy(ctx, text, log.With(zap.String("instance", instance)))
		},
	}, log)
}

// Remover is what the fence guard process removes with: a vip.Manager per instance and device
// (opened when the daemon names the VIPs, so that a release at a deadline does not wait for
// sockets to open) and, once an instance names IPVS services, the kernel's IPVS.
type Remover struct {
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

// NewRemover returns a Remover; Close releases its sockets.
func NewRemover(log *zap.Logger) *Remover {
	return &Remover{log: log, vms: map[[2]string]*guardVIPs{}}
}

// Learn opens what a release of instance's holdings h needs (see fencing.GuardActions.Learn).
func (r *Remover) Learn(instance string, h fencing.Holdings) {
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

func (r *Remover) managerLocked(instance, dev string, vips []netip.Prefix) (*vip.Manager, error) {
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

// Release removes instance's VIPs on every device, then withdraws its IPVS services; it tries
// everything and reports the failures joined (fencing.Guard retries).
func (r *Remover) Release(instance string, h fencing.Holdings, _ string) (bool, error) {
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
func (r *Remover) withdrawIPVS(instance string, words []string) (bool, error) {
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

// Close closes every vip.Manager and the IPVS handle.
func (r *Remover) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, gv := range r.vms {
		_ = gv.m.Close()
	}
	if r.ipvs != nil {
		_ = r.ipvs.Close()
	}
}

// Candidacy is what a fence guard needs to end its dead daemon's candidacy in the store: the JSON
// text of a `candidacy` line (fencing.GuardConn.Candidacy). It carries the etcd password, which is
// why it goes over the guard's stdin and never on its command line.
type Candidacy struct {
	Store     string        `json:"store"`              // StoreEtcd or StoreZK
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

// ClientTLS is the TLS configuration of an etcd client with the files of --cacert, --cert and
// --key, as etcd's transport.TLSInfo.ClientConfig makes it (at least TLS 1.2; the client
// certificate needs both files; the CA file, if any, replaces the system's roots), without that
// package (it imports net/http, which would weigh on the guard's memory).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", keyFile, certFile)
		}
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// EndCandidacy ends the candidacy text names (a Candidacy): it revokes the etcd lease through the
// store's JSON gateway, or closes the ZooKeeper session; the guard calls it once its dead daemon's
// VIPs are gone.
func EndCandidacy(ctx context.Context, text string, log *zap.Logger) error {
	var c Candidacy
	if err := json.Unmarshal([]byte(text), &c); err != nil {
		return fmt.Errorf("fence guard: candidacy of %d bytes: %w", len(text), err) // it may hold a password
	}
	ctx, cancel := context.WithTimeout(ctx, max(c.Within, time.Second))
	defer cancel()
	switch c.Store {
	case StoreEtcd:
		id, err := strconv.ParseUint(c.Lease, 16, 64)
		if err != nil {
			return fmt.Errorf("fence guard: etcd lease %q: %w", c.Lease, err)
		}
		gc := etcdgw.Config{Endpoints: c.Endpoints, Username: c.User, Password: c.Password}
		if c.CACert != "" || c.Cert != "" || c.Key != "" {
			if gc.TLS, err = ClientTLS(c.CACert, c.Cert, c.Key); err != nil {
				return fmt.Errorf("fence guard: etcd TLS files: %w", err)
			}
		}
		log.Info("fence guard: revoking the dead daemon's etcd lease", zap.String("lease", c.Lease))
		return etcdgw.RevokeLease(ctx, gc, int64(id), log)
	case StoreZK:
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
