package composetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// TakeoverTimeout bounds how long a fault waits for another node to answer: the lease TTL (2s),
// VRRP's master-down interval (3 adverts of 1s plus skew) and the GARP, with room for a loaded
// machine.
const TakeoverTimeout = 30 * time.Second

// Kill kills the master's container (SIGKILL to every process in it, as docker kill does: the
// daemon, its fence guard and its proxy die at once and the container's interface goes away with
// its VIP) and returns the failover as the client saw it. settle is how long to keep reading calls
// after the first answer from another node.
func (l *Lab) Kill(ctx context.Context, settle time.Duration) (Failover, error) {
	return l.fault(ctx, settle, func(ctx context.Context, container string) (string, error) {
		_, err := docker(ctx, "kill", container)
		return "docker kill " + container, err
	})
}

// Stop stops the master's container gracefully (docker stop: SIGTERM, passed on to hacoord, which
// releases the VIP and resigns, so another node takes over at once) and returns the failover as
// the client saw it.
func (l *Lab) Stop(ctx context.Context, settle time.Duration) (Failover, error) {
	return l.fault(ctx, settle, func(ctx context.Context, container string) (string, error) {
		_, err := docker(ctx, "stop", "-t", "10", container)
		return "docker stop " + container, err
	})
}

// Start starts a stopped service's container again (a killed node rejoins as a backup).
func (l *Lab) Start(ctx context.Context, service string) error {
	name, err := l.Container(ctx, service)
	if err != nil {
		return err
	}
	_, err = docker(ctx, "start", name)
	return err
}

