package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vishvananda/netlink"
)

// ConfigPath is the node's settings file when Options.Config is set.
func (n *Node) ConfigPath() string { return filepath.Join(n.lab.dir, n.Name+".yaml") }

// WriteConfig replaces the node's settings file (atomically: a reload never reads half of it).
func (n *Node) WriteConfig(body string) error {
	tmp := n.ConfigPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("lab: %s: config: %w", n.Name, err)
	}
	if err := os.Rename(tmp, n.ConfigPath()); err != nil {
		return fmt.Errorf("lab: %s: config: %w", n.Name, err)
	}
	return nil
}

// Reload sends SIGHUP to the daemon (hacoord reads its configuration again).
func (n *Node) Reload() error { return n.signalDaemon(syscall.SIGHUP) }

// HasAddr reports whether a is bound on the node's eth0 right now.
func (n *Node) HasAddr(a netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := n.NS.Netlink.AddrList(linkIndex(n.eth0), family)
	if err != nil {
		return false, fmt.Errorf("lab: %s: addresses: %w", n.Name, err)
	}
	for _, x := range addrs {
		if x.IP.Equal(a.AsSlice()) {
			return true, nil
		}
	}
	return false, nil
}

// DaemonStatus is what a test reads of the daemon's status file (cmd/hacoord's Status).
type DaemonStatus struct {
	Role      string          `json:"role"`
	Term      uint64          `json:"term"`
	Leader    string          `json:"leader"`
	Promoted  bool            `json:"promoted"`
	BoundVIPs []string        `json:"bound_vips"`
	VIPs      []string        `json:"vips"`
	Eligible  bool            `json:"eligible"`
	Checks    map[string]bool `json:"checks"`
	PID       int             `json:"pid"`
}

// Status reads the daemon's status file.
func (n *Node) Status() (DaemonStatus, error) {
	var st DaemonStatus
	b, err := os.ReadFile(filepath.Join(n.lab.dir, n.Name+".status.json"))
	if err != nil {
		return st, fmt.Errorf("lab: %s: status: %w", n.Name, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("lab: %s: status: %w", n.Name, err)
	}
	return st, nil
}
