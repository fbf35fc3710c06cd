package main

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
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
	if testing.Short() {
		t.Skip("links the daemon (-short)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	// The extra tag (no file uses it) keeps this build's cache entries apart from `make build`'s:
	// otherwise the go command replays the 90,000 lines of -dumpdep output the next time it finds
	// bin/hacoord up to date.
	cmd := exec.Command(goBin, "build", "-trimpath", "-tags", "grpcnotrace,hacoord_dumpdep", "-ldflags=-dumpdep", "-o", "/dev/null", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out[max(0, len(out)-4096):])
	}
	re := regexp.MustCompile(`(?m)^(\S+) <ReflectMethod>`)
	var found []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		found = append(found, m[1])
	}
	slices.Sort(found)
	if found = slices.Compact(found); len(found) > 0 {
		t.Fatalf("reachable functions call reflect's Method/MethodByName dynamically (find who reaches them in `go build -ldflags=-dumpdep` output):\n%s", strings.Join(found, "\n"))
	}
}
