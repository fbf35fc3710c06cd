package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// Control runs `hacoord <args>` in the node's namespace, as an operator on that node would, with
// HACOORD_RUN_DIR set to the lab's directory so that `--name <node>` finds the node's daemon's
// control socket (ControlSocket) there; it returns the command's output.
func (n *Node) Control(ctx context.Context, args ...string) (string, error) {
	cmd := n.NS.Command(ctx, n.lab.opts.HacoordBin, args...)
	cmd.Env = append(os.Environ(), "HACOORD_RUN_DIR="+n.lab.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: hacoord %s on %s: %w: %s", strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Resign runs `hacoord resign --group default --name <node>` in the node's namespace.
func (n *Node) Resign(ctx context.Context) error {
	_, err := n.Control(ctx, "resign", "--group", Group, "--name", n.Name)
	return err
}

// TransferTo runs `hacoord transfer --group default --name <node> --to <to>` in the node's
// namespace.
func (n *Node) TransferTo(ctx context.Context, to string) error {
	_, err := n.Control(ctx, "transfer", "--group", Group, "--name", n.Name, "--to", to)
	return err
}

// Maintenance runs `hacoord maintenance on|off --group default --name <node>` in the node's
// namespace.
func (n *Node) Maintenance(ctx context.Context, on bool) error {
	arg := "off"
	if on {
		arg = "on"
	}
	_, err := n.Control(ctx, "maintenance", arg, "--group", Group, "--name", n.Name)
	return err
}

// transferTarget is the node a Transfer scenario hands over to: the last node that is not old
// (not the next in the queue, so the head rules are what make it master).
func (l *Lab) transferTarget(old *Node) *Node {
	for i := len(l.Nodes) - 1; i >= 0; i-- {
		if l.Nodes[i] != old {
			return l.Nodes[i]
		}
	}
	return nil
}

// waitBackups waits until every node but old reports itself a backup in its status file (its
// daemon has queued its candidacy and knows the master), reading the files every 20ms.
func (l *Lab) waitBackups(ctx context.Context, old *Node) error {
	for {
		waiting := ""
		for _, n := range l.Nodes {
			if n == old {
				continue
			}
			if st, err := n.Status(); err != nil || st.Role != "backup" {
				waiting = n.Name
				break
			}
		}
		if waiting == "" {
			return nil
		}
		if err := hold(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("%s never reported itself a backup: %w", waiting, err)
		}
	}
}
