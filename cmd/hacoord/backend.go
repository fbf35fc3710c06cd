package main

import (
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// newElector builds the Elector of the instance's backend. rec is the master record template
// (address and VIPs). It opens nothing but, for etcd, the client it shares with the daemon's other
// etcd instances on the same endpoints (stores; connecting is the Elector's Run). The backends
// name their loggers and add their own fields (group and node, or vrid and interface).
func newElector(ip *instancePlan, rec election.Record, stores *storeClients, log *zap.Logger) (election.Elector, error) {
	switch ip.backend {
	case backendEtcd:
		c := ip.etcd
		c.Record = rec
		cli, err := stores.etcdFor(ip)
		if err != nil {
			return nil, err
		}
		c.Client = cli
		return etcd.New(c, log)
	case backendZK:
		c := ip.zk
		c.Record = rec
		return zk.New(c, log.Named("zk"))
	default:
		return vrrp.New(ip.vrrp, log)
	}
}
