package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func TestVRRPStatusRendersMismatches(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := vrrp.Stats{Mismatched: map[vrrp.MismatchReason]uint64{vrrp.MismatchVersion: 7, vrrp.MismatchAuth: 0},
		Dropped: map[vrrp.DropReason]uint64{vrrp.DropVersion: 7}}
	ms := []vrrp.Mismatch{
		{Reason: vrrp.MismatchVersion, Source: netip.MustParseAddr("192.0.2.9"), Detail: "version 2, want 3", Dropped: true, Count: 5, First: at, Last: at},
		{Reason: vrrp.MismatchVersion, Source: netip.MustParseAddr("192.0.2.2"), Detail: "version 2, want 3", Dropped: true, Count: 2, First: at, Last: at},
	}
	b, err := json.Marshal(vrrpStatus(st, ms))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"mismatches":[{"reason":"version","source":"192.0.2.2","detail":"version 2, want 3","dropped":true,"count":2,"first":"2026-01-02T03:04:05Z","last":"2026-01-02T03:04:05Z"},` +
		`{"reason":"version","source":"192.0.2.9","detail":"version 2, want 3","dropped":true,"count":5,"first":"2026-01-02T03:04:05Z","last":"2026-01-02T03:04:05Z"}],` +
		`"mismatched":{"version":7},"dropped":{"version":7}}`
	if string(b) != want {
		t.Fatalf("rendered\n%s\nwant\n%s", b, want)
	}
	if b, _ := json.Marshal(vrrpStatus(vrrp.Stats{}, nil)); string(b) != `{"mismatches":[]}` {
		t.Fatalf("no mismatch renders %s", b)
	}
}

const vrrpVersionConf = `backend: vrrp
name: %[1]s
interface: eth0
vips: [192.0.2.150/24]
vrrp: {vrid: 30, priority: %[2]s, advert_int: 1s, version: %[3]s}
status_file: %[4]s/status.json
announce: {count: 1, repeat: 0, refresh: 0s}
`

// A VRRPv3 node beside a router of the same VRID speaking VRRPv2 (keepalived's default) does not
// join it: both are master. `hacoord status` on the v3 node names the other router, the reason and
// the number of its adverts, where an operator looks first.
func TestStatusShowsVRRPMismatches(t *testing.T) {
	testenv.RequireRoot(t)
	bin := hacoordBin(t)
	a, b := twoNodes(t)
	v3 := startVRRPNode(t, bin, a, "v3", "150", "3")
	startVRRPNode(t, bin, b, "v2", "100", "2")
	var st Status
	eventually(t, "the v3 node's status names the v2 router", func() bool {
		bs, err := os.ReadFile(filepath.Join(v3.dir, "status.json"))
		if err != nil || json.Unmarshal(bs, &st) != nil || st.VRRP == nil {
			return false
		}
		return len(st.VRRP.Mismatches) > 0
	}, v3)
	m := st.VRRP.Mismatches[0]
	if m.Reason != "version" || m.Source != "192.0.2.2" || !m.Dropped || m.Count == 0 || st.VRRP.Mismatched["version"] == 0 {
		t.Fatalf("status vrrp %+v, want a version mismatch from 192.0.2.2", st.VRRP)
	}
	out, err := a.Command(context.Background(), bin, "status", "--status-file", filepath.Join(v3.dir, "status.json")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"reason": "version"`) || !strings.Contains(string(out), `"source": "192.0.2.2"`) {
		t.Fatalf("hacoord status: %v\n%s", err, out)
	}
}

// startVRRPNode runs the real daemon in ns with vrrpVersionConf, as startBinary does, and stops
// it (SIGTERM, no VIP left) in t.Cleanup.
func startVRRPNode(t *testing.T, bin string, ns *netnstest.NS, name, prio, version string) *node {
	t.Helper()
	return startBinaryConf(t, bin, ns, name, func(dir string) string { return fmt.Sprintf(vrrpVersionConf, name, prio, version, dir) })
}
