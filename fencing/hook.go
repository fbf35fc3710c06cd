package fencing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Event is what a hook is told: a transition of one node of a group.
type Event struct {
	Group string
	Node  string
	// Role is "master", "backup" or "fault".
	Role string
	// Term is the fencing token of the master: it rises with every new master, so a resource that
	// remembers the highest token it has seen can refuse a stale master's writes.
	Term   uint64
	Leader string
	// Reason says why, in words ("elected", "self-fence", "shutdown", ...).
	Reason string
	// Conflict, for the fence hook run because another host answers for VIPs (vip's conflict
	// probe, conflict: fence), lists them with that host's MAC: "10.0.0.100/24=02:00:00:00:00:99"
	// (several separated by spaces). It is HACOORD_CONFLICT, empty otherwise.
	Conflict string
	// PreviousMaster and PreviousAddress name the node that was master before this one, as its
	// master record last showed it to this node: the node a fence hook must fence (power off, cut
	// from the storage). They are HACOORD_PREVIOUS_MASTER and HACOORD_PREVIOUS_ADDRESS, empty when
	// this node never saw another master (it started after that master was gone).
	PreviousMaster  string
	PreviousAddress string
	// Attempt counts the runs of the fence hook for this term, from 1 (HACOORD_ATTEMPT); 0 for
	// notify hooks.
	Attempt int
}

// env returns the environment the hook runs with: the caller's plus HACOORD_* variables.
func (e Event) env() []string {
	return append(os.Environ(),
		"HACOORD_GROUP="+e.Group,
		"HACOORD_NODE="+e.Node,
		"HACOORD_ROLE="+e.Role,
		"HACOORD_TERM="+strconv.FormatUint(e.Term, 10),
		"HACOORD_LEADER="+e.Leader,
		"HACOORD_REASON="+e.Reason,
		"HACOORD_CONFLICT="+e.Conflict,
		"HACOORD_PREVIOUS_MASTER="+e.PreviousMaster,
		"HACOORD_PREVIOUS_ADDRESS="+e.PreviousAddress,
		"HACOORD_ATTEMPT="+strconv.Itoa(e.Attempt),
	)
}

// Hook runs one program for events. Arguments are keepalived's notify order (group, node, role)
// followed by the term. It is safe for concurrent use.
type Hook struct {
	Path    string
	Timeout time.Duration
	// Observe, if set, is told of every run's event and result (nil: the hook succeeded) when it
	// returns: the metric hacoord_hook_runs_total. It must be quick.
	Observe func(e Event, err error)
}

// Run runs the hook for e and waits for it, at most until ctx is done or Timeout passes; then the
// hook's whole process group is killed. A non-zero exit is an error carrying its output's tail.
func (h Hook) Run(ctx context.Context, e Event) (err error) {
	if h.Observe != nil {
		defer func() { h.Observe(e, err) }()
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path, e.Group, e.Node, e.Role, strconv.FormatUint(e.Term, 10))
	cmd.Env = e.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err == nil {
		return nil
	}
	tail := out.Bytes()
	if len(tail) > 512 {
		tail = tail[len(tail)-512:]
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
	}
	return fmt.Errorf("fencing: hook %s %s term %d: %w: %s", h.Path, e.Role, e.Term, err, bytes.TrimSpace(tail))
}

// Notifier runs a notify hook for each event, one at a time and in order, off the caller's path: a
// slow or hung notify program never delays fencing. Notify never blocks; Run owns the worker.
type Notifier struct {
	hook   Hook
	log    *zap.Logger
	events chan Event
}

// NewNotifier returns a Notifier for hook. It starts nothing.
func NewNotifier(hook Hook, log *zap.Logger) (*Notifier, error) {
	if hook.Path == "" {
		return nil, errors.New("fencing: notify hook needs a path")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if hook.Timeout <= 0 {
		hook.Timeout = 30 * time.Second
	}
	return &Notifier{hook: hook, log: log, events: make(chan Event, 64)}, nil
}

// Notify queues e. If 64 events are already waiting, e is dropped and logged.
func (n *Notifier) Notify(e Event) {
	select {
	case n.events <- e:
	default:
		n.log.Error("notify hook backlog full; dropping event", zap.String("role", e.Role), zap.Uint64("term", e.Term))
	}
}

// Run runs queued events until ctx is done, then runs what is still queued so the last transition,
// usually "backup" on shutdown, is not lost. Each run is bounded by the hook's timeout, not by ctx.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		select {
		case e := <-n.events:
			n.run(context.WithoutCancel(ctx), e)
		case <-ctx.Done():
			for {
				select {
				case e := <-n.events:
					n.run(context.WithoutCancel(ctx), e)
				default:
					return nil
				}
			}
		}
	}
}

func (n *Notifier) run(ctx context.Context, e Event) {
	if err := n.hook.Run(ctx, e); err != nil {
		n.log.Warn("notify hook failed", zap.Error(err))
		return
	}
	n.log.Debug("notify hook ran", zap.String("role", e.Role), zap.Uint64("term", e.Term))
}