// Rejoin checks that node can be master again: it stops the other nodes (docker stop: they
// resign and release at once), waits for the client to be answered through node, and starts the
// stopped nodes again, whatever happened. It returns node's first answer.
func (l *Lab) Rejoin(ctx context.Context, node string, timeout time.Duration) (c Call, err error) {
	var stopped []string
	defer func() {
		for _, n := range stopped {
			if serr := l.Start(context.WithoutCancel(ctx), n); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()
	at := time.Now()
	for _, n := range Nodes {
		if n == node {
			continue
		}
		name, err := l.Container(ctx, n)
		if err != nil {
			return Call{}, err
		}
		if _, err := docker(ctx, "stop", "-t", "5", name); err != nil {
			return Call{}, err
		}
		stopped = append(stopped, n)
	}
	l.logf("%s  docker stop %s: only %s is left", at.UTC().Format("15:04:05.000"), strings.Join(stopped, " "), node)
	c, err = l.WaitAnswer(ctx, at, timeout, func(c Call) bool { return c.Node() == node })
	if err != nil {
		return Call{}, fmt.Errorf("composetest: %s is the only node left and does not serve: %w", node, err)
	}
	return c, nil
}

// Attachment is where a container sits on the lab network.
type Attachment struct{ Container, Network, IP string }

// attachment returns the container's network and address.
func attachment(ctx context.Context, container string) (Attachment, error) {
	out, err := docker(ctx, "inspect", "--format", "{{json .NetworkSettings.Networks}}", container)
	if err != nil {
		return Attachment{}, err
	}
	var nets map[string]struct {
		IPAddress  string
		IPAMConfig *struct{ IPv4Address string }
	}
	if err := json.Unmarshal(out, &nets); err != nil {
		return Attachment{}, fmt.Errorf("composetest: inspect %s: %w", container, err)
	}
	var as []Attachment
	for name, n := range nets {
		ip := n.IPAddress
		if n.IPAMConfig != nil && n.IPAMConfig.IPv4Address != "" {
			ip = n.IPAMConfig.IPv4Address
		}
		as = append(as, Attachment{container, name, ip})
	}
	if len(as) != 1 {
		return Attachment{}, fmt.Errorf("composetest: %s is on %d networks, want 1", container, len(as))
	}
	return as[0], nil
}

// Partition disconnects the master's container from the lab network (docker network
// disconnect: its interface, with the VIP, is removed) and returns the failover as the client saw
// it, and the Attachment that Reconnect restores.
func (l *Lab) Partition(ctx context.Context, settle time.Duration) (Failover, Attachment, error) {
	var a Attachment
	f, err := l.fault(ctx, settle, func(ctx context.Context, container string) (string, error) {
		var err error
		if a, err = attachment(ctx, container); err != nil {
			return "", err
		}
		_, err = docker(ctx, "network", "disconnect", a.Network, container)
		return fmt.Sprintf("docker network disconnect %s %s", a.Network, container), err
	})
	return f, a, err
}

// Reconnect attaches the container again with its address, and returns when that was done.
func Reconnect(ctx context.Context, a Attachment) (time.Time, error) {
	_, err := docker(ctx, "network", "connect", "--ip", a.IP, a.Network, a.Container)
	return time.Now(), err
}

// fault finds the master, applies do to its container and reads the failover.
func (l *Lab) fault(ctx context.Context, settle time.Duration, do func(context.Context, string) (string, error)) (Failover, error) {
	if err := l.defaults(); err != nil {
		return Failover{}, err
	}
	old, err := l.Master(ctx, 30*time.Second)
	if err != nil {
		return Failover{}, err
	}
	container, err := l.Container(ctx, old)
	if err != nil {
		return Failover{}, err
	}
	from := time.Now().Add(-5 * time.Second)
	at := time.Now()
	action, err := do(ctx, container)
	if err != nil {
		return Failover{}, fmt.Errorf("composetest: %s: %w", action, err)
	}
	l.logf("%s  %s (%s held the VIP)", at.UTC().Format("15:04:05.000"), action, old)
	if _, err := l.WaitAnswer(ctx, at, TakeoverTimeout, func(c Call) bool { return c.Node() != old }); err != nil {
		return Failover{Action: action, Fault: at, Old: old}, fmt.Errorf("composetest: after %s: %w", action, err)
	}
	select {
	case <-ctx.Done():
		return Failover{}, ctx.Err()
	case <-time.After(settle):
	}
	calls, err := l.Calls(ctx, from)
	if err != nil {
		return Failover{}, err
	}
	return Analyze(calls, action, at, old)
}

// Logs returns the last n lines a service's container logged since t (both streams) for which
// match (nil: every line) is true.
func (l *Lab) Logs(ctx context.Context, service string, since time.Time, n int, match func(string) bool) (string, error) {
	name, err := l.Container(ctx, service)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "docker", "logs", "--since", since.UTC().Format(time.RFC3339Nano), name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("composetest: docker logs %s: %w: %s", name, err, out)
	}
	var keep []string
	for _, s := range lines(out) {
		if match == nil || match(s) {
			keep = append(keep, s)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n"), nil
}

// NodeStatus is the part of `hacoord status` the lab prints.
type NodeStatus struct {
	Node      string   `json:"node"`
	Role      string   `json:"role"`
	Term      uint64   `json:"term"`
	Leader    string   `json:"leader"`
	Reason    string   `json:"reason"`
	Fenced    bool     `json:"fenced"`
	BoundVIPs []string `json:"bound_vips"`
}

func (s NodeStatus) String() string {
	fenced := ""
	if s.Fenced {
		fenced = ", fenced"
	}
	vips := "no VIP bound"
	if len(s.BoundVIPs) > 0 {
		vips = "holds " + strings.Join(s.BoundVIPs, ", ")
	}
	return fmt.Sprintf("%s: %s%s (%s), %s", s.Node, s.Role, fenced, s.Reason, vips)
}

// Status returns the node's `hacoord status` (group web).
func (l *Lab) Status(ctx context.Context, node string) (NodeStatus, error) {
	out, err := l.Exec(ctx, node, "hacoord", "status", "--group", "web", "--name", node)
	if err != nil {
		return NodeStatus{}, err
	}
	var s NodeStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return NodeStatus{}, fmt.Errorf("composetest: %s: hacoord status: %w", node, err)
	}
	return s, nil
}

// Exec runs a command in a service's container and returns its standard output.
func (l *Lab) Exec(ctx context.Context, service string, argv ...string) (string, error) {
	name, err := l.Container(ctx, service)
	if err != nil {
		return "", err
	}
	out, err := docker(ctx, append([]string{"exec", name}, argv...)...)
	return strings.TrimSpace(string(out)), err
}
