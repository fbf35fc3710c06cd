package zk_test

import (
	"testing"
	"time"

	"github.com/hacoord/hacoord/election"
)

// On a standalone server (srvr allowed, as on the test server) a master's renewed deadline is
// anchored on the round trip just answered: right after a renewal it holds about session - margin
// (900ms of the 1s session), not the follower rule's session - interval - margin (650ms).
func testDirectAnchor(t *testing.T, addr string) {
	a := startNode(t, config(addr, "direct", "a"), nil)
	a.waitMaster(t)
	const session, interval, margin = time.Second, 250 * time.Millisecond, 100 * time.Millisecond
	over := session - interval - margin + 50*time.Millisecond
	s := a.rec.waitFor(t, "a renewal anchored on its own round trip", func(s election.State) bool {
		return s.Role == election.Master && s.Reason == "renewed" && time.Until(s.ValidUntil) > over
	})
	t.Logf("validity %v at a renewal (follower rule: at most %v)", s.ValidUntil.Sub(s.At), session-interval-margin)
}
