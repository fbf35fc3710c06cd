package qemutest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// VerdictPrefix starts the line the guest writes on its second serial port: "HACOORD-VERDICT <rc>".
const VerdictPrefix = "HACOORD-VERDICT"

// debugExitPort is the isa-debug-exit I/O port; the guest writes a byte v there and qemu exits
// with status v<<1|1 at once, instead of waiting for a clean power-off.
const debugExitPort = 0xf4

// VM is one qemu run of a kernel and an initramfs.
type VM struct {
	Kernel string // uncompressed vmlinux (PVH boot)
	Initrd string
	// Append is added to the kernel command line.
	Append   string
	MemoryMB int
	// Console receives the guest's first serial port (kernel log and the test's output).
	Console io.Writer
	// Dir holds the verdict file; default a temporary directory.
	Dir string
}

// Result is how a VM run ended.
type Result struct {
	// ExitCode is the guest's verdict: the exit status of what init ran.
	ExitCode int
	Duration time.Duration
}

// Run boots the VM with TCG (no KVM: the nested /dev/kvm of CI machines does not boot this kernel)
// and waits for it to stop or for ctx to end, when it kills qemu. It returns the guest's verdict,
// read from the second serial port, or ErrNoVerdict.
func (vm VM) Run(ctx context.Context) (Result, error) {
	dir := vm.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "qemutest-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	verdict := filepath.Join(dir, "verdict")
	_ = os.Remove(verdict)
	mem := vm.MemoryMB
	if mem == 0 {
		mem = 1024
	}
	cmdline := "console=ttyS0 panic=-1 oops=panic mitigations=off rdinit=/init " + vm.Append
	args := []string{
		"-accel", "tcg",
		"-m", strconv.Itoa(mem),
		"-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", vm.Kernel,
		"-initrd", vm.Initrd,
		"-append", cmdline,
		"-serial", "stdio",
		"-serial", "file:" + verdict,
		"-device", fmt.Sprintf("isa-debug-exit,iobase=%#x,iosize=0x04", debugExitPort),
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	console := vm.Console
	if console == nil {
		console = io.Discard
	}
	cmd.Stdout, cmd.Stderr = console, console
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res := Result{ExitCode: -1, Duration: time.Since(start)}
	data, _ := os.ReadFile(verdict)
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), VerdictPrefix+" "); ok {
			if n, err := strconv.Atoi(rest); err == nil {
				res.ExitCode = n
				return res, nil
			}
		}
	}
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		return res, fmt.Errorf("qemu: %w", runErr)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w: %v after %v", ErrNoVerdict, ctx.Err(), res.Duration.Round(time.Millisecond))
	}
	return res, fmt.Errorf("%w (qemu: %v)", ErrNoVerdict, runErr)
}

// InitScript returns a busybox /init that mounts the pseudo file systems, loads modules with
// modprobe (kernel requests for more, such as a scheduler, go through busybox modprobe too),
// brings lo up, runs the command with its output on the console, reports its exit status on the
// second serial port and leaves through isa-debug-exit.
func InitScript(modules []string, command string) []byte {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp /root /sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
ln -sf /bin/busybox /sbin/modprobe
echo /sbin/modprobe > /proc/sys/kernel/modprobe
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "modprobe %s || echo 'init: modprobe %s failed'\n", m, m)
	}
	fmt.Fprintf(&b, `ip link set lo up
echo "init: kernel up $(cut -d' ' -f1 /proc/uptime)s; running %s"
%s
rc=$?
echo "init: exit status $rc at $(cut -d' ' -f1 /proc/uptime)s"
echo "%s $rc" > /dev/ttyS1
sync
if [ $rc -eq 0 ]; then v='\000'; else v='\001'; fi
printf "$v" | dd of=/dev/port bs=1 seek=%d count=1 2>/dev/null
poweroff -f
`, command, command, VerdictPrefix, debugExitPort)
	return []byte(b.String())
}
