package composetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/testenv"
)

// TestComposeLab is the smoke test of the Docker Compose lab (deploy/compose), as `make lab-up`
// and `make lab-failover` run it, for every backend: the images are built from the repository's
// binaries; the lab comes up and the client is served through the VIP; the master's container is
// killed and the client is served again, by another node; the lab comes down and nothing of it
// is left (containers, network, and at the end the images). About two minutes.
func TestComposeLab(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the compose lab takes about two minutes")
	}
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// What a crashed run leaves, as the sweep finds it: a network of a project whose process is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	crashed := fmt.Sprintf("%s%dx0000", TestPrefix, dead.Process.Pid)
	if _, err := docker(ctx, "network", "create", "--internal", "--label", Label+"="+LabelValue,
		"--label", "com.docker.compose.project="+crashed, crashed+"_lab"); err != nil {
		t.Fatal(err)
	}
	swept, err := Sweep(ctx)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	t.Logf("swept what dead test runs left: %v", swept)
	if !slices.ContainsFunc(swept, func(r Resource) bool { return r.Name == crashed+"_lab" }) {
		_, _ = docker(ctx, "network", "rm", crashed+"_lab")
		t.Errorf("sweep left the network %s_lab of a dead run", crashed)
	}
	bins := binaries(t)
	net, err := FreeNet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.Abs("../../deploy/compose")
	if err != nil {
		t.Fatal(err)
	}
	project := TestProject()
	lab := &Lab{Dir: dir, Project: project, Tag: project, Net: net, Interval: 100 * time.Millisecond, Logf: t.Logf}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(cctx, true); err != nil {
			t.Errorf("down: %v", err)
		}
		if left, err := lab.Leftovers(cctx, true); err != nil || len(left) > 0 {
			t.Errorf("left behind after down: %v (err %v)", left, err)
		}
	})

	zkReason := zookeeperMissing()
	start := time.Now()
	if err := lab.BuildImages(ctx, bins, zkReason == ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("images built in %.1fs", time.Since(start).Seconds())

	for _, backend := range Backends {
		t.Run(backend, func(t *testing.T) {
			if backend == "zk" && zkReason != "" {
				testenv.Unavailable(t, zkReason)
			}
			lab.Backend = backend
			lab.Logf = t.Logf
			defer func() {
				if t.Failed() {
					for _, s := range append([]string{"client"}, Nodes...) {
						if logs, err := lab.Logs(context.WithoutCancel(ctx), s, time.Time{}, 15, nil); err == nil {
							t.Logf("%s's last lines:\n%s", s, logs)
						}
					}
				}
				if err := lab.Down(context.WithoutCancel(ctx), false); err != nil {
					t.Errorf("down: %v", err)
				}
				if left, err := lab.Leftovers(context.WithoutCancel(ctx), false); err != nil || len(left) > 0 {
					t.Errorf("left behind after down: %v (err %v)", left, err)
				}
			}()
			testFailover(ctx, t, lab)
		})
	}
}

func testFailover(ctx context.Context, t *testing.T, lab *Lab) {
	first, err := lab.Up(ctx, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(Nodes, first.Node()) || !slices.Contains([]string{"web1", "web2"}, first.Backend()) {
		t.Fatalf("first answer %q: want webN via nodeN", first.Reply)
	}
	// Both web backends answer through the master's proxy.
	if _, err := lab.WaitAnswer(ctx, first.End(), 10*time.Second, func(c Call) bool { return c.Backend() != first.Backend() }); err != nil {
		t.Fatalf("only %s answers: %v", first.Backend(), err)
	}

	f, err := lab.Kill(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover as the client saw it:\n%s", f.Timeline())
	if f.New == f.Old || !slices.Contains(Nodes, f.New) {
		t.Fatalf("after killing %s, the client was served by %q", f.Old, f.New)
	}
	if st, err := lab.Status(ctx, f.New); err != nil || st.Role != "master" || len(st.BoundVIPs) != 1 {
		t.Errorf("%s answers but its hacoord status is %v (err %v)", f.New, st, err)
	}
	// Served for good: the last calls were all answered by the new master.
	if node, why := steady(f.After[max(0, len(f.After)-5):]); node != f.New {
		t.Errorf("after the takeover by %s: %s", f.New, why)
	}
	if n := f.FailuresAfter(); n > 0 {
		t.Logf("note: %d calls failed after the first answer from %s", n, f.New)
	}
}

// requireDocker skips (fails under CI) unless a Docker engine answers and compose is installed.
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Unavailable(t, "docker not installed (the compose lab needs a Docker engine)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("no Docker engine answers: %v: %s", err, strings.TrimSpace(string(out))))
	}
	if _, err := Compose(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
}

// binaries returns the static binaries to build the images from: $HACOORD_BIN and
// $HACOORD_LAB_BIN (make build), else built here with CGO_ENABLED=0.
func binaries(t *testing.T) Binaries {
	t.Helper()
	b := Binaries{Hacoord: os.Getenv("HACOORD_BIN"), HacoordLab: os.Getenv("HACOORD_LAB_BIN")}
	dir := t.TempDir()
	build := func(pkg, dst string) string {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			t.Fatalf("go env GOMOD: %v", err)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-o", dst, pkg) // as the Makefile builds
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		return dst
	}
	if b.Hacoord == "" {
		b.Hacoord = build("./cmd/hacoord", filepath.Join(dir, "hacoord"))
		// build-images takes the daemon's fence guard from beside it.
		build("./cmd/hacoord-guard", filepath.Join(dir, "hacoord-guard"))
	}
	if b.HacoordLab == "" {
		b.HacoordLab = build("./cmd/hacoord-lab", filepath.Join(dir, "hacoord-lab"))
	}
	// The node and client containers run `hacoord-lab compose ...`: a binary older than it fails
	// there, less clearly.
	if out, err := exec.Command(b.HacoordLab, "compose", "node", "--help").CombinedOutput(); err != nil {
		t.Fatalf("%s has no compose subcommand (stale? run make build): %v\n%s", b.HacoordLab, err, out)
	}
	return b
}

// zookeeperMissing says what the ZooKeeper image cannot be built without, or "".
func zookeeperMissing() string {
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		return "ZooKeeper image: /usr/share/java/zookeeper.jar missing (Debian package zookeeper)"
	}
	for cmd, pkg := range map[string]string{"java": "default-jre-headless", "busybox": "busybox-static", "ldd": "libc-bin"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Sprintf("ZooKeeper image: %s not found (Debian package %s)", cmd, pkg)
		}
	}
	return ""
}
