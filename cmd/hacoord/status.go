package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/vip"
)

// Status is the JSON snapshot the daemon keeps in its status file and `hacoord status` prints.
// Fields are only ever added.
type Status struct {
	// Instance names the instance (its group, for a single-instance configuration).
	Instance  string      `json:"instance,omitempty"`
	Group     string      `json:"group"`
	Node      string      `json:"node"`
	Backend   string      `json:"backend"`
	PID       int         `json:"pid"`
	Updated   time.Time   `json:"updated"`
	Role      string      `json:"role"`
	Term      uint64      `json:"term"`
	Leader    string      `json:"leader,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Promoted  bool        `json:"promoted"`
	Fenced    bool        `json:"fenced"`
	Since     time.Time   `json:"since,omitzero"`
	Eligible  bool        `json:"eligible"`
	Priority  int         `json:"priority,omitempty"`
	BoundVIPs []string    `json:"bound_vips"`
	IPVS      ipvs.Status `json:"ipvs"`
	// VRRP is what a VRRP instance heard from the other routers of its VRID (backend vrrp only).
	VRRP *VRRPStatus `json:"vrrp,omitempty"`
	// Conflicts are the VIPs held back (conflict: wait) because another host answers for them,
	// with its MAC: "10.0.0.100/24 at 02:00:00:00:00:99".
	Conflicts []string `json:"conflicts,omitempty"`
	// SplitBrain are the split-brain alarms heard in the last minute while master: another host
	// answering ARP / NDP for a VIP with its MAC, another VRRP master for our VRID.
	SplitBrain []string `json:"split_brain,omitempty"`
	// VIPs are the instance's configured VIPs, bound or not (a reload changes them).
	VIPs []string `json:"vips"`
	// Checks are the track checks (scripts, "interface:<name>", "reference") and whether each
	// passes (a reload changes them).
	Checks map[string]bool `json:"checks,omitempty"`
	// Fencing is true while the fence hook runs: master in the store, nothing bound yet.
	Fencing bool `json:"fencing,omitempty"`
}

// statusPoll is how often the status writer looks at what changes without telling it: VIPs added
// or removed on the interface by someone else, IPVS real-server health, split-brain alarms ageing
// out, a VRRP peer's adverts. What matters most is told at once (changed): every Coordinator
// change (role, term, promoted, fenced: the VIPs the daemon binds and unbinds itself) and every
// health verdict (election.Gate.OnChange). Looking is in memory, never a file write unless
// something changed; it used to be every second, which woke an idle daemon once a second for
// nothing.
const statusPoll = 10 * time.Second

// statusWriter keeps the status file while the daemon runs and removes it at the end. It writes the
// file when its content changes, and only then: at once when told (changed), and within statusPoll
// of a change nobody told it of. It writes on its own goroutine (run), so a slow disk never holds
// up whoever tells it.
type statusWriter struct {
	path string
	snap func() Status // the current state; called on run's goroutine only
	log  *zap.Logger
	kick chan struct{} // capacity 1: something changed

	failing bool // the last write failed (logged once per run of failures)
}

func newStatusWriter(path string, snap func() Status, log *zap.Logger) *statusWriter {
	return &statusWriter{path: path, snap: snap, log: log, kick: make(chan struct{}, 1)}
}

// daemonStatus returns the function that builds an instance's Status from its parts (one VIP
// manager per device).
func daemonStatus(s Settings, co *election.Coordinator, vms []*vip.Manager, ipv *ipvs.Reconciler, gate *election.Gate) func() Status {
	return func() Status {
		cs := co.Status()
		eligible, prio := gate.Eligible()
		st := Status{
			Instance: s.Instance, Group: s.Group, Node: s.Name, Backend: s.Backend, PID: os.Getpid(),
			Role: cs.State.Role.String(), Term: cs.State.Term, Leader: cs.State.Leader.Node, Reason: cs.State.Reason,
			Promoted: cs.Promoted, Fenced: cs.Fenced, Fencing: cs.Preparing, Since: cs.Since.UTC(), Eligible: eligible,
			BoundVIPs: []string{}, IPVS: ipv.Status(), VIPs: []string{},
		}
		if s.Backend == "vrrp" {
			st.Priority = prio
		}
		if v := gate.Verdicts(); len(v) > 0 {
			st.Checks = v
		}
		for _, vm := range vms {
			for _, p := range vm.VIPs() {
				st.VIPs = append(st.VIPs, p.String())
			}
			for _, c := range vm.Conflicts() {
				st.Conflicts = append(st.Conflicts, c.String())
			}
			if b, err := vm.Bound(); err == nil {
				for _, p := range b {
					st.BoundVIPs = append(st.BoundVIPs, p.String())
				}
			}
		}
		return st
	}
}

// prepare creates the status file's directory; the daemon goes on without a status file if it
// cannot (said once).
func (w *statusWriter) prepare() bool {
	if err := os.MkdirAll(filepath.Dir(w.path), 0o755); err != nil {
		w.log.Warn("no status file", zap.String("path", w.path), zap.Error(err))
		return false
	}
	return true
}

// changed tells the writer that the state changed. It never blocks: the Coordinator calls it on
// its loop (OnChange), whose fence timer must not wait for a disk. Changes told while the writer is
// busy collapse into one write of the latest state.
func (w *statusWriter) changed() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run writes the status file at once, then whenever its content changes, until ctx is done; then it
// removes the file.
func (w *statusWriter) run(ctx context.Context) {
	defer os.Remove(w.path)
	t := time.NewTicker(statusPoll)
	defer t.Stop()
	var last []byte // what the file says, but for Updated
	for {
		st := w.snap()
		st.Updated = time.Time{}
		if b, err := json.Marshal(st); err != nil || !bytes.Equal(b, last) {
			st.Updated = time.Now().UTC()
			if w.write(st) {
				last = b
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-t.C:
		}
	}
}

// write writes st and reports whether it succeeded, logging only the first of a run of failures.
func (w *statusWriter) write(st Status) bool {
	err := writeJSONFile(w.path, st)
	if err != nil && !w.failing {
		w.log.Warn("writing the status file failed", zap.String("path", w.path), zap.Error(err))
	}
	w.failing = err != nil
	return err == nil
}

// writeJSONFile replaces path atomically with v as indented JSON.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newStatusCommand(stdout io.Writer) *cobra.Command {
	s := defaultSettings()
	var store *storeStatusFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the running daemon's state (role, term, VIPs held, IPVS, health) as JSON",
		Long: `status prints the snapshot the daemon of --group/--name keeps in its status file (rewritten
whenever something in it changes, removed when the daemon stops; "updated" is the last change). It
fails if there is no such file, or if the daemon that wrote it is not running (it was killed) or is
stopped (SIGSTOP).

With --backend etcd|zk and --endpoints it reads the group from its store instead, from any machine
and without a daemon: the master record and the candidates in queue order (priority, health,
maintenance), as a table or with -o json; exit 0 when the store answered, even with no master.`,
		Example: `  hacoord status --group web --name node1
  hacoord status --status-file /run/hacoord/web.node1.json | jq .role
  hacoord status --backend etcd --endpoints http://10.0.0.1:2379 --group web
  hacoord status --backend zk --endpoints zk1:2181,zk2:2181/ha --group web -o json | jq -r .master.node`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if store.requested(cmd) { // --backend/--endpoints: the group as its store holds it (statusstore.go)
				return store.run(cmd, stdout, cmd.ErrOrStderr())
			}
			set := s
			set.normalize()
			b, err := os.ReadFile(set.StatusFile)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("status: %s: no such file: is the daemon of group %q node %q running?", set.StatusFile, set.Group, set.Name)
			}
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			var st Status
			if err := json.Unmarshal(b, &st); err != nil {
				return fmt.Errorf("status: %s: %w", set.StatusFile, err)
			}
			if _, err := stdout.Write(b); err != nil {
				return err
			}
			return daemonAlive(st.PID)
		},
	}
	cmd.Flags().StringVar(&s.Group, "group", s.Group, "the daemon's group")
	cmd.Flags().StringVar(&s.Name, "name", s.Name, "the daemon's node name (default: host name)")
	cmd.Flags().StringVar(&s.StatusFile, "status-file", "", "the daemon's status file (default /run/hacoord/<group>.<name>.json)")
	store = addStoreStatusFlags(cmd, &s.Group)
	return cmd
}

func newIPVSCommand(stdout io.Writer) *cobra.Command {
	var daemon bool
	cmd := &cobra.Command{
		Use:   "ipvs",
		Short: "Print the kernel's IPVS table the way `ipvsadm -Ln` does",
		Long: `ipvs reads the kernel's live IPVS table (every service, not only hacoord's) and prints it in
