package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"
)

func newServeCommand(stdout io.Writer) *cobra.Command {
	var listen, name string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Accept TCP connections, write the node name and a newline, close; until SIGINT/SIGTERM",
		Long: `Accept TCP connections, write the node name and a newline, and close them, until SIGINT/SIGTERM.
It prints "READY <address>" once listening. The lab runs one per node so that a client dialling the
VIP can tell which node answered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("--name is required")
			}
			return serve(cmd.Context(), listen, name, stdout)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "TCP address to listen on")
	cmd.Flags().StringVar(&name, "name", "", "node name to reply with (required)")
	return cmd
}

func serve(ctx context.Context, listen, name string, stdout io.Writer) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("serve: listen %s: %w", listen, err)
	}
	fmt.Fprintf(stdout, "READY %s\n", ln.Addr())
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	reply := []byte(name + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("serve: accept: %w", err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(reply)
		_ = c.Close()
	}
}
