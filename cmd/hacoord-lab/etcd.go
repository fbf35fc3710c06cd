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
		Short: "Serve a single-member embedded etcd (fast profile: any lease TTL from 1s) until SIGINT/SIGTERM",
		Long: `Serve a single-member embedded etcd until SIGINT/SIGTERM. It logs "etcd serving" once ready.
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
	cmd.Flags().StringVar(&o.PeerURL, "listen-peer", "", "peer URL (default http://127.0.0.1:0: no peers)")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "data directory (required)")
	cmd.Flags().StringVar(&o.Name, "name", "", "member name (default hacoord-lab)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}
