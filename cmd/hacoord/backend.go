package main

import (
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
)

// newElector builds the Elector of the instance's backend. rec is the master record template
// (address and VIPs). It opens nothing: connecting is the Elector's Run. The backends name their
// loggers and add their own fields (group and node, or vrid and interface).
//
// Every etcd Elector makes its own client: etcd.Config takes endpoints, not a *clientv3.Client,
// so instances do not share one connection yet (docs/config.md, "Store connections").
func newElector(ip *instancePlan, rec election.Record, log *zap.Logger) (election.Elector, error) {
	switch ip.backend {
	case backendEtcd:
		c := ip.etcd
		c.Record = rec
		return etcd.New(c, log)
	case backendZK:
		c := ip.zk
		c.Record = rec
		return zk.New(c, log.Named("zk"))
	default:
		return vrrp.New(ip.vrrp, log)
	}
}
