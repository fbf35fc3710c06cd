package lab

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// The footprint readers see a child process in the tree, its memory and the CPU it burns.
func TestFootprintProcReaders(t *testing.T) {
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	self := os.Getpid()
	tree := processTree(self)
	if tree[0] != self || !slices.Contains(tree, cmd.Process.Pid) {
		t.Fatalf("processTree(%d) = %v: want itself first and the child %d", self, tree, cmd.Process.Pid)
	}
	rss, peak, anon, file, _, err := procMem(self)
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || peak < rss || anon+file != rss {
		t.Fatalf("procMem: rss %d, peak %d, anon %d + file %d: want at least 1 MiB, peak >= rss, anon+file = rss", rss, peak, anon, file)
	}
	// The child's busy loop shows as CPU time (it takes well over 10ms).
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := procCPU(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if c >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("procCPU of a busy child: %v after 20s", c)
		}
		time.Sleep(10 * time.Millisecond) // polling the child's CPU clock, bounded by the deadline
	}
	f := Footprint{Window: time.Second, Procs: []ProcUsage{{RSS: 3 << 20, CPU: 2 * time.Millisecond}, {RSS: 1 << 20, CPU: 3 * time.Millisecond}}}
	if f.RSS() != 4<<20 || f.CPUShare() != 0.005 {
		t.Fatalf("Footprint sums: RSS %d, CPU share %v: want 4 MiB and 0.5%%", f.RSS(), f.CPUShare())
	}
}
