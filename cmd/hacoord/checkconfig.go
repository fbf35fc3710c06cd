package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func newCheckConfigCommand(stdout io.Writer) *cobra.Command {
	s := defaultSettings()
	var configPath string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate settings (file and flags) and print the effective configuration",
		Long: `check-config reads the same file and flags as the daemon, validates them without
touching the network, and prints the effective settings as YAML. Exit status 2 names the
first problem found.`,
		Example: `  hacoord check-config --config /etc/hacoord/hacoord.yaml
  hacoord check-config --backend etcd --endpoints http://10.0.0.1:2379 --interface eth0 --vip 10.0.0.100/24`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := resolveSettings(cmd, &s, configPath)
			if err != nil {
				return err
			}
			if err := checkBackendConfig(set); err != nil {
				return configError{err}
			}
			set.redact()
			b, err := yaml.Marshal(set)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(stdout, "# configuration OK\n%s", b)
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML settings file")
	registerFlags(cmd.Flags(), &s)
	return cmd
}
