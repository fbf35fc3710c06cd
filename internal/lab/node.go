package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// What a lab node runs (Options.Impl).
const (
	ImplHacoord    = "hacoord"
	ImplKeepalived = "keepalived"
)

// VRID is the virtual router id of the VRRP lab.
const VRID = 51

// Priority is node i's VRRP priority: n1 is preferred.
func (n *Node) Priority() int { return 100 + 10*(len(n.lab.Nodes)-n.Index) }

// ControlSocket is the node's daemon's control socket (hacoord resign, transfer, maintenance
// --control-socket), in the lab's directory so that labs running at once do not share one.
func (n *Node) ControlSocket() string { return filepath.Join(n.lab.dir, n.Name+".sock") }

// DaemonArgs returns the daemon's command line (without the binary) for this node.
func (n *Node) DaemonArgs() []string {
	o := n.lab.opts
	args := []string{
		"--backend", n.lab.Store.Backend(),
		"--name", n.Name,
		"--interface", "eth0",
		"--log-format", "json",
		"--metrics-address", MetricsAddress,
		"--status-file", filepath.Join(n.lab.dir, n.Name+".status.json"),
		"--control-socket", n.ControlSocket(),
		"--state-dir", filepath.Join(n.lab.dir, n.Name+".state"),
	}
	if o.Config {
		args = append(args, "--config", n.ConfigPath())
	} else {
		args = append(args, "--vip", VIP.String())
	}
	switch n.lab.Store.Backend() {
	case "vrrp":
		args = append(args, "--vrid", strconv.Itoa(VRID), "--priority", strconv.Itoa(n.Priority()),
			"--advert-int", o.AdvertInt.String())
	case "zk":
		args = append(args, "--endpoints", strings.Join(n.lab.Store.Endpoints(), ","),
			"--zk-session-timeout", o.TTL.String())
	default:
		args = append(args, "--endpoints", strings.Join(n.lab.Store.Endpoints(), ","),
			"--lease-ttl", o.TTL.String())
	}
	args = append(args, o.ExtraArgs...)
	if o.NodeArgs != nil {
		args = append(args, o.NodeArgs(n.Name)...)
	}
	return args
}

// keepalivedConf is the node's keepalived.conf: one vrrp_instance equivalent to DaemonArgs
// (VRRPv3, same VRID, priority, advert interval and VIP; keepalived's own GARP defaults).
func (n *Node) keepalivedConf() string {
	adv := strconv.FormatFloat(n.lab.opts.AdvertInt.Seconds(), 'f', -1, 64)
	return fmt.Sprintf(`global_defs {
  router_id %s
}
vrrp_instance VI {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int %s
  version 3
  virtual_ipaddress {
    %s dev eth0
  }
}
`, n.Name, VRID, n.Priority(), adv, VIP)
}

// startDaemon starts the node's daemon: hacoord, or keepalived (in the foreground, its whole
// process group signalled as one).
func (n *Node) startDaemon() (*Proc, error) {
	o := n.lab.opts
	logPath := filepath.Join(n.lab.dir, n.Name+"-"+n.impl()+".log")
	if n.impl() != ImplKeepalived {
		return startProc(n.NS, n.Name+"/hacoord", logPath, o.HacoordBin, n.DaemonArgs()...)
	}
	dir := filepath.Join(n.lab.dir, n.Name+"-keepalived")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", n.Name, err)
	}
	for _, f := range []string{"keepalived.pid", "vrrp.pid"} { // the previous run is dead
		_ = os.Remove(filepath.Join(dir, f))
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(n.keepalivedConf()), 0o644); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", n.Name, err)
	}
	p, err := startProc(n.NS, n.Name+"/keepalived", logPath, "keepalived", "--dont-fork", "--log-console",
		"--log-detail", "--no-syslog", "--vrrp", "--dont-respawn", "--use-file", conf,
		"--pid", filepath.Join(dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid"))
	if err != nil {
		return nil, err
	}
	p.group = true
	return p, nil
}

// impl is what the node runs: Options.NodeImpl's answer, else Options.Impl.
func (n *Node) impl() string {
	if f := n.lab.opts.NodeImpl; f != nil {
		if i := f(n.Name); i != "" {
			return i
		}
	}
	return n.lab.opts.Impl
}

// readyLine is what the daemon logs once it is running.
func (n *Node) readyLine() string {
	if n.impl() == ImplKeepalived {
		return "Starting VRRP child process"
	}
	return "starting"
}

// Start starts whichever of the node's service and daemon is not running, the service first (and
// waits until it listens). A stopped (paused) daemon counts as running.
func (n *Node) Start(ctx context.Context) error {
	o := n.lab.opts
	n.mu.Lock()
	if n.service == nil || n.service.Exited() {
		p, err := startProc(n.NS, n.Name+"/serve", filepath.Join(n.lab.dir, n.Name+"-serve.log"), o.LabBin,
			"serve", "--listen", ":"+strconv.Itoa(ServicePort), "--name", n.Name)
		if err != nil {
			n.mu.Unlock()
			return err
		}
		n.service = p
		n.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = p.WaitLine(wctx, "READY")
		cancel()
		if err != nil {
			return fmt.Errorf("lab: %s service: %w\n%s", n.Name, err, p.Tail(10))
		}
		n.mu.Lock()
	}
	defer n.mu.Unlock()
	if n.daemon == nil || n.daemon.Exited() {
		p, err := n.startDaemon()
		if err != nil {
			return err
		}
		n.daemon = p
		n.starts++
	}
	return nil
}

// Daemon returns the current daemon process (nil before Start).
func (n *Node) Daemon() *Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.daemon
}

