// Package composetest drives the Docker Compose lab of deploy/compose: it builds the lab's images
// from the repository's static binaries (deploy/compose/build-images), brings a compose project up
// with one of the backends, finds the master the way the lab's client sees it (the node named in
// the last answer), injects faults into it (docker kill, docker network disconnect) and reads the
// client's calls back as a failover timeline. cmd/hacoord-lab's compose subcommands (make lab-up,
// lab-failover, lab-partition, lab-down) and this package's smoke test share it.
//
// Everything the lab creates carries the label org.hacoord.lab=compose and the compose project's
// labels; images carry org.hacoord.lab.tag. A Lab is used by one goroutine at a time.
package composetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults of a Lab, the ones `make lab-up` uses.
const (
	DefaultProject  = "hacoord-lab"
	DefaultNet      = "172.31.77" // the lab network is DefaultNet.0/24
	DefaultTag      = "lab"
	DefaultInterval = 200 * time.Millisecond
)

// Label marks every container, network and image of the lab (value LabelValue); TagLabel holds an
// image's tag.
const (
	Label      = "org.hacoord.lab"
	LabelValue = "compose"
	TagLabel   = "org.hacoord.lab.tag"
)

// Backends are the values of Lab.Backend; each names the compose profile of its store (vrrp has
// none).
var Backends = []string{"etcd", "zk", "vrrp"}

// Nodes are the compose services running hacoord.
var Nodes = []string{"node1", "node2", "node3"}

// Images are the images build-images makes, without their tag; the ZooKeeper image is the last.
var Images = []string{"hacoord-lab-etcd", "hacoord-lab-node", "hacoord-lab-web", "hacoord-lab-client", "hacoord-lab-zookeeper"}

// Lab is one compose project of deploy/compose.
type Lab struct {
	Dir      string        // the compose directory (deploy/compose); required
	Project  string        // compose project name; default DefaultProject
	Backend  string        // etcd, zk or vrrp; default etcd
	Net      string        // first three octets of the lab's /24; default DefaultNet
	Tag      string        // image tag; default DefaultTag
	Interval time.Duration // the client's call interval; default DefaultInterval
	Out      io.Writer     // progress lines; nil discards them
	// Logf, when set, receives the progress lines instead of Out (a test's t.Logf).
	Logf func(format string, args ...any)
}

func (l *Lab) defaults() error {
	if l.Dir == "" {
		return errors.New("composetest: Lab.Dir is required")
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "docker-compose.yml")); err != nil {
		return fmt.Errorf("composetest: %w", err)
	}
	if l.Project == "" {
		l.Project = DefaultProject
	}
	if l.Backend == "" {
		l.Backend = "etcd"
	}
	if !slices.Contains(Backends, l.Backend) {
		return fmt.Errorf("composetest: backend %q: want one of %s", l.Backend, strings.Join(Backends, ", "))
	}
	if l.Net == "" {
		l.Net = DefaultNet
	}
	if l.Tag == "" {
		l.Tag = DefaultTag
	}
	if l.Interval == 0 {
		l.Interval = DefaultInterval
	}
	if l.Out == nil {
		l.Out = io.Discard
	}
	return nil
}

func (l *Lab) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
		return
	}
	fmt.Fprintf(l.Out, format+"\n", args...)
}

// VIP is the address the nodes share.
func (l *Lab) VIP() string { return l.Net + ".100" }

// run runs a command and returns its standard output; the error carries its standard error.
func run(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func docker(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, nil, "docker", args...)
}

// lines splits command output into its non-empty lines.
func lines(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Compose returns the compose command: docker-compose (v1) when installed, else `docker compose`.
func Compose() ([]string, error) {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}, nil
	}
	if err := exec.Command("docker", "compose", "version").Run(); err == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, errors.New("composetest: neither docker-compose nor docker compose is installed")
}

// Env is the environment the compose file reads.
func (l *Lab) Env() []string {
	return []string{
		"HACOORD_BACKEND=" + l.Backend,
		"HACOORD_LAB_NET=" + l.Net,
		"HACOORD_LAB_TAG=" + l.Tag,
		"HACOORD_CLIENT_INTERVAL=" + l.Interval.String(),
	}
}

// compose runs the compose command on the project with the given profiles.
func (l *Lab) compose(ctx context.Context, profiles []string, args ...string) ([]byte, error) {
	if err := l.defaults(); err != nil {
		return nil, err
	}
	c, err := Compose()
	if err != nil {
		return nil, err
	}
	argv := append(c[1:], "-p", l.Project, "-f", filepath.Join(l.Dir, "docker-compose.yml"))
	for _, p := range profiles {
		argv = append(argv, "--profile", p)
	}
	env := append(os.Environ(), l.Env()...)
	return run(ctx, env, c[0], append(argv, args...)...)
}

// profiles is the profile of the lab's backend.
func (l *Lab) profiles() []string {
	if l.Backend == "vrrp" {
		return nil
	}
	return []string{l.Backend}
}

