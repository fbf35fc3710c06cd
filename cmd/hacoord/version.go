package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and build information",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			rev, goVersion := "unknown", "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				for _, kv := range bi.Settings {
					if kv.Key == "vcs.revision" {
						rev = kv.Value
					}
				}
			}
			_, err := fmt.Fprintf(stdout, "hacoord %s (revision %s, %s)\n", version, rev, goVersion)
			return err
		},
	}
}