// Service returns the current service process (nil before Start).
func (n *Node) Service() *Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.service
}

func (n *Node) isDead() bool { return n.dead.Load() }

// Crash kills the whole node: it is marked dead first (the sampler stops counting its addresses: a
// dead machine holds nothing), its link is cut (the bridge-side veth is set down, so eth0 loses
// carrier), then its daemon and service get SIGKILL.
func (n *Node) Crash() error {
	n.dead.Store(true)
	// The link first: from the network's view the machine is gone at once, however long its
	// processes take to die.
	err := n.setCut(true)
	n.mu.Lock()
	d, s := n.daemon, n.service
	n.mu.Unlock()
	for _, p := range []*Proc{d, s} {
		if p != nil {
			p.Kill()
		}
	}
	return err
}

func (n *Node) setCut(cut bool) error {
	h := n.lab.Bridge.Netlink
	link, err := h.LinkByName(n.Peer)
	if err != nil {
		return fmt.Errorf("lab: %s: bridge port %s: %w", n.Name, n.Peer, err)
	}
	if cut {
		err = h.LinkSetDown(link)
	} else {
		err = h.LinkSetUp(link)
	}
	if err != nil {
		return fmt.Errorf("lab: %s: set bridge port %s cut=%v: %w", n.Name, n.Peer, cut, err)
	}
	n.mu.Lock()
	n.cut = cut
	n.mu.Unlock()
	return nil
}

// signalDaemon sends sig to the daemon.
func (n *Node) signalDaemon(sig syscall.Signal) error {
	d := n.Daemon()
	if d == nil {
		return fmt.Errorf("lab: %s: daemon not started", n.Name)
	}
	return d.Signal(sig)
}

// Kill SIGKILLs the daemon only; the service keeps running and the kernel keeps whatever addresses
// the daemon bound (until their lifetime ends).
func (n *Node) Kill() error {
	d := n.Daemon()
	if d == nil {
		return fmt.Errorf("lab: %s: daemon not started", n.Name)
	}
	d.Kill()
	return nil
}

// Term sends SIGTERM to the daemon (graceful: release and resign) without waiting for it to exit.
func (n *Node) Term() error { return n.signalDaemon(syscall.SIGTERM) }

// Pause stops the daemon with SIGSTOP.
func (n *Node) Pause() error {
	if err := n.signalDaemon(syscall.SIGSTOP); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	return nil
}

// Resume continues a paused daemon with SIGCONT.
func (n *Node) Resume() error {
	if err := n.signalDaemon(syscall.SIGCONT); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Partition cuts the node off from the store, its peers and the client with nftables inside its
// namespace (see partitionRules). Heal undoes it.
func (n *Node) Partition(ctx context.Context) error {
	return n.net.add(ctx, faultPartition, partitionRules)
}

// CutFrom drops the node's IP traffic to and from addrs (nftables in its namespace; ARP, and so
// the VIP's announcements, still pass): the node cut from the store only, from its peers only or
// from the client only. Heal undoes it.
func (n *Node) CutFrom(ctx context.Context, addrs []netip.Addr) error {
	return n.net.add(ctx, faultCut, cutRules(addrs))
}

// Heal removes every network fault of the node (Partition, CutFrom).
func (n *Node) Heal(ctx context.Context) error { return n.net.clear(ctx) }

// Restore undoes every fault on the node (resume, heal, reconnect, un-dead) and starts whatever is
// not running. It does not wait for the daemon to join; use Lab.WaitSteady.
func (n *Node) Restore(ctx context.Context) error {
	n.mu.Lock()
	paused, cut := n.paused, n.cut
	n.mu.Unlock()
	if paused {
		if err := n.Resume(); err != nil {
			return err
		}
	}
	if err := n.Heal(ctx); err != nil {
		return err
	}
	if n.dead.Load() {
		// A crashed node comes back as if rebooted: without the addresses its daemon had bound.
		a := &netlink.Addr{IPNet: &net.IPNet{IP: VIP.Addr().AsSlice(), Mask: net.CIDRMask(VIP.Bits(), 32)}}
		if err := n.NS.Netlink.AddrDel(linkIndex(n.eth0), a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("lab: %s: reboot: remove VIP: %w", n.Name, err)
		}
	}
	if cut {
		if err := n.setCut(false); err != nil {
			return err
		}
	}
	n.dead.Store(false)
	return n.Start(ctx)
}

// HasVIP reports whether the VIP is bound on the node's eth0 right now.
func (n *Node) HasVIP() (bool, error) {
	addrs, err := n.NS.Netlink.AddrList(linkIndex(n.eth0), 2 /* AF_INET */)
	if err != nil {
		return false, fmt.Errorf("lab: %s: addresses: %w", n.Name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(VIP.Addr().AsSlice()) {
			return true, nil
		}
	}
	return false, nil
}
