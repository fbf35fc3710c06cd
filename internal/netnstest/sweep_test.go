package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/hacoord/hacoord/internal/testenv"
)

func TestOwnerOf(t *testing.T) {
	name := UniqueName("tag")
	if pid, ok := ownerOf(name); !ok || pid != os.Getpid() {
		t.Errorf("ownerOf(%q) = %d, %v; want %d", name, pid, ok, os.Getpid())
	}
	for _, n := range []string{"hct-mi1-7aaba8", "other-a-12x123456", "hct-a-12x12", "hct-a-0x123456", "hct-a-x123456"} {
		if pid, ok := ownerOf(n); ok {
			t.Errorf("ownerOf(%q) = %d: not a name UniqueName makes", n, pid)
		}
	}
}

// TestSweepDeadRemovesOnlyTheDead: what a killed test binary left (a namespace named for a PID that
// is gone, with a process still inside) is removed; a live process's namespace stays.
func TestSweepDeadRemovesOnlyTheDead(t *testing.T) {
	testenv.RequireRoot(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadName := fmt.Sprintf("%ssweep-%dx%s", Prefix, gone.Process.Pid, "abcdef")
	dead, err := Create(deadName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	orphan := exec.Command("ip", "netns", "exec", deadName, "sleep", "60")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })
	live := New(t, "sweep")

	SweepDead()
	names, err := Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, deadName) {
		t.Errorf("%s (owner gone) still there after SweepDead", deadName)
	}
	if !slices.Contains(names, live.Name) {
		t.Errorf("%s (owner alive: this test) removed by SweepDead", live.Name)
	}
	if err := <-waited; err == nil {
		t.Error("the process left inside the dead namespace was not killed")
	}
}
