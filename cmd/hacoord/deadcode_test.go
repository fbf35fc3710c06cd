package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/testenv"
)

// The daemon links with the linker's method dead-code elimination on: no reachable function may
// call reflect's Method or MethodByName with a name not known at compile time (the linker marks
// it <ReflectMethod>). One such call anywhere makes the linker keep every exported method of
// every type used as an interface; for the daemon that was 4.4 MB of its 21.6 MB binary, and as
// the binary's pages are most of its resident memory, about as much RSS. Seen so far: protobuf
// before v1.36.12 (descfmt's MethodByName("Methods") keeps Go 1.26's reflect.Value.Methods), and
// golang.org/x/net/trace's html/template through grpc unless built with the Makefile's
// grpcnotrace tag.
func TestDaemonLinksWithMethodDeadcode(t *testing.T) {
	found := testenv.LinkDeps(t, regexp.MustCompile(`(?m)^(\S+) <ReflectMethod>`))
	if len(found) > 0 {
		t.Fatalf("reachable functions call reflect's Method/MethodByName dynamically (find who reaches them in `go build -ldflags=-dumpdep` output):\n%s", strings.Join(found, "\n"))
	}
}