ipvsadm -Ln's format; with --daemon, the running sync daemons (lvs_sync_daemon) as ipvsadm -L
--daemon does. It fails with a clear message when the kernel has no IPVS.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			if daemon {
				return printSyncDaemons(stdout)
			}
			k, err := ipvs.Open()
			if err != nil {
				return err
			}
			defer k.Close()
			t, err := ipvs.ReadTable(k)
			if err != nil {
				return err
			}
			_, err = io.WriteString(stdout, ipvs.Format(t))
			return err
		},
	}
	cmd.Flags().BoolVar(&daemon, "daemon", false, "print the kernel's IPVS sync daemons instead of the table")
	return cmd
}

// daemonAlive reports, as an error, a status file whose daemon is gone (killed: the file was not
// removed) or stopped (SIGSTOP, a frozen cgroup): its snapshot no longer tells what the node does.
// Since the file is written only on change, its age says nothing; the process table does.
func daemonAlive(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("status: the snapshot names no daemon process (pid %d)", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("status: the daemon (pid %d) is not running: the snapshot is left over from a run that was killed", pid)
	}
	if err != nil {
		return fmt.Errorf("status: the daemon (pid %d): %w", pid, err)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses; the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return fmt.Errorf("status: the daemon (pid %d): unexpected /proc stat %q", pid, b)
	}
	switch b[i+2] {
	case 'T', 't':
		return fmt.Errorf("status: the daemon (pid %d) is stopped: the snapshot is from before it stopped", pid)
	case 'Z', 'X':
		return fmt.Errorf("status: the daemon (pid %d) is not running (it exited): the snapshot is left over", pid)
	}
	return nil
}
