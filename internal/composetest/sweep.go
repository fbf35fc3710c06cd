package composetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/hacoord/hacoord/internal/netnstest"
)

// TestPrefix starts the project name (and image tag) of every lab a test creates; the owner's PID
// and a random suffix follow ("hacoordtest1234x5f3a"), so Sweep removes only what labs of dead
// processes left behind, never a lab running right now or a user's `make lab-up`.
const TestPrefix = "hacoordtest"

// TestProject returns a fresh project name for a test lab of this process.
func TestProject() string {
	return fmt.Sprintf("%s%dx%04x", TestPrefix, os.Getpid(), rand.N(1<<16))
}

// projectOwner returns the PID in a test project name, or false for another name.
func projectOwner(project string) (int, bool) {
	rest, ok := strings.CutPrefix(project, TestPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "x")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// Sweep removes the containers, networks and images of test labs whose process is gone (a test
// binary killed by its timeout, a SIGKILLed run) and returns what it removed.
func Sweep(ctx context.Context) ([]Resource, error) {
	var found []Resource
	dead := func(project string) bool {
		pid, ok := projectOwner(project)
		return ok && !netnstest.Alive(pid)
	}
	for _, q := range []struct{ kind, name string }{
		{"container", "{{.Names}}"},
		{"network", "{{.Name}}"},
	} {
		args := map[string][]string{"container": {"ps", "-a"}, "network": {"network", "ls"}}[q.kind]
		out, err := docker(ctx, append(args, "--filter", "label="+Label+"="+LabelValue,
			"--format", `{{.ID}} {{.Label "com.docker.compose.project"}} `+q.name)...)
		if err != nil {
			return nil, err
		}
		for _, s := range lines(out) {
			if f := strings.Fields(s); len(f) == 3 && dead(f[1]) {
				found = append(found, Resource{q.kind, f[0], f[2]})
			}
		}
	}
	// Images, tagged or not (a build killed half-way): a test lab's image tag is its project name.
	ids, err := docker(ctx, "images", "-a", "-q", "--filter", "label="+Label+"="+LabelValue)
	if err != nil {
		return nil, err
	}
	deadTags := map[string]bool{}
	if l := uniq(lines(ids)); len(l) > 0 {
		out, err := docker(ctx, append([]string{"image", "inspect", "--format",
			`{{index .Config.Labels "` + TagLabel + `"}} {{join .RepoTags ","}}`}, l...)...)
		if err != nil {
			return nil, err
		}
		for _, s := range lines(out) {
			tag, names, _ := strings.Cut(s, " ")
			if !dead(tag) {
				continue
			}
			deadTags[tag] = true
			for _, n := range strings.Split(names, ",") {
				if n != "" {
					found = append(found, Resource{"image", n, n})
				}
			}
		}
	}
	if len(found) == 0 && len(deadTags) == 0 {
		return nil, nil
	}
	errs := []error{removeAll(ctx, found)}
	for tag := range deadTags {
		if _, err := docker(ctx, "image", "prune", "-f", "--filter", "label="+TagLabel+"="+tag); err != nil {
			errs = append(errs, err)
		}
		found = append(found, Resource{"image", tag, "untagged images of " + tag})
	}
	return found, errors.Join(errs...)
}

// FreeNet returns the first three octets of a /24 in 172.31.100.0-172.31.249.0 that no docker
// network and no local interface uses, picked at random, for a test lab's network.
func FreeNet(ctx context.Context) (string, error) {
	used := map[string]bool{}
	ids, err := docker(ctx, "network", "ls", "-q")
	if err != nil {
		return "", err
	}
	if l := lines(ids); len(l) > 0 {
		out, err := docker(ctx, append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, l...)...)
		if err != nil {
			return "", err
		}
		for _, s := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
				b := p.Addr().As4()
				used[fmt.Sprintf("%d.%d.%d", b[0], b[1], b[2])] = true
				if p.Bits() < 24 { // a wider network covers many /24s: keep away from its first octets
					used[fmt.Sprintf("%d.%d", b[0], b[1])] = true
				}
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ip := n.IP.To4()
			used[fmt.Sprintf("%d.%d.%d", ip[0], ip[1], ip[2])] = true
		}
	}
	if used["172.31"] {
		return "", errors.New("composetest: a docker network covers 172.31.0.0/16; no free /24 for a test lab")
	}
	start := rand.N(150)
	for i := range 150 {
		n := fmt.Sprintf("172.31.%d", 100+(start+i)%150)
		if !used[n] {
			return n, nil
		}
	}
	return "", errors.New("composetest: no free /24 in 172.31.100.0-172.31.249.0")
}
