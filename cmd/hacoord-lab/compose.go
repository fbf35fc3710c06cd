package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/internal/composetest"
)

// newComposeCommand is the Docker Compose lab of deploy/compose: the entry points of two of its
// containers (node, client) and the steps make lab-up, lab-failover, lab-partition and lab-down
// run (internal/composetest does the work).
func newComposeCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compose",
		Short: "The Docker Compose lab (deploy/compose): its node and client, and up/failover/partition/down",
		Long: `The Docker Compose lab of deploy/compose (see deploy/README.md).

In the containers: "compose node" runs hacoord beside the node's TCP proxy to the web backends,
"compose client" calls the VIP a few times a second and prints one line a call.
On the host (make lab-up, lab-failover, lab-partition, lab-down): "compose up", "failover",
"partition" and "down" drive a compose project and print what its client saw.`,
	}
	var o composeFlags
	cmd.AddCommand(newComposeNodeCommand(stderr), newComposeClientCommand(stdout),
		o.command("up", "Start the lab with a backend and wait until the client is served through the VIP", stdout, composeUp),
		o.command("failover", "Kill (or stop) the master's container, print the failover as the client saw it, start the node again", stdout, composeFailover),
		o.command("partition", "Disconnect the master from the lab network, print the failover, reconnect it", stdout, composePartition),
		o.command("down", "Remove the lab's containers, network and (unless --keep-images) images", stdout, composeDown))
	return cmd
}

// composeFlags are the host-side subcommands' flags.
type composeFlags struct {
	lab        composetest.Lab
	timeout    time.Duration
	hold       time.Duration
	settle     time.Duration
	noRestart  bool
	stop       bool
	rejoin     bool
	keepImages bool
}

func (o *composeFlags) register(name string, fs *pflag.FlagSet) {
	fs.StringVar(&o.lab.Dir, "dir", "deploy/compose", "the compose directory")
	fs.StringVarP(&o.lab.Project, "project", "p", composetest.DefaultProject, "compose project name")
	fs.StringVar(&o.lab.Tag, "tag", composetest.DefaultTag, "image tag (deploy/compose/build-images: $HACOORD_LAB_TAG)")
	switch name {
	case "up":
		fs.StringVar(&o.lab.Backend, "backend", "etcd", "who decides: etcd (3-member cluster), zk (3-server ensemble) or vrrp (no store)")
		fs.StringVar(&o.lab.Net, "net", composetest.DefaultNet, "the lab network is NET.0/24")
		fs.DurationVar(&o.lab.Interval, "interval", composetest.DefaultInterval, "the client's call interval")
		fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "how long to wait for the first answer through the VIP")
	case "failover":
		fs.BoolVar(&o.noRestart, "no-restart", false, "leave the killed node stopped")
		fs.BoolVar(&o.stop, "stop", false, "docker stop (SIGTERM: hacoord releases and resigns) instead of docker kill")
		fs.DurationVar(&o.settle, "settle", 3*time.Second, "how long to watch the client after the takeover")
	case "partition":
		fs.DurationVar(&o.hold, "hold", 6*time.Second, "how long the master stays disconnected after the takeover")
		fs.DurationVar(&o.settle, "settle", 5*time.Second, "how long to watch the client after the reconnect")
		fs.BoolVar(&o.rejoin, "rejoin", false, "then stop the other nodes and check that the reconnected one takes the VIP (starts them again)")
	case "down":
		fs.BoolVar(&o.keepImages, "keep-images", false, "keep the images")
	}
}

func (o *composeFlags) command(name, short string, stdout io.Writer, f func(context.Context, *composeFlags, io.Writer) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.lab.Out = stdout
			return f(cmd.Context(), o, stdout)
		},
	}
	o.register(name, cmd.Flags())
	return cmd
}

func composeUp(ctx context.Context, o *composeFlags, out io.Writer) error {
	// Start from scratch: a running lab (perhaps of another backend) is removed first.
	if left, err := o.lab.Leftovers(ctx, false); err != nil {
		return err
	} else if len(left) > 0 {
		if err := o.lab.Down(ctx, false); err != nil {
			return err
		}
		fmt.Fprintf(out, "Removed the running lab of project %s first (%d containers and networks).\n", o.lab.Project, len(left))
	}
	if _, err := o.lab.Up(ctx, o.timeout); err != nil {
		return err
	}
	master, err := o.lab.Master(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s holds the VIP %s.\n", master, o.lab.VIP())
	if o.lab.Backend != "vrrp" {
		rec, err := o.lab.Exec(ctx, master, "hacoord", "watch", "--once", "--log-level", "error",
			"--config", "/etc/hacoord/"+o.lab.Backend+".yaml")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "Its master record in %s: %s\n", o.lab.Backend, rec)
	}
	client, err := o.lab.Container(ctx, "client")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Follow the client with: docker logs -f %s\n", client)
	return nil
}

