package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles the binaries a lab needs into dir and returns their paths: hacoord-lab always,
// hacoord unless $HACOORD_BIN names one already. It runs `go build` from the module
// root, found with `go env GOMOD` from the working directory. For TestMain.
func Build(ctx context.Context, dir string) (hacoordBin, labBin string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("lab: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	build := func(pkg, dst string) error {
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-o", dst, pkg) // as the Makefile builds
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("lab: go build %s: %w\n%s", pkg, err, out)
		}
		return nil
	}
	labBin = filepath.Join(dir, "hacoord-lab")
	if err := build("./cmd/hacoord-lab", labBin); err != nil {
		return "", "", err
	}
	hacoordBin = os.Getenv("HACOORD_BIN")
	if hacoordBin == "" {
		hacoordBin = filepath.Join(dir, "hacoord")
		if err := build("./cmd/hacoord", hacoordBin); err != nil {
			return "", labBin, err
		}
	}
	return hacoordBin, labBin, nil
}
