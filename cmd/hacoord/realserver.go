package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// defaultRealServerState is where realserver records what it changed, for --remove.
const defaultRealServerState = "/run/hacoord/realserver.json"

// realServerState is what realserver changed: the VIPs it added to lo and, for every sysctl it
// wrote, the value it found there first. --remove undoes exactly this.
type realServerState struct {
	VIPs    []string          `json:"vips"`
	Sysctls map[string]string `json:"sysctls"` // path under /proc/sys -> previous value
}

// realServerSysctls are the ARP settings of an LVS-DR real server: answer ARP only for addresses
// on the receiving interface (arp_ignore=1), and source ARP requests from an address of the
// outgoing interface (arp_announce=2), so that the VIPs on lo are never announced.
var realServerSysctls = []struct{ name, value string }{{"arp_ignore", "1"}, {"arp_announce", "2"}}

func newRealServerCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		vips, ifaces []string
		remove       bool
		stateFile    string
	)
	cmd := &cobra.Command{
		Use:   "realserver --vip V [--vip ...] [--interface IF ...] [--remove]",
		Short: "Prepare (or, with --remove, restore) an LVS direct-routing real server: VIPs on lo, ARP sysctls",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := parseRealServerVIPs(vips)
			if err != nil {
				return err
			}
			if remove {
				return removeRealServer(stateFile, ps, stderr)
			}
			if len(ps) == 0 {
				return configErrorf("--vip: at least one VIP is required")
			}
			return applyRealServer(stateFile, ps, ifaces, stdout)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&vips, "vip", nil, "a VIP to put on lo as /32 (/128 for IPv6); repeat for more")
	f.StringArrayVar(&ifaces, "interface", nil, "an interface to set arp_ignore=1 and arp_announce=2 on (default: every non-loopback interface that is up); repeat for more")
	f.BoolVar(&remove, "remove", false, "undo what an earlier run recorded in the state file")
	f.StringVar(&stateFile, "state-file", defaultRealServerState, "where the VIPs added and the previous sysctl values are recorded")
	return cmd
}

// parseRealServerVIPs parses each --vip as an address or a host prefix (/32, /128) and returns
// host prefixes; anything else is a configError naming the flag.
func parseRealServerVIPs(vips []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range vips {
		var p netip.Prefix
		if a, err := netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else if p, err = netip.ParsePrefix(s); err != nil || p.Bits() != p.Addr().BitLen() {
			return nil, configErrorf("--vip %q: want an address or a host prefix (/32, /128)", s)
		}
		a := p.Addr()
		if a.Zone() != "" || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() {
			return nil, configErrorf("--vip %q: not a usable VIP", s)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// applyRealServer sets the sysctls and adds the VIPs, recording in stateFile what it changed. A
// state file from an earlier run is extended, never overwritten: the previous values it holds are
// the ones from before the first run.
func applyRealServer(stateFile string, vips []netip.Prefix, ifaces []string, stdout io.Writer) (err error) {
	st, found, err := readRealServerState(stateFile)
	if err != nil {
		return err
	}
	if !found {
		st = &realServerState{Sysctls: map[string]string{}}
	}
	// Record whatever was changed, even when a later step fails, so that --remove undoes it.
	defer func() {
		if werr := writeRealServerState(stateFile, st); werr != nil {
			err = errors.Join(err, werr)
		}
	}()
	if len(ifaces) == 0 {
		if ifaces, err = upInterfaces(); err != nil {
			return err
		}
	}
	for _, ifname := range append([]string{"all"}, ifaces...) {
		for _, s := range realServerSysctls {
			path := filepath.Join("/proc/sys/net/ipv4/conf", ifname, s.name)
			old, err := readSysctl(path)
			if err != nil {
				return err
			}
			if _, ok := st.Sysctls[path]; !ok {
				st.Sysctls[path] = old
			}
			if old != s.value {
				if err := os.WriteFile(path, []byte(s.value+"\n"), 0o644); err != nil {
					return fmt.Errorf("realserver: write %s: %w", path, err)
				}
			}
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("realserver: look up lo: %w", err)
	}
	for _, p := range vips {
		err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: prefixIPNet(p)})
		switch {
		case errors.Is(err, fs.ErrExist):
			// Already there: added by an earlier run (then recorded) or by someone else (then not ours).
		case err != nil:
			return fmt.Errorf("realserver: add %s on lo: %w", p, err)
		case !slices.Contains(st.VIPs, p.String()):
			st.VIPs = append(st.VIPs, p.String())
		}
	}
	_, err = fmt.Fprintf(stdout, "realserver: %d VIPs on lo, arp_ignore=1 arp_announce=2 on all,%s; recorded in %s\n",
		len(vips), strings.Join(ifaces, ","), stateFile)
	return err
}

// removeRealServer undoes what stateFile records and deletes it. Without a state file it removes
// the given VIPs from lo and warns that the old sysctl values are unknown.
func removeRealServer(stateFile string, vips []netip.Prefix, stderr io.Writer) error {
	st, found, err := readRealServerState(stateFile)
	if err != nil {
		return err
	}
	if !found {
		if len(vips) == 0 {
			return configErrorf("--vip: no state file %s, so --remove needs the VIPs to remove", stateFile)
		}
		fmt.Fprintf(stderr, "hacoord: warning: no state file %s: removing the given VIPs from lo; the sysctls are left as they are, their old values are unknown\n", stateFile)
		st = &realServerState{}
		for _, p := range vips {
			st.VIPs = append(st.VIPs, p.String())
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("realserver: look up lo: %w", err)
	}
	var errs []error
	for _, s := range st.VIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("realserver: state file %s: VIP %q: %w", stateFile, s, err))
			continue
		}
		if err := netlink.AddrDel(lo, &netlink.Addr{IPNet: prefixIPNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("realserver: remove %s from lo: %w", p, err))
		}
	}
	for path, old := range st.Sysctls {
		if !strings.HasPrefix(filepath.Clean(path), "/proc/sys/net/") {
			errs = append(errs, fmt.Errorf("realserver: state file %s: sysctl %q is not under /proc/sys/net", stateFile, path))
			continue
		}
		if err := os.WriteFile(path, []byte(old+"\n"), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("realserver: restore %s to %s: %w", path, old, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // keep the state file: a second --remove can finish the job
	}
	if found {
		if err := os.Remove(stateFile); err != nil {
			return fmt.Errorf("realserver: remove state file %s: %w", stateFile, err)
		}
	}
	return nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// upInterfaces returns the names of every non-loopback interface that is up.
func upInterfaces() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("realserver: list interfaces: %w", err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagUp != 0 && a.Flags&net.FlagLoopback == 0 {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("realserver: read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// readRealServerState reads the state file; found is false when there is none.
func readRealServerState(path string) (st *realServerState, found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("realserver: read state file %s: %w", path, err)
	}
	st = &realServerState{}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, false, fmt.Errorf("realserver: parse state file %s: %w", path, err)
	}
	if st.Sysctls == nil {
		st.Sysctls = map[string]string{}
	}
	return st, true, nil
}

// writeRealServerState writes st to path atomically (a temporary file renamed over it).
func writeRealServerState(path string, st *realServerState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("realserver: create directory of state file %s: %w", path, err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("realserver: encode state file %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("realserver: write state file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("realserver: write state file %s: %w", path, err)
	}
	return nil
}
