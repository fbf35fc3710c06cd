package zk_test

import (
	"testing"

	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/zktest"
)

// plannedHarness is the conformance harness (one ZooKeeper, 1s sessions, a faultnet proxy per
// candidate) with what this backend does differently from the suite's expectations named.
type plannedHarness struct{ *harness }

// Lacks: a node that resigned publishes no preemption until it is master again (as VRRP's
// yielded router does not preempt), so a preferred node that resigned does not take mastership
// straight back from the node it resigned to.
func (plannedHarness) Lacks() map[string]string {
	return map[string]string{
		"HigherPriorityLeads": "a resigned node does not preempt back until it is master again (the operator asked it to step down)",
	}
}

func TestConformancePlanned(t *testing.T) {
	srv := zktest.Start(t, zktest.Options{})
	electiontest.RunPlanned(t, plannedHarness{&harness{srv: srv, raw: raw(t, srv.Addr(), "")}})
}

// plannedEnsemble is the planned-move conformance run on a 3-server ensemble (2s sessions).
type plannedEnsemble struct{ *ensemble }

func (plannedEnsemble) Lacks() map[string]string { return plannedHarness{}.Lacks() }

func TestConformancePlannedEnsemble(t *testing.T) {
	electiontest.RunPlanned(t, plannedEnsemble{startEnsemble(t)})
}
