package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newMaintenanceCommand(stdout io.Writer) *cobra.Command {
	var ct controlTarget
	cmd := &cobra.Command{
		Use:   "maintenance on|off",
		Short: "Take this node out of the election (a master hands over first) and keep it out, across restarts, until off",
		Long: `maintenance on asks the daemon (root only) to stop campaigning for an instance: a master releases
the VIPs and hands over first. The node stays out, also after the daemon restarts (a flag file in
--state-dir of the daemon), until maintenance off. Not supported by VRRP.`,
		Example: `  hacoord maintenance on --group lab --name h1
  hacoord maintenance off --group lab --name h1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
				return configError{fmt.Errorf("maintenance: want one argument, on or off")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return ct.call(cmd.Context(), stdout, controlRequest{Op: "maintenance", On: args[0] == "on"}, controlTimeout+5*time.Second)
		},
	}
	ct.register(cmd)
	return cmd
}
