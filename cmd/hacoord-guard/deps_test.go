package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/testenv"
)

// The guard's binary pages are most of its resident memory, so it links none of the big clients it
// has no use for: no net/http client (etcdgw speaks HTTP/1.1 itself; net/http's client was 0.9 MB
// of the binary), no gRPC, protobuf, Prometheus or cobra, and the linker's method dead-code
// elimination stays on (no dynamic reflect Method/MethodByName call is reachable).
func TestGuardLinksNoneOfTheDaemonsWeight(t *testing.T) {
	unwanted := regexp.MustCompile(`(?m)^.* -> (net/http\.\(\*Client\)\.do|net/http\.\(\*Transport\)\.roundTrip|google\.golang\.org/grpc\.\S+|google\.golang\.org/protobuf/\S+|github\.com/prometheus/\S+|github\.com/spf13/cobra\.\S+|go\.etcd\.io/etcd/client/pkg/v3/transport\.\S+)$|^(\S+) <ReflectMethod>`)
	if found := testenv.LinkDeps(t, unwanted); len(found) > 0 {
		if len(found) > 20 {
			found = append(found[:20], "...")
		}
		t.Fatalf("the guard links what it must not (see `go build -ldflags=-dumpdep` for who reaches it):\n%s", strings.Join(found, "\n"))
	}
}