// Binaries are the static binaries the images are built from.
type Binaries struct{ Hacoord, HacoordLab string }

// BuildImages builds the lab's images, tagged l.Tag, with deploy/compose/build-images: the
// ZooKeeper image too unless zookeeper is false.
func (l *Lab) BuildImages(ctx context.Context, bins Binaries, zookeeper bool) error {
	if err := l.defaults(); err != nil {
		return err
	}
	args := []string{}
	if !zookeeper {
		args = append(args, "--no-zookeeper")
	}
	env := append(os.Environ(), "HACOORD_BIN="+bins.Hacoord, "HACOORD_LAB_BIN="+bins.HacoordLab, "HACOORD_LAB_TAG="+l.Tag)
	out, err := run(ctx, env, filepath.Join(l.Dir, "build-images"), args...)
	if err != nil {
		return fmt.Errorf("composetest: build images: %w", err)
	}
	l.logf("%s", strings.TrimSpace(string(out)))
	return nil
}

// missingImages lists the images the backend needs that are not built.
func (l *Lab) missingImages(ctx context.Context) []string {
	need := Images[:4]
	if l.Backend == "zk" {
		need = Images
	}
	var missing []string
	for _, img := range need {
		if _, err := docker(ctx, "image", "inspect", img+":"+l.Tag); err != nil {
			missing = append(missing, img+":"+l.Tag)
		}
	}
	return missing
}

// Up starts the project with its backend and waits, at most timeout, until the client's calls
// through the VIP are answered. It returns the first answered call.
func (l *Lab) Up(ctx context.Context, timeout time.Duration) (Call, error) {
	if err := l.defaults(); err != nil {
		return Call{}, err
	}
	if m := l.missingImages(ctx); len(m) > 0 {
		return Call{}, fmt.Errorf("composetest: images %s not built: run make lab-images (deploy/compose/build-images)", strings.Join(m, ", "))
	}
	start := time.Now()
	l.logf("Starting compose project %s: backend %s, network %s.0/24, VIP %s, images :%s ...", l.Project, l.Backend, l.Net, l.VIP(), l.Tag)
	if _, err := l.compose(ctx, l.profiles(), "up", "-d", "--no-build"); err != nil {
		return Call{}, fmt.Errorf("composetest: up: %w", err)
	}
	c, err := l.WaitAnswer(ctx, start, timeout, func(Call) bool { return true })
	if err != nil {
		return Call{}, fmt.Errorf("composetest: up: %w", err)
	}
	l.logf("The client is served through the VIP after %.1fs: %s", c.End().Sub(start).Seconds(), c.Reply)
	return c, nil
}

