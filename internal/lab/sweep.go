package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// nsTagPrefix starts the tag of every namespace a lab creates; the owner's PID follows, so a sweep
// removes only the namespaces of labs whose process is gone and never those of a lab (or another
// package's test) running right now: names are netnstest.Prefix + "lab<pid>-<role>-<random>".
const nsTagPrefix = "lab"

func nsTag(role string) string { return fmt.Sprintf("%s%d-%s", nsTagPrefix, os.Getpid(), role) }

// ownerPID returns the PID encoded in a lab namespace name, or false for a name that is not a lab's.
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, netnstest.Prefix+nsTagPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid is a live process (a zombie, dead but not yet reaped, is not).
func alive(pid int) bool {
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

// Sweep removes what labs of dead processes left behind (a run killed with SIGKILL, a test binary
// that timed out): it SIGKILLs every process still inside such a namespace and deletes the
// namespace. It returns the names removed. Namespaces of live labs and of other packages are left
// alone. New calls it; bench and demo call it through New.
func Sweep() ([]string, error) {
	names, err := netnstest.Leftovers()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, name := range names {
		pid, ok := ownerPID(name)
		if !ok || alive(pid) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if p, err := strconv.Atoi(f); err == nil && p > 1 {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		if err := netns.DeleteNamed(name); err != nil {
			errs = append(errs, fmt.Errorf("lab: sweep %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
