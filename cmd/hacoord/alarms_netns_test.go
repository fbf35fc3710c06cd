package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/internal/testenv"
)

// metricValue returns the value of the sample named series (name and labels exactly as the text
// format prints them) in a /metrics body, and whether it is there.
func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestSplitBrainAlarmsBetweenNamespaces: a VRRPv3 node beside a router of the same VRID speaking
// VRRPv2 does not join it, so both are master and both bind the VIP. The v3 node, master, hears
// the other host answer and announce the VIP with its own MAC, and the other router's adverts:
// it logs both at error (once: they come again within 10s), counts them in
// hacoord_split_brain_alarms_total and lists the ARP one, with that MAC, in its status file.
func TestSplitBrainAlarmsBetweenNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	bin := hacoordBin(t)
	a, b := twoNodes(t)
	v3 := startVRRPNode(t, bin, a, "v3", "150", "3")
	v2 := startVRRPNode(t, bin, b, "v2", "100", "2")
	l, err := b.Netlink.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	otherMAC := l.Attrs().HardwareAddr.String()
	addrs, err := b.Netlink.AddrList(l, unix.AF_INET)
	if err != nil || len(addrs) == 0 {
		t.Fatalf("the other node's address: %v %v", addrs, err)
	}
	otherAddr := addrs[0].IP.String()
	start := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			_, b, _ := a.Get(defaultMetricsAddress, "/metrics")
			t.Logf("v3 /metrics:\n%s", b)
		}
	})

	var st Status
	eventually(t, "the v3 node's status lists the other host's MAC", func() bool {
		st = v3.status(t, "status")
		for _, s := range st.SplitBrain {
			if strings.Contains(s, otherMAC) && strings.Contains(s, "192.0.2.150/24") {
				return true
			}
		}
		return false
	}, v3, v2)
	if !st.Promoted {
		t.Errorf("status %+v: the v3 node is not master", st)
	}
	var body string
	eventually(t, "/metrics counts an arp and a vrrp alarm", func() bool {
		code, b, err := a.Get(defaultMetricsAddress, "/metrics")
		if err != nil || code != http.StatusOK {
			return false
		}
		body = b
		arp, _ := metricValue(b, `hacoord_split_brain_alarms_total{group="default",instance="default",kind="arp"}`)
		vr, _ := metricValue(b, `hacoord_split_brain_alarms_total{group="default",instance="default",kind="vrrp"}`)
		return arp >= 1 && vr >= 1
	}, v3, v2)
	if v, ok := metricValue(body, `hacoord_master{group="default",instance="default"}`); !ok || v != 1 {
		t.Errorf("hacoord_master = %v (present %v), want 1", v, ok)
	}
	if v, ok := metricValue(body, `hacoord_vrrp_mismatched_adverts_total{group="default",instance="default",reason="version"}`); !ok || v < 1 {
		t.Errorf("mismatched adverts (version) = %v (present %v), want some", v, ok)
	}
	logged := 0
	for _, line := range strings.Split(v3.log.String(), "\n") {
		if strings.Contains(line, "ERROR") && strings.Contains(line, "split brain") && strings.Contains(line, otherMAC) {
			logged++
		}
	}
	if limit := 1 + int(time.Since(start)/alarmInterval); logged < 1 || logged > limit {
		t.Errorf("%d error lines name %s in %v, want 1 to %d (rate-limited); log:\n%s", logged, otherMAC, time.Since(start), limit, v3.log.String())
	}
	if !strings.Contains(v3.log.String(), "split brain: vrrp master "+otherAddr) {
		t.Errorf("no error line names the other VRRP master %s; log:\n%s", otherAddr, v3.log.String())
	}
	code, hb, err := a.Get(defaultMetricsAddress, "/healthz")
	if err != nil || code != http.StatusOK {
		t.Errorf("/healthz: %d %q %v, want 200", code, hb, err)
	}
}
