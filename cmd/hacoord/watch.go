package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
)

func newWatchCommand(stdout, stderr io.Writer) *cobra.Command {
	s := defaultSettings()
	var (
		configPath string
		once       bool
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow a group's master record: one JSON line per change",
		Long: `watch prints the group's master record (the value of /hacoord/<group>/leader) as one JSON
line, then a new line every time the master changes, until interrupted. A group with no master,
or whose key holds something that is not a master record, prints {}. It takes no part in the
election and writes nothing. While the store is unreachable it keeps retrying (see --log-level).`,
		Example: `  hacoord watch --backend etcd --endpoints http://10.0.0.1:2379 --group web
  hacoord watch --backend zk --endpoints zk1:2181,zk2:2181/ha --group web --once | jq -r .address`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := loadSettings(cmd, &s, configPath)
			if err != nil {
				return err
			}
			if err := set.validateStore(); err != nil {
				return err
			}
			log, err := newLogger(set.Log, stderr)
			if err != nil {
				return configError{err}
			}
			defer func() { _ = log.Sync() }()
			obs, err := newObserver(set, log)
			if err != nil {
				return configError{err}
			}
			return watch(cmd.Context(), obs, stdout, once, log)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML settings file (only the store settings are used)")
	cmd.Flags().BoolVar(&once, "once", false, "print the current record and exit")
	registerStoreFlags(cmd.Flags(), &s)
	return cmd
}

// watch prints every record obs reports until ctx is done (nil) or, with once, after the first.
func watch(ctx context.Context, obs election.Observer, w io.Writer, once bool, log *zap.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make(chan election.Record)
	done := make(chan error, 1)
	go func() { done <- obs.Observe(ctx, recs) }()
	for {
		select {
		case r := <-recs:
			line := []byte("{}")
			if !r.IsZero() {
				line = r.Marshal()
			}
			if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
				cancel()
				<-done
				return fmt.Errorf("watch: write: %w", err)
			}
			if once {
				cancel()
				<-done
				return nil
			}
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("watch: %w", err)
			}
			log.Debug("watch stopped")
			return nil
		}
	}
}
