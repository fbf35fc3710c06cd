package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU times (100 on Linux).
const clockTick = 100

// ProcUsage is one process's memory and CPU over a Footprint window.
type ProcUsage struct {
	PID  int
	Comm string // /proc/PID/comm
	Args string // the command line
	// RSS is VmRSS at the end of the window; Peak is VmHWM, the most it ever had resident; Anon
	// and File split RSS into anonymous memory (heap, stacks) and mapped file pages (the binary).
	RSS, Peak, Anon, File int64
	// PSS is the proportional set size (smaps_rollup): pages shared with other processes (the same
	// binary's text in daemon and guard) counted by share.
	PSS int64
	// CPU is the user and system time spent in the window.
	CPU time.Duration
}

// Footprint is what one node's daemon and its descendants (the fence guard; keepalived's VRRP
// child) used over a window of an idle lab.
type Footprint struct {
	Node   string
	Master bool // the node held the VIP all the window
	Window time.Duration
	Procs  []ProcUsage // the daemon first
	Notes  []string
}

// RSS is the sum of the processes' VmRSS.
func (f Footprint) RSS() int64 {
	var n int64
	for _, p := range f.Procs {
		n += p.RSS
	}
	return n
}

// CPUShare is the processes' CPU time over the window, as a fraction of one core.
func (f Footprint) CPUShare() float64 {
	var c time.Duration
	for _, p := range f.Procs {
		c += p.CPU
	}
	return float64(c) / float64(f.Window)
}

// String is one line per process, then the node's total.
func (f Footprint) String() string {
	var b strings.Builder
	role := "backup"
	if f.Master {
		role = "master"
	}
	fmt.Fprintf(&b, "%s (%s): RSS %.1f MB, CPU %.3f%% of a core over %v\n", f.Node, role, mib(f.RSS()), 100*f.CPUShare(), f.Window.Round(time.Second))
	for _, p := range f.Procs {
		fmt.Fprintf(&b, "  pid %d %s: RSS %.1f MB (peak %.1f; anon %.1f, file %.1f; PSS %.1f), CPU %v  [%s]\n", p.PID, p.Comm, mib(p.RSS), mib(p.Peak), mib(p.Anon), mib(p.File), mib(p.PSS), p.CPU, p.Args)
	}
	for _, n := range f.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// Footprint waits for a steady state, then measures every node's daemon and its descendant
// processes over window: resident memory at its end (VmRSS; VmHWM as the peak) and the CPU time
// spent in it (from /proc/PID/stat). A node counts as master if it held the VIP throughout; the
// window must pass with no change of holder, or it is an error (the lab was not idle).
func (l *Lab) Footprint(ctx context.Context, window time.Duration) ([]Footprint, error) {
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	holder, err := l.WaitSteady(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("lab: footprint: no steady state: %w", err)
	}
	type start struct {
		pids []int
		cpu  map[int]time.Duration
	}
	before := map[string]start{}
	for _, n := range l.Nodes {
		d := n.Daemon()
		if d == nil || d.Exited() {
			return nil, fmt.Errorf("lab: footprint: %s: no daemon running", n.Name)
		}
		pids := processTree(d.PID())
		s := start{pids: pids, cpu: map[int]time.Duration{}}
		for _, pid := range pids {
			if c, err := procCPU(pid); err == nil {
				s.cpu[pid] = c
			}
		}
		before[n.Name] = s
	}
	t0 := time.Now()
	if err := hold(ctx, window); err != nil {
		return nil, err
	}
	elapsed := time.Since(t0)
	for _, c := range l.Sampler.HolderHistory() {
		if c.At.After(t0) {
			return nil, fmt.Errorf("lab: footprint: the VIP moved during the window (holders %v at +%v): not idle", c.Holders, c.At.Sub(t0).Round(time.Millisecond))
		}
	}
	var out []Footprint
	for _, n := range l.Nodes {
		f := Footprint{Node: n.Name, Master: n == holder, Window: elapsed}
		s := before[n.Name]
		for _, pid := range processTree(n.Daemon().PID()) {
			c0, ok := s.cpu[pid]
			if !ok {
				f.Notes = append(f.Notes, fmt.Sprintf("process %d started during the window: not counted", pid))
				continue
			}
			u := ProcUsage{PID: pid}
			c1, err := procCPU(pid)
			if err != nil {
				return nil, fmt.Errorf("lab: footprint: %s: %w", n.Name, err)
			}
			u.CPU = c1 - c0
			if u.RSS, u.Peak, u.Anon, u.File, u.PSS, err = procMem(pid); err != nil {
				return nil, fmt.Errorf("lab: footprint: %s: %w", n.Name, err)
			}
			if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err == nil {
				u.Comm = strings.TrimSpace(string(b))
			}
			if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline")); err == nil {
				u.Args = strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
			}
			f.Procs = append(f.Procs, u)
		}
		out = append(out, f)
	}
	return out, nil
}

// processTree returns pid and its descendants, pid first.
func processTree(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, err := procPPID(p); err == nil {
			parent[p] = pp
		}
	}
	tree := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if slices.Contains(tree, pp) && !slices.Contains(tree, p) {
				tree, changed = append(tree, p), true
			}
		}
	}
	slices.Sort(tree[1:])
	return tree
}

// statFields returns the fields of /proc/pid/stat after the command name (field 3 on).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

func procPPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1]) // field 4
}

// procCPU is the process's user plus system time (fields 14 and 15).
func procCPU(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / clockTick, nil
}

// procMem reads VmRSS, VmHWM, RssAnon and RssFile from /proc/pid/status and Pss from
// /proc/pid/smaps_rollup, in bytes.
func procMem(pid int) (rss, peak, anon, file, pss int64, err error) {
	kb, err := procKB(pid, "status", "VmRSS", "VmHWM", "RssAnon", "RssFile")
	if err != nil {
		return 0, 0, 0, 0, 0, err
	}
	if kb["VmRSS"] == 0 {
		return 0, 0, 0, 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	p, _ := procKB(pid, "smaps_rollup", "Pss") // optional
	return kb["VmRSS"] << 10, kb["VmHWM"] << 10, kb["RssAnon"] << 10, kb["RssFile"] << 10, p["Pss"] << 10, nil
}

// procKB reads the "Key: n kB" lines keys names from /proc/pid/name.
func procKB(pid int, name string, keys ...string) (map[string]int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), name))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(keys, k) {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/%s: %s %q", pid, name, k, v)
		}
		out[k] = n
	}
	return out, nil
}
