package lab

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
		if !ok || netnstest.Alive(pid) {
			continue
		}
		netnstest.KillInside(name)
		if err := netns.DeleteNamed(name); err != nil {
			errs = append(errs, fmt.Errorf("lab: sweep %s: %w", name, err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}
