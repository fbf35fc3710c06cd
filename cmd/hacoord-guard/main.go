// Command hacoord-guard is the hacoord daemon's fence guard (internal/guardproc): a small process
// the daemon starts next to itself and talks to over a pipe. Should the daemon die or stall past an
// instance's deadline, the guard removes its VIPs, withdraws its IPVS services and ends its
// candidacy in the store (etcd's JSON gateway, ZooKeeper's close-session), so that the next master
// takes over at once. It is a separate binary so that it does not carry the daemon's memory (etcd's
// gRPC client, Prometheus): not for direct use.
package main

import (
	"os"
	"syscall"

	"github.com/hacoord/hacoord/internal/guardproc"
)

func main() {
	os.Exit(guardproc.Main(os.Args[1:], pollableStdin(), os.Stdout, os.Stderr))
}

// pollableStdin returns stdin in non-blocking mode, read through Go's network poller. os/exec
// hands the guard the daemon's pipe in blocking mode, and a read(2) that blocks holds a thread in
// the kernel: every line the daemon writes (a hold per renewal, several a second) then woke that
// thread, and the runtime's monitor took its P away and handed it back, several wake-ups more each
// time. Waiting in the poller, a line costs one wake-up. Only a pipe is switched: the mode belongs
// to the open file, which a terminal shares with the shell the guard was started from by hand. Any
// other stdin, or one whose mode cannot be set, is os.Stdin unchanged.
func pollableStdin() *os.File {
	if fi, err := os.Stdin.Stat(); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return os.Stdin
	}
	if err := syscall.SetNonblock(0, true); err != nil {
		return os.Stdin
	}
	return os.NewFile(0, "/dev/stdin")
}
