package main

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The guard's binary pages are most of its resident memory, so it links none of the big clients it
// has no use for: no net/http client (etcdgw speaks HTTP/1.1 itself; net/http's client was 0.9 MB
// of the binary), no gRPC, protobuf, Prometheus or cobra, and the linker's method dead-code
// elimination stays on (no dynamic reflect Method/MethodByName call is reachable).
func TestGuardLinksNoneOfTheDaemonsWeight(t *testing.T) {
	if testing.Short() {
		t.Skip("links the guard (-short)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	// The tag (no file uses it) keeps this build's cache entries apart from `make build`'s, which
	// would otherwise replay the -dumpdep output when it finds bin/hacoord-guard up to date.
	cmd := exec.Command(goBin, "build", "-trimpath", "-tags", "grpcnotrace,hacoord_dumpdep", "-ldflags=-dumpdep", "-o", "/dev/null", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out[max(0, len(out)-4096):])
	}
	unwanted := regexp.MustCompile(`(?m)^.* -> (net/http\.\(\*Client\)\.do|net/http\.\(\*Transport\)\.roundTrip|google\.golang\.org/grpc\.\S+|google\.golang\.org/protobuf/\S+|github\.com/prometheus/\S+|github\.com/spf13/cobra\.\S+|go\.etcd\.io/etcd/client/pkg/v3/transport\.\S+)$|^(\S+) <ReflectMethod>`)
	var found []string
	for _, m := range unwanted.FindAllStringSubmatch(string(out), -1) {
		found = append(found, m[1]+m[2])
	}
	slices.Sort(found)
	if found = slices.Compact(found); len(found) > 0 {
		if len(found) > 20 {
			found = append(found[:20], "...")
		}
		t.Fatalf("the guard links what it must not (see `go build -ldflags=-dumpdep` for who reaches it):\n%s", strings.Join(found, "\n"))
	}
}
