// Package netnstest creates network namespaces and veth links for tests, never touching the root
// namespace's interfaces: links are created inside a test namespace and their peer is placed straight
// into another. Everything it creates is removed in t.Cleanup, also when the test fails.
package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates, so a crashed run's leftovers can
// be recognised (ip netns list | grep hct-).
const Prefix = "hct-"

// NS is a named network namespace (visible to `ip netns exec`).
type NS struct {
	Name   string
	Handle netns.NsHandle
	// Netlink is a netlink handle bound to the namespace.
	Netlink *netlink.Handle
}

// UniqueName returns Prefix + tag + "-" + the creating process's PID + "x" + a random suffix. The
// PID lets a later run remove what a dead one left (a test binary killed at its timeout runs no
// Cleanup): see SweepDead.
func UniqueName(tag string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%s-%dx%s", Prefix, tag, os.Getpid(), hex.EncodeToString(b[:]))
}

// ownerOf returns the PID that UniqueName put in name, or false for a name it did not make.
func ownerOf(name string) (int, bool) {
	i := strings.LastIndexByte(name, '-')
	if !strings.HasPrefix(name, Prefix) || i < 0 {
		return 0, false
	}
	digits, suffix, ok := strings.Cut(name[i+1:], "x")
	if !ok || len(suffix) != 6 {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// Alive reports whether pid is a live process (a zombie, dead but not yet reaped, is not).
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses; the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// KillInside SIGKILLs every process still running inside the named namespace.
func KillInside(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p > 1 {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

var sweepOnce sync.Once

// SweepDead removes the namespaces (and SIGKILLs the processes inside them) that UniqueName made for
// processes that are gone; namespaces of live processes and names it did not make are left alone.
// New calls it once per process.
func SweepDead() {
	names, err := Leftovers()
	if err != nil {
		return
	}
	for _, name := range names {
		if pid, ok := ownerOf(name); ok && !Alive(pid) {
			KillInside(name)
			_ = netns.DeleteNamed(name)
		}
	}
}

// Create makes a new named namespace with its loopback up. The caller owns it and must Close it.
func Create(name string) (*NS, error) {
	var ns *NS
	err := onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netnstest: current netns: %w", err)
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // switches this thread into the new namespace
		if err != nil {
			return fmt.Errorf("netnstest: create netns %s: %w", name, err)
		}
		if err := netns.Set(orig); err != nil {
			h.Close()
			_ = netns.DeleteNamed(name)
			return errTainted{fmt.Errorf("netnstest: return from netns %s: %w", name, err)}
		}
		ns = &NS{Name: name, Handle: h}
		return nil
	})
	if err != nil {
		return nil, err
	}
	nh, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netnstest: netlink handle in %s: %w", name, err)
	}
	ns.Netlink = nh
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netnstest: lo up in %s: %w", name, err)
	}
	return ns, nil
}

// New creates a namespace named UniqueName(tag) and removes it when t ends.
func New(t testing.TB, tag string) *NS {
	t.Helper()
	sweepOnce.Do(SweepDead)
	ns, err := Create(UniqueName(tag))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	return ns
}

// Close deletes the namespace; links inside it go with it. Idempotent.
func (ns *NS) Close() {
	if ns.Netlink != nil {
		ns.Netlink.Close()
		ns.Netlink = nil
	}
	if ns.Handle.IsOpen() {
		ns.Handle.Close()
		ns.Handle = netns.None()
	}
	_ = netns.DeleteNamed(ns.Name)
}

// Do runs fn on an OS thread switched into the namespace. Sockets fn opens stay in the namespace
// after Do returns; goroutines fn starts do not inherit it.
func (ns *NS) Do(fn func() error) error {
	return onLockedThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netnstest: current netns: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns.Handle); err != nil {
			return fmt.Errorf("netnstest: enter %s: %w", ns.Name, err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return errTainted{fmt.Errorf("netnstest: leave %s: %w", ns.Name, err)}
		}
		return ferr
	})
}

// Command returns a command that runs name with args inside the namespace (via `ip netns exec`).
func (ns *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output, failing t on error.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netns %s: %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Veth creates a veth pair: aName inside a and bName inside b, both up, with the given addresses
// (zero prefixes are skipped). It returns the two links as seen from their namespaces.
func Veth(a *NS, aName string, aAddr netip.Prefix, b *NS, bName string, bAddr netip.Prefix) (netlink.Link, netlink.Link, error) {
	la := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(int(b.Handle)),
	}
	if err := a.Netlink.LinkAdd(la); err != nil {
		return nil, nil, fmt.Errorf("netnstest: veth %s/%s -> %s/%s: %w", a.Name, aName, b.Name, bName, err)
	}
	linkA, err := Up(a, aName, aAddr)
	if err != nil {
		return nil, nil, err
	}
	linkB, err := Up(b, bName, bAddr)
	if err != nil {
		return nil, nil, err
	}
	return linkA, linkB, nil
}

// Up sets the named link in ns up and adds addr to it unless addr is the zero Prefix.
func Up(ns *NS, name string, addr netip.Prefix) (netlink.Link, error) {
	l, err := ns.Netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("netnstest: link %s in %s: %w", name, ns.Name, err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
		if err := ns.Netlink.AddrAdd(l, a); err != nil {
			return nil, fmt.Errorf("netnstest: add %s to %s in %s: %w", addr, name, ns.Name, err)
		}
	}
	if err := ns.Netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("netnstest: set %s up in %s: %w", name, ns.Name, err)
	}
	return l, nil
}

// Bridge creates a bridge named name inside ns, up, with no address.
func Bridge(ns *NS, name string) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := ns.Netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("netnstest: bridge %s in %s: %w", name, ns.Name, err)
	}
	return Up(ns, name, netip.Prefix{})
}

// Attach enslaves the named link of ns to the bridge br (also in ns).
func Attach(ns *NS, link string, br netlink.Link) error {
	l, err := ns.Netlink.LinkByName(link)
	if err != nil {
		return fmt.Errorf("netnstest: link %s in %s: %w", link, ns.Name, err)
	}
	if err := ns.Netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("netnstest: attach %s to %s in %s: %w", link, br.Attrs().Name, ns.Name, err)
	}
	return nil
}

// Leftovers lists namespaces whose names start with Prefix: what a killed test run left behind.
func Leftovers() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("netnstest: ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], Prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

type errTainted struct{ error }

// onLockedThread runs fn on a locked OS thread. If fn leaves the thread in a foreign namespace
// (errTainted), the thread stays locked so the runtime discards it when the goroutine ends.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if _, tainted := err.(errTainted); !tainted {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
