// Command hacoord-guard is the hacoord daemon's fence guard (internal/guardproc): a small process
// the daemon starts next to itself and talks to over a pipe. Should the daemon die or stall past an
// instance's deadline, the guard removes its VIPs, withdraws its IPVS services and ends its
// candidacy in the store (etcd's JSON gateway, ZooKeeper's close-session), so that the next master
// takes over at once. It is a separate binary so that it does not carry the daemon's memory (etcd's
// gRPC client, Prometheus): not for direct use.
package main

import (
	"os"

	"github.com/hacoord/hacoord/internal/guardproc"
)

func main() {
	os.Exit(guardproc.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
