// Command ipvsvm runs a Go package's IPVS integration tests (build tag ipvsvm) inside a Debian
// kernel booted with qemu, for machines whose own kernel has no IPVS. It is what `make test-ipvs`
// runs:
//
//	go run ./internal/qemutest/cmd/ipvsvm -cache .cache/ipvsvm ./ipvs
//
// The first run downloads the kernel package with apt-get download (about 70 MB) into the cache;
// later runs reuse it. It needs qemu-system-x86 and busybox-static.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hacoord/hacoord/internal/qemutest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintln(os.Stderr, "ipvsvm:", err)
		os.Exit(2)
	}
}

type exitCode int

func (e exitCode) Error() string {
	return fmt.Sprintf("tests failed in the VM (exit status %d)", int(e))
}

// modules are loaded in the VM, in order; dependencies come through modules.dep. crc32c_generic
// first: libcrc32c only soft-depends on a crc32c implementation, which busybox modprobe ignores.
var modules = []string{
	"crc32c_generic", "ip_vs", "veth",
	"ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_dh",
	"ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_mh",
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ipvsvm", flag.ContinueOnError)
	cache := fs.String("cache", ".cache/ipvsvm", "cache directory for the kernel package and the images")
	pkgName := fs.String("kernel-pkg", "", "Debian kernel image package (default: what linux-image-amd64 depends on)")
	tags := fs.String("tags", "ipvsvm", "build tags for the test binary")
	runRE := fs.String("run", "", "run only tests matching this regexp")
	verbose := fs.Bool("v", true, "verbose test output")
	timeout := fs.Duration("timeout", 15*time.Minute, "limit for the whole VM run")
	busybox := fs.String("busybox", "/bin/busybox", "static busybox (Debian busybox-static)")
	hacoord := fs.String("hacoord", "", "static hacoord binary to put in the VM as /bin/hacoord (HACOORD_BIN), with the hacoord-guard beside it, for the daemon's end-to-end test")
	name := fs.String("name", "", "names this run's test binary, initramfs and verdict under cache/NAME/, so two runs (test-ipvs, test-lvs) can share the kernel cache at once; default: cache/vm.test, cache/initramfs.cpio")
	var extraModules, extraEnv []string
	fs.Func("modules", "comma-separated kernel modules to load after the IPVS ones (e.g. bridge)", func(s string) error {
		extraModules = append(extraModules, strings.Split(s, ",")...)
		return nil
	})
	fs.Func("env", "KEY=VALUE added to the test's environment in the VM; repeatable", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" || strings.ContainsAny(s, " '\"\\$`") {
			return fmt.Errorf("want KEY=VALUE without blanks or quotes, got %q", s)
		}
		extraEnv = append(extraEnv, s)
		return nil
	})
	memory := fs.Int("memory", 1024, "guest memory in MB")
	testTimeout := fs.Duration("test-timeout", 10*time.Minute, "go test -timeout inside the VM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pkgs := fs.Args()
	if len(pkgs) != 1 {
		return errors.New("usage: ipvsvm [flags] ./package")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "ipvsvm: "+format+"\n", a...) }

	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return errors.New("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
	}
	if static, err := qemutest.IsStatic(*busybox); err != nil || !static {
		return fmt.Errorf("%s is not a static busybox (apt-get install busybox-static): %v", *busybox, err)
	}

	t0 := time.Now()
	pkg := *pkgName
	if pkg == "" {
		p, err := qemutest.DebianKernelPackage(ctx)
		if err != nil {
			// Offline with a cache: use what is there.
			cached, _ := filepath.Glob(filepath.Join(*cache, "linux-image-*", "vmlinux"))
			if len(cached) == 0 {
				return err
			}
			sort.Strings(cached)
			p = filepath.Base(filepath.Dir(cached[len(cached)-1]))
			logf("%v; using cached %s", err, p)
		}
		pkg = p
	}
	k, err := qemutest.FetchKernel(ctx, *cache, pkg, os.Stderr)
	if err != nil {
		return err
	}
	tKernel := time.Since(t0)

	t1 := time.Now()
	work, testName, initrdName := *cache, "vm.test", "initramfs.cpio"
	if *name != "" {
		work, testName = filepath.Join(*cache, *name), *name+".test"
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
	}
	testBin, err := filepath.Abs(filepath.Join(work, testName))
	if err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "test", "-c", "-tags", *tags, "-o", testBin, pkgs[0])
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go test -c %s: %w", pkgs[0], err)
	}
	tBuild := time.Since(t1)

	t2 := time.Now()
	modules := append(append([]string(nil), modules...), extraModules...)
	paths, deps, err := qemutest.ModuleDeps(k, modules...)
	if err != nil {
		return err
	}
	modDir := filepath.Join("lib", "modules", k.Release)
	files := []qemutest.File{
		{Path: "bin/busybox", Source: *busybox, Mode: 0o755},
		{Path: "dev/console", CharDev: true, Major: 5, Minor: 1, Mode: 0o600},
		{Path: "vm.test", Source: testBin, Mode: 0o755},
		{Path: filepath.Join(modDir, "modules.dep"), Data: qemutest.ModulesDep(paths, deps), Mode: 0o644},
	}
	env := "CI=true"
	if *hacoord != "" {
		if static, err := qemutest.IsStatic(*hacoord); err != nil || !static {
			return fmt.Errorf("-hacoord %s: not a static binary (build with CGO_ENABLED=0): %v", *hacoord, err)
		}
		// The daemon starts its fence guard from its own directory.
		guard := filepath.Join(filepath.Dir(*hacoord), "hacoord-guard")
		if static, err := qemutest.IsStatic(guard); err != nil || !static {
			return fmt.Errorf("-hacoord %s: the fence guard %s beside it is missing or not static (make build builds both): %v", *hacoord, guard, err)
		}
		files = append(files, qemutest.File{Path: "bin/hacoord", Source: *hacoord, Mode: 0o755},
			qemutest.File{Path: "bin/hacoord-guard", Source: guard, Mode: 0o755})
		env += " HACOORD_BIN=/bin/hacoord"
	}
	for _, rel := range paths {
		files = append(files, qemutest.File{Path: filepath.Join(modDir, rel), Source: filepath.Join(k.ModulesDir(), rel), Mode: 0o644})
	}
	for _, e := range extraEnv {
		env += " " + e
	}
	testArgs := []string{"-test.timeout=" + testTimeout.String()}
	if *verbose {
		testArgs = append(testArgs, "-test.v")
	}
	if *runRE != "" {
		testArgs = append(testArgs, "-test.run='"+strings.ReplaceAll(*runRE, "'", "")+"'")
	}
	command := "(cd /tmp && " + env + " /vm.test " + strings.Join(testArgs, " ") + ")"
	files = append(files, qemutest.File{Path: "init", Data: qemutest.InitScript(modules, command), Mode: 0o755})
	initrd := filepath.Join(work, initrdName)
	f, err := os.Create(initrd)
	if err != nil {
		return err
	}
	if err := qemutest.WriteInitramfs(f, files); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	tInitrd := time.Since(t2)

	logf("booting %s (kernel %v, go test -c %v, initramfs %v)", k.Release, tKernel.Round(time.Millisecond), tBuild.Round(time.Millisecond), tInitrd.Round(time.Millisecond))
	res, err := qemutest.VM{Kernel: k.VMLinux, Initrd: initrd, Append: "quiet loglevel=4", MemoryMB: *memory, Console: os.Stdout, Dir: work}.Run(ctx)
	logf("VM boot+test: %v", res.Duration.Round(time.Millisecond))
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return exitCode(1)
	}
	logf("PASS")
	return nil
}