func composeFailover(ctx context.Context, o *composeFlags, out io.Writer) error {
	fault, what := o.lab.Kill, "kill"
	if o.stop {
		fault, what = o.lab.Stop, "stop"
	}
	f, err := fault(ctx, o.settle)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nFailover as the client saw it (t = the %s):\n%s", what, f.Timeline())
	fmt.Fprintf(out, "%s took over from %s.\n", f.New, f.Old)
	if o.noRestart {
		fmt.Fprintf(out, "%s stays stopped (make lab-up starts it again).\n", f.Old)
		return nil
	}
	at := time.Now()
	if err := o.lab.Start(ctx, f.Old); err != nil {
		return err
	}
	// A restarted node is a backup: the VIP must stay where it is (equal VRRP priorities, no preemption).
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return err
	}
	calls, err := o.lab.Calls(ctx, at)
	if err != nil {
		return err
	}
	failed, by := 0, map[string]int{}
	for _, c := range calls {
		if c.OK() {
			by[c.Node()]++
		} else {
			failed++
		}
	}
	fmt.Fprintf(out, "Started %s again: in the next 5s the client made %d calls, %d failed, answered by %s.\n",
		f.Old, len(calls), failed, nodeCounts(by))
	return nil
}

func composePartition(ctx context.Context, o *composeFlags, out io.Writer) error {
	f, a, err := o.lab.Partition(ctx, o.hold)
	if a.Container != "" && err != nil {
		// Never leave a node disconnected.
		if _, rerr := composetest.Reconnect(context.WithoutCancel(ctx), a); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nFailover as the client saw it (t = the disconnect):\n%s", f.Timeline())
	fmt.Fprintf(out, "%s took over from %s.\n", f.New, f.Old)
	if logs, err := o.lab.Logs(ctx, f.Old, f.Fault, 8, electionLine); err == nil && logs != "" {
		fmt.Fprintf(out, "\n%s's election and VIP log while cut off:\n%s\n", f.Old, indent(logs))
	}
	at, err := composetest.Reconnect(ctx, a)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s  docker network connect --ip %s %s %s\n", at.UTC().Format("15:04:05.000"), a.IP, a.Network, a.Container)
	if err := sleepCtx(ctx, o.settle); err != nil {
		return err
	}
	calls, err := o.lab.Calls(ctx, at)
	if err != nil {
		return err
	}
	failed, by := 0, map[string]int{}
	for _, c := range calls {
		if c.OK() {
			by[c.Node()]++
		} else {
			failed++
		}
	}
	fmt.Fprintf(out, "After the reconnect, in %v: %d calls, %d failed, answered by %s.\n", o.settle, len(calls), failed, nodeCounts(by))
	if logs, err := o.lab.Logs(ctx, f.Old, at, 6, electionLine); err == nil && logs != "" {
		fmt.Fprintf(out, "%s's election and VIP log since:\n%s\n", f.Old, indent(logs))
	}
	fmt.Fprintln(out, "hacoord status:")
	for _, n := range composetest.Nodes {
		st, err := o.lab.Status(ctx, n)
		if err != nil {
			fmt.Fprintf(out, "    %s: %v\n", n, err)
			continue
		}
		fmt.Fprintf(out, "    %s\n", st)
	}
	if !o.rejoin {
		return nil
	}
	fmt.Fprintf(out, "\nCan %s be master again?\n", f.Old)
	c, err := o.lab.Rejoin(ctx, f.Old, 20*time.Second)
	if err != nil {
		if st, serr := o.lab.Status(ctx, f.Old); serr == nil {
			fmt.Fprintf(out, "    %s\n", st)
		}
		if logs, lerr := o.lab.Logs(ctx, f.Old, at, 4, electionLine); lerr == nil && logs != "" {
			fmt.Fprintf(out, "%s\n", indent(logs))
		}
		return err
	}
	fmt.Fprintf(out, "Yes: %s (the other nodes were started again).\n", c.Reply)
	return nil
}

func composeDown(ctx context.Context, o *composeFlags, out io.Writer) error {
	if err := o.lab.Down(ctx, !o.keepImages); err != nil {
		return err
	}
	left, err := o.lab.Leftovers(ctx, !o.keepImages)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("left behind: %v", left)
	}
	what := "containers, network and images"
	if o.keepImages {
		what = "containers and network"
	}
	fmt.Fprintf(out, "Removed the %s of compose project %s.\n", what, o.lab.Project)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func nodeCounts(by map[string]int) string {
	if len(by) == 0 {
		return "no node"
	}
	var parts []string
	for _, n := range composetest.Nodes {
		if by[n] > 0 {
			parts = append(parts, fmt.Sprintf("%s (%d)", n, by[n]))
		}
	}
	return strings.Join(parts, ", ")
}

// electionLine selects hacoord's coordinator and vip log lines (roles, binds, self-fencing).
func electionLine(s string) bool {
	return strings.Contains(s, "\tcoordinator\t") || strings.Contains(s, "\tvip\t")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// --- in the containers ---------------------------------------------------------------------------

func newComposeNodeCommand(stderr io.Writer) *cobra.Command {
	var (
		name, listen string
		upstreams    []string
	)
	cmd := &cobra.Command{
		Use:   "node --name N [--listen :8080] --upstream ADDR... -- hacoord [flags]",
		Short: "A lab node: run hacoord and, beside it, a TCP proxy from the node to the web backends",
		Long: `Run the given command (hacoord) and, in the same process group of the container, a TCP proxy:
every connection to --listen is answered with the first line of the next --upstream that answers
(round robin, 300ms to connect), followed by " via " and --name. Clients reach the proxy of the
node that holds the VIP, so a reply names both the web backend and the node that served it.
SIGTERM/SIGINT are passed on to the command; it exits when the command does, with its status.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || len(upstreams) == 0 {
				return errors.New("--name and at least one --upstream are required")
			}
			return composeNode(cmd.Context(), name, listen, upstreams, args, stderr)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "node name added to every reply (required)")
	cmd.Flags().StringVar(&listen, "listen", ":8080", "TCP address of the proxy")
	cmd.Flags().StringArrayVar(&upstreams, "upstream", nil, "web backend host:port (repeat)")
	return cmd
}

func composeNode(ctx context.Context, name, listen string, upstreams, argv []string, stderr io.Writer) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("compose node: listen %s: %w", listen, err)
	}
	defer ln.Close()
	child := exec.Command(argv[0], argv[1:]...)
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		return fmt.Errorf("compose node: start %s: %w", argv[0], err)
	}
	fmt.Fprintf(stderr, "compose node %s: proxy on %s to %s; started %s (pid %d)\n",
		name, ln.Addr(), strings.Join(upstreams, ", "), strings.Join(argv, " "), child.Process.Pid)
	p := &nodeProxy{name: name, upstreams: upstreams}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.serve(ln) }()
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = child.Process.Signal(syscall.SIGTERM)
		err = <-done
	}
	ln.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("compose node: %s: %w", argv[0], err)
	}
	return nil
}

// nodeProxy answers each connection with the reply of the next upstream that answers.
type nodeProxy struct {
	name      string
	upstreams []string
	next      atomic.Uint64
}

func (p *nodeProxy) serve(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.handle(c) }()
	}
}

func (p *nodeProxy) handle(c net.Conn) {
	defer c.Close()
	start := int(p.next.Add(1))
	for i := range p.upstreams {
		reply, err := fetchLine(p.upstreams[(start+i)%len(p.upstreams)], 300*time.Millisecond, time.Second)
		if err == nil {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = fmt.Fprintf(c, "%s via %s\n", reply, p.name)
			return
		}
	}
	// No backend answered: close without a reply, which the client reports as an error.
}

// fetchLine connects to addr and reads the first line it sends.
func fetchLine(addr string, connect, read time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, connect)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(read))
	line, err := bufio.NewReader(io.LimitReader(c, 256)).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("connection closed without a reply")
		}
		return "", err
	}
	return line, nil
}

func newComposeClientCommand(stdout io.Writer) *cobra.Command {
	var (
		target            string
		interval, timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "client --target VIP:PORT",
		Short: "Call the VIP every --interval and print one line a call: who answered, or the error",
		Long: `Open a TCP connection to --target every --interval (each call on its own, so a slow call does
not delay the next) and print one line per call when it ends: its start time (UTC, ms), ok or
error, how long it took, and the reply ("web1 via node2") or the error. Until SIGINT/SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" || interval <= 0 || timeout <= 0 {
				return errors.New("--target, a positive --interval and --timeout are required")
			}
			return composeClient(cmd.Context(), target, interval, timeout, stdout)
		},
	}
	cmd.Flags().StringVar(&target, "target", "", "address to call, VIP:port (required)")
	cmd.Flags().DurationVar(&interval, "interval", composetest.DefaultInterval, "time between calls")
	cmd.Flags().DurationVar(&timeout, "timeout", 500*time.Millisecond, "a call's time limit")
	return cmd
}

func composeClient(ctx context.Context, target string, interval, timeout time.Duration, stdout io.Writer) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := composetest.Call{Start: start}
			reply, err := fetchLine(target, timeout, timeout-time.Since(start))
			c.Duration = time.Since(start)
			if err != nil {
				c.Err = err.Error()
			} else {
				c.Reply = reply
			}
			mu.Lock()
			fmt.Fprintln(stdout, c)
			mu.Unlock()
		}()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
