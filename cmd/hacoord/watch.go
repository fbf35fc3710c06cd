package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

func newWatchCommand(stdout, stderr io.Writer) *cobra.Command {
	fv := defaultFlagValues()
	var (
		configPath, instance string
		once                 bool
	)
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Follow a group's master record: one JSON line per change",
		Long: `watch prints the group's master record (the value of /hacoord/<group>/leader) as one JSON
line, then a new line every time the master changes, until interrupted. A group with no master,
or whose key holds something that is not a master record, prints {}. It takes no part in the
election and writes nothing. While the store is unreachable it keeps retrying (see --log-level).
With --config, the store settings come from the file, and the group from --group, --instance, or
the file's only instance.`,
		Example: `  hacoord watch --backend etcd --endpoints http://10.0.0.1:2379 --group web
  hacoord watch --backend zk --endpoints zk1:2181,zk2:2181/ha --group web --once | jq -r .address
  hacoord watch --config /etc/hacoord/hacoord.yaml --instance VI_2`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := load(cmd.Flags(), &fv, configPath)
			if err != nil {
				return err
			}
			backend, group, err := watchTarget(s, fv.instance.Group, instance)
			if err != nil {
				return err
			}
			log, err := newLogger(s.daemon.Log, stderr)
			if err != nil {
				return configError{err}
			}
			defer func() { _ = log.Sync() }()
			obs, err := newObserver(s, backend, group, log)
			if err != nil {
				return err
			}
			return watch(cmd.Context(), obs, stdout, once, log)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML settings file (only the store settings and groups are used)")
	cmd.Flags().StringVar(&instance, "instance", "", "with --config: watch this instance's group")
	cmd.Flags().BoolVar(&once, "once", false, "print the current record and exit")
	registerStoreFlags(cmd.Flags(), &fv.daemon, &fv.instance.Group)
	return cmd
}

// watchTarget returns the backend and group to watch: --group's, --instance's, or the only
// instance's.
func watchTarget(s settings, groupFlag, instance string) (string, string, error) {
	if s.given["group"] {
		return s.daemon.Backend, groupFlag, nil
	}
	pick := -1
	switch {
	case instance != "":
		for i, in := range s.instances {
			if in.name == instance {
				pick = i
			}
		}
		if pick < 0 {
			return "", "", configErrorf("--instance %q: no such instance in %s", instance, s.file)
		}
	case len(s.instances) == 1:
		pick = 0
	default:
		return "", "", configErrorf("--group or --instance: %s has %d instances; say which to watch", s.file, len(s.instances))
	}
	in := s.instances[pick]
	backend, group := s.daemon.Backend, in.keys.Group
	if in.backend != "" {
		backend = in.backend
	}
	switch {
	case group != "":
	case in.listed:
		group = in.name
	default:
		group = defaultGroup
	}
	return backend, group, nil
}

// newObserver builds the Observer of backend for group, for hacoord watch, checking the store
// settings as the daemon does.
func newObserver(s settings, backend, group string, log *zap.Logger) (election.Observer, error) {
	b := &planner{s: s, seen: map[string]bool{}}
	b.checkDaemon()
	tlsc := b.etcdTLS()
	b.checkStores(&plan{instances: []*instancePlan{{backend: backend, in: &instanceSettings{}}}})
	if len(b.errs) > 0 {
		return nil, configError{errors.Join(b.errs...)}
	}
	var (
		obs election.Observer
		err error
	)
	switch backend {
	case backendEtcd:
		obs, err = etcd.NewObserver(etcdConfig(s.daemon, group, election.Record{}, tlsc), log)
	case backendZK:
		obs, err = zk.NewObserver(zkConfig(s.daemon, group, election.Record{}), log.Named("zk"))
	default:
		return nil, configErrorf("--backend %q: watch needs etcd or zk (VRRP publishes no master record)", backend)
	}
	if err != nil {
		return nil, configError{err}
	}
	return obs, nil
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
