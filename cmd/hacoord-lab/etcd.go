package main

import (
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/hacoord/hacoord/internal/etcdtest"
)

func newEtcdCommand(stderr io.Writer) *cobra.Command {
	var o etcdtest.Options
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Serve an embedded etcd, alone (fast profile: any lease TTL from 1s) or as a cluster member, until SIGINT/SIGTERM",
		Long: `Serve an embedded etcd until SIGINT/SIGTERM. It logs "etcd serving" once ready: for a member of a
cluster (--initial-cluster), once the cluster has a leader and the member has joined.
Alone it runs the fast profile (heartbeat 20ms, election 200ms: any lease TTL from 1s); give
--heartbeat-ms/--election-ms for etcd's defaults (100/1000: leases from 2s).
Lab use only: the data is written without fsync.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := zap.NewProductionEncoderConfig()
			enc.EncodeTime = zapcore.ISO8601TimeEncoder
			o.Logger = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(zapcore.AddSync(stderr)), zap.InfoLevel)).Named("etcd")
			return etcdtest.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.ClientURL, "listen-client", "http://127.0.0.1:2379", "client URL to listen on and advertise")
	cmd.Flags().StringVar(&o.PeerURL, "listen-peer", "", "peer URL to listen on and advertise (default http://127.0.0.1:0: no peers)")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "data directory (required)")
	cmd.Flags().StringVar(&o.Name, "name", "", "member name (default hacoord-lab)")
	cmd.Flags().StringVar(&o.InitialCluster, "initial-cluster", "", "members of a new cluster, name=peerURL,... naming this one (default: this member alone)")
	cmd.Flags().StringVar(&o.InitialClusterState, "initial-cluster-state", "new", "new or existing")
	cmd.Flags().UintVar(&o.TickMs, "heartbeat-ms", 0, "raft heartbeat interval in ms (default 20, the fast profile)")
	cmd.Flags().UintVar(&o.ElectionMs, "election-ms", 0, "raft election timeout in ms, at least 5 heartbeats (default 200, the fast profile)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
