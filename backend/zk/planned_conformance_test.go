package zk_test

import (
	"testing"

	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/zktest"
)

// plannedHarness is the conformance harness (one ZooKeeper, 1s sessions, a faultnet proxy per
// candidate) with what this backend does differently from the suite's expectations named.
type plannedHarness struct{ *harness }

// Lacks: nothing: the zk Elector gives every planned-move guarantee of the suite.
func (plannedHarness) Lacks() map[string]string { return nil }

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
