package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newTransferCommand(stdout io.Writer) *cobra.Command {
	var ct controlTarget
	var to string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "transfer --to NODE",
		Short: "Hand this node's mastership to NODE: only NODE may take over until it has, or until --timeout",
		Long: `transfer asks the master's daemon (root only) to hand an instance over to NODE: it releases the
VIPs, leaves a transfer record in the store and gives up its place. Until NODE is master, or
--timeout has passed, every other candidate holds back; then a normal election runs. NODE must be
a candidate of the group (running, healthy, not in maintenance). Not supported by VRRP.`,
		Example: `  hacoord transfer --to h2
  hacoord transfer --group lab --name h1 --to h2 --timeout 5s`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return configError{errString("--to: required (the node to hand over to)")}
			}
			if timeout <= 0 {
				return configError{errString("--timeout: must be positive")}
			}
			return ct.call(cmd.Context(), stdout, controlRequest{Op: "transfer", To: to, Timeout: timeout.String()}, controlTimeout+5*time.Second)
		},
	}
	ct.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the node to hand over to (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long the other candidates hold back for NODE")
	return cmd
}

// errString is an error with a fixed message.
type errString string

func (e errString) Error() string { return string(e) }
