package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
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
}

// statusEvery is how often the status file is rewritten.
const statusEvery = time.Second

// statusWriter keeps the status file current while the daemon runs and removes it at the end.
type statusWriter struct {
	path string
	s    Settings
	co   *election.Coordinator
	vm   *vip.Manager
	ipvs *ipvs.Reconciler
	gate *election.Gate
	log  *zap.Logger

	mu      sync.Mutex // serialises writes
	failing bool
}

func (w *statusWriter) snapshot() Status { return w.snapshotOf(w.co.Status()) }

func (w *statusWriter) snapshotOf(cs election.Status) Status {
	eligible, prio := w.gate.Eligible()
	st := Status{
		Group: w.s.Group, Node: w.s.Name, Backend: w.s.Backend, PID: os.Getpid(), Updated: time.Now().UTC(),
		Role: cs.State.Role.String(), Term: cs.State.Term, Leader: cs.State.Leader.Node, Reason: cs.State.Reason,
		Promoted: cs.Promoted, Fenced: cs.Fenced, Since: cs.Since.UTC(), Eligible: eligible,
		BoundVIPs: []string{}, IPVS: w.ipvs.Status(),
	}
	if w.s.Backend == "vrrp" {
		st.Priority = prio
	}
	if b, err := w.vm.Bound(); err == nil {
		for _, p := range b {
			st.BoundVIPs = append(st.BoundVIPs, p.String())
		}
	}
	return st
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

// write writes st, logging only the first of a run of failures.
func (w *statusWriter) write(st Status) {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := writeJSONFile(w.path, st)
	if err != nil && !w.failing {
		w.log.Warn("writing the status file failed", zap.String("path", w.path), zap.Error(err))
	}
	w.failing = err != nil
}

// run rewrites the status file every second (health and IPVS change on their own) until ctx is
// done, then removes it. Changes of the election are written at once, by the Coordinator's OnChange.
func (w *statusWriter) run(ctx context.Context) {
	defer os.Remove(w.path)
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		w.write(w.snapshot())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the running daemon's state (role, term, VIPs held, IPVS, health) as JSON",
		Long: `status prints the snapshot the daemon of --group/--name keeps in its status file (rewritten
every second, removed when the daemon stops). It fails if there is no such file or the snapshot
is stale (the daemon is stopped or hung).`,
		Example: `  hacoord status --group web --name node1
  hacoord status --status-file /run/hacoord/web.node1.json | jq .role`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if age := time.Since(st.Updated); age > 5*statusEvery {
				return fmt.Errorf("status: snapshot is %v old: the daemon (pid %d) is stopped or hung", age.Round(time.Second), st.PID)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&s.Group, "group", s.Group, "the daemon's group")
	cmd.Flags().StringVar(&s.Name, "name", s.Name, "the daemon's node name (default: host name)")
	cmd.Flags().StringVar(&s.StatusFile, "status-file", "", "the daemon's status file (default /run/hacoord/<group>.<name>.json)")
	return cmd
}

func newIPVSCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "ipvs",
		Short: "Print the kernel's IPVS table the way `ipvsadm -Ln` does",
		Long: `ipvs reads the kernel's live IPVS table (every service, not only hacoord's) and prints it in
ipvsadm -Ln's format. It fails with a clear message when the kernel has no IPVS.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
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
}
