package qemutest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/testenv"
)

// TestWriteInitramfs lists the archive with busybox cpio, an independent reader of the format.
func TestWriteInitramfs(t *testing.T) {
	bb := testenv.RequireCommand(t, "busybox", "busybox-static")
	var buf bytes.Buffer
	err := WriteInitramfs(&buf, []File{
		{Path: "init", Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		{Path: "bin/sh", Symlink: "busybox"},
		{Path: "dev/console", CharDev: true, Major: 5, Minor: 1, Mode: 0o600},
		{Path: "lib/modules/x/kernel/a.ko", Data: []byte("abc"), Mode: 0o644},
		{Path: "tmp", Dir: true, Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	cmd := exec.Command(bb, "cpio", "-tv")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{"init", "bin", "bin/sh -> busybox", "dev/console", "lib/modules/x/kernel/a.ko", "tmp", "crw-------"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("listing lacks %q:\n%s", want, out)
		}
	}
}

func TestModulesDep(t *testing.T) {
	// ip_vs lists libcrc32c after nf_conntrack, which needs it too: libcrc32c must load first.
	paths := map[string]string{
		"ip_vs": "kernel/ipvs/ip_vs.ko", "ip_vs_rr": "kernel/ipvs/ip_vs_rr.ko",
		"nf_conntrack": "kernel/nf_conntrack.ko", "libcrc32c": "kernel/libcrc32c.ko",
	}
	deps := map[string][]string{
		"ip_vs_rr": {"ip_vs"}, "ip_vs": {"libcrc32c", "nf_conntrack"}, "nf_conntrack": {"libcrc32c"},
	}
	want := `kernel/ipvs/ip_vs.ko: kernel/nf_conntrack.ko kernel/libcrc32c.ko
kernel/ipvs/ip_vs_rr.ko: kernel/ipvs/ip_vs.ko kernel/nf_conntrack.ko kernel/libcrc32c.ko
kernel/libcrc32c.ko:
kernel/nf_conntrack.ko: kernel/libcrc32c.ko
`
	if got := string(ModulesDep(paths, deps)); got != want {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", got, want)
	}
}

func TestInitScript(t *testing.T) {
	s := string(InitScript([]string{"ip_vs"}, "/vm.test -test.v"))
	for _, want := range []string{"modprobe ip_vs", "ip link set lo up", "/vm.test -test.v\nrc=$?", VerdictPrefix + " $rc\" > /dev/ttyS1", "seek=244"} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
}
