package etcd

import (
	"context"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd/etcdgw"
)

// GatewayConfig says how to reach etcd's HTTP/JSON gateway (etcdgw.Config: the package a fence
// guard uses without this package's gRPC client).
type GatewayConfig = etcdgw.Config

// RevokeLease revokes lease id through the gateway: etcdgw.RevokeLease.
func RevokeLease(ctx context.Context, c GatewayConfig, id int64, log *zap.Logger) error {
	return etcdgw.RevokeLease(ctx, c, id, log)
}