// Down removes the project's containers, networks and volumes (of every profile), and with
// images also the images tagged l.Tag.
func (l *Lab) Down(ctx context.Context, images bool) error {
	if err := l.defaults(); err != nil {
		return err
	}
	var errs []error
	if _, err := l.compose(ctx, []string{"etcd", "zk"}, "down", "-v", "--remove-orphans", "-t", "3"); err != nil {
		errs = append(errs, fmt.Errorf("composetest: down: %w", err))
	}
	// What compose did not remove (a container started by hand, a network of a crashed run).
	left, err := l.leftovers(ctx, false)
	if err != nil {
		errs = append(errs, err)
	}
	if len(left) > 0 {
		errs = append(errs, removeAll(ctx, left))
	}
	if images {
		// By name, not ID: an image is deleted once its last tag is gone, and never an image that
		// also carries someone else's tag.
		out, err := docker(ctx, "images", "--filter", "label="+Label+"="+LabelValue, "--filter", "label="+TagLabel+"="+l.Tag,
			"--format", "{{.Repository}}:{{.Tag}}")
		if err != nil {
			errs = append(errs, err)
		}
		if names := lines(out); len(names) > 0 {
			if _, err := docker(ctx, append([]string{"rmi"}, uniq(names)...)...); err != nil {
				errs = append(errs, err)
			}
		}
		// Untagged images of the tag: the builder's leftovers (see build-images).
		if _, err := docker(ctx, "image", "prune", "-f", "--filter", "label="+TagLabel+"="+l.Tag); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Resource is a container, network or image, named as docker rm, network rm or rmi take it.
type Resource struct{ Kind, ID, Name string }

func (r Resource) String() string { return r.Kind + " " + r.Name }

// Leftovers lists what of the project remains: containers, networks and, with images, images
// tagged l.Tag. Empty after Down.
func (l *Lab) Leftovers(ctx context.Context, images bool) ([]Resource, error) {
	if err := l.defaults(); err != nil {
		return nil, err
	}
	return l.leftovers(ctx, images)
}

func (l *Lab) leftovers(ctx context.Context, images bool) ([]Resource, error) {
	var res []Resource
	proj := "label=com.docker.compose.project=" + l.Project
	out, err := docker(ctx, "ps", "-a", "--filter", proj, "--format", "{{.ID}} {{.Names}}")
	if err != nil {
		return nil, err
	}
	for _, s := range lines(out) {
		id, name, _ := strings.Cut(s, " ")
		res = append(res, Resource{"container", id, name})
	}
	out, err = docker(ctx, "network", "ls", "--filter", proj, "--format", "{{.ID}} {{.Name}}")
	if err != nil {
		return nil, err
	}
	for _, s := range lines(out) {
		id, name, _ := strings.Cut(s, " ")
		res = append(res, Resource{"network", id, name})
	}
	if images {
		out, err = docker(ctx, "images", "-a", "--filter", "label="+TagLabel+"="+l.Tag, "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
		if err != nil {
			return nil, err
		}
		for _, s := range lines(out) {
			id, name, _ := strings.Cut(s, " ")
			res = append(res, Resource{"image", id, name})
		}
	}
	return res, nil
}

// removeAll removes resources: containers first (they hold the networks and images).
func removeAll(ctx context.Context, res []Resource) error {
	var errs []error
	for _, kind := range []string{"container", "network", "image"} {
		var ids []string
		for _, r := range res {
			switch {
			case r.Kind == kind && kind == "image":
				ids = append(ids, r.Name) // untag; see Down
			case r.Kind == kind:
				ids = append(ids, r.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		var args []string
		switch kind {
		case "container":
			args = []string{"rm", "-f", "-v"}
		case "network":
			args = []string{"network", "rm"}
		case "image":
			args = []string{"rmi"}
		}
		if _, err := docker(ctx, append(args, uniq(ids)...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func uniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// Container returns the name of the service's container.
func (l *Lab) Container(ctx context.Context, service string) (string, error) {
	if err := l.defaults(); err != nil {
		return "", err
	}
	out, err := docker(ctx, "ps", "-a", "--filter", "label=com.docker.compose.project="+l.Project,
		"--filter", "label=com.docker.compose.service="+service, "--format", "{{.Names}}")
	if err != nil {
		return "", err
	}
	names := lines(out)
	if len(names) != 1 {
		return "", fmt.Errorf("composetest: project %s: service %s has %d containers, want 1 (is the lab up?)", l.Project, service, len(names))
	}
	return names[0], nil
}

// Calls returns the client's calls that started at or after since (all with a zero since).
func (l *Lab) Calls(ctx context.Context, since time.Time) ([]Call, error) {
	name, err := l.Container(ctx, "client")
	if err != nil {
		return nil, err
	}
	args := []string{"logs"}
	if !since.IsZero() {
		// docker logs filters by the time docker received a line, which is after the call started.
		args = append(args, "--since", since.UTC().Format(time.RFC3339Nano))
	}
	out, err := docker(ctx, append(args, name)...)
	if err != nil {
		return nil, err
	}
	calls, err := ParseCalls(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	i := 0
	for i < len(calls) && calls[i].Start.Before(since) {
		i++
	}
	return calls[i:], nil
}

// WaitAnswer waits, at most timeout, for an answered call that started at or after since and
// satisfies ok, and returns it.
func (l *Lab) WaitAnswer(ctx context.Context, since time.Time, timeout time.Duration, ok func(Call) bool) (Call, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var last []Call
	for {
		calls, err := l.Calls(ctx, since)
		if err == nil {
			last = calls
			for _, c := range calls {
				if c.OK() && ok(c) {
					return c, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			msg := "no call"
			if n := len(last); n > 0 {
				msg = fmt.Sprintf("%d calls, the last: %s", n, last[n-1])
			} else if err != nil {
				msg = err.Error()
			}
			return Call{}, fmt.Errorf("no answer from the VIP within %v (%s)", timeout, msg)
		case <-t.C:
		}
	}
}

// Master returns the node holding the VIP as the client sees it: the node that answered the
// last calls, all of which (at least three, over at least one second) must have been answered by
// it. It waits at most timeout for that.
func (l *Lab) Master(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	why := ""
	for {
		since := time.Now().Add(-time.Second - 2*l.Interval)
		calls, err := l.Calls(ctx, since)
		if err != nil {
			why = err.Error()
		} else if node, w := steady(calls); node != "" {
			return node, nil
		} else {
			why = w
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("composetest: no steady master within %v: %s", timeout, why)
		case <-t.C:
		}
	}
}

// steady returns the node that answered every one of calls, or "" and why not.
func steady(calls []Call) (string, string) {
	if len(calls) < 3 {
		return "", fmt.Sprintf("%d calls in the last second", len(calls))
	}
	node := ""
	for _, c := range calls {
		switch {
		case !c.OK():
			return "", "a call failed: " + c.String()
		case node == "":
			node = c.Node()
		case c.Node() != node:
			return "", fmt.Sprintf("answered by %s and %s", node, c.Node())
		}
	}
	return node, ""
}
